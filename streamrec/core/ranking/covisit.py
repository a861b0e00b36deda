"""Co-visitation over item-store rows: items one user touched close together in a session.

Learning is a dict update per pair (both directions, weighted 1/distance and
by event type; `directed=True` keeps only earlier -> later, the transitions
"what people touched next"), each row's neighbours capped at `max_neighbours` (pruned to the
strongest when they pass 1.5x that). Reading is arrays: `neighbours(row)` gives
(rows, weights) numpy arrays, cached per row until the row changes, so
candidate generation concatenates a few arrays instead of walking dicts.

>>> c = CoVisitation(window=2, max_neighbours=10)
>>> c.add(1, [0], 1.0); c.add(2, [0, 1], 1.0)
>>> rows, w = c.neighbours(1)
>>> rows.tolist(), w.tolist()
([0, 2], [1.0, 1.0])
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from operator import itemgetter

import numpy as np

_EMPTY = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


def _to_one(sums: np.ndarray) -> np.ndarray:
    """`sums` divided by their largest (all 0 if it is <= 0)."""
    top = sums.max() if len(sums) else 0.0
    return sums / top if top > 0 else np.zeros(len(sums))


class CoVisitation:
    def __init__(
        self,
        window: int = 5,
        max_neighbours: int = 100,
        directed: bool = False,
        *,
        distance_decay: bool = True,
        type_weights: bool = True,
    ) -> None:
        self.window = window
        self.max_neighbours = max_neighbours
        self.directed = directed
        #: A pair at distance d counts 1/d (else 1), and an event's weight by type
        #: (else 1): what the shop's own data says, `streamrec evaluate --part validation`.
        self.distance_decay = distance_decay
        self.type_weights = type_weights
        #: Per row, the total weight of its pairs (an item's "popularity" in the graph):
        #: `candidates(cosine=True)` divides by it, so popular items do not dominate.
        self.mass = np.zeros(64, dtype=np.float64)
        self._nbrs: dict[int, dict[int, float]] = {}
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        #: Per cached row, its strongest weight (valid while `_arrays` holds the row).
        self._max: dict[int, float] = {}

    def add(self, row: int, previous: Sequence[int], weight: float) -> None:
        """`previous`: rows of the session's earlier items, newest last."""
        for other, w in self.pairs(row, previous, weight):
            self.add_pair(row, other, w)

    def pairs(self, row: int, previous: Sequence[int], weight: float) -> list[tuple[int, float]]:
        """(earlier row, weight) of each pair that `add(row, previous, weight)` learns."""
        weight = weight if self.type_weights else 1.0
        decay = self.distance_decay
        return [
            (other, weight / dist if decay else weight)
            for dist, other in enumerate(reversed(previous[-self.window :]), start=1)
            if other != row
        ]

    def add_pair(self, row: int, other: int, w: float) -> None:
        """Learn that `other` came before `row` in a session, with weight `w`.

        Also how another worker's learning is folded in (`core/sharing.py`).
        """
        top = max(row, other)
        if top >= len(self.mass):
            grown = np.zeros(max(top + 1, 2 * len(self.mass)))
            grown[: len(self.mass)] = self.mass
            self.mass = grown
        self.mass[row] += w
        self.mass[other] += w
        nbrs, arrays = self._nbrs, self._arrays
        limit = self.max_neighbours + self.max_neighbours // 2
        for a, b in ((other, row),) if self.directed else ((row, other), (other, row)):
            nb = nbrs.get(a)
            if nb is None:
                nb = nbrs[a] = {}
            nb[b] = nb.get(b, 0.0) + w
            arrays.pop(a, None)
            if len(nb) > limit:
                nbrs[a] = dict(heapq.nlargest(self.max_neighbours, nb.items(), key=itemgetter(1)))

    def neighbours(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour rows, weights) of `row`, in the order they were first seen."""
        cached = self._arrays.get(row)
        if cached is not None:
            return cached
        nb = self._nbrs.get(row)
        if not nb:
            return _EMPTY
        n = len(nb)
        out = (
            np.fromiter(nb.keys(), dtype=np.int64, count=n),
            np.fromiter(nb.values(), dtype=np.float64, count=n),
        )
        self._arrays[row] = out
        self._max[row] = float(out[1].max())
        return out

    def candidates(
        self, recent: np.ndarray, anchors: int, cosine: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Neighbours of the newest `anchors` of `recent` rows: (rows sorted, scores
        normalised to 1, the newest anchor that led to each, and with `cosine` the
        same sums of cosine-normalised weights, also to 1 (else empty)).

        Newer anchors weigh more (1 / (1 + age)); each anchor's weights are divided by
        its strongest, so one anchor with many visits does not drown the others.
        """
        parts_r, parts_w, ranks, used, sizes_l, maxes = [], [], [], [], [], []
        cache = self._arrays
        for rank, anchor in enumerate(recent[::-1][:anchors].tolist() if anchors else []):
            cached = cache.get(anchor)  # the usual case, without a call
            nbr, w = cached if cached is not None else self.neighbours(anchor)
            if len(nbr):
                parts_r.append(nbr)
                parts_w.append(w)
                ranks.append(rank)
                used.append(anchor)
                sizes_l.append(len(nbr))
                maxes.append(self._max[anchor])
        if not parts_r:
            return _EMPTY[0], _EMPTY[1], _EMPTY[0], _EMPTY[1]
        # Per anchor: its recency factor over its strongest weight (kept with its
        # arrays), repeated over its neighbours.
        sizes = np.array(sizes_l, dtype=np.int64)
        w_all = np.concatenate(parts_w)
        recency = 1.0 / (1.0 + np.array(ranks, dtype=np.float64))
        weights = w_all * np.repeat(recency / np.array(maxes), sizes)
        rows_all = np.concatenate(parts_r)
        anchor_rows = np.repeat(np.array(used, dtype=np.int64), sizes)
        # One stable sort instead of np.unique(return_index, return_inverse): the same
        # groups, summed in the same order, the first (newest) anchor of each.
        order = np.argsort(rows_all, kind="stable")
        rows = rows_all[order]
        new = np.concatenate(([True], rows[1:] != rows[:-1]))
        starts = np.flatnonzero(new)
        inv = np.empty(len(rows), dtype=np.int64)
        inv[order] = np.cumsum(new) - 1
        scores = _to_one(np.bincount(inv, weights=weights))
        cos = _EMPTY[1]
        if cosine:
            mass = self.mass
            unit = w_all / np.sqrt(mass[anchor_rows] * mass[rows_all] + 1e-12)
            cos = _to_one(np.bincount(inv, weights=unit * np.repeat(recency, sizes)))
        return rows[starts], scores, anchor_rows[order[starts]], cos

    def __len__(self) -> int:
        return len(self._nbrs)

    def pair_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source rows, neighbour rows, weights) of every pair, from the per-row arrays
        `neighbours` caches: only rows changed since their last read are rebuilt."""
        keys = list(self._nbrs)
        if not keys:
            return _EMPTY[0], _EMPTY[0], _EMPTY[1]
        parts = [self.neighbours(a) for a in keys]
        sizes = np.fromiter(map(len, (p[0] for p in parts)), dtype=np.int64, count=len(parts))
        src = np.repeat(np.array(keys, dtype=np.int64), sizes)
        return src, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    # -- state ----------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """Three flat arrays (source row, neighbour row, weight) and the settings."""
        src = np.fromiter(
            (a for a, nb in self._nbrs.items() for _ in range(len(nb))), dtype=np.int64
        )
        dst = np.fromiter((b for nb in self._nbrs.values() for b in nb), dtype=np.int64)
        w = np.fromiter((x for nb in self._nbrs.values() for x in nb.values()), dtype=np.float64)
        return {"src": src, "dst": dst, "w": w, "window": self.window,
                "max_neighbours": self.max_neighbours, "directed": self.directed,
                "distance_decay": self.distance_decay, "type_weights": self.type_weights,
                "mass": self.mass.copy()}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, object]) -> CoVisitation:
        c = cls(
            int(state["window"]),  # type: ignore[call-overload]
            int(state["max_neighbours"]),  # type: ignore[call-overload]
            bool(state.get("directed", False)),
            distance_decay=bool(state.get("distance_decay", True)),
            type_weights=bool(state.get("type_weights", True)),
        )
        nbrs = c._nbrs
        src, dst, ws = np.asarray(state["src"]), np.asarray(state["dst"]), np.asarray(state["w"])
        if state.get("mass") is not None:
            c.mass = np.asarray(state["mass"], dtype=np.float64).copy()
        elif len(src):
            # Snapshots from before `mass` was kept: rebuilt from the pairs (pruned pairs
            # are missing from it, a small difference that new learning dilutes).
            c.mass = np.zeros(max(64, int(max(src.max(), dst.max())) + 1))
            np.add.at(c.mass, src, ws)
            if c.directed:
                np.add.at(c.mass, dst, ws)
        for a, b, w in zip(
            np.asarray(state["src"]).tolist(),
            np.asarray(state["dst"]).tolist(),
            np.asarray(state["w"]).tolist(),
            strict=True,
        ):
            nb = nbrs.get(a)
            if nb is None:
                nb = nbrs[a] = {}
            nb[b] = w
        return c
