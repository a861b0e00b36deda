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
from typing import Any

from streamrec.core.profile import EVENT_WEIGHTS, Profile
from streamrec.records import Event, RecItem

MODEL_VERSION = "trending-covisit-1"


class Trending:
    """Time-decayed popularity. score(t) = sum_i w_i * 2^-((t - t_i) / half_life)."""

    def __init__(self, half_life_s: float = 86_400.0, pool: int = 200) -> None:
        self.half_life_ms = half_life_s * 1000.0
        self.pool = pool
        self._scaled: dict[str, float] = {}  # w * 2^((t - origin) / half_life)
        self._origin = 0
        self._now = 0
        self._top: list[tuple[str, float]] | None = None

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
        self._top = None

    def _rebase(self, ts: int) -> None:
        factor = 2.0 ** (-(ts - self._origin) / self.half_life_ms)
        self._scaled = {k: v * factor for k, v in self._scaled.items() if v * factor > 1e-12}
        self._origin = ts

    def top(self) -> list[tuple[str, float]]:
        """The `pool` most popular items now, scores normalised so the first is 1.0.

        Cached until the next `add`; the engine calls it at most once per batch
        in steady state, so its cost is shared by the whole batch.
        """
        if self._top is None:
            best = heapq.nlargest(self.pool, self._scaled.items(), key=lambda kv: kv[1])
            norm = best[0][1] if best else 1.0
            self._top = [(item, s / norm) for item, s in best]
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
                if len(row) > 2 * self.max_neighbours:
                    self._prune(a, row)

    def _prune(self, item: str, row: dict[str, float]) -> None:
        keep = heapq.nlargest(self.max_neighbours, row.items(), key=lambda kv: kv[1])
        self._nbrs[item] = dict(keep)

    def neighbours(self, item: str) -> dict[str, float]:
        return self._nbrs.get(item, {})

    def __len__(self) -> int:
        return len(self._nbrs)


class Recommender:
    """Blends co-visitation, category affinity and trending into a top-K list."""

    def __init__(
        self,
        *,
        top_k: int = 20,
        trending_half_life_s: float = 86_400.0,
        trending_pool: int = 200,
        covisit_window: int = 5,
        covisit_max_neighbours: int = 100,
        anchors: int = 5,
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
    ) -> list[RecItem]:
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
        anchors = profile.recent_item_ids()[-self.anchors :]
        for rank, anchor in enumerate(reversed(anchors)):
            row = self.covisit.neighbours(anchor)
            if not row:
                continue
            top = max(row.values())
            recency = 1.0 / (1 + rank)
            for item, w in row.items():
                s = recency * w / top
                if s > covisit.get(item, 0.0):
                    anchor_of[item] = anchor
                covisit[item] = covisit.get(item, 0.0) + s
        if covisit:
            norm = max(covisit.values())
            covisit = {i: s / norm for i, s in covisit.items()}

        trending = dict(self.trending.top())
        affinity = profile.affinity
        aff_norm = max(affinity.values()) if affinity else 0.0

        scored: list[tuple[float, str, str]] = []
        for item in set(covisit).union(trending):
            if item in excluded or not is_available(item):
                continue
            c = self.w_covisit * covisit.get(item, 0.0)
            t = self.w_trending * trending.get(item, 0.0)
            a = 0.0
            best_cat = ""
            if aff_norm > 0:
                for cat in categories_of(item):
                    v = affinity.get(cat, 0.0) / aff_norm
                    if v > a:
                        a, best_cat = v, cat
                a *= self.w_affinity
            if c >= t and c >= a and c > 0:
                reason = f"co-visited with {anchor_of[item]}"
            elif a > t:
                reason = f"matches your interest in {best_cat}"
            else:
                reason = "trending"
            scored.append((c + t + a, item, reason))
        best = heapq.nlargest(k, scored, key=lambda x: (x[0], x[1]))
        return [RecItem(item, score, reason) for score, item, reason in best]

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

