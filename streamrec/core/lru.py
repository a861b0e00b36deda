"""An LRU cache with hit counters: query embeddings (shop queries repeat heavily).

>>> c = LRUCache(capacity=2)
>>> c.put("tv", b"v1"); c.put("radio", b"v2"); c.get("tv")
b'v1'
>>> c.put("lamp", b"v3"); c.get("radio") is None, c.hits, c.misses
(True, 1, 1)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("cache capacity must be >= 1")
        self.capacity = capacity
        self._data: OrderedDict[str, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> V | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def peek(self, key: str) -> V | None:
        """Look up without counting or refreshing the entry."""
        return self._data.get(key)

    def put(self, key: str, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.capacity:
            self._data.popitem(last=False)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def pop(self, key: str) -> V | None:
        return self._data.pop(key, None)

    def clear(self) -> None:
        """Drop every entry (a new model version makes them all stale)."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
