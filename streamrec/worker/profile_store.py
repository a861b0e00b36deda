"""The worker's profile store: a Faust table, with a bounded cache of decoded profiles.

Reads hit the cache, then the profiles written but not yet stored, then the
table's local store (RocksDB or memory, on the right partition). A batch's
writes go to the cache at once and are *stored* (the local store, and a
changelog record the worker sends on the raw producer path) only when the
worker says so: once the batch's learning log is on the broker
(`Worker._settle`). A profile that has applied an event is therefore never
durable before the learning that event taught, so a crash can never leave a
profile that says "applied" beside learned state that never had it. The same
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
from dataclasses import dataclass
from typing import Any

from streamrec.core.lru import LRUCache
from streamrec.core.profile import Profile
from streamrec.worker.faust_tuning import as_current_event


@dataclass(frozen=True, slots=True)
class Write:
    """One profile a batch wrote (None: deleted), to store once its learning is delivered."""

    user: str
    value: bytes | None
    partition: int
    #: An event of the user's partition: Faust picks the store's partition from it.
    event: Any


class TableProfileStore:
    def __init__(self, table: Any, max_cached: int = 20_000) -> None:
        self.table = table
        self.cache: LRUCache[Profile] = LRUCache(max_cached)
        #: The current batch's writes (`take_pending`).
        self.pending: list[Write] = []
        #: Profiles written by batches whose writes are not stored yet: user -> the
        #: newest bytes (None: deleted). Read before the table, whatever the cache holds.
        self.unstored: dict[str, bytes | None] = {}
        #: Stored profiles repaired on read since the last `take_repaired`.
        self.repaired = 0
        self._event_of: dict[int, Any] = {}

    def persisted(self, fut: Any) -> None:
        """A changelog record was delivered: remember its offset in the local store, as
        Faust's own table writes do, so a restarted node resumes recovery there instead
        of re-reading the whole changelog."""
        if not fut.cancelled() and fut.exception() is None:
            md = fut.result()
            self.table.data.set_persisted_offset(md.topic_partition, md.offset)

    def begin_batch(self, events: Sequence[Any]) -> None:
        # One event per partition is enough: Faust only reads its partition.
        self._event_of = {ev.message.partition: ev for ev in events}

    def get(self, user: str, partition: int) -> Profile | None:
        profile = self.cache.get(user)
        if profile is not None:
            return profile
        if user in self.unstored:  # written by a batch still on its way: never stale
            raw = self.unstored[user]
            return None if raw is None else Profile.from_bytes(raw, user)[0]
        with as_current_event(self._event_of[partition]):
            raw = self.table.data.get(user.encode())
        if raw is None:
            return None
        profile, repaired = Profile.from_bytes(raw, user)
        self.repaired += repaired
        return profile

    def put(self, user: str, profile: Profile, partition: int) -> None:
        self.cache.put(user, profile)
        value = profile.to_bytes()
        self.unstored[user] = value
        self.pending.append(Write(user, value, partition, self._event_of[partition]))

    def delete(self, user: str, partition: int) -> None:
        """Erasure: gone from the cache now; from the local store, with a changelog
        tombstone, when the batch's writes are stored."""
        self.cache.pop(user)
        self.unstored[user] = None
        self.pending.append(Write(user, None, partition, self._event_of[partition]))

    def take_pending(self) -> list[Write]:
        """The current batch's writes, to `store` once its learning is delivered."""
        pending, self.pending = self.pending, []
        return pending

    def store(self, writes: Sequence[Write]) -> list[tuple[bytes, bytes | None, int]]:
        """Put a batch's writes into the local store; the changelog records to send
        (key, value or None for a tombstone, partition), in order."""
        out = []
        for w in writes:
            key = w.user.encode()
            with as_current_event(w.event):
                if w.value is not None:
                    self.table.data[key] = w.value
                elif key in self.table.data:
                    del self.table.data[key]
            if self.unstored.get(w.user, b"") is w.value:  # no later batch wrote it since
                del self.unstored[w.user]
            out.append((key, w.value, w.partition))
        return out

    def take_repaired(self) -> int:
        n, self.repaired = self.repaired, 0
        return n

    def clear_cache(self) -> None:
        self.cache.clear()
