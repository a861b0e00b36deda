"""The worker's snapshots in its data dir: learned state and item vectors, explicit formats.

* `<app>-learned.npz`: what the recommender learned (`core.snapshot`:
  arrays and a JSON header, versioned), written every
  `STREAMREC_SNAPSHOT_INTERVAL_S` and at shutdown;
  With shared learning on, its header also holds the ledger of source offsets
  the state includes and how far `shared.state` was folded
  (`worker/shared.py`): a restart refolds from there; and with monitoring
  on, each user's last list and open impression (online quality);
* `<app>-vectors.npz`: the item vectors of every encoder version with the
  catalog.embeddings offsets they include, written only when that topic
  moved, so a restart reads on from there instead of re-reading a million
  vectors.

Both carry the item ids their rows refer to and are mapped onto the store on
load. Files are written atomically (write, then rename). A snapshot written
by an earlier version as a pickle (`<app>-recommender.pkl`) is migrated once
into the new format and renamed `.migrated`; the old pickled item vectors are
not (they are re-read from catalog.embeddings). An unreadable snapshot is
logged and ignored: the worker relearns.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from streamrec.core import snapshot
from streamrec.core.engine import Engine
from streamrec.settings import Settings

log = logging.getLogger(__name__)

VECTORS_FORMAT = "streamrec-item-vectors"
VECTORS_VERSION = 1
#: Arrays of a learned-state snapshot that hold users (pseudonyms): the ranker's
#: pending offers and their expiry queue, the blend tuner's kept tops (monitoring has
#: its own header section).
PER_USER_ARRAYS = ("ranker.offers.", "ranker.expiry.", "tuner.pending")


class Snapshots:
    def __init__(self, settings: Settings) -> None:
        data = Path(settings.data_dir)
        self.learned_path = data / f"{settings.app_id}-learned.npz"
        self.vectors_path = data / f"{settings.app_id}-vectors.npz"
        self.legacy_path = data / f"{settings.app_id}-recommender.pkl"
        self._vectors_written: dict[int, int] = {}
        #: shared.state partition -> next offset the restored state has not folded.
        self.shared_offsets: dict[int, int] = {}
        #: The ranker journal's generation that continues the restored snapshot
        #: (`worker/ranker_journal.py`; 0: none).
        self.journal_gen = 0

    def load_learned(self, engine: Engine) -> bool:
        """Restore what `engine`'s recommender learned; True if a snapshot was found."""
        path = self.learned_path
        try:
            if path.is_file():
                self.restore(engine, path.read_bytes())
            elif self.legacy_path.is_file():
                snapshot.migrate_pickled(self.legacy_path.read_bytes(), engine.recommender)
                self._restore_shared(engine, None)  # what it holds is not this worker's to share
                self.write(engine, None)
                os.replace(self.legacy_path, self.legacy_path.with_suffix(".pkl.migrated"))
                log.info("migrated %s to %s", self.legacy_path, path)
            else:
                return False
        except Exception as exc:
            log.warning("ignoring unreadable snapshot %s: %s", path, exc)
            return False
        log.info("restored learned state from %s: %s", path, engine.recommender.stats())
        return True

    def restore(self, engine: Engine, blob: bytes) -> None:
        """Put a learned-state snapshot (a file's, or the shared checkpoint's) into `engine`."""
        header, arrays = snapshot.from_bytes(blob)
        snapshot.restore(engine.recommender, header, arrays)
        self.journal_gen = int(header.get("ranker_journal", 0))
        self._restore_shared(engine, header.get("shared"))
        if engine.monitor is not None and "monitor" in header:
            engine.monitor.quality.restore(header["monitor"], _section(arrays, "monitor"))

    def _restore_shared(self, engine: Engine, shared: dict[str, Any] | None) -> None:
        """The ledger of source offsets the state holds, and where shared.state was read to."""
        if engine.sharing is None:
            return
        engine.sharing.restore(shared)
        self.shared_offsets.clear()
        if shared is not None:
            self.shared_offsets.update({int(p): int(o) for p, o in shared["offsets"].items()})

    def load_vectors(self, engine: Engine) -> dict[int, int]:
        """Restore the item vectors; returns the catalog.embeddings offsets they include."""
        path = self.vectors_path
        if not path.is_file():
            return {}
        try:
            header, arrays = snapshot.from_bytes(path.read_bytes())
            if (header.get("format"), header.get("version")) != (VECTORS_FORMAT, VECTORS_VERSION):
                raise snapshot.SnapshotError(f"not item vectors of version {VECTORS_VERSION}")
            rows = engine.items.rows(snapshot.unpack_ids(arrays["ids"], arrays["ids.ends"]))
            engine.item_vectors.restore(header["vectors"], arrays, rows)
        except Exception as exc:
            log.warning("ignoring unreadable item-vector snapshot %s: %s", path, exc)
            return {}
        offsets = {int(p): int(o) for p, o in header["offsets"].items()}
        self._vectors_written = dict(offsets)
        log.info("restored item vectors from %s: %s", path, engine.item_vectors.stats())
        return offsets

    def encode(self, engine: Engine, users: bool = True, journal_gen: int | None = None) -> bytes:
        """The learned-state snapshot; without `users`, none of the per-user state (each
        user's last list, pending offers): what the shared checkpoint publishes.
        `journal_gen`: the ranker journal's generation that continues it."""
        header, arrays = snapshot.capture(engine.recommender)
        if not users:
            arrays = {k: v for k, v in arrays.items() if not k.startswith(PER_USER_ARRAYS)}
            if "tuner" in header:  # its kept tops are per user too
                header["tuner"] = {**header["tuner"], "pending_users": [],
                                   "pending_generations": []}  # fmt: skip
        elif engine.monitor is not None:  # online quality goes on counting after a restart
            header["monitor"], quality = engine.monitor.quality.state()
            arrays.update({f"monitor.{k}": v for k, v in quality.items()})
        if users and journal_gen is not None:
            header["ranker_journal"] = journal_gen
        if engine.sharing is not None:
            # Read back with the state it describes: both are taken in one step of the loop.
            header["shared"] = {
                **engine.sharing.state(),
                "offsets": {str(p): o for p, o in self.shared_offsets.items()},
            }
        return snapshot.to_bytes(header, arrays)

    def write(
        self,
        engine: Engine,
        embedding_offsets: dict[int, int] | None,
        journal_gen: int | None = None,
    ) -> None:
        write_atomic(self.learned_path, self.encode(engine, journal_gen=journal_gen))
        # Item vectors are large (100k x 384 floats plus the index: hundreds of MB) and
        # change only with the catalog: written only when catalog.embeddings moved.
        if embedding_offsets is None or embedding_offsets == self._vectors_written:
            return
        vec_header, vec_arrays = engine.item_vectors.state()
        ids, ends = snapshot.pack_ids(engine.items.ids)
        head: dict[str, Any] = {
            "format": VECTORS_FORMAT,
            "version": VECTORS_VERSION,
            "offsets": {str(p): o for p, o in embedding_offsets.items()},
            "vectors": vec_header,
        }
        blob = snapshot.to_bytes(head, {"ids": ids, "ids.ends": ends, **vec_arrays})
        write_atomic(self.vectors_path, blob)
        self._vectors_written = dict(embedding_offsets)


def _section(arrays: dict[str, Any], name: str) -> dict[str, Any]:
    prefix = f"{name}."
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")  # workers may share a data dir
    tmp.write_bytes(data)
    os.replace(tmp, path)
