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
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from streamrec.core.ingest import Rejection, parse_document
from streamrec.core.items import ItemStore
from streamrec.core.retrieval.index import HNSW_ABOVE, Hits, ItemIndex
from streamrec.records import CatalogEmbedding

log = logging.getLogger(__name__)

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
    """Item vectors per encoder version, keyed by item-store row; searches the active one."""

    def __init__(
        self, partitions: int, *, store: ItemStore | None = None, hnsw_above: int = HNSW_ABOVE
    ) -> None:
        self.partitions = partitions
        self.store = store if store is not None else ItemStore()
        self.hnsw_above = hnsw_above
        self._spaces: dict[str, ItemIndex] = {}
        #: version -> {partition: ts of its completion marker}
        self._complete: dict[str, dict[int, int]] = {}
        self.active_version: str | None = None
        #: Unavailable items' vectors, out of the indexes until they are back.
        self._parked: dict[int, dict[str, np.ndarray]] = {}  # row -> version -> vector
        self._bulk = False

    def _space(self, version: str, dim: int) -> ItemIndex:
        space = self._spaces.get(version)
        if space is None:
            space = self._spaces[version] = ItemIndex(dim, hnsw_above=self.hnsw_above)
            space.deferred = self._bulk
        return space

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Many updates at once (the catalog read back at start-up): the indexes are
        built once at the end (those that changed), not updated per vector."""
        self._bulk = True
        for space in self._spaces.values():
            space.deferred = True
        try:
            yield
        finally:
            self._bulk = False
            for space in self._spaces.values():
                if space.dirty:
                    space.rebuild()
                space.deferred = False

    def upsert(self, item_id: str, version: str, vector: np.ndarray) -> None:
        vector = np.asarray(vector, dtype=np.float32)
        row = self.store.row(item_id)
        parked = self._parked.get(row)
        if parked is not None:
            parked[version] = vector
            return
        self._space(version, int(vector.shape[-1])).upsert(row, vector)

    def add_many(self, item_ids: Sequence[str], version: str, vectors: np.ndarray) -> None:
        self._space(version, int(vectors.shape[-1])).add_many(self.store.rows(item_ids), vectors)

    def remove(self, item_id: str) -> None:
        """The item is gone from the catalog (tombstone): drop it from every version."""
        row = self.store.find(item_id)
        if row is None:
            return
        for space in self._spaces.values():
            space.remove(row)
        self._parked.pop(row, None)

    def set_available(self, item_id: str, available: bool) -> None:
        """Unavailable items leave the indexes (searches never spend hits on them) and
        come back with their vectors when the catalog says they are available again."""
        row = self.store.row(item_id)
        parked_all = self._parked
        if not available:
            if row in parked_all:
                return
            parked: dict[str, np.ndarray] = {}
            for version, space in self._spaces.items():
                vec = space.get(row)
                if vec is not None:
                    parked[version] = vec.copy()
                    space.remove(row)
            parked_all[row] = parked
            return
        for version, vec in parked_all.pop(row, {}).items():
            back = self._spaces.get(version)
            if back is not None:
                back.upsert(row, vec)

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
        row = self.store.find(item_id)
        return None if space is None or row is None else space.get(row)

    def search_rows(self, queries: np.ndarray, k: int) -> list[Hits]:
        """Top-k (rows, similarities) per query in the active version: one FAISS call."""
        space = self._active()
        queries = np.asarray(queries)
        if space is None or queries.shape[-1] != space.dim:
            return [(np.zeros(0, dtype=np.int64), np.zeros(0))] * len(queries)
        return space.search(queries, k)

    def search(
        self, query: np.ndarray, k: int, exclude: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        """Top-k (item id, similarity) for one query, best first (tools and tests)."""
        skip = {r for r in map(self.store.find, exclude) if r is not None}
        rows, scores = self.search_rows(np.asarray(query)[None, :], k + len(skip))[0]
        ids = self.store.ids
        hits = [(ids[r], s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]
        return [h for h, r in zip(hits, rows.tolist(), strict=True) if r not in skip][:k]

    def similarities(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Cosine of `query` with each row's active-version vector (0 without one)."""
        space = self._active()
        if space is None or query.shape[-1] != space.dim:
            return np.zeros(len(rows), dtype=np.float64)
        return space.similarities(rows, query)

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

    # -- state ----------------------------------------------------------------

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(header, arrays) of every space: rows as positions in the store's id list
        (the caller saves `store.ids`), vectors, completion markers, parked vectors."""
        header: dict[str, Any] = {
            "active_version": self.active_version,
            "partitions": self.partitions,
            "complete": {
                v: {str(p): ts for p, ts in parts.items()} for v, parts in self._complete.items()
            },
            "spaces": [],
        }
        arrays: dict[str, np.ndarray] = {}
        spaces: list[dict[str, Any]] = []
        for i, (version, space) in enumerate(self._spaces.items()):
            scalars, space_arrays = space.state()
            spaces.append({"version": version, **scalars})
            for name, arr in space_arrays.items():
                arrays[f"space{i}.{name}"] = np.asarray(arr)
        header["spaces"] = spaces
        parked = [(row, v, vec) for row, by in self._parked.items() for v, vec in by.items()]
        header["parked_versions"] = [v for _r, v, _x in parked]
        arrays["parked.rows"] = np.array([r for r, _v, _x in parked], dtype=np.int64)
        for j, (_r, _v, vec) in enumerate(parked):
            arrays[f"parked{j}"] = vec
        return header, arrays

    def restore(
        self, header: dict[str, Any], arrays: dict[str, np.ndarray], rows: np.ndarray
    ) -> None:
        """The spaces of a `state`, saved rows mapped onto this store's (`rows[position]`)."""
        self._spaces = {}
        for i, scalars in enumerate(header["spaces"]):
            space_arrays = {k.split(".", 1)[1]: v for k, v in arrays.items()
                            if k.startswith(f"space{i}.")}  # fmt: skip
            self._spaces[scalars["version"]] = ItemIndex.from_state(
                scalars, space_arrays, rows[space_arrays["rows"]], hnsw_above=self.hnsw_above
            )
        self._complete = {
            v: {int(p): int(ts) for p, ts in parts.items()}
            for v, parts in header["complete"].items()
        }
        self.active_version = header["active_version"]
        self._parked = {}
        versions = header.get("parked_versions", [])
        for j, (pos, version) in enumerate(
            zip(arrays["parked.rows"].tolist(), versions, strict=True)
        ):
            self._parked.setdefault(int(rows[pos]), {})[version] = arrays[f"parked{j}"]


def apply_embedding_record(vectors: ItemVectors, r: Any, validate: Any) -> str | None:
    """One catalog.embeddings record into `vectors`; returns what is wrong with it, if anything.

    The scorer writes this topic, not users: a bad record is a bug to log, not input.
    """
    if r.value is None:
        if r.key is not None:
            vectors.remove(r.key.decode("utf-8", "replace"))
        return None
    doc = parse_document(r.value, validate, "catalog embedding")
    if isinstance(doc, Rejection):
        return f"unreadable catalog.embeddings record at offset {r.offset}: {doc.detail}"
    emb = CatalogEmbedding.from_dict(doc)
    if emb.kind == "complete":
        before = vectors.active_version
        vectors.mark_complete(emb.model_version, int(emb.partition or 0), emb.ts)
        if vectors.active_version != before:
            log.info("item vectors switched to %s: %s", vectors.active_version, vectors.stats())
        return None
    try:
        vec = decode_vectors(emb.vector or "", int(emb.dim or 0))[0]
    except (ValueError, IndexError) as exc:
        return f"bad vector for item {emb.item_id}: {exc}"
    vectors.upsert(str(emb.item_id), emb.model_version, vec)
    return None
