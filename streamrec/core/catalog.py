"""The item catalog as the engine sees it: titles, categories, availability.

Fed from the compacted catalog.items topic; every worker keeps all of it. A
view by item id over the `ItemStore`, whose rows and columns ranking uses.

>>> c = Catalog()
>>> c.upsert(CatalogItem("1", "Toy Story", ("Animation",)))
>>> c.categories("1"), c.is_available("1"), c.is_available("unknown")
(('Animation',), True, True)
"""

from __future__ import annotations

from streamrec.core.items import ItemStore
from streamrec.records import CatalogItem


class Catalog:
    def __init__(self, store: ItemStore | None = None) -> None:
        self.store = store if store is not None else ItemStore()

    def upsert(self, item: CatalogItem) -> None:
        self.store.upsert(item)

    def remove(self, item_id: str) -> None:
        """A tombstone on the compacted topic: the item is gone for good."""
        self.store.remove(item_id)

    def get(self, item_id: str) -> CatalogItem | None:
        row = self.store.find(item_id)
        return None if row is None else self.store.items[row]

    def categories(self, item_id: str) -> tuple[str, ...]:
        item = self.get(item_id)
        return item.category if item else ()

    def price(self, item_id: str) -> float | None:
        item = self.get(item_id)
        return item.price if item else None

    def is_available(self, item_id: str) -> bool:
        """Unknown items count as available: events may arrive before the catalog feed."""
        row = self.store.find(item_id)
        return row is None or bool(self.store.available[row])

    def __len__(self) -> int:
        return self.store.in_catalog

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self.get(item_id) is not None
