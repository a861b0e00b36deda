"""Baselines, run in the same protocol as streamrec: a list for the user after every event.

Every baseline leaves out the items the user has already interacted with (as
RecBole's full-ranking evaluation masks history) and fills a short list with
the most popular items, so each always answers with `k` items when it can.

* `popular`: global interaction counts (kept sorted under +1 updates, O(1) each).
* `trending`: time-decayed popularity (streamrec's own `Trending`, half-life configurable).
* `covisit`: item-to-item co-occurrence within a user's last `window` items
  (item-kNN), scored from their last `anchors` items, newer anchors weigh more.
* `biased_mf`: river's `reco.BiasedMF` on implicit feedback: each interaction a
  positive, `negatives` random items a negative. Lists score every item with one
  matrix product over a mirror of river's item factors.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence

import numpy as np

from streamrec.core.items import ItemStore
from streamrec.core.profile import EVENT_WEIGHTS
from streamrec.core.ranking.popularity import Trending
from streamrec.records import RawEvent


def interacts(event: RawEvent) -> bool:
    """An event that puts an item into the user's history (not a search or impression)."""
    return event.item_id is not None and EVENT_WEIGHTS.get(event.type, 0.0) > 0


class SortedCounts:
    """Counts kept in descending order under +1 increments, each O(1).

    Items with equal counts form a contiguous block; an increment swaps the item
    with the first of its block, then widens the block above.
    """

    def __init__(self) -> None:
        self.order: list[str] = []
        self.count: dict[str, int] = {}
        self._pos: dict[str, int] = {}
        self._first: dict[int, int] = {}  # count -> first index of its block

    def add(self, item: str) -> None:
        c = self.count.get(item)
        if c is None:
            self.count[item] = 0
            self._pos[item] = len(self.order)
            self.order.append(item)
            self._first.setdefault(0, len(self.order) - 1)
            c = 0
        i = self._pos[item]
        first = self._first[c]
        if first != i:
            other = self.order[first]
            self.order[first], self.order[i] = item, other
            self._pos[item], self._pos[other] = first, i
        # The block of count c now starts one later (or is gone); item joins c + 1.
        if first + 1 < len(self.order) and self.count[self.order[first + 1]] == c:
            self._first[c] = first + 1
        else:
            del self._first[c]
        self._first.setdefault(c + 1, first)
        self.count[item] = c + 1

    def top(self, k: int, excluded: set[str] | frozenset[str] = frozenset()) -> list[str]:
        out: list[str] = []
        for item in self.order:
            if item not in excluded:
                out.append(item)
                if len(out) == k:
                    break
        return out


class Baseline:
    """Per-user history, popularity fill-in and the batch loop; subclasses learn and rank."""

    name = "baseline"

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = {}
        self.recent: dict[str, list[str]] = {}
        self.popular = SortedCounts()

    def process(self, events: Sequence[RawEvent], k: int) -> list[list[str] | None]:
        """The user's list after each event (learn first, then rank)."""
        out: list[list[str] | None] = []
        for event in events:
            if interacts(event):
                assert event.item_id is not None
                self.learn(event.user_id, event.item_id, event)
                self.seen.setdefault(event.user_id, set()).add(event.item_id)
                self.recent.setdefault(event.user_id, []).append(event.item_id)
                self.popular.add(event.item_id)
            out.append(self.recommend(event.user_id, k))
        return out

    def recommend(self, user: str, k: int) -> list[str]:
        seen = self.seen.get(user, set())
        ranked = self.rank(user, k, seen)
        if len(ranked) < k:
            have = seen | set(ranked)
            ranked += self.popular.top(k - len(ranked), have)
        return ranked

    def learn(self, user: str, item: str, event: RawEvent) -> None:
        """Learn from one interaction (before it joins the user's history)."""

    def rank(self, user: str, k: int, seen: set[str]) -> list[str]:
        """Up to `k` items not in `seen`, best first; the popular fill-in does the rest."""
        return []


class Popular(Baseline):
    name = "popular"


