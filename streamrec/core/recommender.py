"""The first recommender: time-decayed trending + session co-visitation.

* `Trending` keeps a time-decayed popularity per item (event time, half-life
  configurable), weighted by event type. Scores live in a shifted exponential
  space so an update is O(1) and never touches other items.
* `CoVisitation` counts item pairs that occur close together in one user's
  session (item-to-item, both directions), each neighbour list capped.
* `Recommender.recommend` blends co-visitation neighbours of the user's recent
  items, category affinity and trending, excludes purchased / recent / on-screen
  / unavailable items, and explains every pick.

>>> from streamrec.core.profile import Profile
>>> r = Recommender(top_k=2)
>>> for i, item in enumerate(["a", "b", "a", "c"]):
...     r.observe(Event(f"e{i}", "view", "u_1", 1_000 + i, item_id=item), [])
>>> [x.item_id for x in r.recommend(Profile.new("u_2"), None)]
['a', 'c']
"""

from __future__ import annotations

import heapq
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import numpy as np

from streamrec.core.profile import EVENT_WEIGHTS, Profile
from streamrec.core.ranking import FEATURES, POSITIVE_TYPES, FixedBlend, OnlineRanker
from streamrec.core.value import ValueModel
from streamrec.core.variants import Variant
from streamrec.records import Event, RecItem

FEATURE_INDEX = {name: i for i, name in enumerate(FEATURES)}
_NO_VARIANT = Variant("default")


def _no_categories(_item: str) -> tuple[str, ...]:
    return ()


@dataclass
class RankContext:
    """What ranking needs from outside the recommender for one event."""

    categories_of: Callable[[str], tuple[str, ...]] = _no_categories
    price_of: Callable[[str], float | None] | None = None
    #: (items, unit vector) -> cosine per item (0 for items without a vector)
    similarities: Callable[[Sequence[str], np.ndarray], np.ndarray] | None = None
    user_vector: np.ndarray | None = None
    interest_hits: Sequence[tuple[str, float]] = field(default_factory=list)


def _normalised(hits: Sequence[tuple[str, float]]) -> dict[str, float]:
    """{item: score / best score} for hits that come best first."""
    best = hits[0][1] if hits else 0.0
    if best <= 0:
        return dict.fromkeys((item for item, _sim in hits), 0.0)
    scale = 1.0 / best
    return {item: sim * scale for item, sim in hits}


def _best_source_rank(per_source: np.ndarray) -> np.ndarray:
    """Per item (column), its best rank within any source (row); NaN: not in that source.

    Ties within a source keep column order (item id order), so the cut is stable.

    >>> m = np.array([[0.9, np.nan, 0.5], [np.nan, 0.2, 0.1]])
    >>> np.round(_best_source_rank(m), 3).tolist()  # 1st of a source; 1st of another; 2nd
    [0.05, 0.4, 1.25]
    """
    ranks = np.full(per_source.shape, np.inf)
    for row, scores in enumerate(per_source):
        present = np.flatnonzero(~np.isnan(scores))
        order = present[np.argsort(-scores[present], kind="stable")]
        ranks[row, order] = np.arange(len(order))
    # Equal best ranks: the higher score first (a source's 1st at 0.9 before one at 0.2).
    best = np.fmax.reduce(per_source, axis=0)
    return np.min(ranks, axis=0) + (1.0 - np.clip(best, 0.0, 1.0)) * 0.5


