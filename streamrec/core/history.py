"""Everything a user already has: a bounded, compact set of item hashes per profile.

`recent` keeps the newest 50 items with their type and time (for sessions,
co-visitation anchors and interest); a heavy user's older items fall out of
it, and were shown again. The history keeps up to `cap` items of the event
types a shop wants left out for good (by default every interaction; a shop
with re-purchasable goods leaves "purchase" out), as 32-bit hashes of the item
ids, oldest first: 4 bytes an item on the wire (base64 in the profile's JSON),
the same in every process (the hash of the item id, not a process's row).

A 32-bit hash can collide: with 1,000 items in a history, a candidate is
wrongly left out with probability 1,000 / 2^32 (about 2e-7).

>>> h = History.add("", "sku-1", cap=2)
>>> h = History.add(h, "sku-2", cap=2); h = History.add(h, "sku-1", cap=2)
>>> [History.hash_of(i) in History.decode(h) for i in ("sku-1", "sku-2", "sku-3")]
[True, True, False]
>>> len(History.decode(History.add(h, "sku-3", cap=2)))  # the oldest (sku-2) leaves
2
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from streamrec.core.items import tiebreak_of

WIRE = np.dtype("<u4")
MASK = 0xFFFFFFFF


class History:
    @staticmethod
    def hash_of(item_id: str) -> int:
        """The item's 32-bit hash: the low bits of the item store's tiebreak hash."""
        return tiebreak_of(item_id) & MASK

    @staticmethod
    def decode(data: str) -> np.ndarray:
        """The hashes, oldest first (empty for "" or anything unreadable)."""
        if not data:
            return np.zeros(0, dtype=WIRE)
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return np.zeros(0, dtype=WIRE)
        return np.frombuffer(raw[: len(raw) - len(raw) % 4], dtype=WIRE)

    @staticmethod
    def encode(hashes: np.ndarray) -> str:
        return base64.b64encode(np.ascontiguousarray(hashes, dtype=WIRE).tobytes()).decode()

    @staticmethod
    def add(data: str, item_id: str, cap: int) -> str:
        """`data` with `item_id` as its newest entry (moved there if it was in), at most
        `cap` entries (the oldest leave first)."""
        h = History.hash_of(item_id)
        hashes = History.decode(data)
        if len(hashes) and hashes[-1] == h:
            return data  # the newest already: the common case of repeated events
        hashes = hashes[hashes != h]
        keep = max(0, cap - 1)
        hashes = hashes[len(hashes) - keep :] if len(hashes) > keep else hashes
        return History.encode(np.append(hashes, np.asarray([h], dtype=WIRE)))

    @staticmethod
    def contains(data: str, row_hashes: np.ndarray) -> np.ndarray:
        """Which of `row_hashes` (the item store's tiebreak column, any width) are in it."""
        hashes = History.decode(data)
        if not len(hashes):
            return np.zeros(len(row_hashes), dtype=bool)
        return np.isin(np.asarray(row_hashes, dtype=np.int64) & MASK, hashes.astype(np.int64))
