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
from operator import itemgetter
from typing import Any

from streamrec.core.profile import EVENT_WEIGHTS, Profile
from streamrec.records import Event, RecItem

MODEL_VERSION = "trending-covisit-1"


def _rank_key(row: tuple[float, str, float, str]) -> tuple[float, str]:
    return (-row[0], row[1])  # score, then item id: ties never depend on dict order


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


class Recommender:
    """Blends query similarity, co-visitation, category affinity and trending into a top-K."""

    #: Weight of query-vector hits on a search event (class default: older snapshots lack it).
    w_query: float = 1.0

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
        exclude_purchased: bool = True,
        exclude_recent: bool = True,
    ) -> None:
        self.top_k = top_k
        self.anchors = anchors
        self.w_covisit = w_covisit
        self.w_trending = w_trending
        self.w_affinity = w_affinity
        self.exclude_purchased = exclude_purchased
        self.exclude_recent = exclude_recent
        self.trending = Trending(trending_half_life_s, trending_pool)
        self.covisit = CoVisitation(covisit_window, covisit_max_neighbours)
        self.model_version = MODEL_VERSION

    # -- learning ---------------------------------------------------------------

    def observe(self, event: Event, session_items: Sequence[str]) -> None:
        """Learn from one event; `session_items` are the user's session items before it."""
        item = event.item_id
        if item is None:
            return
        weight = EVENT_WEIGHTS.get(event.type, 0.0)
        if weight <= 0:
            return
        self.trending.add(item, weight, event.ts)
        self.covisit.add(item, session_items, weight)

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
    ) -> list[RecItem]:
        """Top-k for `profile`, each with its score and the reason it is there.

        Scores: w_query * similarity to the search query (normalised; `query_hits`
        from the item vectors, search events only) + w_covisit * co-visitation
        (normalised) + w_trending * trending (normalised) + w_affinity * best
        category affinity. Affinity, availability
        are only worked out for a 2k shortlist and reasons for the final k: that
        keeps a list at tens of microseconds whatever the catalog size.
        """
        k = k or self.top_k
        excluded: set[str] = set()
        if self.exclude_purchased:
            excluded.update(profile.purchased)
        if self.exclude_recent:
            excluded.update(r[0] for r in profile.recent)
        if current_item is not None:
            excluded.add(current_item)

        covisit: dict[str, float] = {}
        anchor_of: dict[str, str] = {}
        for rank, anchor in enumerate(reversed(profile.recent[-self.anchors :])):
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
        wc = self.w_covisit / max(covisit.values()) if covisit else 0.0
        scores = {item: wc * c for item, c in covisit.items() if item not in excluded}

        query: dict[str, float] = {}
        best_sim = max((sim for _, sim in query_hits), default=0.0)
        if best_sim > 0:
            wq = self.w_query / best_sim
            for item, sim in query_hits:
                if sim > 0 and item not in excluded:
                    query[item] = wq * sim
                    scores[item] = scores.get(item, 0.0) + query[item]

        trending: dict[str, float] = {}
        for item, t in self.trending.top():
            if item in excluded:
                continue
            trending[item] = t
            scores[item] = scores.get(item, 0.0) + self.w_trending * t
            if len(trending) >= 2 * k:
                break

        affinity = profile.affinity
        aff_norm = max(affinity.values()) if affinity else 0.0
        wa = self.w_affinity / aff_norm if aff_norm > 0 else 0.0
        final: list[tuple[float, str, float, str]] = []
        for item, base in heapq.nlargest(2 * k, scores.items(), key=itemgetter(1)):
            if not is_available(item):
                continue
            a, best_cat = 0.0, ""
            if wa:
                for cat in categories_of(item):
                    v = affinity.get(cat, 0.0)
                    if v > a:
                        a, best_cat = v, cat
                a *= wa
            final.append((base + a, item, a, best_cat))
        final.sort(key=_rank_key)
        out = []
        for score, item, a, best_cat in final[:k]:
            # Reasons only for what is shown: the largest of the three contributions.
            c = wc * covisit.get(item, 0.0)
            t = self.w_trending * trending.get(item, 0.0)
            q = query.get(item, 0.0)
            if q > 0 and q >= c and q >= t and q >= a:
                reason = "matches your search"
            elif c > 0 and c >= t and c >= a:
                reason = f"co-visited with {anchor_of[item]}"
            elif a > t:
                reason = f"matches your interest in {best_cat}"
            else:
                reason = "trending"
            out.append(RecItem(item, score, reason))
        return out

    # -- checkpoints ------------------------------------------------------------

    def snapshot(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(data: bytes) -> Recommender:
        obj = pickle.loads(data)
        if not isinstance(obj, Recommender):
            raise TypeError(f"snapshot holds a {type(obj).__name__}, not a Recommender")
        return obj

    def stats(self) -> dict[str, Any]:
        return {"items": len(self.trending), "covisit_items": len(self.covisit)}
