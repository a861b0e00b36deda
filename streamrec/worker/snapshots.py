"""The worker's snapshots in its data dir: learned item state and the item vectors.

Written every `STREAMREC_SNAPSHOT_INTERVAL_S` and at shutdown, atomically
(write, then rename); read at start-up. The item vectors are written only
when catalog.embeddings moved, with the offsets they include, so a restart
reads on from there instead of re-reading a million vectors. An unreadable
snapshot is logged and ignored: the worker relearns.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

from streamrec.core.engine import Engine
from streamrec.core.recommender import Recommender
from streamrec.core.vectors import ItemVectors
from streamrec.settings import Settings

log = logging.getLogger(__name__)


class Snapshots:
    def __init__(self, settings: Settings) -> None:
        data = Path(settings.data_dir)
        self.recommender_path = data / f"{settings.app_id}-recommender.pkl"
        self.vectors_path = data / f"{settings.app_id}-item-vectors.pkl"
        self._vectors_written: dict[int, int] = {}

    def load_recommender(self) -> Recommender | None:
        path = self.recommender_path
        if not path.is_file():
            return None
        try:
            rec = Recommender.restore(path.read_bytes())
        except Exception as exc:
            log.warning("ignoring unreadable recommender snapshot %s: %s", path, exc)
            return None
        log.info("restored recommender snapshot %s: %s", path, rec.stats())
        return rec

    def load_vectors(self) -> tuple[ItemVectors, dict[int, int]] | None:
        """(item vectors, the catalog.embeddings offsets they include), if there are any."""
        path = self.vectors_path
        if not path.is_file():
            return None
        try:
            state = pickle.loads(path.read_bytes())
            vectors, offsets = state["vectors"], dict(state["offsets"])
        except Exception as exc:
            log.warning("ignoring unreadable item-vector snapshot %s: %s", path, exc)
            return None
        log.info("restored item-vector snapshot %s: %s", path, vectors.stats())
        self._vectors_written = dict(offsets)
        return vectors, offsets

    def write(self, engine: Engine, embedding_offsets: dict[int, int]) -> None:
        write_atomic(self.recommender_path, engine.recommender.snapshot())
        # Item vectors are large (100k x 384 floats plus the index: hundreds of MB) and
        # change only with the catalog: written only when catalog.embeddings moved.
        if embedding_offsets == self._vectors_written:
            return
        state = {"offsets": dict(embedding_offsets), "vectors": engine.item_vectors}
        write_atomic(self.vectors_path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        self._vectors_written = dict(embedding_offsets)


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
