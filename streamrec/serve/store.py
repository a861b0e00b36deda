"""The serving replica's own copy of the `recommendations` topic, on disk.

Each `streamrec serve` replica follows the compacted topic into an embedded
RocksDB store (rocksdict): key = the user's pseudonym, value = the list's
bytes as published. The topic offsets it has applied are written in the same
atomic batch as the lists, so a restarted replica serves at once from its
store and goes on reading from exactly where it stopped; memory stays bounded
(a block cache and two write buffers) whatever the number of users.

Format 1 (`FORMAT`): user keys are the pseudonyms as UTF-8 (they start with
"u_"); the two meta keys start with a NUL byte, so they never meet a user key.

>>> import tempfile
>>> with ListStore(tempfile.mkdtemp()) as s:
...     written = s.apply([(b"u_1", b'{"items": []}'), (b"u_2", b"{}"), (b"u_2", None)],
...                       "recs", {0: 3})
...     written, s.get("u_1"), s.get("u_2"), s.offsets("recs")
(3, b'{"items": []}', None, {0: 3})
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, DBCompressionType, Options, Rdict, WriteBatch

from streamrec import serde
from streamrec.errors import ConfigError

#: Bumped when the layout changes; an older store is rebuilt from the topic.
FORMAT = 1
_FORMAT_KEY = b"\x00format"
_OFFSETS_KEY = b"\x00offsets"


class ListStore:
    """Latest list per pseudonym, plus the topic offsets they reflect."""

    def __init__(self, path: str | Path, *, cache_mb: int = 32, write_buffer_mb: int = 8) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        # Lists are JSON with repeated field names: zstd shrinks them ~4x on disk.
        opts.set_compression_type(DBCompressionType.zstd())
        table = BlockBasedOptions()
        table.set_block_cache(Cache(cache_mb << 20))
        opts.set_block_based_table_factory(table)
        opts.set_write_buffer_size(write_buffer_mb << 20)
        opts.set_max_write_buffer_number(2)
        self._opts = opts
        try:
            self._db = Rdict(str(self.path), opts)
        except Exception as exc:
            raise ConfigError(
                f"cannot open the list store at {self.path}: {exc}. Another `streamrec serve` "
                "may be using it: give each replica its own STREAMREC_SERVE_STORE_DIR"
            ) from exc
        found = self._db.get(_FORMAT_KEY)
        if found is not None and int(found) != FORMAT:
            self.clear()  # another layout: the topic has everything to rebuild it
        self._db[_FORMAT_KEY] = str(FORMAT).encode()

    def get(self, user: str) -> bytes | None:
        value: bytes | None = self._db.get(user.encode())
        return value

    def apply(
        self,
        records: Iterable[tuple[bytes, bytes | None]],
        topic: str,
        offsets: dict[int, int],
    ) -> int:
        """Write lists (None: a tombstone, the user was erased) and the offsets after
        them, atomically. Returns how many records were written."""
        batch = WriteBatch(raw_mode=True)
        n = 0
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
            n += 1
        saved = self.offsets(topic) or {}
        saved.update(offsets)
        doc = {"topic": topic, "offsets": {str(p): o for p, o in saved.items()}}
        batch.put(_OFFSETS_KEY, serde.dumps(doc))
        self._db.write(batch)
        return n

    def offsets(self, topic: str) -> dict[int, int] | None:
        """Partition -> next offset to read, if this store follows `topic`."""
        raw = self._db.get(_OFFSETS_KEY)
        if raw is None:
            return None
        doc = serde.loads(raw)
        if doc.get("topic") != topic:
            return None
        return {int(p): int(o) for p, o in doc["offsets"].items()}

    def clear(self) -> None:
        """Forget every list and offset (the topic was recreated: read it again)."""
        self._db.delete_range(b"\x00", b"\xff")  # every key there can be: meta and users

    def users(self) -> int:
        """RocksDB's estimate of the number of users held (cheap)."""
        n = self._db.property_int_value("rocksdb.estimate-num-keys") or 0
        return max(0, n - 2)

    def disk_bytes(self) -> int:
        """Bytes of the store's files on disk now (SST, WAL, manifest)."""
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def flush(self) -> None:
        self._db.flush()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ListStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
