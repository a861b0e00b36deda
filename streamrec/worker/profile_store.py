"""The worker's profile store: a Faust table, with a bounded cache of decoded profiles.

Reads hit the cache, then the table's local store (RocksDB or memory, on the
right partition). Writes go to the cache and the local store, and queue a
changelog record that the worker sends on the raw producer path: the same
store, changelog topic and recovery as `table[key] = value`, without Faust's
per-write machinery, which measured ~40% of the worker's CPU.

The cache is an LRU of `max_cached` profiles (STREAMREC_PROFILE_CACHE_SIZE): a
decoded profile with 50 recent items is ~10-20 kB of Python objects, so an
unbounded cache grew the worker by ~2 MB per 1,000 new users. It is dropped on
every rebalance, so a partition that moves away and back is read again from
the table. A stored profile that cannot be read as written is repaired on read
(`Profile.from_bytes`) and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamrec.core.lru import LRUCache
from streamrec.core.profile import Profile
from streamrec.worker.faust_tuning import as_current_event


class TableProfileStore:
    def __init__(self, table: Any, max_cached: int = 20_000) -> None:
        self.table = table
        self.cache: LRUCache[Profile] = LRUCache(max_cached)
        #: Changelog records to send: (key, profile bytes, or None for a tombstone, partition).
        self.pending: list[tuple[bytes, bytes | None, int]] = []
        #: Stored profiles repaired on read since the last `take_repaired`.
        self.repaired = 0
        self._event_of: dict[int, Any] = {}

    def begin_batch(self, events: Sequence[Any]) -> None:
        # One event per partition is enough: Faust only reads its partition.
        self._event_of = {ev.message.partition: ev for ev in events}

    def get(self, user: str, partition: int) -> Profile | None:
        profile = self.cache.get(user)
        if profile is not None:
            return profile
        with as_current_event(self._event_of[partition]):
            raw = self.table.data.get(user.encode())
        if raw is None:
            return None
        profile, repaired = Profile.from_bytes(raw, user)
        self.repaired += repaired
        return profile

    def put(self, user: str, profile: Profile, partition: int) -> None:
        self.cache.put(user, profile)
        key, value = user.encode(), profile.to_bytes()
        with as_current_event(self._event_of[partition]):
            self.table.data[key] = value
        self.pending.append((key, value, partition))

    def delete(self, user: str, partition: int) -> None:
        """Erasure: gone from the cache and the local store; a tombstone for the changelog."""
        self.cache.pop(user)
        key = user.encode()
        with as_current_event(self._event_of[partition]):
            if key in self.table.data:
                del self.table.data[key]
        self.pending.append((key, None, partition))

    def take_pending(self) -> list[tuple[bytes, bytes | None, int]]:
        pending, self.pending = self.pending, []
        return pending

    def take_repaired(self) -> int:
        n, self.repaired = self.repaired, 0
        return n

    def clear_cache(self) -> None:
        self.cache.clear()
