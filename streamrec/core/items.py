"""The item store: every item id as a dense integer row, item state as numpy columns.

Each worker maps an item id to a row once, the first time it sees the item (a
catalog record, an event, a vector), and keeps the row for the life of the
process: a removed item keeps its row (unavailable), and comes back on it.
Candidates are rows, and a feature column is a gather (`price[rows]`,
`available[rows]`, `cats[rows]`): nothing per candidate goes through a dict.

Columns (length `capacity`, grown by doubling):

* `available`: False for items the catalog marks unavailable or deleted;
  items seen only in events count as available (events may come first);
* `price`: the catalog price, NaN without one;
* `cats`: the item's category ids, padded with -1 (`max_categories` each);
  `leaf`: the last one (the leaf of a path), -1 without categories;
* `tiebreak`: a 64-bit hash of the item id. Lists break score ties by it, so
  they are the same in every process, whatever order rows were handed out in.

>>> s = ItemStore()
>>> s.upsert(CatalogItem("sku-1", "Runner", ("Shoes", "Running"), price=89.0))
0
>>> s.row("sku-9"), s.find("nope"), s.ids[0]
(1, None, 'sku-1')
>>> s.category_name(int(s.leaf[0])), float(s.price[0]), bool(s.available[1])
('Running', 89.0, True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from streamrec.records import CatalogItem

#: Category ids kept per item (a path, or several genres): the first ones and the leaf.
MAX_CATEGORIES = 8


def tiebreak_of(item_id: str) -> int:
    """A stable 63-bit hash of an item id (the same in every process and version)."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "big") >> 1


class ItemStore:
    def __init__(self, capacity: int = 1024, max_categories: int = MAX_CATEGORIES) -> None:
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self.max_categories = max_categories
        self.category_ids: dict[str, int] = {}
        self.category_names: list[str] = []
        #: Category id -> its member rows, and a counter of changes per category.
        self.members: dict[int, set[int]] = {}
        self.member_changes: dict[int, int] = {}
        self.items: list[CatalogItem | None] = []
        #: Items with a catalog record (not only seen in events).
        self.in_catalog = 0
        cap = max(16, capacity)
        self.available = np.ones(cap, dtype=bool)
        self.price = np.full(cap, np.nan)
        self.cats = np.full((cap, max_categories), -1, dtype=np.int32)
        self.leaf = np.full(cap, -1, dtype=np.int32)
        self.tiebreak = np.zeros(cap, dtype=np.int64)
        self._hash_rank = np.zeros(0, dtype=np.int64)

    # -- rows -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def capacity(self) -> int:
        return len(self.available)

    def find(self, item_id: str) -> int | None:
        """The item's row, or None if this store has never seen it."""
        return self.row_of.get(item_id)

    def row(self, item_id: str) -> int:
        """The item's row, handing out the next one for an item seen the first time."""
        row = self.row_of.get(item_id)
        if row is None:
            row = self._add(item_id)
        return row

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of many items (new ones added), as an int64 array."""
        get = self.row_of.get
        out = [get(i) for i in item_ids]
        if None in out:
            out = [r if r is not None else self.row(i) for r, i in zip(out, item_ids, strict=True)]
        return np.asarray(out, dtype=np.int64)

    def hash_rank(self) -> np.ndarray:
        """Each row's place in the order lists break ties in (tiebreak hash, then row).

        Kernels sort thousands of candidates by it with one pass over a range
        instead of a comparison sort. Worked out again once the store has grown
        by 1% (at least 64 rows); rows added since have no place (the array is
        shorter), and a sort that meets one falls back to comparing hashes.
        """
        n = len(self.ids)
        if n - len(self._hash_rank) > max(64, n // 100) or (n and not len(self._hash_rank)):
            order = np.lexsort((np.arange(n), self.tiebreak[:n]))
            rank = np.empty(n, dtype=np.int64)
            rank[order] = np.arange(n)
            self._hash_rank = rank
        return self._hash_rank

    def _add(self, item_id: str) -> int:
        row = len(self.ids)
        if row == self.capacity:
            self._grow(2 * row)
        self.ids.append(item_id)
        self.items.append(None)
        self.row_of[item_id] = row
        self.tiebreak[row] = tiebreak_of(item_id)
        return row

    def _grow(self, cap: int) -> None:
        n = self.capacity

        def grown(a: np.ndarray, fill: object) -> np.ndarray:
            out = np.full((cap, *a.shape[1:]), fill, dtype=a.dtype)
            out[:n] = a
            return out

        self.available = grown(self.available, True)
        self.price = grown(self.price, np.nan)
        self.cats = grown(self.cats, -1)
        self.leaf = grown(self.leaf, -1)
        self.tiebreak = grown(self.tiebreak, 0)

    # -- catalog --------------------------------------------------------------

    def category_id(self, name: str) -> int:
        cid = self.category_ids.get(name)
        if cid is None:
            cid = self.category_ids[name] = len(self.category_names)
            self.category_names.append(name)
        return cid

    def category_name(self, cid: int) -> str | None:
        return self.category_names[cid] if 0 <= cid < len(self.category_names) else None

    def upsert(self, item: CatalogItem) -> int:
        """A catalog record: the item's attributes and availability; returns its row."""
        row = self.row(item.item_id)
        self.in_catalog += self.items[row] is None
        self.items[row] = item
        self.available[row] = item.available
        self.price[row] = np.nan if item.price is None else float(item.price)
        names = item.category
        if len(names) > self.max_categories:  # the first ones and the leaf
            names = (*names[: self.max_categories - 1], names[-1])
        ids = [self.category_id(c) for c in names]
        self._set_categories(row, ids)
        return row

    def _set_categories(self, row: int, ids: list[int]) -> None:
        old = [int(c) for c in self.cats[row] if c >= 0]
        if old == ids:
            return
        for c in old:
            self.members[c].discard(row)
            self.member_changes[c] = self.member_changes.get(c, 0) + 1
        for c in ids:
            self.members.setdefault(c, set()).add(row)
            self.member_changes[c] = self.member_changes.get(c, 0) + 1
        self.cats[row] = -1
        self.cats[row, : len(ids)] = ids
        self.leaf[row] = ids[-1] if ids else -1

    def remove(self, item_id: str) -> None:
        """A tombstone: the item is gone (it keeps its row, unavailable, attributes cleared)."""
        row = self.row(item_id)
        self.in_catalog -= self.items[row] is not None
        self.items[row] = None
        self.available[row] = False
        self.price[row] = np.nan
        self._set_categories(row, [])

    def categories(self, row: int) -> tuple[str, ...]:
        item = self.items[row]
        return item.category if item is not None else ()
