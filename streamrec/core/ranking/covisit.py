"""Co-visitation over item-store rows: items one user touched close together in a session.

Learning adds a pair's weight (both directions, weighted 1/distance and by
event type; `directed=True` keeps only earlier -> later, the transitions "what
people touched next"), each row's neighbours capped at `max_neighbours` (pruned
to the strongest when they pass 1.5x that). Every row's neighbours live in
one arena of two flat arrays, a block per row, updated in place by compiled
kernels (`core/kernels/graph.py`): an event's pairs are one call, and a
list's anchors are read and summed in one call, with no Python object or
dict per row. `neighbours(row)` returns views of a row's block.

>>> c = CoVisitation(window=2, max_neighbours=10)
>>> c.add(1, [0], 1.0); c.add(2, [0, 1], 1.0)
>>> rows, w = c.neighbours(1)
>>> rows.tolist(), w.tolist()
([0, 2], [1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streamrec.core.kernels.graph import (
    BOTH_WAYS,
    ONE_WAY,
    PUT,
    graph_add,
    graph_candidates,
    graph_compact,
    graph_learn,
    graph_pairs,
)

_EMPTY = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


def _grown(a: np.ndarray, size: int, fill: float | int) -> np.ndarray:
    """`a` in an array of at least `size` (doubling), new places `fill`."""
    out = np.full(max(size, 2 * len(a)), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


class CoVisitation:
    def __init__(
        self,
        window: int = 5,
        max_neighbours: int = 100,
        directed: bool = False,
        *,
        distance_decay: bool = True,
        type_weights: bool = True,
        prior: float = 0.0,
    ) -> None:
        self.window = window
        #: What an anchor's strongest weight is shrunk by (`candidates`): an item seen
        #: with others a few times only must not speak as loudly as one with many.
        self.prior = prior
        self.max_neighbours = max_neighbours
        self.directed = directed
        #: A pair at distance d counts 1/d (else 1), and an event's weight by type
        #: (else 1): what the shop's own data says, `streamrec evaluate --part validation`.
        self.distance_decay = distance_decay
        self.type_weights = type_weights
        #: Per row, the total weight of its pairs (an item's "popularity" in the graph):
        #: `candidates(cosine=True)` divides by it, so popular items do not dominate.
        self.mass = np.zeros(64, dtype=np.float64)
        #: Per row: its block in the arena (-1: none), neighbours in it, its room, the
        #: strongest weight (weights only grow, and pruning keeps the strongest).
        self._start = np.full(64, -1, dtype=np.int64)
        self._n = np.zeros(64, dtype=np.int64)
        self._cap = np.zeros(64, dtype=np.int64)
        self._top = np.zeros(64, dtype=np.float64)
        #: The arena: neighbour rows and weights, a block per row.
        self._nbr = np.zeros(1024, dtype=np.int64)
        self._w = np.zeros(1024, dtype=np.float64)
        #: Rows in the order they got neighbours (the order `pair_arrays` writes).
        self._order = np.zeros(64, dtype=np.int64)
        #: [arena slots used, slots of moved-out blocks, rows with neighbours]
        self._counts = np.zeros(3, dtype=np.int64)
        #: Scratch for the candidates kernel (row -> group), -1 between calls.
        self._slot = np.zeros(0, dtype=np.int64)

    def add(self, row: int, previous: Sequence[int], weight: float) -> None:
        """`previous`: rows of the session's earlier items, newest last."""
        prev = np.array(previous[-self.window :], dtype=np.int64)
        self._fit(max(row, int(prev.max())) if len(prev) else row)
        weight = weight if self.type_weights else 1.0
        how = ONE_WAY if self.directed else BOTH_WAYS
        done = 0
        while True:
            done = graph_learn(row, prev, weight, self.distance_decay, done, how, self.mass,
                               *self._arrays())  # fmt: skip
            if done < 0:
                return
            self._make_room()

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
        """Learn that `other` came before `row` in a session, with weight `w`."""
        self.add_pairs(np.array([row], dtype=np.int64), np.array([other], dtype=np.int64),
                       np.array([w], dtype=np.float64))  # fmt: skip

    def add_pairs(self, rows: np.ndarray, others: np.ndarray, ws: np.ndarray) -> None:
        """`add_pair` for each (rows[i], others[i], ws[i]), in order: also how another
        worker's learning is folded in (`core/sharing.py`)."""
        if len(ws):
            self._add(rows, others, ws, ONE_WAY if self.directed else BOTH_WAYS)

    def _add(self, rows: np.ndarray, others: np.ndarray, ws: np.ndarray, how: int) -> None:
        # Fresh arrays of one type: the kernels are compiled for writable int64/float64.
        rows, others = np.array(rows, dtype=np.int64), np.array(others, dtype=np.int64)
        ws = np.array(ws, dtype=np.float64)
        self._fit(int(max(rows.max(), others.max())))
        done = 0
        while True:
            done = graph_add(rows, others, ws, done, how, self.mass, *self._arrays())
            if done == len(ws):
                return
            self._make_room()

    def _fit(self, row: int) -> None:
        """The per-row arrays reach `row`."""
        if row >= len(self.mass):
            self.mass = _grown(self.mass, row + 1, 0.0)
        if row >= len(self._start):
            self._start = _grown(self._start, row + 1, -1)
            self._n = _grown(self._n, row + 1, 0)
            self._cap = _grown(self._cap, row + 1, 0)
            self._top = _grown(self._top, row + 1, 0.0)
            self._order = _grown(self._order, row + 1, 0)

    def _arrays(self) -> tuple[Any, ...]:
        """The kernels' arguments after the pairs and `mass`: the arena, the limits."""
        limit = self.max_neighbours + self.max_neighbours // 2
        arena = (self._start, self._n, self._cap, self._top, self._nbr, self._w, self._order,
                 self._counts)  # fmt: skip
        return arena, limit, self.max_neighbours

    def _make_room(self) -> None:
        """Room at the arena's end for any one pair: compacted when half of it is
        moved-out blocks, doubled when that is not enough."""
        limit = self.max_neighbours + self.max_neighbours // 2
        need = 2 * max(limit + 1, int(self._cap.max()))  # a loaded row can be longer
        used, garbage, rows = (int(x) for x in self._counts)
        live = used - garbage
        size = len(self._nbr)
        if live + need > size // 2:
            size = max(2 * size, 2 * (live + need))
        nbr = np.zeros(size, dtype=np.int64)
        w = np.zeros(size, dtype=np.float64)
        self._counts[0] = graph_compact(
            self._order, rows, self._start, self._n, self._cap, self._nbr, self._w, nbr, w
        )
        self._counts[1] = 0
        self._nbr, self._w = nbr, w

    def neighbours(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour rows, weights) of `row`, in the order they were first seen: views,
        valid until the graph next learns."""
        if not 0 <= row < len(self._start) or self._start[row] < 0:
            return _EMPTY
        s, n = int(self._start[row]), int(self._n[row])
        return self._nbr[s : s + n], self._w[s : s + n]

    def weights(self, row: int) -> dict[int, float]:
        """{neighbour row: weight} of `row` (for tests and inspection)."""
        nbr, w = self.neighbours(row)
        return dict(zip(nbr.tolist(), w.tolist(), strict=True))

    def linked_rows(self) -> np.ndarray:
        """The rows with neighbours, in the order they got their first."""
        return self._order[: int(self._counts[2])].copy()

    def candidates(
        self, recent: np.ndarray, anchors: int, cosine: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Neighbours of the newest `anchors` of `recent` rows: (rows sorted, scores
        normalised to 1, the newest anchor that led to each, and with `cosine` the
        same sums of cosine-normalised weights, also to 1 (else empty)).

        Newer anchors weigh more (1 / (1 + age)); each anchor's weights are divided by
        its strongest plus `prior`, so one anchor with many visits does not drown the
        others, and one with few (its strongest pair seen once or twice, little
        evidence) does not count as much as one whose strongest pair was seen often.
        On sparse shop data (Amazon Video Games, ~9 items a user) the plain division
        let weak anchors' chance pairs outrank a strong anchor's real ones: NDCG@10
        0.0580 -> 0.0609 with prior 5, and 0.1031 -> 0.1036 on ml-100k.
        """
        if not anchors or not len(recent) or not self._counts[2]:
            return _EMPTY[0], _EMPTY[1], _EMPTY[0], _EMPTY[1]
        if len(self._slot) < len(self.mass):  # neighbour rows are below len(mass)
            self._slot = np.full(len(self.mass), -1, dtype=np.int64)
        return graph_candidates(
            np.asarray(recent, dtype=np.int64), anchors, self._start, self._n, self._top,
            self._nbr, self._w, self.mass, cosine, self._slot, self.prior,
        )  # fmt: skip

    def __len__(self) -> int:
        return int(self._counts[2])

    def pair_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source rows, neighbour rows, weights) of every pair, rows in the order they
        first had a neighbour, each row's neighbours in `neighbours` order."""
        if not self._counts[2]:
            return _EMPTY[0], _EMPTY[0], _EMPTY[1]
        return graph_pairs(
            self._order, int(self._counts[2]), self._start, self._n, self._nbr, self._w
        )

    # -- state ----------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """Three flat arrays (source row, neighbour row, weight) and the settings."""
        src, dst, w = self.pair_arrays()
        return {"src": src, "dst": dst, "w": w, "window": self.window,
                "max_neighbours": self.max_neighbours, "directed": self.directed,
                "distance_decay": self.distance_decay, "type_weights": self.type_weights,
                "prior": self.prior, "mass": self.mass.copy()}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, object]) -> CoVisitation:
        c = cls(
            int(state["window"]),  # type: ignore[call-overload]
            int(state["max_neighbours"]),  # type: ignore[call-overload]
            bool(state.get("directed", False)),
            distance_decay=bool(state.get("distance_decay", True)),
            type_weights=bool(state.get("type_weights", True)),
            prior=float(state.get("prior", 0.0)),  # type: ignore[arg-type]
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
        if len(src):
            c._load(src.astype(np.int64), dst.astype(np.int64), ws.astype(np.float64))
        return c

    def _load(self, src: np.ndarray, dst: np.ndarray, ws: np.ndarray) -> None:
        """The pairs as `state` writes them (each row's in one run) become the arena as
        they are; a row in a second run (not written by `state`): the later weight wins."""
        starts = np.flatnonzero(np.concatenate(([True], src[1:] != src[:-1])))
        ends = np.append(starts[1:], len(src))
        heads = src[starts]
        again = np.zeros(len(starts), dtype=bool)
        _u, first_at = np.unique(heads, return_index=True)
        again[np.setdiff1d(np.arange(len(heads)), first_at)] = True
        once = ~again
        size = int(max(heads.max(), dst.max())) + 1
        self._start = np.full(size, -1, dtype=np.int64)
        self._n = np.zeros(size, dtype=np.int64)
        self._cap = np.zeros(size, dtype=np.int64)
        self._top = np.zeros(size, dtype=np.float64)
        lengths = ends - starts
        self._start[heads[once]] = starts[once]
        self._n[heads[once]] = lengths[once]
        self._cap[heads[once]] = lengths[once]
        self._top[heads[once]] = np.maximum.reduceat(ws, starts)[once]
        self._order = np.zeros(size, dtype=np.int64)
        self._order[: int(once.sum())] = heads[once]
        self._nbr, self._w = dst.copy(), ws.copy()
        # The runs read again are slots no block points at.
        self._counts[:] = (len(dst), int(lengths[again].sum()), int(once.sum()))
        for lo, hi in zip(starts[again].tolist(), ends[again].tolist(), strict=True):
            self._add(src[lo:hi], dst[lo:hi], ws[lo:hi], PUT)
