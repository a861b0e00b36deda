"""Features for ranking: the (candidates, FEATURES) matrix, one gather per column.

Columns: similarity (user vector), query_match, covisit, sequence and
covisit_idf (the sources' scores), factors (the graph's low-rank view of the
user's recent items), regression (EASE over what users had together),
popularity and growth (trending now against trending over a week),
affinity (the user's strongest category among the item's), price_fit
(against the user's average order, or the value model's expected order before
a first purchase), seen (in the user's recent items).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamrec.core.items import ItemStore
from streamrec.core.kernels import item_features
from streamrec.core.profile import Profile
from streamrec.core.ranking.factors import GraphFactors
from streamrec.core.ranking.models import FEATURES
from streamrec.core.ranking.popularity import Trending
from streamrec.core.ranking.regression import ItemRegression
from streamrec.core.ranking.value import ValueModel
from streamrec.core.retrieval.index import Hits

FEATURE_INDEX = {name: i for i, name in enumerate(FEATURES)}
SOURCES = ("covisit", "trending", "category", "query", "interest", "sequence", "covisit_idf")
_NO_ROWS = np.zeros(0, dtype=np.int64)
NO_HITS: Hits = (_NO_ROWS, np.zeros(0))
#: The columns `kernels.item_features` fills, in its order.
_GATHERED = np.array(
    [FEATURE_INDEX[n] for n in ("query_match", "covisit", "sequence", "covisit_idf",
                                "popularity", "growth", "affinity", "seen")],
    dtype=np.int64,
)  # fmt: skip


@dataclass
class RankContext:
    """What ranking needs from outside the recommender for one event."""

    #: (rows, unit vector) -> cosine per row (0 for rows without a vector)
    similarities: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    user_vector: np.ndarray | None = None
    interest_hits: Hits = NO_HITS


class FeatureBuilder:
    """The feature matrix of a list's candidates (a part of `Recommender`)."""

    items: ItemStore
    trending: Trending
    trending_long: Trending
    value: ValueModel
    factors: GraphFactors
    regression: ItemRegression

    def _slots(self, size: int) -> np.ndarray:
        raise NotImplementedError

    def _features(
        self,
        profile: Profile,
        recent: np.ndarray,
        rows: np.ndarray,
        per_source: np.ndarray,
        ctx: RankContext,
    ) -> np.ndarray:
        """The (len(rows), len(FEATURES)) matrix: a gather per column."""
        store = self.items
        x = np.zeros((len(rows), len(FEATURES)), dtype=np.float64)
        f = FEATURE_INDEX
        if ctx.user_vector is not None and ctx.similarities is not None:
            x[:, f["similarity"]] = ctx.similarities(rows, ctx.user_vector)
        x[:, f["factors"]] = self.factors.scores(rows, recent)
        x[:, f["regression"]] = self.regression.scores(rows, recent)
        top_rows = self.trending.top()[0]
        pop_norm = self.trending.score(int(top_rows[0])) if len(top_rows) else 0.0
        affinity = profile.affinity
        by_id = np.zeros(len(store.category_names) + 1)  # the last: "no category" (-1)
        for cat, a in affinity.items():
            cid = store.category_ids.get(cat)
            if cid is not None:
                by_id[cid] = a
        short_scaled, short_decay = self.trending.scaled()
        long_scaled, long_decay = self.trending_long.scaled()
        item_features(
            x,
            _GATHERED,
            rows,
            per_source,
            short_scaled,
            short_decay,
            long_scaled,
            long_decay,
            pop_norm,
            store.cats,
            by_id,
            max(affinity.values()) if affinity else 0.0,
            recent,
            self._slots(store.capacity),
        )
        user_price = profile.spend / profile.orders if profile.orders and profile.spend else 0.0
        if not user_price:
            user_price = self.value.expected_order_value(profile)  # what a user like this pays
        if user_price > 0:
            prices = np.fmax(store.price[rows], 0.0)  # NaN (no price): 0
            # Rows with no price take 1 (then 0 below): the logarithm never sees 0.
            fit = np.exp(-np.abs(np.log(np.where(prices > 0, prices, 1.0) / user_price)))
            x[:, f["price_fit"]] = np.where(prices > 0, fit, 0.0)
        return x
