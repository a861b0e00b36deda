"""Item and query vectors on the rank side: compact wire format and a versioned store.

Vectors travel as little-endian float16, base64 in JSON: 384 dims are 768
bytes (1,024 in base64) instead of ~3.5 kB as a JSON float list, and float16
keeps cosine similarities of unit vectors to ~1e-3, far below what ranking
notices.

`ItemVectors` keeps every item vector per encoder version (one FAISS
`ItemIndex` each) and searches only one version at a time: a new version
becomes *active* only when the scorer has marked every catalog partition
complete for it, so retrieval never mixes
vector spaces while a new model's embeddings are being written.

>>> v = np.array([[0.6, 0.8]], dtype=np.float32)
>>> [round(float(x), 3) for x in decode_vectors(encode_vectors(v), dim=2)[0]]
[0.6, 0.8]
>>> store = ItemVectors(partitions=1)
>>> store.upsert("a", "m@1", np.array([1.0, 0.0])); store.upsert("b", "m@1", np.array([0.0, 1.0]))
>>> store.active_version is None  # nothing is searched before the version is complete
True
>>> store.mark_complete("m@1", partition=0, ts=1); store.active_version
'm@1'
>>> [item for item, _ in store.search(np.array([0.9, 0.1]), k=1)]
['a']
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence

import numpy as np

from streamrec.core.index import HNSW_ABOVE, ItemIndex

WIRE_DTYPE = np.dtype("<f2")


def encode_vectors(vectors: np.ndarray) -> str:
    """(n, dim) or (dim,) floats -> base64 of float16 bytes, row after row."""
    return base64.b64encode(np.ascontiguousarray(vectors, dtype=WIRE_DTYPE).tobytes()).decode(
        "ascii"
    )


def decode_vectors(data: str, dim: int) -> np.ndarray:
    """The inverse of `encode_vectors`: an (n, dim) float32 array."""
    raw = base64.b64decode(data, validate=True)
    if dim < 1 or len(raw) % (dim * WIRE_DTYPE.itemsize):
        raise ValueError(f"{len(raw)} bytes is not a whole number of {dim}-dim float16 vectors")
    return np.frombuffer(raw, dtype=WIRE_DTYPE).astype(np.float32).reshape(-1, dim)


class ItemVectors:
    """Item vectors per encoder version; exact inner-product search over the active one."""

    def __init__(self, partitions: int, *, hnsw_above: int = HNSW_ABOVE) -> None:
        self.partitions = partitions
        self.hnsw_above = hnsw_above
        self._spaces: dict[str, ItemIndex] = {}
        #: version -> {partition: ts of its completion marker}
        self._complete: dict[str, dict[int, int]] = {}
        self.active_version: str | None = None
        #: Unavailable items' vectors, out of the indexes until they are back.
        self._parked: dict[str, dict[str, np.ndarray]] = {}  # item -> version -> vector

    def upsert(self, item_id: str, version: str, vector: np.ndarray) -> None:
        vector = np.asarray(vector, dtype=np.float32)
        parked = self._parked.get(item_id)
        if parked is not None:
            parked[version] = vector
            return
        space = self._spaces.get(version)
        if space is None:
            space = ItemIndex(int(vector.shape[-1]), hnsw_above=self.hnsw_above)
            self._spaces[version] = space
        space.upsert(item_id, vector)

    def add_many(self, item_ids: Sequence[str], version: str, vectors: np.ndarray) -> None:
        space = self._spaces.get(version)
        if space is None:
            space = ItemIndex(int(vectors.shape[-1]), hnsw_above=self.hnsw_above)
            self._spaces[version] = space
        space.add_many(item_ids, vectors)

    def remove(self, item_id: str) -> None:
        """The item is gone from the catalog (tombstone): drop it from every version."""
        for space in self._spaces.values():
            space.remove(item_id)
        self._parked.pop(item_id, None)

    def set_available(self, item_id: str, available: bool) -> None:
        """Unavailable items leave the indexes (searches never spend hits on them) and
        come back with their vectors when the catalog says they are available again."""
        parked_all = self._parked
        if not available:
            if item_id in parked_all:
                return
            parked: dict[str, np.ndarray] = {}
            for version, space in self._spaces.items():
                vec = space.get(item_id)
                if vec is not None:
                    parked[version] = vec.copy()
                    space.remove(item_id)
            parked_all[item_id] = parked
            return
        for version, vec in parked_all.pop(item_id, {}).items():
            back = self._spaces.get(version)
            if back is not None:
                back.upsert(item_id, vec)

    def mark_complete(self, version: str, partition: int, ts: int) -> None:
        """The scorer finished `version` for catalog `partition`; may switch versions."""
        self._complete.setdefault(version, {})[partition] = ts
        complete = [
            (max(parts.values()), v)
            for v, parts in self._complete.items()
            if len(parts) >= self.partitions
        ]
        if not complete:
            return
        newest_ts, newest = max(complete)
        if newest == self.active_version:
            return
        self.active_version = newest
        # Spaces completed before the newest are never searched again: free them.
        for v, parts in list(self._complete.items()):
            if v != newest and len(parts) >= self.partitions and max(parts.values()) <= newest_ts:
                self._spaces.pop(v, None)
                del self._complete[v]

    def get(self, item_id: str) -> np.ndarray | None:
        """The item's vector in the active version, if it has one."""
        space = self._active()
        return None if space is None else space.get(item_id)

    def search(
        self, query: np.ndarray, k: int, exclude: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        """Top-k items of the active version by inner product with `query` (unit vectors)."""
        return self.search_batch(np.asarray(query)[None, :], k, [exclude])[0]

    def search_batch(
        self, queries: np.ndarray, k: int, exclude: Sequence[Iterable[str]] | None = None
    ) -> list[list[tuple[str, float]]]:
        """`search` for many queries at once: one FAISS call per micro-batch."""
        space = self._active()
        if space is None or queries.shape[-1] != space.dim:
            return [[] for _ in range(len(queries))]
        return space.search(queries, k, exclude)

    def similarities(self, items: Sequence[str], query: np.ndarray) -> np.ndarray:
        """Cosine of `query` with each item's active-version vector (0 without one)."""
        space = self._active()
        if space is None or query.shape[-1] != space.dim:
            return np.zeros(len(items), dtype=np.float64)
        return space.similarities(items, query)

    def _active(self) -> ItemIndex | None:
        return None if self.active_version is None else self._spaces.get(self.active_version)

    def __len__(self) -> int:
        space = self._active()
        return 0 if space is None else len(space)

    def stats(self) -> dict[str, object]:
        return {
            "active_version": self.active_version,
            "items": {v: len(space) for v, space in self._spaces.items()},
        }
