"""How far can re-ranking streamrec's pool go with its own features? (docs/evaluation.md)

    python scripts/pool_ceiling.py                 # ml-100k, validation half
    python scripts/pool_ceiling.py --no-factors    # the pool and features without them

Runs streamrec over the validation half of ml-100k one event at a time and keeps,
for every scored event, the pool of the list published before it (its
features, as ranked) and which candidate the user took. Then, on the events of
the validation half's second half (where `--part validation-late` scores):
fits rankers on the first half of those and reports NDCG@10 on the rest for the
fixed blend, a logistic regression on the same features and gradient-boosted
trees (scikit-learn, already installed with the encoder). If the fitted models
cannot beat the blend, what limits the lists is the features and the pool,
not how they are weighed. Only the validation half is read: nothing here
looks at what `--part test` reports.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from tqdm import tqdm

from streamrec.core.ranking.features import FeatureBuilder
from streamrec.core.ranking.models import FEATURES, FIXED_WEIGHTS
from streamrec.evaluation.models import StreamrecModel
from streamrec.evaluation.protocols import prequential_targets
from streamrec.evaluation.runner import load_dataset
from streamrec.settings import Settings


def collect(settings: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features per pool row, 1 where it is the item the user took, event per row)."""
    last_pool: dict[str, Any] = {}
    features = FeatureBuilder._features

    def recording(self: FeatureBuilder, *args: Any) -> np.ndarray:
        x = features(self, *args)
        last_pool["rows"], last_pool["x"] = args[2].copy(), x.copy()
        return x

    FeatureBuilder._features = recording  # type: ignore[method-assign,assignment]
    log = load_dataset("ml-100k", settings)
    events = log.events[: len(log.events) // 2]
    targets = prequential_targets(events)
    model = StreamrecModel(settings, log.items)
    ids = model.engine.recommender.items.ids
    pools: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    xs, ys, groups = [], [], []
    late = len(events) // 2
    for i, ev in enumerate(tqdm(events, desc="streamrec, one event at a time", unit="ev")):
        last_pool.clear()
        model.process([ev], 10)
        target = targets[i]
        if target is not None and i >= late and ev.user_id in pools:
            items, x = pools[ev.user_id]
            xs.append(x)
            ys.append(items == target.item)
            groups.append(np.full(len(x), i))
        if last_pool:
            pools[ev.user_id] = (np.array([ids[r] for r in last_pool["rows"].tolist()]),
                                 last_pool["x"])  # fmt: skip
    FeatureBuilder._features = features  # type: ignore[method-assign]
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups)


def ndcg10(scores: np.ndarray, y: np.ndarray, g: np.ndarray) -> float:
    """Mean NDCG@10 over events (one relevant item each; 0 where it is not in the pool)."""
    order = np.lexsort((-scores, g))
    g, y = g[order], y[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    pos = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    hit = y & (pos < 10)
    return float((1.0 / np.log2(pos[hit] + 2)).sum() / len(starts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-factors", action="store_true", help="STREAMREC_FACTORS_DIM=0")
    args = ap.parse_args()
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    settings = Settings.from_env().with_overrides(
        top_k=60, max_per_category=0, factors_dim=0 if args.no_factors else None
    )
    x, y, g = collect(settings)
    cut = np.unique(g)[len(np.unique(g)) // 2]
    fit, held = g < cut, g >= cut
    blend = x @ np.array([FIXED_WEIGHTS[f] for f in FEATURES])
    print(f"{len(np.unique(g[held])):,} held-out events, the pool holds the target in "
          f"{y[held].sum() / len(np.unique(g[held])):.1%} of them")  # fmt: skip
    print(f"fixed blend           NDCG@10 {ndcg10(blend[held], y[held], g[held]):.4f}")
    lr = LogisticRegression(max_iter=3000).fit(x[fit], y[fit])
    print(f"logistic regression   NDCG@10 {ndcg10(x[held] @ lr.coef_[0], y[held], g[held]):.4f}")
    trees = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05).fit(x[fit], y[fit])
    gb = trees.predict_proba(x[held])[:, 1]
    print(f"gradient-boosted trees NDCG@10 {ndcg10(gb, y[held], g[held]):.4f}")


if __name__ == "__main__":
    main()