class Trending:
    """Time-decayed popularity. score(t) = sum_i w_i * 2^-((t - t_i) / half_life)."""

    def __init__(
        self, half_life_s: float = 86_400.0, pool: int = 200, refresh_every: int = 100
    ) -> None:
        self.half_life_ms = half_life_s * 1000.0
        self.pool = pool
        self.refresh_every = refresh_every
        self._scaled: dict[str, float] = {}  # w * 2^((t - origin) / half_life)
        self._origin = 0
        self._now = 0
        self._top: list[tuple[str, float]] = []
        self._stale = 0

    def add(self, item: str, weight: float, ts: int) -> None:
        if not self._scaled:
            self._origin = ts
        exponent = (ts - self._origin) / self.half_life_ms
        if exponent > 400:  # keep the shifted scores far from float overflow
            self._rebase(ts)
            exponent = 0.0
        self._scaled[item] = self._scaled.get(item, 0.0) + weight * 2.0**exponent
        if ts > self._now:
            self._now = ts
        self._stale += 1

    def _rebase(self, ts: int) -> None:
        factor = 2.0 ** (-(ts - self._origin) / self.half_life_ms)
        self._scaled = {k: v * factor for k, v in self._scaled.items() if v * factor > 1e-12}
        self._origin = ts

    def top(self) -> list[tuple[str, float]]:
        """The `pool` most popular items, best first, scores normalised so the first is 1.0.

        Recomputed after every `refresh_every` adds (scaled up for big catalogs,
        so the O(items) scan stays a small share per event). Counting adds, not
        batches or seconds, keeps results identical however events are batched.
        """
        threshold = max(self.refresh_every, len(self._scaled) // 50)
        if len(self._top) < self.pool:  # young catalog: cheap to refresh, and it grows fast
            threshold = min(threshold, max(1, len(self._top)))
        if self._stale >= threshold:
            best = heapq.nlargest(self.pool, self._scaled.items(), key=itemgetter(1))
            norm = best[0][1] if best else 1.0
            self._top = [(item, s / norm) for item, s in best]
            self._stale = 0
        return self._top

    def scores(self, items: Sequence[str]) -> np.ndarray:
        """`score` for many items at once."""
        raw = np.fromiter(
            map(self._scaled.get, items, repeat(0.0)), dtype=np.float64, count=len(items)
        )
        return raw * 2.0 ** (-(self._now - self._origin) / self.half_life_ms)

    def score(self, item: str) -> float:
        """Current decayed score (absolute, event-time now)."""
        s = self._scaled.get(item, 0.0)
        return s * 2.0 ** (-(self._now - self._origin) / self.half_life_ms)

    def __len__(self) -> int:
        return len(self._scaled)


class CoVisitation:
    """Item-to-item co-occurrence within a session, capped per item."""

    def __init__(self, window: int = 5, max_neighbours: int = 100) -> None:
        self.window = window
        self.max_neighbours = max_neighbours
        self._nbrs: dict[str, dict[str, float]] = {}

    def add(self, item: str, previous: Sequence[str], weight: float) -> None:
        """`previous`: the session's earlier items, newest last."""
        if not previous:
            return
        nbrs = self._nbrs
        for dist, other in enumerate(reversed(previous[-self.window :]), start=1):
            if other == item:
                continue
            w = weight / dist
            for a, b in ((item, other), (other, item)):
                row = nbrs.get(a)
                if row is None:
                    row = nbrs[a] = {}
                row[b] = row.get(b, 0.0) + w
                if len(row) > self.max_neighbours + self.max_neighbours // 2:
                    self._prune(a, row)

    def _prune(self, item: str, row: dict[str, float]) -> None:
        keep = heapq.nlargest(self.max_neighbours, row.items(), key=itemgetter(1))
        self._nbrs[item] = dict(keep)

    def neighbours(self, item: str) -> dict[str, float]:
        return self._nbrs.get(item, {})

    def __len__(self) -> int:
        return len(self._nbrs)


REASONS = {
    "similarity": "similar to what you like",
    "query_match": "matches your search",
    "popularity": "trending",
    "growth": "rising in popularity",
    "price_fit": "in your price range",
    "seen": "you looked at this before",
}


class Recommender:
    """Candidates (query / interest vectors, co-visitation, trending) -> features -> ranked top-K.

    Ranking uses the online river model (`OnlineRanker`) once it has learned
    enough from impression feedback, the fixed blend (`FixedBlend`) before.
    Business rules: purchased, recent (both configurable), on-screen and
    unavailable items are excluded, and at most `max_per_category` items of one
    (leaf) category make the list.
    """

    #: Class defaults: snapshots from before these attributes existed still load.
    w_query: float = 1.0
    max_per_category: int = 0
    ranker: OnlineRanker | None = None

    def __init__(
        self,
        *,
        top_k: int = 20,
        trending_half_life_s: float = 86_400.0,
        trending_pool: int = 200,
        covisit_window: int = 5,
        covisit_max_neighbours: int = 30,
        anchors: int = 3,
        w_covisit: float = 1.0,
        w_trending: float = 0.3,
        w_affinity: float = 0.2,
        w_query: float = 1.0,
        exclude_purchased: bool = True,
        exclude_recent: bool = True,
        max_per_category: int = 0,
        ranker: OnlineRanker | None = None,
        rank_pool: int = 60,
    ) -> None:
        self.top_k = top_k
        self.anchors = anchors
        self.exclude_purchased = exclude_purchased
        self.exclude_recent = exclude_recent
        self.max_per_category = max_per_category
        self.trending = Trending(trending_half_life_s, trending_pool)
        # Seven times slower: the baseline that "growth" compares today's popularity with.
        self.trending_long = Trending(trending_half_life_s * 7, trending_pool)
        self.covisit = CoVisitation(covisit_window, covisit_max_neighbours)
        #: Popularity inside each category: "popular in what you like" candidates.
        self.trending_by_category: dict[str, Trending] = {}
        self.category_candidates = 10
        self.rank_pool = rank_pool
        self.value = ValueModel()
        self.blend = FixedBlend(
            {"covisit": w_covisit, "popularity": w_trending, "affinity": w_affinity,
             "query_match": w_query}
        )  # fmt: skip
        self.ranker = ranker
        if ranker is not None:
            ranker.baseline = self.blend  # judged against the blend it would replace

    # -- learning ---------------------------------------------------------------

    def observe(
        self, event: Event, session_items: Sequence[str], categories: Sequence[str] = ()
    ) -> None:
        """Learn from one event; `session_items` are the user's session items before it."""
        if self.ranker is not None:
            self.ranker.expire(event.ts)
            if event.type in POSITIVE_TYPES and event.item_id is not None:
                self.ranker.on_positive(event.user, event.item_id, event.ts)
        item = event.item_id
        if item is None:
            return
        weight = EVENT_WEIGHTS.get(event.type, 0.0)
        if weight <= 0:
            return
        self.trending.add(item, weight, event.ts)
        self.trending_long.add(item, weight, event.ts)
        self.covisit.add(item, session_items, weight)
        by_cat = self.trending_by_category
        for cat in categories:
            t = by_cat.get(cat)
            if t is None:
                t = by_cat[cat] = Trending(self.trending.half_life_ms / 1000.0, pool=50)
            t.add(item, weight, event.ts)

    def observe_impression(self, event: Event, profile: Profile, ctx: RankContext) -> None:
        """The storefront showed `event.shown`: remember their features for feedback."""
        if self.ranker is None or not event.shown:
            return
        items = list(dict.fromkeys(event.shown))[:100]
        # The same features as at serving time (the ranker learns what it will score).
        covisit, _anchors = self._covisit(profile)
        features = self._features(profile, items, covisit, {}, ctx)
        self.ranker.on_impression(event.user, dict(zip(items, features, strict=True)), event.ts)

    @property
    def ranking_version(self) -> str:
        return self.model_for(_NO_VARIANT).version

    def model_for(self, variant: Variant | None) -> FixedBlend | OnlineRanker:
        """What ranks for this variant: the online ranker while it is ready (unless the
        variant turns it off), the variant's blend or the default blend otherwise."""
        v = variant or _NO_VARIANT
        if self.ranker is not None and self.ranker.ready and v.ranker is not False:
            return self.ranker
        return v.blend or self.blend

    # -- serving ----------------------------------------------------------------

    def recommend(
        self,
        profile: Profile,
        current_item: str | None,
        *,
        categories_of: Callable[[str], tuple[str, ...]] = lambda _item: (),
        is_available: Callable[[str], bool] = lambda _item: True,
        k: int | None = None,
        query_hits: Sequence[tuple[str, float]] = (),
        ctx: RankContext | None = None,
        variant: Variant | None = None,
    ) -> list[RecItem]:
        """Top-k for `profile`, each with its score, sources and the features that placed it.

        `variant` (an A/B arm) overrides list length, pool, per-category cap,
        anchors and the ranking model for this list.
        """
        v = variant or _NO_VARIANT
        k = k or v.top_k or self.top_k
        max_per_category = (
            self.max_per_category if v.max_per_category is None else v.max_per_category
        )
        ctx = ctx or RankContext(categories_of=categories_of)
        if ctx.categories_of is _no_categories:
            ctx.categories_of = categories_of
        excluded: set[str] = set()
        if self.exclude_purchased:
            excluded.update(profile.purchased)
        if self.exclude_recent:
            excluded.update(r[0] for r in profile.recent)
        if current_item is not None:
            excluded.add(current_item)

        # Each source as {item: score, at most 1}; merged with dict and numpy
        # operations (no per-candidate Python): this runs for every event.
        covisit, anchor_of = self._covisit(profile, v.anchors)
        trending = dict(self._top_trending(excluded, 2 * k))
        by_cat = self.trending_by_category
        category: dict[str, float] = {}
        for cat, _aff in heapq.nlargest(2, profile.affinity.items(), key=itemgetter(1)):
            top_in_cat = by_cat.get(cat)
            if top_in_cat is not None:
                for item, t in top_in_cat.top()[: self.category_candidates]:
                    if t > category.get(item, -1.0):
                        category[item] = t
        pool = self.rank_pool if v.rank_pool is None else v.rank_pool
        # Hits come best first: past the pool size none could make the shortlist.
        query = _normalised(query_hits[:pool] if pool else query_hits)
        interest = _normalised(ctx.interest_hits[:pool] if pool else ctx.interest_hits)
        by_source = (
            ("covisit", covisit),
            ("trending", trending),
            ("category", category),
            ("query", query),
            ("interest", interest),
        )
        candidates = dict.fromkeys(chain(covisit, trending, category, query, interest))
        for item in excluded:
            candidates.pop(item, None)
        if not candidates:
            return []
        # Sorted ids, then a stable sort by score: ties break by item id, so lists
        # never depend on the order candidates arrived in.
        items = sorted(candidates)
        # NaN where a source lacks the item (a query hit may score below zero).
        absent = repeat(np.nan)
        per_source = np.array(
            [list(map(src.get, items, absent)) for _name, src in by_source], dtype=np.float64
        )
        if pool and len(items) > pool:
            # Features cost per row: rank only `pool` candidates, taken from every source
            # in turn (each source's 1st, then each one's 2nd, ...). Comparing scores
            # across sources instead let a flat one (vector hits all near 1.0) fill the
            # pool and crowd the others out: ml-100k NDCG@10 fell by a quarter.
            keep = np.sort(np.argsort(_best_source_rank(per_source), kind="stable")[:pool])
            items = [items[i] for i in keep.tolist()]
            per_source = per_source[:, keep]
        present = (~np.isnan(per_source)).T.tolist()
        names = [name for name, _src in by_source]

        x = self._features(profile, items, covisit, query, ctx)
        model = self.model_for(v)
        # Rounded before sorting: ties (and near-ties in the last float bits) break by
        # item id, so lists never depend on the order candidates arrived in.
        scores = np.round(model.score(x), 9).tolist()
        order = sorted(range(len(items)), key=lambda i: (-scores[i], items[i]))

        chosen: list[int] = []
        per_cat: dict[str, int] = {}
        for i in order:
            item = items[i]
            if not is_available(item):
                continue
            if max_per_category:
                cats = ctx.categories_of(item)
                leaf = cats[-1] if cats else ""
                if leaf and per_cat.get(leaf, 0) >= max_per_category:
                    continue
                per_cat[leaf] = per_cat.get(leaf, 0) + 1
            chosen.append(i)
            if len(chosen) == k:
                break
        if not chosen:
            return []
        # Explanations for what is shown only, in one matrix operation.
        contrib_m = model.contributions(x[chosen])
        best3 = np.argsort(-contrib_m, axis=1, kind="stable")[:, :3].tolist()
        contrib = contrib_m.round(4).tolist()
        growth = x[chosen, FEATURE_INDEX["growth"]].round(4).tolist()
        out: list[RecItem] = []
        for n, i in enumerate(chosen):
            item = items[i]
            row = contrib[n]
            top_features = tuple((FEATURES[f], row[f]) for f in best3[n] if row[f] > 0)
            cats = ctx.categories_of(item)
            out.append(
                RecItem(
                    item,
                    scores[i],
                    self._reason(top_features, anchor_of.get(item), profile, cats),
                    tuple(name for name, has in zip(names, present[i], strict=True) if has),
                    top_features,
                    potential=growth[n],
                    category=cats[-1] if cats else None,
                    price=ctx.price_of(item) if ctx.price_of is not None else None,
                )
            )
        return out

    def _covisit(
        self, profile: Profile, anchors: int | None = None
    ) -> tuple[dict[str, float], dict[str, str]]:
        """Co-visitation neighbours of the newest recent items, normalised to 1."""
        covisit: dict[str, float] = {}
        anchor_of: dict[str, str] = {}
        n = self.anchors if anchors is None else anchors
        for rank, anchor in enumerate(reversed(profile.recent[-n:] if n else [])):
            row = self.covisit.neighbours(anchor[0])
            if not row:
                continue
            scale = 1.0 / ((1 + rank) * max(row.values()))
            for item, w in row.items():
                prev = covisit.get(item)
                if prev is None:
                    covisit[item] = w * scale
                    anchor_of[item] = anchor[0]  # the most recent anchor that led here
                else:
                    covisit[item] = prev + w * scale
        top = max(covisit.values()) if covisit else 0.0
        return ({i: c / top for i, c in covisit.items()} if top else {}), anchor_of

    def _features(
        self,
        profile: Profile,
        items: Sequence[str],
        covisit: dict[str, float],
        query: dict[str, float],
        ctx: RankContext,
    ) -> np.ndarray:
        """The (len(items), len(FEATURES)) matrix, built column by column (no per-cell numpy)."""
        n = len(items)
        x = np.zeros((n, len(FEATURES)), dtype=np.float64)
        f = FEATURE_INDEX
        zeros = repeat(0.0)
        if ctx.user_vector is not None and ctx.similarities is not None:
            x[:, f["similarity"]] = ctx.similarities(items, ctx.user_vector)
        if query:  # already normalised to the best hit (`_normalised`)
            sims = np.fromiter(map(query.get, items, zeros), dtype=np.float64, count=n)
            x[:, f["query_match"]] = np.maximum(sims, 0.0)
        if covisit:
            x[:, f["covisit"]] = np.fromiter(map(covisit.get, items, zeros), np.float64, n)
        short = self.trending.scores(items)
        top_item = self.trending.top()[:1]
        pop_norm = self.trending.score(top_item[0][0]) if top_item else 0.0
        if pop_norm > 0:
            x[:, f["popularity"]] = np.minimum(1.0, short / pop_norm)
        long = self.trending_long.scores(items)
        with np.errstate(divide="ignore", invalid="ignore"):
            # steady demand: short/long ~ 1/7 (the half-life ratio); rising: more
            growth = np.where(long > 0, 7.0 * short / np.where(long > 0, long, 1.0) - 1.0, 0.0)
        x[:, f["growth"]] = np.clip(growth, 0.0, 3.0) / 3.0
        affinity = profile.affinity
        if affinity:
            aff_norm = max(affinity.values())
            aget = affinity.get
            best = [
                max(map(aget, cats, zeros), default=0.0) for cats in map(ctx.categories_of, items)
            ]
            x[:, f["affinity"]] = np.asarray(best, dtype=np.float64) / aff_norm
        user_price = profile.spend / profile.orders if profile.orders and profile.spend else 0.0
        if not user_price:
            user_price = self.value.expected_order_value(profile)  # what a user like this pays
        if user_price > 0 and ctx.price_of is not None:
            prices = np.array([p or 0.0 for p in map(ctx.price_of, items)], dtype=np.float64)
            with np.errstate(divide="ignore"):
                fit = np.exp(-np.abs(np.log(np.where(prices > 0, prices, 1.0) / user_price)))
            x[:, f["price_fit"]] = np.where(prices > 0, fit, 0.0)
        if profile.recent:
            seen = {r[0] for r in profile.recent}
            x[:, f["seen"]] = [i in seen for i in items]
        return x

    @staticmethod
    def _reason(
        top: tuple[tuple[str, float], ...],
        anchor: str | None,
        profile: Profile,
        categories: tuple[str, ...],
    ) -> str:
        if not top:
            return "trending"
        name = top[0][0]
        if name == "covisit" and anchor:
            return f"co-visited with {anchor}"
        if name == "affinity":
            # The item's category the user likes most (the first of equals).
            aff = profile.affinity
            best = max(categories, key=lambda c: aff.get(c, 0.0), default=None)
            if best is not None and aff.get(best, 0.0) > 0:
                return f"matches your interest in {best}"
        return REASONS.get(name, "trending")

    def _top_trending(self, excluded: set[str], n: int) -> list[tuple[str, float]]:
        """The `n` most popular items not excluded, best first."""
        out: list[tuple[str, float]] = []
        for pair in self.trending.top():
            if pair[0] not in excluded:
                out.append(pair)
                if len(out) >= n:
                    break
        return out

    # -- checkpoints ------------------------------------------------------------

    def snapshot(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(data: bytes) -> Recommender:
        obj = pickle.loads(data)
        if not isinstance(obj, Recommender):
            raise TypeError(f"snapshot holds a {type(obj).__name__}, not a Recommender")
        obj._upgrade()
        return obj

    def _upgrade(self) -> None:
        """Fill in state that snapshots from older versions lack (learned from here on)."""
        d = self.__dict__
        if "trending_long" not in d:
            self.trending_long = Trending(
                self.trending.half_life_ms / 1000.0 * 7, self.trending.pool
            )
        d.setdefault("trending_by_category", {})
        d.setdefault("category_candidates", 10)
        d.setdefault("rank_pool", 60)
        if "blend" not in d:
            self.blend = FixedBlend(
                {"covisit": d.pop("w_covisit", 1.0), "popularity": d.pop("w_trending", 0.3),
                 "affinity": d.pop("w_affinity", 0.2), "query_match": d.get("w_query", 1.0)}
            )  # fmt: skip
        if "value" not in d:
            self.value = ValueModel()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"items": len(self.trending), "covisit_items": len(self.covisit)}
        if self.ranker is not None:
            out["ranker"] = self.ranker.stats()
        return out