class TrendingBaseline(Baseline):
    name = "trending"

    def __init__(self, half_life_s: float = 86_400.0) -> None:
        super().__init__()
        self.items = ItemStore()
        self.trending = Trending(half_life_s, pool=500, refresh_every=1, store=self.items)

    def learn(self, user: str, item: str, event: RawEvent) -> None:
        self.trending.add(self.items.row(item), 1.0, event.ts)

    def rank(self, user: str, k: int, seen: set[str]) -> list[str]:
        ids = self.items.ids
        out = [ids[r] for r in self.trending.top()[0].tolist() if ids[r] not in seen]
        return out[:k]


class CoVisit(Baseline):
    name = "covisit"

    def __init__(self, window: int = 5, anchors: int = 3) -> None:
        super().__init__()
        self.window = window
        self.anchors = anchors
        self.pairs: dict[str, dict[str, float]] = {}

    def learn(self, user: str, item: str, event: RawEvent) -> None:
        pairs = self.pairs
        for other in self.recent.get(user, [])[-self.window :]:
            if other == item:
                continue
            row = pairs.setdefault(item, {})
            row[other] = row.get(other, 0.0) + 1.0
            row = pairs.setdefault(other, {})
            row[item] = row.get(item, 0.0) + 1.0

    def rank(self, user: str, k: int, seen: set[str]) -> list[str]:
        scores: dict[str, float] = {}
        for age, anchor in enumerate(reversed(self.recent.get(user, [])[-self.anchors :])):
            weight = 1.0 / (1 + age)
            for item, c in self.pairs.get(anchor, {}).items():
                if item not in seen:
                    scores[item] = scores.get(item, 0.0) + weight * c
        best = heapq.nlargest(k, scores.items(), key=lambda kv: (kv[1], kv[0]))
        return [item for item, _s in best]


class BiasedMF(Baseline):
    """river `reco.BiasedMF` on implicit feedback, ranked over a numpy mirror of its factors."""

    name = "biased_mf"

    def __init__(
        self,
        n_factors: int = 16,
        negatives: int = 3,
        lr: float = 0.05,
        l2: float = 0.002,
        seed: int = 7,
    ) -> None:
        super().__init__()
        from river import optim, reco

        self.model = reco.BiasedMF(
            n_factors=n_factors,
            bias_optimizer=optim.SGD(lr),
            latent_optimizer=optim.SGD(lr),
            loss=optim.losses.Squared(),
            l2_bias=l2,
            l2_latent=l2,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            seed=seed,
        )
        self.negatives = negatives
        self._rng = random.Random(seed)
        self.items: list[str] = []
        self._index: dict[str, int] = {}
        self._factors = np.zeros((0, n_factors))
        self._biases = np.zeros(0)

    def _slot(self, item: str) -> int:
        i = self._index.get(item)
        if i is None:
            i = self._index[item] = len(self.items)
            self.items.append(item)
            if i >= len(self._biases):  # grow by doubling: amortised O(1)
                size = max(64, 2 * len(self._biases))
                factors = np.zeros((size, self._factors.shape[1]))
                factors[: len(self._factors)] = self._factors
                biases = np.zeros(size)
                biases[: len(self._biases)] = self._biases
                self._factors, self._biases = factors, biases
        return i

    def _learn_pair(self, user: str, item: str, y: float) -> None:
        self.model.learn_one(user, item, y)
        i = self._slot(item)
        self._factors[i] = self.model.i_latents[item]
        self._biases[i] = self.model.i_biases[item]

    def learn(self, user: str, item: str, event: RawEvent) -> None:
        self._learn_pair(user, item, 1.0)
        if len(self.items) > 1:
            for _ in range(self.negatives):
                other = self.items[self._rng.randrange(len(self.items))]
                if other != item and other not in self.seen.get(user, ()):
                    self._learn_pair(user, other, 0.0)

    def rank(self, user: str, k: int, seen: set[str]) -> list[str]:
        n = len(self.items)
        if not n or user not in self.model.u_latents:
            return []
        scores = self._biases[:n] + self._factors[:n] @ self.model.u_latents[user]
        if seen:
            scores[[self._index[i] for i in seen if i in self._index]] = -np.inf
        want = min(k, n)
        top = np.argpartition(-scores, want - 1)[:want]
        ordered = sorted(top.tolist(), key=lambda j: (-scores[j], self.items[j]))
        return [self.items[j] for j in ordered if np.isfinite(scores[j])]
