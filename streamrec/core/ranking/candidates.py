"""Candidate sources and the pool (a part of `Recommender`): steps 1 and 2 of a list.

Each source gives (rows, scores at most 1). The union of their rows is one
`np.unique` and a sources x N score matrix; rows the user may not be shown are
dropped, and the pool cut takes every source's best in turn
(`_best_source_rank`) down to `rank_pool`, so features are computed for the
pool only.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from operator import itemgetter

import numpy as np

from streamrec.core.history import WIRE
from streamrec.core.items import ItemStore
from streamrec.core.kernels import best_per_row, covisit_keep, pool_cut
from streamrec.core.profile import Profile
from streamrec.core.ranking.covisit import CoVisitation
from streamrec.core.ranking.features import _NO_ROWS, SOURCES
from streamrec.core.ranking.popularity import CategoryTop
from streamrec.core.retrieval.index import Hits

_NO_HISTORY = np.zeros(0, dtype=WIRE)
NO_NEIGHBOURS = (_NO_ROWS, np.zeros(0), _NO_ROWS, np.zeros(0))


def _normalised(hits: Hits, pool: int) -> Hits:
    """Hits (best first) cut to `pool`, scores divided by the best (all 0 if it is <= 0)."""
    rows, scores = hits
    if pool:
        rows, scores = rows[:pool], scores[:pool]
    best = scores[0] if len(scores) else 0.0
    return rows, (scores / best if best > 0 else np.zeros(len(scores)))


def _best_source_rank(per_source: np.ndarray) -> np.ndarray:
    """Per item (column), its best rank within any source (row); NaN: not in that source.

    Ties within a source keep column order, so the cut is stable.

    >>> m = np.array([[0.9, np.nan, 0.5], [np.nan, 0.2, 0.1]])
    >>> np.round(_best_source_rank(m), 3).tolist()  # 1st of a source; 1st of another; 2nd
    [0.05, 0.4, 1.25]
    """
    best_rank = np.full(per_source.shape[1], np.inf)
    for scores in per_source:  # sorting only the items a source has (a few of 7 x N)
        present = np.flatnonzero(scores == scores)  # not NaN
        if len(present):
            order = present[np.argsort(-scores[present], kind="stable")]
            best_rank[order] = np.minimum(best_rank[order], np.arange(len(order)))
    # Equal best ranks: the higher score first (a source's 1st at 0.9 before one at 0.2).
    best = np.fmax.reduce(per_source, axis=0)
    return best_rank + (1.0 - np.clip(best, 0.0, 1.0)) * 0.5


class CandidatePool:
    """Sources and the pool cut on item-store rows (a part of `Recommender`)."""

    items: ItemStore
    by_category: CategoryTop
    exclude_purchased: bool
    exclude_recent: bool
    exclude_history: bool
    anchors: int
    _slot: np.ndarray

    def _pool(
        self,
        sources: tuple[tuple[np.ndarray, np.ndarray], ...],
        cov_cos: np.ndarray,
        hidden: tuple[np.ndarray, np.ndarray],
        k: int,
        pool: int,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The union of the sources' rows, what may be shown of it, cut to `pool` rows:
        (candidate rows in tiebreak order, their per-source scores); None for none.

        Features cost per row: only `pool` candidates are ranked, taken from every
        source in turn (each source's 1st, then each one's 2nd, ...). Comparing scores
        across sources instead let a flat one (vector hits all near 1.0) fill the pool
        and crowd the others out: ml-100k NDCG@10 fell by a quarter. One compiled call
        (`kernels.pool_cut`); `_best_source_rank` is its definition of the cut.
        """
        store = self.items
        rows = np.concatenate([s[0] for s in sources])
        if not len(rows):
            return None
        slot = self._slots(store.capacity)
        cand, per_source = pool_cut(
            rows,
            np.concatenate([s[1] for s in sources]).astype(np.float64, copy=False),
            np.array([len(s[0]) for s in sources], dtype=np.int64),
            len(SOURCES),
            cov_cos,
            store.available,
            store.tiebreak,
            *hidden,
            slot,
            2 * k,
            pool,
            store.hash_rank(),
        )
        return (cand, per_source) if len(cand) else None

    def _covisit_cut(
        self,
        rows: np.ndarray,
        scores: np.ndarray,
        cos: np.ndarray,
        others: Sequence[tuple[np.ndarray, np.ndarray]],
        pool: int,
        hidden: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """Which co-visited rows can matter: 20 anchors propose up to 2,000 rows, and
        everything after the union costs per row.

        The pool takes each source's best in turn, so a row can enter it through
        co-visitation only among the `pool` best allowed rows by either score
        (ties included). A row another source proposes keeps its co-visitation
        scores (they are its features). The rest could never be ranked: dropping
        them leaves every list as it was.
        """
        store = self.items
        return covisit_keep(
            rows,
            scores,
            cos,
            np.concatenate([o[0] for o in others]).astype(np.int64, copy=False),
            store.available,
            store.tiebreak,
            *hidden,
            self._slots(store.capacity),
            pool,
        )

    def _hidden(
        self, profile: Profile, recent: np.ndarray, current_row: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """What this list must not show: (the sorted hashes of what the user had, if the
        shop leaves it out; the rows left out whatever their history)."""
        return self._history(profile), self._excluded(profile, recent, current_row)

    def _history(self, profile: Profile) -> np.ndarray:
        """The sorted hashes of what the user had, if the shop leaves it out."""
        if self.exclude_history and len(profile.history):
            return profile.history.sorted
        return _NO_HISTORY

    def _excluded(
        self, profile: Profile, recent: np.ndarray, current_row: int | None
    ) -> np.ndarray:
        """Rows the user is not shown whatever their history: recent, purchased, on screen."""
        store = self.items
        excluded = [recent] if self.exclude_recent else []
        if self.exclude_purchased and profile.purchased:
            excluded.append(store.rows(profile.purchased))
        if current_row is not None:
            excluded.append(np.array([current_row], dtype=np.int64))
        return np.concatenate(excluded).astype(np.int64, copy=False) if excluded else _NO_ROWS

    def _slots(self, size: int) -> np.ndarray:
        """Scratch for the kernels: one int64 per row, -1 between calls."""
        if len(self._slot) < size:
            self._slot = np.full(max(size, 2 * len(self._slot)), -1, dtype=np.int64)
        return self._slot

    def _neighbours(
        self, graph: CoVisitation, recent: np.ndarray, anchors: int | None, cosine: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return graph.candidates(recent, self.anchors if anchors is None else anchors, cosine)

    def _categories(self, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
        """Popular in the user's two strongest categories (merged by the better score)."""
        parts = []
        for cat, _aff in heapq.nlargest(2, profile.affinity.items(), key=itemgetter(1)):
            cid = self.items.category_ids.get(cat)
            if cid is not None:
                parts.append(self.by_category.top(cid))
        if not parts:
            return _NO_ROWS, np.zeros(0)
        if len(parts) == 1:
            return parts[0]
        # An item in both: its better score; rows ascending.
        rows, scores = best_per_row(
            np.concatenate((parts[0][0], parts[1][0])).astype(np.int64, copy=False),
            np.concatenate((parts[0][1], parts[1][1])).astype(np.float64, copy=False),
        )
        return rows, scores
