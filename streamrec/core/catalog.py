"""The item catalog as the engine sees it: titles, categories, availability.

Fed from the compacted catalog.items topic; every worker keeps all of it.

>>> c = Catalog()
>>> c.upsert(CatalogItem("1", "Toy Story", ("Animation",)))
>>> c.categories("1"), c.is_available("1"), c.is_available("unknown")
(('Animation',), True, True)
"""

from __future__ import annotations

from streamrec.records import CatalogItem


class Catalog:
    def __init__(self) -> None:
        self._items: dict[str, CatalogItem] = {}
        self.unavailable: set[str] = set()

    def upsert(self, item: CatalogItem) -> None:
        self._items[item.item_id] = item
        if item.available:
            self.unavailable.discard(item.item_id)
        else:
            self.unavailable.add(item.item_id)

    def remove(self, item_id: str) -> None:
        """A tombstone on the compacted topic: the item is gone for good."""
        self._items.pop(item_id, None)
        self.unavailable.add(item_id)

    def get(self, item_id: str) -> CatalogItem | None:
        return self._items.get(item_id)

    def categories(self, item_id: str) -> tuple[str, ...]:
        item = self._items.get(item_id)
        return item.category if item else ()

    def price(self, item_id: str) -> float | None:
        item = self._items.get(item_id)
        return item.price if item else None

    def is_available(self, item_id: str) -> bool:
        """Unknown items count as available: events may arrive before the catalog feed."""
        return item_id not in self.unavailable

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items
