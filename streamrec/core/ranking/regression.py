"""Item-to-item regression over what users had together (EASE): the "regression" feature.

Co-visitation counts items touched close together; the factors smooth that
graph. Neither asks which of a user's items *explain* a candidate once the
others are accounted for: two blockbusters both co-occur with everything, and
a plain count cannot tell them from a real pair. EASE (Steck, 2019) fits every
item as a linear function of all other items over the users' co-occurrence
(the Gram matrix G = X^T X): B = I - P diag(1 / diag P) with P = (G + l2 I)^-1,
zero diagonal. A candidate's score is the sum of B[h, candidate] over the
user's newest `history` items h.

The Gram matrix counts, per learned event, the item against the user's
`window` newest items before it (the profile's recent items: no user x item
matrix is kept), and once on the diagonal. On ml-100k's validation half this
window of 50 scored within 0.3% of whole histories (docs/evaluation.md).

Cost and bounds: G and B are dense over the item store's rows [0, `items`):
2 x items^2 floats (2,048 items: 50 MB), and a refresh inverts an items x items
matrix (1,682 items: ~0.1 s here), every `every` learned events. Rows from
`items` on get no score (the feature is 0 for them): a catalog larger than the
cap is modelled on its first `items` rows. Refresh points count learned events,
as the factors' do, so lists do not depend on batching; B is kept in the
snapshot, so a restarted worker ranks as one that never stopped.

>>> r = ItemRegression(items=8, every=1, l2=1.0, window=5, history=5)
>>> for user in range(6):  # users who had 0 had 1; users who had 4 had 5
...     r.add(1, r.pairs(1, [0]))
...     r.add(5, r.pairs(5, [4]))
>>> r.on_learned(8)
True
>>> s = r.scores(np.array([1, 5]), np.array([0]))  # a user who had item 0
>>> bool(s[0] > s[1])
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ItemRegression:
    def __init__(
        self,
        items: int = 2_048,
        every: int = 1_000,
        l2: float = 200.0,
        window: int = 50,
        history: int = 20,
    ) -> None:
        #: Rows [0, items) are modelled; 0 turns the feature off (nothing learned).
        self.items = max(0, items)
        self.every = max(1, every)
        self.l2 = l2
        self.window = window
        self.history = history
        #: The co-occurrence counts, grown (by doubling, up to `items`) as rows appear.
        self.gram = np.zeros((0, 0), dtype=np.float64)
        #: The weights of the last refresh (float32: the snapshot keeps them exactly).
        self.b = np.zeros((0, 0), dtype=np.float32)
        self.learned = 0
        self.refreshes = 0

    @property
    def on(self) -> bool:
        return self.items > 0

    def pairs(self, row: int, recent: Sequence[int]) -> list[int]:
        """The rows `row` is counted against: the user's `window` newest rows before it,
        modelled ones only, `row` itself once (the diagonal: how often it was had)."""
        if not self.on or row >= self.items:
            return []
        out = [r for r in recent[-self.window :] if r != row and r < self.items]
        out.append(row)
        return out

    def add(self, row: int, others: Sequence[int], weight: float = 1.0) -> None:
        """Count `row` against `others` (from `pairs`: `row` among them is the diagonal)."""
        if not others:
            return
        self._grow(max(row, max(others)) + 1)
        o = np.asarray(others, dtype=np.int64)
        off = o[o != row]
        g = self.gram
        g[row, off] += weight
        g[off, row] += weight
        g[row, row] += weight * (len(o) - len(off))

    def add_pair(self, a: int, b: int, w: float) -> None:
        """One pair of a folded delta (`a == b`: the diagonal)."""
        if max(a, b) >= self.items:
            return
        self._grow(max(a, b) + 1)
        self.gram[a, b] += w
        if a != b:
            self.gram[b, a] += w

    def _grow(self, n: int) -> None:
        size = len(self.gram)
        if n <= size:
            return
        new = min(self.items, max(n, 2 * size, 64))
        g = np.zeros((new, new), dtype=np.float64)
        g[:size, :size] = self.gram
        self.gram = g

    def on_learned(self, rows: int, n: int = 1) -> bool:
        """`n` events were learned (here, or by another worker and folded in); refresh
        when the count passes a multiple of `every`."""
        if not self.on:
            return False
        before = self.learned
        self.learned += n
        if self.learned // self.every == before // self.every:
            return False
        self.refresh(rows)
        return True

    def refresh(self, rows: int) -> None:
        """B from the counts over rows [0, min(rows, items))."""
        m = min(rows, self.items)
        if m < 2:
            return
        self._grow(m)  # the same m x m system however the counts were allocated
        p = np.linalg.inv(self.gram[:m, :m] + self.l2 * np.eye(m))
        b = p / -np.diag(p)
        np.fill_diagonal(b, 0.0)
        self.b = b.astype(np.float32)
        self.refreshes += 1

    def scores(self, rows: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """Per candidate row, the sum of B[h, row] over the user's newest `history`
        `recent` rows (oldest first), divided by the best candidate's (so at most 1)."""
        b = self.b
        n = len(b)
        if not n or not len(recent) or not len(rows):
            return np.zeros(len(rows))
        newest = recent[-self.history :]
        newest = newest[newest < n]
        if not len(newest):
            return np.zeros(len(rows))
        if rows.max() < n:
            out = b[newest][:, rows].sum(axis=0, dtype=np.float64)
        else:
            known = rows < n
            out = np.zeros(len(rows))
            out[known] = b[newest][:, rows[known]].sum(axis=0, dtype=np.float64)
        top = out.max()
        return np.maximum(out / top, -1.0) if top > 0 else np.zeros(len(rows))

    # -- state ----------------------------------------------------------------

    def state(self) -> dict[str, object]:
        return {"items": self.items, "learned": self.learned, "refreshes": self.refreshes}

    def stats(self) -> dict[str, int]:
        return {"items": self.items, "refreshes": self.refreshes, "modelled": len(self.b)}

    def arrays(self, positions: int) -> dict[str, np.ndarray]:
        """The counts and weights over the first `positions` rows (the snapshot's own)."""
        m = min(positions, len(self.gram))
        k = min(positions, len(self.b))
        return {"gram": self.gram[:m, :m].astype(np.float32), "b": self.b[:k, :k]}

    def restore(
        self,
        state: dict[str, object],
        gram: np.ndarray | None,
        b: np.ndarray | None,
        rows: np.ndarray,
    ) -> None:
        """A snapshot's counters, counts and weights (by snapshot position, put at
        `rows`); absent ones (older snapshots) are relearned from here on."""
        self.learned = int(state.get("learned", 0))  # type: ignore[call-overload]
        self.refreshes = 0
        self.gram = np.zeros((0, 0), dtype=np.float64)
        self.b = np.zeros((0, 0), dtype=np.float32)
        if gram is not None and gram.ndim == 2 and len(gram):
            at = rows[: len(gram)]
            keep = at < self.items
            at = at[keep]
            if len(at):
                self._grow(int(at.max()) + 1)
                self.gram[np.ix_(at, at)] = gram[np.ix_(keep, keep)]
        if b is not None and b.ndim == 2 and len(b) and self.on:
            at = rows[: len(b)]
            keep = at < self.items
            at = at[keep]
            if len(at):
                n = int(at.max()) + 1
                out = np.zeros((n, n), dtype=np.float32)
                out[np.ix_(at, at)] = b[np.ix_(keep, keep)]
                self.b = out
                self.refreshes = int(state.get("refreshes", 1))  # type: ignore[call-overload]
