"""How sure a comparison is: NDCG@k of one model over another, with an interval.

Every model is scored on the same targets, so the two are compared target by
target (paired), and the interval comes from a bootstrap that resamples
*users*, not targets: one user's targets move together (the same history, the
same tastes), and resampling them one by one would make the interval too
narrow. Under leave-last-out a user is one target, so the two are the same.

>>> import numpy as np
>>> from streamrec.evaluation.protocols import ModelRun
>>> users = np.arange(200) % 50
>>> a = ModelRun("a", {}, np.arange(200), np.zeros(200, int), np.where(users < 30, 1, 0), users)
>>> b = ModelRun("b", {}, np.arange(200), np.zeros(200, int), np.where(users < 20, 1, 0), users)
>>> r = ratio_interval(a, b)
>>> r["ratio"], r["low"] < 1.5 < r["high"], r["users"], r["targets"]
(1.5, True, 50, 200)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamrec.evaluation.protocols import ModelRun


def gains(rank: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of each target (one relevant item): 1 / log2(rank + 1) within the top k."""
    rank = np.asarray(rank, dtype=np.float64)
    hit = (rank >= 1) & (rank <= k)
    out = np.zeros(len(rank))
    out[hit] = 1.0 / np.log2(rank[hit] + 1.0)
    return out


def ratio_interval(
    a: ModelRun,
    b: ModelRun,
    k: int = 10,
    samples: int = 2_000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean NDCG@k of `a` over `b` on the targets both scored, and its `level`
    bootstrap interval (users resampled with replacement, `samples` times)."""
    _common, ia, ib = np.intersect1d(a.index, b.index, assume_unique=True, return_indices=True)
    _codes, user = np.unique(a.user[ia], return_inverse=True)
    n_users = int(user.max()) + 1 if len(user) else 0
    sum_a = np.bincount(user, gains(a.rank[ia], k), minlength=n_users)
    sum_b = np.bincount(user, gains(b.rank[ib], k), minlength=n_users)
    out: dict[str, Any] = {"k": k, "users": n_users, "targets": len(ia), "level": level}
    if not n_users or sum_b.sum() <= 0:
        return out | {"ratio": float("nan"), "low": float("nan"), "high": float("nan")}
    rng = np.random.default_rng(seed)
    # How often each user is drawn in each resample: samples x users.
    weights = rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=samples)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = (weights @ sum_a) / (weights @ sum_b)
    ratios = ratios[np.isfinite(ratios)]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return out | {
        "ratio": round(float(sum_a.sum() / sum_b.sum()), 4),
        "low": round(float(low), 4),
        "high": round(float(high), 4),
    }


def best_baseline(runs: dict[str, ModelRun]) -> str | None:
    """The name of the baseline (any model but streamrec's) with the highest NDCG@10."""
    base = [n for n in runs if not n.startswith("streamrec")]

    def ndcg(name: str) -> float:
        return float(runs[name].segments.get("all", {}).get("ndcg@10", 0.0))

    return max(base, key=ndcg, default=None)


def versus_best_baseline(runs: dict[str, ModelRun], ours: str = "streamrec") -> dict[str, Any]:
    """`ours` over the baseline with the highest NDCG@10 (its name under "baseline");
    empty without both."""
    mine, best = runs.get(ours), best_baseline(runs)
    if mine is None or best is None:
        return {}
    return {"baseline": best, **ratio_interval(mine, runs[best])}
