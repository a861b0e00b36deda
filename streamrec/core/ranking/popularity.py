"""Time-decayed popularity over item-store rows: trending, and trending within a category.

`Trending` keeps, per row, `w * 2^((t - origin) / half_life)` summed over the
item's events: an update is one array element, the decay is applied when
scores are read, and the origin moves forward (a rebase) long before floats
could overflow. `top()` is recomputed every `refresh_every` adds (scaled up
for big catalogs: one partial sort over all rows), so the per-event cost stays
O(1) amortised, and results do not depend on how events were batched.

Popularity within a category needs no state of its own: an item's score in
its category is its trending score, so `CategoryTop` ranks a category's
member rows by it (members from the item store's category columns).

>>> t = Trending(half_life_s=3600, pool=2, refresh_every=1)
>>> for row, ts in [(0, 0), (1, 0), (1, 1_000), (2, 2_000)]:
...     t.add(row, 1.0, ts)
>>> rows, scores = t.top()
>>> rows.tolist(), [round(s, 3) for s in scores.tolist()]
([1, 2], [1.0, 0.5])
"""

from __future__ import annotations

import numpy as np

from streamrec.core.items import ItemStore


class Trending:
    """Time-decayed popularity per row. score(t) = sum_i w_i * 2^-((t - t_i) / half_life)."""

    def __init__(
        self,
        half_life_s: float = 86_400.0,
        pool: int = 200,
        refresh_every: int = 100,
        store: ItemStore | None = None,
    ) -> None:
        self.half_life_ms = half_life_s * 1000.0
        self.pool = pool
        self.refresh_every = refresh_every
        self._scaled = np.zeros(1024, dtype=np.float64)  # w * 2^((t - origin) / half_life)
        self._rows = 0  # rows < this may hold a score
        self._count = 0  # rows with a score
        self._origin = 0
        self._now = 0
        self._top: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0))
        self._stale = 0
        #: Equal scores break by the store's tiebreak column: the same order in every process.
        self.store = store
        #: Adds so far, and refreshes of the top list so far (derived views key on it).
        self.adds = 0
        self.refreshes = 0
        #: The stored scores as of the last refresh (`refreshed_scores`).
        self._refreshed = np.zeros(0, dtype=np.float64)

    def add(self, row: int, weight: float, ts: int) -> None:
        if not self._count:
            self._origin = ts
        exponent = (ts - self._origin) / self.half_life_ms
        if exponent > 400:  # keep the shifted scores far from float overflow
            self._rebase(ts)
            exponent = 0.0
        if row >= len(self._scaled):
            grown = np.zeros(max(2 * len(self._scaled), row + 1), dtype=np.float64)
            grown[: len(self._scaled)] = self._scaled
            self._scaled = grown
        if row >= self._rows:
            self._rows = row + 1
        if self._scaled[row] == 0.0:
            self._count += 1
        self._scaled[row] += weight * 2.0**exponent
        if ts > self._now:
            self._now = ts
        self._stale += 1
        self.adds += 1
        if self._stale >= self._threshold():
            self.refresh()

    def merge(
        self, rows: np.ndarray, sums: np.ndarray, ref_ts: int, now_ts: int, adds: int
    ) -> None:
        """Fold in another worker's learning: per row, `sum(w * 2^((ts - ref_ts) / half_life))`
        over its `adds` events, the newest at `now_ts` (`core/sharing.py`)."""
        for row, total in zip(rows.tolist(), sums.tolist(), strict=True):
            self.add(row, total, ref_ts)
        extra = adds - len(rows)  # `add` counted one per row; the events were `adds`
        self.adds += extra
        self._stale += extra
        self._now = max(self._now, now_ts)

    def _rebase(self, ts: int) -> None:
        factor = 2.0 ** (-(ts - self._origin) / self.half_life_ms)
        scaled = self._scaled[: self._rows] * factor
        scaled[scaled <= 1e-12] = 0.0
        self._scaled[: self._rows] = scaled
        self._count = int(np.count_nonzero(scaled))
        self._origin = ts

    def top(self) -> tuple[np.ndarray, np.ndarray]:
        """The `pool` most popular rows, best first, scores normalised so the first is 1.0.

        Recomputed after every `refresh_every` adds (scaled up for big catalogs, so
        the O(items) pass stays a small share per event), as the adds happen: what
        the list holds depends on the adds only, not on when it is read, so it is
        the same however events are batched and whoever learned them (a worker, or
        one folding its records after a restart).
        """
        if self._stale >= self._threshold():  # a state restored without its list
            self.refresh()
        return self._top

    def _threshold(self) -> int:
        threshold = max(self.refresh_every, self._count // 50)
        if len(self._top[0]) < self.pool:  # young catalog: cheap to refresh, and it grows fast
            threshold = min(threshold, max(1, len(self._top[0])))
        return threshold

    def refresh(self) -> None:
        """Rank the top list (and keep the scores it was made of) now."""
        tiebreak = self.store.tiebreak if self.store is not None else None
        scaled = self._scaled[: self._rows]
        rows, scores = best_rows(scaled, self.pool, tiebreak)
        norm = scores[0] if len(scores) else 1.0
        self._top = (rows, scores / norm)
        self._refreshed = scaled.copy()
        self._stale = 0
        self.refreshes += 1

    def refreshed_scores(self, rows: np.ndarray) -> np.ndarray:
        """The stored scores of `rows` as of the last refresh (what the top list was made
        of; relative to each other, as `top` is): views derived from trending, such as
        the top of a category, rank by these, so they too depend on the adds only."""
        rows = np.asarray(rows, dtype=np.int64)
        at = self._refreshed
        inside = rows < len(at)
        out = np.zeros(len(rows), dtype=np.float64)
        out[inside] = at[rows[inside]]
        return out

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Current decayed scores (absolute, event-time now) of `rows`."""
        rows = np.asarray(rows, dtype=np.int64)
        inside = rows < self._rows
        raw = np.zeros(len(rows), dtype=np.float64)
        raw[inside] = self._scaled[rows[inside]]
        return raw * self._decay()

    def scaled(self) -> tuple[np.ndarray, float]:
        """(the stored scores, the decay factor to now): `scores(rows)` is
        `stored[rows] * decay` for rows below `len(stored)`, 0 past it."""
        return self._scaled[: self._rows], self._decay()

    def score(self, row: int) -> float:
        return float(self._scaled[row]) * self._decay() if row < self._rows else 0.0

    def _decay(self) -> float:
        return float(2.0 ** (-(self._now - self._origin) / self.half_life_ms))

    def __len__(self) -> int:
        return self._count

    # -- state ----------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """Arrays and numbers that rebuild it (`from_state`); rows as in its item store."""
        return {
            "scaled": self._scaled[: self._rows].copy(),
            "origin": self._origin,
            "now": self._now,
            "half_life_ms": self.half_life_ms,
            "pool": self.pool,
            "refresh_every": self.refresh_every,
            # The cached top list and when it is due: lists after a restore are the same.
            "top_rows": self._top[0],
            "top_scores": self._top[1],
            "refreshed": self._refreshed.copy(),
            "stale": self._stale,
            "adds": self.adds,
            "refreshes": self.refreshes,
        }

    @classmethod
    def from_state(cls, state: dict[str, object], store: ItemStore | None) -> Trending:
        t = cls(
            float(state["half_life_ms"]) / 1000.0,  # type: ignore[arg-type]
            int(state["pool"]),  # type: ignore[call-overload]
            int(state["refresh_every"]),  # type: ignore[call-overload]
            store,
        )
        scaled = np.asarray(state["scaled"], dtype=np.float64)
        t._scaled = np.zeros(max(1024, len(scaled)), dtype=np.float64)
        t._scaled[: len(scaled)] = scaled
        t._rows = _used(scaled)  # rows past the last with a score are none of its business
        t._count = int(np.count_nonzero(scaled))
        t._origin, t._now = int(state["origin"]), int(state["now"])  # type: ignore[call-overload]
        if "top_rows" in state:
            t._top = (np.asarray(state["top_rows"], np.int64), np.asarray(state["top_scores"]))
            t._stale = int(state["stale"])  # type: ignore[call-overload]
            t.adds = int(state["adds"])  # type: ignore[call-overload]
            t.refreshes = int(state.get("refreshes", 0))  # type: ignore[call-overload]
            # Absent from older snapshots: the scores now stand in for those at the refresh.
            refreshed = state.get("refreshed")
            at = np.asarray(refreshed, dtype=np.float64) if refreshed is not None else scaled
            t._refreshed = at[: _used(at)].copy()
        else:
            t._stale = t.refresh_every  # the first `top()` recomputes
        return t


def _used(scores: np.ndarray) -> int:
    """One past the last row with a score (0: none)."""
    nz = np.flatnonzero(scores)
    return int(nz[-1]) + 1 if len(nz) else 0


def best_rows(
    scores: np.ndarray, n: int, tiebreak: np.ndarray | None = None, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The `n` best positive scores (of `rows`, or of rows 0..len-1), best first.

    Equal scores: by the item store's tiebreak, so the order is the same in
    every process; without one, by row.
    """
    idx = np.flatnonzero(scores > 0)
    if len(idx) > n:
        idx = idx[np.argpartition(-scores[idx], n - 1)[:n]]
    picked = idx if rows is None else rows[idx]
    second = tiebreak[picked] if tiebreak is not None else picked
    order = np.lexsort((second, -scores[idx]))
    return picked[order].astype(np.int64), scores[idx][order]


class CategoryTop:
    """The most popular rows within one category: trending, restricted to its members.

    A category's list ranks its members by trending's scores as of trending's last
    refresh (`Trending.refreshed_scores`), made when first asked for after each
    refresh or change of members: it depends on what was learned, not on when
    lists were read, and needs no state of its own in a snapshot.
    """

    def __init__(self, trending: Trending, store: ItemStore, n: int = 10) -> None:
        self.trending = trending
        self.store = store
        self.n = n
        self._members: dict[int, tuple[int, np.ndarray]] = {}  # cid -> (version, rows)
        #: cid -> ((trending refreshes, members version), (rows, scores))
        self._top: dict[int, tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]]] = {}

    def top(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores normalised to the best) of category `cid`."""
        t = self.trending
        key = (t.refreshes, self.store.member_changes.get(cid, 0))
        cached = self._top.get(cid)
        if cached is not None and cached[0] == key:
            return cached[1]
        members = self._members_of(cid)
        scores = t.refreshed_scores(members)
        rows, scores = best_rows(scores, self.n, self.store.tiebreak, members)
        out = (rows, scores / scores[0] if len(scores) else scores)
        self._top[cid] = (key, out)
        return out

    def _members_of(self, cid: int) -> np.ndarray:
        version = self.store.member_changes.get(cid, 0)
        cached = self._members.get(cid)
        if cached is None or cached[0] != version:
            rows = np.fromiter(sorted(self.store.members.get(cid, ())), dtype=np.int64)
            cached = self._members[cid] = (version, rows)
        return cached[1]
