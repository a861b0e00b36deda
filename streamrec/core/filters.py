"""Per-request list filters, one rule for the Kafka reader and the HTTP service.

>>> f = Filters(category="Shoes", max_price=50.0, exclude=frozenset({"b"}))
>>> f.keep("a", "Shoes", 40.0), f.keep("b", "Shoes", 40.0), f.keep("c", "Shoes", None)
(True, False, False)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Filters:
    """Per-request filters: leaf category, price range, items to leave out."""

    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)

    def keep(self, item_id: str, category: str | None, price: float | None) -> bool:
        if item_id in self.exclude:
            return False
        if self.category is not None and category != self.category:
            return False
        if self.min_price is not None and (price is None or price < self.min_price):
            return False
        return not (self.max_price is not None and (price is None or price > self.max_price))
