"""The blend tunes itself on the shop's own stream: weightings scored in shadow, the best made live.

Which sources matter differs from shop to shop: on MovieLens what goes with
everything a user rated (co-visitation) ranks best, on Amazon Video Games
what users took *next* (transitions) does, by a fifth. No default fits both,
so each shop's stream chooses:

* **Candidates.** The live weighting and its neighbours: for each tuned
  feature (`STEPS`), its weight one step up and one step down.
* **Shadow lists.** For a sample of users (a stable hash of the pseudonym),
  every published list's ranked pool is also ranked by every candidate (one
  matrix product, then a top-k per candidate) and the tops are kept for the
  user, as 64-bit hashes of the item ids.
* **Evidence.** The user's next interaction with an item new to them scores
  every candidate's list at once (NDCG@k): one vector per scored event. The
  vectors travel with the learning records (`core/item_log.py`), so every
  worker weighs the same evidence, exactly once, and a restarted worker gets
  its own back.
* **Switch.** After `min_scored` vectors, every `check_every` more, the best
  candidate replaces the live weighting if its paired gain over it is above
  `z` standard errors. A new neighbourhood is formed around it and the evidence
  starts afresh, so the blend keeps following the shop as it changes.

Every switch is kept with its evidence (`switches`, `Switch`): the worker
logs it and publishes it on the metrics topic (`streamrec monitor` shows it).

>>> import numpy as np
>>> from streamrec.core.ranking.models import FEATURES
>>> w = np.zeros(len(FEATURES)); w[FEATURES.index("covisit")] = 1.0
>>> t = BlendTuner(w, sample=1.0, min_scored=4, check_every=1, z=1.0)
>>> up_seq = t.names.index("sequence+")
>>> for _ in range(6):
...     _ = t.learn(np.where(np.arange(len(t.names)) == up_seq, 1.0, 0.1))
>>> t.live_name, round(float(t.live[FEATURES.index("sequence")]), 2), len(t.switches)
('sequence+', 0.5, 1)
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamrec.core.ranking.models import FEATURES, FixedBlend

#: The features whose weight is tuned, and the step of one move.
STEPS = {
    "covisit": 0.5,
    "sequence": 0.5,
    "covisit_idf": 0.3,
    "factors": 0.3,
    "similarity": 0.3,
    "popularity": 0.1,
    "affinity": 0.1,
}
_DISCOUNT = 1.0 / np.log2(np.arange(2, 202))


@dataclass(frozen=True)
class Switch:
    """The live weighting moved: what to, on how much evidence."""

    #: Evidence vectors learned so far (all of them), and in this neighbourhood.
    at: int
    scored: int
    before: str
    after: str
    ndcg_before: float
    ndcg_after: float
    #: The paired gain's standard error (the gain is ndcg_after - ndcg_before).
    se: float
    weights: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "scored": self.scored, "before": self.before,
                "after": self.after, "ndcg_before": round(self.ndcg_before, 5),
                "ndcg_after": round(self.ndcg_after, 5), "se": round(self.se, 5),
                "weights": {k: round(v, 4) for k, v in self.weights.items()}}  # fmt: skip


class BlendTuner:
    def __init__(
        self,
        live: np.ndarray,
        *,
        sample: float = 0.2,
        k: int = 10,
        min_scored: int = 2_000,
        check_every: int = 250,
        z: float = 3.0,
        max_users: int = 50_000,
    ) -> None:
        self.sample = sample
        self.k = k
        self.min_scored = min_scored
        self.check_every = check_every
        self.z = z
        self.max_users = max_users
        #: Per sampled user, the candidates' tops of their last list (tiebreak hashes,
        #: candidates x k) and the neighbourhood they were ranked in (its number of
        #: switches); the oldest users go first past `max_users`.
        self._pending: OrderedDict[str, tuple[int, np.ndarray]] = OrderedDict()
        #: Evidence vectors learned in all, switches made (newest last).
        self.learned = 0
        self.switches: list[Switch] = []
        #: Where its inputs are recorded for a replay after a restart (shared with the
        #: ranker's, `feedback.py`); None: not recorded.
        self.recording: list[tuple[Any, ...]] | None = None
        self._around(np.asarray(live, dtype=np.float64), "default")

    # -- the neighbourhood ---------------------------------------------------

    def _around(self, live: np.ndarray, name: str) -> None:
        """Candidates: `live` (first) and one step up and down on each tuned feature."""
        names, rows = [name], [live]
        for feature, step in STEPS.items():
            i = FEATURES.index(feature)
            for sign, tag in ((1.0, "+"), (-1.0, "-")):
                w = live.copy()
                w[i] = max(0.0, w[i] + sign * step)
                if w[i] != live[i]:
                    names.append(feature + tag)
                    rows.append(w)
        self.names = names
        self.weights = np.stack(rows)  # candidates x features
        self.blend = FixedBlend(dict(zip(FEATURES, live.tolist(), strict=True)))
        if self.switches:  # what a list says ranked it: the weighting after n switches
            self.blend.version = f"blend-1+tuned-{len(self.switches)}"
        self._n = 0
        self._sum = np.zeros(len(names))
        self._gain = np.zeros(len(names))  # sums of (candidate - live)
        self._gain2 = np.zeros(len(names))  # sums of (candidate - live)^2

    @property
    def live(self) -> np.ndarray:
        return self.weights[0]

    @property
    def live_name(self) -> str:
        return self.names[0]

    # -- shadow lists and evidence ---------------------------------------------

    def sampled(self, user: str) -> bool:
        return zlib.crc32(user.encode()) < self.sample * 2**32

    def shadow(self, user: str, x: np.ndarray, hashes: np.ndarray) -> None:
        """A list was published to `user` from a pool with features `x` (rows) whose
        items hash to `hashes` (the item store's tiebreak): keep every candidate's top."""
        if not len(hashes) or not self.sampled(user):
            return
        scores = np.round(x @ self.weights.T, 9)  # pool x candidates
        k = min(self.k, len(hashes))
        tops = np.empty((len(self.names), k), dtype=np.int64)
        for c in range(len(self.names)):
            tops[c] = hashes[np.lexsort((hashes, -scores[:, c]))[:k]]
        self.keep(user, len(self.switches), tops)

    def keep(self, user: str, generation: int, tops: np.ndarray) -> None:
        if self.recording is not None:
            self.recording.append(("shadow", user, generation, tops))
        pending = self._pending
        pending[user] = (generation, tops)
        pending.move_to_end(user)
        while len(pending) > self.max_users:
            pending.popitem(last=False)

    def score(self, user: str, item_hash: int) -> np.ndarray | None:
        """The user interacted with an item new to them: every candidate's NDCG@k for
        the list they had (None: no list kept). The list is used up."""
        kept = self._pending.pop(user, None)
        if kept is None:
            return None
        if self.recording is not None:
            self.recording.append(("scored", user))
        generation, tops = kept
        if generation != len(self.switches):
            return None  # ranked before the last switch: another neighbourhood
        hit = tops == item_hash
        found = hit.any(axis=1)
        out = np.zeros(len(self.names))
        out[found] = _DISCOUNT[hit[found].argmax(axis=1)]
        return out

    def drop(self, user: str) -> None:
        """Erasure, or the list is stale: the user's kept tops go."""
        if self._pending.pop(user, None) is not None and self.recording is not None:
            self.recording.append(("scored", user))

    def learn(self, evidence: np.ndarray) -> Switch | None:
        """One scored event's NDCG per candidate (here, or another worker's)."""
        if len(evidence) != len(self.names):
            return None  # scored against another neighbourhood (a worker not yet switched)
        self.learned += 1
        self._n += 1
        self._sum += evidence
        d = evidence - evidence[0]
        self._gain += d
        self._gain2 += d * d
        if self._n < self.min_scored or self._n % self.check_every:
            return None
        return self._check()

    def _check(self) -> Switch | None:
        n = self._n
        mean = self._gain / n
        var = np.maximum(self._gain2 / n - mean * mean, 0.0)
        se = np.sqrt(var / n)
        best = int(np.argmax(mean))
        if best == 0 or not mean[best] > self.z * se[best]:
            return None
        switch = Switch(
            at=self.learned, scored=n, before=self.names[0], after=self.names[best],
            ndcg_before=float(self._sum[0] / n), ndcg_after=float(self._sum[best] / n),
            se=float(se[best]),
            weights={f: float(v) for f, v in zip(FEATURES, self.weights[best], strict=True) if v},
        )  # fmt: skip
        self.switches.append(switch)
        self._around(self.weights[best].copy(), self.names[best])
        return switch

    # -- state -----------------------------------------------------------------

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(header, arrays) for a snapshot: the neighbourhood, its evidence, the
        switches, and the kept tops (per-user: not in the shared checkpoint)."""
        users = list(self._pending)
        kept = list(self._pending.values())
        header = {"names": self.names, "features": list(FEATURES), "n": self._n,
                  "learned": self.learned, "switches": [s.to_dict() for s in self.switches],
                  "pending_users": users,
                  "pending_generations": [g for g, _t in kept]}  # fmt: skip
        arrays = {"weights": self.weights, "sum": self._sum, "gain": self._gain,
                  "gain2": self._gain2,
                  "pending": (np.concatenate([t.ravel() for _g, t in kept]) if kept
                              else np.zeros(0, np.int64)),
                  "pending_shapes": np.array([t.shape for _g, t in kept],
                                             dtype=np.int64).reshape(-1, 2)}  # fmt: skip
        return header, arrays

    def restore(self, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if list(header.get("features", [])) != list(FEATURES):
            return  # another feature set: start from the configured blend again
        self.switches = [Switch(**{**s, "weights": dict(s["weights"])})
                         for s in header["switches"]]  # fmt: skip
        self.learned = int(header["learned"])
        self._around(np.asarray(arrays["weights"][0], dtype=np.float64), header["names"][0])
        self.names = list(header["names"])
        self.weights = np.asarray(arrays["weights"], dtype=np.float64)
        self._n = int(header["n"])
        self._sum, self._gain = arrays["sum"].copy(), arrays["gain"].copy()
        self._gain2 = arrays["gain2"].copy()
        self._pending = OrderedDict()
        flat, at = arrays.get("pending", np.zeros(0, np.int64)), 0
        shapes = arrays.get("pending_shapes", np.zeros((0, 2), np.int64)).tolist()
        users, generations = header.get("pending_users", []), header.get("pending_generations", [])
        for user, gen, (a, b) in zip(users, generations, shapes, strict=True):
            self._pending[user] = (int(gen), flat[at : at + a * b].reshape(a, b).copy())
            at += a * b

    def stats(self) -> dict[str, Any]:
        n = max(self._n, 1)
        best = int(np.argmax(self._sum))
        return {"live": self.live_name, "scored": self._n, "learned": self.learned,
                "switches": len(self.switches),
                "ndcg_live": round(float(self._sum[0] / n), 5),
                "best": self.names[best], "ndcg_best": round(float(self._sum[best] / n), 5),
                "weights": {f: round(float(v), 4) for f, v in zip(FEATURES, self.live,
                                                                  strict=True) if v}}  # fmt: skip
