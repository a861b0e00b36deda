"""Co-visitation over item-store rows: items one user touched close together in a session.

Learning is a dict update per pair (both directions, weighted 1/distance and
by event type), each row's neighbours capped at `max_neighbours` (pruned to the
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


class CoVisitation:
    def __init__(self, window: int = 5, max_neighbours: int = 100) -> None:
        self.window = window
        self.max_neighbours = max_neighbours
        self._nbrs: dict[int, dict[int, float]] = {}
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def add(self, row: int, previous: Sequence[int], weight: float) -> None:
        """`previous`: rows of the session's earlier items, newest last."""
        if not previous:
            return
        nbrs, arrays = self._nbrs, self._arrays
        limit = self.max_neighbours + self.max_neighbours // 2
        for dist, other in enumerate(reversed(previous[-self.window :]), start=1):
            if other == row:
                continue
            w = weight / dist
            for a, b in ((row, other), (other, row)):
                nb = nbrs.get(a)
                if nb is None:
                    nb = nbrs[a] = {}
                nb[b] = nb.get(b, 0.0) + w
                arrays.pop(a, None)
                if len(nb) > limit:
                    nbrs[a] = dict(
                        heapq.nlargest(self.max_neighbours, nb.items(), key=itemgetter(1))
                    )

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
        return out

    def __len__(self) -> int:
        return len(self._nbrs)

    # -- state ----------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """Three flat arrays (source row, neighbour row, weight) and the settings."""
        src = np.fromiter(
            (a for a, nb in self._nbrs.items() for _ in range(len(nb))), dtype=np.int64
        )
        dst = np.fromiter((b for nb in self._nbrs.values() for b in nb), dtype=np.int64)
        w = np.fromiter((x for nb in self._nbrs.values() for x in nb.values()), dtype=np.float64)
        return {"src": src, "dst": dst, "w": w, "window": self.window,
                "max_neighbours": self.max_neighbours}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, object]) -> CoVisitation:
        c = cls(int(state["window"]), int(state["max_neighbours"]))  # type: ignore[call-overload]
        nbrs = c._nbrs
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
