"""Everything a user already has: a bounded, compact set of item hashes per profile.

`recent` keeps the newest 50 items with their type and time (for sessions,
co-visitation anchors and interest); a heavy user's older items fall out of
it, and were shown again. The history keeps up to `cap` items of the event
types a shop wants left out for good (by default every interaction; a shop
with re-purchasable goods leaves "purchase" out), as 32-bit hashes of the item
ids: the same in every process (a hash of the item id, not a process's row),
4 bytes an item on the wire (base64 in the profile's JSON, oldest first).

In memory it is two arrays kept in step, so that an event costs a few
microseconds whatever the cap: the hashes in the order they came (the oldest
leaves first) and the same hashes sorted (a binary search per candidate).

A 32-bit hash can collide: with 1,000 items in a history, a candidate is
wrongly left out with probability 1,000 / 2^32 (about 2e-7).

>>> h = ItemHistory()
>>> for item in ("sku-1", "sku-2", "sku-1"):
...     h.add(item, cap=2)
>>> rows = np.array([hash_of(i) for i in ("sku-1", "sku-2", "sku-3")])
>>> h.contains(rows).tolist(), len(h)
([True, True, False], 2)
>>> h.add("sku-3", cap=2); h.contains(rows).tolist()  # full: the oldest (sku-2) leaves
[True, False, True]
>>> ItemHistory.from_wire(h.to_wire()) == h
True
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from streamrec.core.items import tiebreak_of

WIRE = np.dtype("<u4")
MASK = 0xFFFFFFFF


def hash_of(item_id: str) -> int:
    """The item's 32-bit hash: the low bits of the item store's tiebreak hash."""
    return tiebreak_of(item_id) & MASK


class ItemHistory:
    __slots__ = ("order", "sorted")

    def __init__(self, order: np.ndarray | None = None) -> None:
        self.order = np.zeros(0, dtype=WIRE) if order is None else order.astype(WIRE)
        self.sorted = np.sort(self.order)

    @classmethod
    def from_wire(cls, data: str) -> ItemHistory:
        """From the profile's JSON; raises ValueError for what `to_wire` never writes."""
        if not data:
            return cls()
        try:
            raw = binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error as exc:
            raise ValueError(f"history is not base64: {exc}") from None
        if len(raw) % WIRE.itemsize:
            raise ValueError(f"history of {len(raw)} bytes is not whole 32-bit hashes")
        return cls(np.frombuffer(raw, dtype=WIRE))

    def to_wire(self) -> str:
        return base64.b64encode(self.order.tobytes()).decode() if len(self.order) else ""

    def add(self, item_id: str, cap: int) -> None:
        """`item_id` becomes the newest entry (moved there if it was in). At most `cap`
        entries: when full, the oldest tenth of them leaves."""
        h = hash_of(item_id)
        order, srt = self.order, self.sorted
        n = len(order)
        if n and order[-1] == h:
            return  # the newest already: repeated events on one item
        at = int(srt.searchsorted(h))
        if at < n and srt[at] == h:  # already in: move it to the newest place
            order = order[order != h]
        else:
            srt = np.concatenate((srt[:at], np.asarray([h], dtype=WIRE), srt[at:]))
        if len(order) >= cap:  # full: the oldest tenth leaves at once (one copy, not cap)
            drop = len(order) - cap + 1 + cap // 10
            gone, order = order[:drop], order[drop:]
            keep = np.ones(len(srt), dtype=bool)
            keep[srt.searchsorted(gone)] = False
            srt = srt[keep]
        self.order = np.concatenate((order, np.asarray([h], dtype=WIRE)))
        self.sorted = srt

    def contains(self, row_hashes: np.ndarray) -> np.ndarray:
        """Which items are in it, given the item store's tiebreak hashes of their rows."""
        srt = self.sorted
        if not len(srt):
            return np.zeros(len(row_hashes), dtype=bool)
        x = (np.asarray(row_hashes, dtype=np.int64) & MASK).astype(WIRE)
        at = np.searchsorted(srt, x)
        at[at == len(srt)] = 0
        return srt[at] == x

    def __len__(self) -> int:
        return len(self.order)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemHistory) and np.array_equal(self.order, other.order)

    def __repr__(self) -> str:
        return f"ItemHistory({len(self.order)} items)"
