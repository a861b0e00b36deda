"""Co-visitation over item-store rows: items one user touched close together in a session.

Learning adds a pair's weight (both directions, weighted 1/distance and by
event type; `directed=True` keeps only earlier -> later, the transitions "what
people touched next"), each row's neighbours capped at `max_neighbours` (pruned
to the strongest when they pass 1.5x that). Each row keeps its neighbours as
two growable numpy arrays, updated in place, and a dict from neighbour to
position: the rows a list reads are the user's recent items, exactly the ones
the last events changed, so arrays rebuilt on read were rebuilt for almost
every list. `neighbours(row)` returns views; candidate generation concatenates
them and sums them in one compiled kernel (`core/kernels/`).

>>> c = CoVisitation(window=2, max_neighbours=10)
>>> c.add(1, [0], 1.0); c.add(2, [0, 1], 1.0)
>>> rows, w = c.neighbours(1)
>>> rows.tolist(), w.tolist()
([0, 2], [1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamrec.core.kernels import covisit_merge

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
        self._nbrs: dict[int, _Row] = {}
        #: Scratch for `covisit_merge` (row -> group), -1 between calls.
        self._slot = np.zeros(0, dtype=np.int64)

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
        nbrs = self._nbrs
        limit = self.max_neighbours + self.max_neighbours // 2
        for a, b in ((other, row),) if self.directed else ((row, other), (other, row)):
            nb = nbrs.get(a)
            if nb is None:
                nb = nbrs[a] = _Row()
            nb.add(b, w)
            if nb.n > limit:
                nb.keep_strongest(self.max_neighbours)

    def neighbours(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour rows, weights) of `row`, in the order they were first seen: views,
        valid until the row next changes."""
        nb = self._nbrs.get(row)
        if nb is None:
            return _EMPTY
        n = nb.n
        return nb.nbr[:n], nb.w[:n]

    def weights(self, row: int) -> dict[int, float]:
        """{neighbour row: weight} of `row` (for tests and inspection)."""
        nbr, w = self.neighbours(row)
        return dict(zip(nbr.tolist(), w.tolist(), strict=True))

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
        nbrs = self._nbrs
        for rank, anchor in enumerate(recent[::-1][:anchors].tolist() if anchors else []):
            nb = nbrs.get(anchor)
            if nb is not None:
                n = nb.n
                parts_r.append(nb.nbr[:n])
                parts_w.append(nb.w[:n])
                ranks.append(rank)
                used.append(anchor)
                sizes_l.append(n)
                maxes.append(nb.top)
        if not parts_r:
            return _EMPTY[0], _EMPTY[1], _EMPTY[0], _EMPTY[1]
        recency = 1.0 / (1.0 + np.array(ranks, dtype=np.float64))
        mass = self.mass
        if len(self._slot) < len(mass):  # neighbour rows are below len(mass)
            self._slot = np.full(len(mass), -1, dtype=np.int64)
        # Per anchor: its recency factor over its strongest weight (kept with its arrays).
        rows, sums, first, cos_sums = covisit_merge(
            np.concatenate(parts_r),
            np.concatenate(parts_w),
            np.array(sizes_l, dtype=np.int64),
            recency / np.array(maxes),
            recency,
            np.array(used, dtype=np.int64),
            mass,
            cosine,
            self._slot,
        )
        return rows, _to_one(sums), first, (_to_one(cos_sums) if cosine else _EMPTY[1])

    def __len__(self) -> int:
        return len(self._nbrs)

    def pair_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source rows, neighbour rows, weights) of every pair, rows in the order they
        first had a neighbour, each row's neighbours in `neighbours` order."""
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
        src, dst, w = self.pair_arrays()
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
        src = src.astype(np.int64)
        dst = dst.astype(np.int64)
        ws = ws.astype(np.float64)
        if not len(src):
            return c
        # `state` writes each row's pairs together: one slice per row.
        starts = np.flatnonzero(np.concatenate(([True], src[1:] != src[:-1])))
        ends = np.append(starts[1:], len(src))
        nbrs = c._nbrs
        for a, lo, hi in zip(src[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
            nb = nbrs.get(a)
            if nb is None:
                nbrs[a] = _Row.of(dst[lo:hi], ws[lo:hi])
            else:  # a row in two runs (not written by `state`): the later weight wins
                for b, w in zip(dst[lo:hi].tolist(), ws[lo:hi].tolist(), strict=True):
                    nb.put(b, w)
        return c


class _Row:
    """One row's neighbours: rows and weights in growable arrays, first seen first."""

    __slots__ = ("n", "nbr", "pos", "top", "w")

    def __init__(self) -> None:
        self.nbr = np.zeros(8, dtype=np.int64)
        self.w = np.zeros(8, dtype=np.float64)
        self.n = 0
        #: neighbour row -> its position in the arrays
        self.pos: dict[int, int] = {}
        #: the strongest weight (weights only grow, and pruning keeps the strongest)
        self.top = 0.0

    @classmethod
    def of(cls, nbr: np.ndarray, w: np.ndarray) -> _Row:
        r = cls()
        r._set(nbr.copy(), w.copy())
        return r

    def _set(self, nbr: np.ndarray, w: np.ndarray) -> None:
        self.nbr, self.w, self.n = nbr, w, len(nbr)
        self.pos = dict(zip(nbr.tolist(), range(len(nbr)), strict=True))
        self.top = float(w.max()) if len(w) else 0.0

    def add(self, b: int, w: float) -> None:
        p = self.pos.get(b)
        if p is None:
            self._append(b, w)
            return
        v = float(self.w[p]) + w
        self.w[p] = v
        if v > self.top:
            self.top = v

    def put(self, b: int, w: float) -> None:
        p = self.pos.get(b)
        if p is None:
            self._append(b, w)
        else:
            self.w[p] = w
            self.top = float(self.w[: self.n].max())

    def _append(self, b: int, w: float) -> None:
        n = self.n
        if n == len(self.nbr):
            self.nbr = np.concatenate((self.nbr, np.zeros(n, dtype=np.int64)))
            self.w = np.concatenate((self.w, np.zeros(n, dtype=np.float64)))
        self.nbr[n] = b
        self.w[n] = w
        self.pos[b] = n
        self.n = n + 1
        if w > self.top:
            self.top = w

    def keep_strongest(self, k: int) -> None:
        """The `k` strongest, strongest first, equals in the order they came (what
        `heapq.nlargest` kept when neighbours were a dict)."""
        n = self.n
        order = np.argsort(-self.w[:n], kind="stable")[:k]
        self._set(self.nbr[order], self.w[order])
