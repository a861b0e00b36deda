"""The recommender: candidates and features on item-store rows, a ranked and explained top-K.

Per event, on rows (integers) and numpy columns; nothing per candidate goes
through a dict:

1. **Sources**, each (rows, scores at most 1): co-visitation neighbours of the
   user's newest items (`covisit`), trending (`trending`), popular in the
   user's two strongest categories (`category`), the search query's vector
   hits (`query`), the user vector's hits (`interest`), transitions from the
   newest items (`sequence`, off unless `sequence_anchors`), and co-visitation
   normalised by both items' totals (`covisit_idf`).
2. **Union and cut** (`candidates.py`): one `np.unique` over the sources' rows, a
   sources x N score matrix, excluded and unavailable rows dropped, then the pool
   cut takes every source's best in turn (`_best_source_rank`) down to `rank_pool`.
3. **Features** for the pool only (`features.py`): gathers from the store and the
   models' arrays.
4. **Ranking** by the online river ranker once it measures better than the
   fixed blend, else the blend; at most `max_per_category` per leaf category.
5. **Explanations** (`explain.py`: reason, sources, top features, category, price) for the
   chosen rows only.

Score ties break by the item store's `tiebreak` (a hash of the item id), so a
list is the same in every process, however rows were handed out.

>>> from streamrec.core.profile import Profile
>>> store = ItemStore()
>>> r = Recommender(store, top_k=2)
>>> for i, item in enumerate(["a", "b", "a", "c"]):
...     _ = r.learn_item(store.row(item), "view", 1_000 + i, [])
>>> [x.item_id for x in r.recommend(Profile.new("u_2"), None)]
['a', 'c']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streamrec.core.items import ItemStore
from streamrec.core.kernels import choose_capped
from streamrec.core.profile import EVENT_WEIGHTS, Profile
from streamrec.core.ranking.candidates import NO_NEIGHBOURS, CandidatePool, _normalised
from streamrec.core.ranking.covisit import CoVisitation
from streamrec.core.ranking.explain import Explainer
from streamrec.core.ranking.factors import GraphFactors
from streamrec.core.ranking.features import (
    NO_HITS,
    SOURCES,
    FeatureBuilder,
    RankContext,
)
from streamrec.core.ranking.models import POSITIVE_TYPES, FixedBlend, OnlineRanker
from streamrec.core.ranking.popularity import CategoryTop, Trending
from streamrec.core.ranking.regression import ItemRegression
from streamrec.core.ranking.tuner import BlendTuner
from streamrec.core.ranking.value import ValueModel
from streamrec.core.ranking.variants import Variant
from streamrec.core.retrieval.index import Hits
from streamrec.records import Event, RecItem

_NO_VARIANT = Variant("default")


class Recommender(CandidatePool, FeatureBuilder, Explainer):
    """Candidates (query / interest vectors, co-visitation, trending) -> features -> ranked top-K.

    Ranking uses the online river model (`OnlineRanker`) once it has learned
    enough from feedback on what users were offered (published lists, or the
    storefront's impression events) and measures better than the fixed blend
    (`FixedBlend`), the blend before.
    Business rules: purchased, recent (both configurable), on-screen and
    unavailable items are excluded, and at most `max_per_category` items of one
    (leaf) category make the list.
    """

    def __init__(
        self,
        store: ItemStore | None = None,
        *,
        top_k: int = 20,
        trending_half_life_s: float = 86_400.0,
        trending_pool: int = 200,
        covisit_window: int = 5,
        covisit_max_neighbours: int = 30,
        covisit_distance_decay: bool = True,
        covisit_type_weights: bool = True,
        covisit_prior: float = 0.0,
        anchors: int = 3,
        sequence_anchors: int = 0,
        blend: dict[str, float] | None = None,
        exclude_purchased: bool = True,
        exclude_recent: bool = True,
        exclude_history: bool = True,
        max_per_category: int = 0,
        ranker: OnlineRanker | None = None,
        rank_pool: int = 60,
        offer_pool: bool = True,
        factors_dim: int = 0,
        factors_every: int = 5_000,
        factors_history: int = 5,
        regression: ItemRegression | None = None,
        tuner: BlendTuner | None = None,
    ) -> None:
        self.items = store if store is not None else ItemStore()
        self.top_k = top_k
        self.anchors = anchors
        self.exclude_purchased = exclude_purchased
        self.exclude_recent = exclude_recent
        self.exclude_history = exclude_history
        self.max_per_category = max_per_category
        self.trending = Trending(trending_half_life_s, trending_pool, store=self.items)
        # Seven times slower: the baseline that "growth" compares today's popularity with.
        self.trending_long = Trending(trending_half_life_s * 7, trending_pool, store=self.items)

        def graph(directed: bool) -> CoVisitation:
            return CoVisitation(covisit_window, covisit_max_neighbours, directed,
                                distance_decay=covisit_distance_decay,
                                type_weights=covisit_type_weights, prior=covisit_prior)  # fmt: skip

        self.covisit = graph(directed=False)
        #: Directed: what users touched after an item ("sequence" candidates).
        self.transitions = graph(directed=True)
        self.sequence_anchors = sequence_anchors
        #: The co-visitation graph's leading factors ("factors"); dim 0: off.
        self.factors = GraphFactors(factors_dim, factors_every, history=factors_history)
        #: EASE over what users had together ("regression"); `items=0`: off.
        self.regression = regression if regression is not None else ItemRegression(items=0)
        #: Popular in a category: "popular in what you like" candidates.
        self.by_category = CategoryTop(self.trending, self.items, n=10)
        self.rank_pool = rank_pool
        #: What a published list offers the ranker to learn from: every candidate it
        #: ranked (the user's next pick among them is the positive), or the list only.
        self.offer_pool = offer_pool
        self.value = ValueModel()
        self.blend = FixedBlend(blend)
        #: Tunes the blend on the shop's own stream (`tuner.py`); None: the fixed blend.
        self.tuner = tuner
        self.ranker = ranker
        if ranker is not None:
            ranker.baseline = self.live_blend  # judged against the blend it would replace
        #: Scratch of the kernels (`core/kernels/`): one int64 per row, -1 between calls.
        self._slot = np.full(1024, -1, dtype=np.int64)

    # -- learning ---------------------------------------------------------------

    def observe_user(self, event: Event) -> None:
        """What one event teaches about its user: feedback on what they were offered."""
        if self.ranker is not None:
            self.ranker.expire(event.ts)
            if event.type in POSITIVE_TYPES and event.item_id is not None:
                self.ranker.on_positive(event.user, event.item_id, event.ts)

    def learn_item(
        self,
        row: int,
        event_type: str,
        ts: int,
        session_rows: Sequence[int],
        recent_rows: Sequence[int] = (),
    ) -> float:
        """What one event teaches about items (no user in it, only their `recent_rows`
        before it, oldest first); the weight it counted (0: none)."""
        weight = EVENT_WEIGHTS.get(event_type, 0.0)
        if weight <= 0:
            return 0.0
        self.trending.add(row, weight, ts)
        self.trending_long.add(row, weight, ts)
        self.covisit.add(row, session_rows, weight)
        self.factors.on_learned(self.covisit, len(self.items), key=self.items.tiebreak)
        self.regression.add(row, self.regression.pairs(row, recent_rows))
        self.regression.on_learned(len(self.items))
        if self.sequence_anchors:  # off: nothing to learn (it costs per event)
            self.transitions.add(row, session_rows, weight)
        return weight

    def observe_impression(self, event: Event, profile: Profile, ctx: RankContext) -> None:
        """The storefront showed `event.shown`: remember their features for feedback."""
        if self.ranker is None or not event.shown:
            return
        items = list(dict.fromkeys(event.shown))[:100]
        rows = self.items.rows(items)
        recent = self.items.rows([r[0] for r in profile.recent])
        # The same features as at serving time (the ranker learns what it will score).
        cov_rows, cov_scores, _a, cov_cos = self._neighbours(
            self.covisit, recent, self.anchors, cosine=True
        )
        seq_rows, seq_scores, _a, _c = self._neighbours(
            self.transitions, recent, self.sequence_anchors
        )
        per_source = np.full((len(SOURCES), len(rows)), np.nan)
        per_source[0] = self._align(cov_rows, cov_scores, rows)
        per_source[5] = self._align(seq_rows, seq_scores, rows)
        per_source[6] = self._align(cov_rows, cov_cos, rows)
        features = self._features(profile, recent, rows, per_source, ctx)
        self.ranker.on_impression(event.user, dict(zip(items, features, strict=True)), event.ts)

    def forget(self, user: str) -> int:
        """Erasure: per-user learning state (the ranker's pending feedback, the tuner's
        kept lists). Item state (trending, co-visitation) holds counts by item, with no
        user in it."""
        if self.tuner is not None:
            self.tuner.drop(user)
        return self.ranker.forget(user) if self.ranker is not None else 0

    @property
    def live_blend(self) -> FixedBlend:
        """The blend that ranks when the online ranker does not: the tuner's live one."""
        return self.tuner.blend if self.tuner is not None else self.blend

    def learn_evidence(self, evidence: np.ndarray) -> None:
        """A scored event's NDCG per candidate weighting (`tuner.py`); a switch moves the
        live blend, which the ranker is judged against from then on."""
        tuner = self.tuner
        if tuner is not None and tuner.learn(evidence) is not None and self.ranker is not None:
            self.ranker.baseline = tuner.blend

    def model_for(self, variant: Variant | None) -> FixedBlend | OnlineRanker:
        """What ranks for this variant: the online ranker while it is ready (unless the
        variant turns it off), the variant's blend or the default blend otherwise."""
        v = variant or _NO_VARIANT
        if self.ranker is not None and self.ranker.ready and v.ranker is not False:
            return self.ranker
        return v.blend or self.live_blend

    # -- serving ----------------------------------------------------------------

    def recommend(
        self,
        profile: Profile,
        current_row: int | None,
        *,
        k: int | None = None,
        query_hits: Hits = NO_HITS,
        ctx: RankContext | None = None,
        variant: Variant | None = None,
        offered_ts: int | None = None,
    ) -> list[RecItem]:
        """Top-k for `profile`, each with its score, sources and the features that placed it.

        `variant` (an A/B arm) overrides list length, pool, per-category cap,
        anchors and the ranking model for this list. `offered_ts`: the list is
        published at this event time, so the ranker may learn from what the user
        does with it (`OnlineRanker.on_list`); None for a list nobody is shown.
        """
        v = variant or _NO_VARIANT
        k = k or v.top_k or self.top_k
        ctx = ctx or RankContext()
        store = self.items
        recent = store.rows([r[0] for r in profile.recent])
        pool = self.rank_pool if v.rank_pool is None else v.rank_pool

        cov_rows, cov_scores, cov_anchor, cov_cos = self._neighbours(
            self.covisit, recent, v.anchors, cosine=True
        )
        seq_rows, seq_scores, seq_anchor, _c = (
            self._neighbours(self.transitions, recent, self.sequence_anchors)
            if self.sequence_anchors
            else NO_NEIGHBOURS
        )
        trend_rows, trend_scores = self.trending.top()
        cat_rows, cat_scores = self._categories(profile)
        q_rows, q_scores = _normalised(query_hits, pool)
        i_rows, i_scores = _normalised(ctx.interest_hits, pool)
        others = ((trend_rows[: 2 * k + 200], trend_scores[: 2 * k + 200]),
                  (cat_rows, cat_scores), (q_rows, q_scores), (i_rows, i_scores),
                  (seq_rows, seq_scores))  # fmt: skip
        hidden = self._hidden(profile, recent, current_row)
        if pool and len(cov_rows) > 4 * pool:  # below that, the cut costs more than it saves
            keep_cov = self._covisit_cut(cov_rows, cov_scores, cov_cos, others, pool, hidden)
            cov_rows, cov_scores, cov_cos = (
                cov_rows[keep_cov],
                cov_scores[keep_cov],
                cov_cos[keep_cov],
            )
            cov_anchor = cov_anchor[keep_cov]
        # covisit_idf (the last source) scores the covisit rows: they enter the union once.
        sources = ((cov_rows, cov_scores), *others)
        pooled = self._pool(sources, cov_cos, hidden, k, pool)
        if pooled is None:
            return []
        cand, per_source = pooled

        x = self._features(profile, recent, cand, per_source, ctx)
        model = self.model_for(v)
        # Rounded before sorting: near-ties in the last float bits break by tiebreak.
        scores = np.round(model.score(x), 9)
        ranked = np.lexsort((store.tiebreak[cand], -scores))
        chosen = self._choose(ranked, store.leaf[cand], k, v)
        if not chosen:
            return []
        if offered_ts is not None and self.tuner is not None:
            self.tuner.shadow(profile.user, x, store.tiebreak[cand])
        if offered_ts is not None and self.ranker is not None and self.ranker.learns_from_lists:
            offered = ranked if self.offer_pool else np.asarray(chosen)
            self.ranker.on_list(
                profile.user, [store.ids[r] for r in cand[offered].tolist()], x[offered], offered_ts
            )
        return self._explain(
            profile, cand, per_source, x, scores, chosen, model, cov_rows, cov_anchor, seq_rows,
            seq_anchor,
        )  # fmt: skip

    def _choose(self, ranked: np.ndarray, leafs: np.ndarray, k: int, v: Variant) -> list[int]:
        cap = self.max_per_category if v.max_per_category is None else v.max_per_category
        if not cap:
            return ranked[:k].tolist()
        return choose_capped(ranked, leafs, k, cap).tolist()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "items": len(self.trending),
            "covisit_items": len(self.covisit),
            "transition_items": len(self.transitions),
            "factors": self.factors.stats(),
            "regression": self.regression.stats(),
        }
        if self.ranker is not None:
            out["ranker"] = self.ranker.stats()
        return out
