"""A seeded synthetic storefront: Zipf-popular items in categories, users with taste.

For the benchmark (unbounded event counts) and tests (known structure). Each
user prefers two categories; sessions browse mostly inside them, sometimes search,
add to cart and buy.

>>> shop = SyntheticShop(users=10, items=50, seed=1)
>>> evs = shop.events(5, start_ts=1_700_000_000_000)
>>> len(evs), evs[0].ts <= evs[-1].ts
(5, True)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from streamrec.records import CatalogItem, RawEvent

CATEGORIES = ["Audio", "Books", "Garden", "Kitchen", "Shoes", "Toys", "Games", "Sports"]
_ADJ = ["red", "cheap", "wireless", "kids", "large", "organic", "vintage", "waterproof", "mini"]
_NOUN = ["set", "gift", "pack", "bundle", "edition", "kit", "deal", "classic", "pro", "lite"]
#: Distinct search texts per category; drawn Zipf-like, so the head repeats (as in shops).
QUERIES_PER_CATEGORY = 300
_TYPES = ["view"] * 70 + ["click"] * 15 + ["add_to_cart"] * 6 + ["purchase"] * 3 + ["search"] * 6


@dataclass
class SyntheticShop:
    users: int = 5_000
    items: int = 10_000
    seed: int = 42
    zipf_s: float = 1.1

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        rng = self._rng
        self.catalog = [
            CatalogItem(
                item_id=f"sku-{i}",
                title=f"{CATEGORIES[i % len(CATEGORIES)]} item {i}",
                category=(CATEGORIES[i % len(CATEGORIES)],),
                price=round(rng.uniform(2, 200), 2),
            )
            for i in range(self.items)
        ]
        self._by_cat: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        for item in self.catalog:
            self._by_cat[item.category[0]].append(item.item_id)
        self._taste = {u: rng.sample(CATEGORIES, 2) for u in range(self.users)}
        weights = [
            1.0 / (r + 1) ** self.zipf_s for r in range(max(len(v) for v in self._by_cat.values()))
        ]
        self._cum = _cumulative(weights)
        self._user_cum = _cumulative([1.0 / (r + 1) ** 0.8 for r in range(self.users)])
        self._queries = {
            c: [
                f"{c.lower()} {_ADJ[q % len(_ADJ)]} {_NOUN[q // len(_ADJ) % len(_NOUN)]} {q}"
                for q in range(QUERIES_PER_CATEGORY)
            ]
            for c in CATEGORIES
        }
        self._query_cum = _cumulative(
            [1.0 / (r + 1) ** self.zipf_s for r in range(QUERIES_PER_CATEGORY)]
        )
        self._n = 0

    def _item(self, category: str) -> str:
        pool = self._by_cat[category]
        idx = _draw(self._rng, self._cum[: len(pool)])
        return pool[idx]

    def user(self) -> int:
        return _draw(self._rng, self._user_cum)

    def event_for(self, user: int, ts: int) -> RawEvent:
        rng = self._rng
        self._n += 1
        etype = rng.choice(_TYPES)
        cat = rng.choice(self._taste[user]) if rng.random() < 0.8 else rng.choice(CATEGORIES)
        common = {"event_id": f"syn-{self.seed}-{self._n}", "user_id": f"user-{user}", "ts": ts}
        if etype == "search":
            query = self._queries[cat][_draw(rng, self._query_cum)]
            return RawEvent(type="search", query=query, **common)  # type: ignore[arg-type]
        item = self._item(cat)
        if etype == "purchase":
            return RawEvent(type="purchase", item_id=item, price=9.99, quantity=1, **common)  # type: ignore[arg-type]
        return RawEvent(type=etype, item_id=item, **common)  # type: ignore[arg-type]

    def events(self, n: int, start_ts: int, step_ms: int = 50) -> list[RawEvent]:
        return [self.event_for(self.user(), start_ts + i * step_ms) for i in range(n)]


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def _draw(rng: random.Random, cum: list[float]) -> int:
    import bisect

    return min(bisect.bisect_left(cum, rng.random() * cum[-1]), len(cum) - 1)
