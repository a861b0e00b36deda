"""The shared checkpoint: the whole shared learned state on a compacted topic.

`shared.state` is a time-retained log of deltas: a worker with a snapshot of
its own refolds it from where the snapshot stopped, but a worker with none (a
new host, a lost volume) would refold only what the log still holds, and miss
everything older than its retention. So every
`STREAMREC_SHARE_CHECKPOINT_INTERVAL_S` the worker that owns partition 0 of
`storefront.events` publishes its learned-state snapshot (the format of
`worker/snapshots.py`, without per-user state: no monitoring, no pending
offers) on `shared.checkpoint`:

    chunk/<gen>/0 .. chunk/<gen>/n-1   slices of the snapshot (256 KiB each)
    manifest                           gen, chunk count, size, sha256
    tombstones                         for the chunks of this writer's earlier gens

The manifest goes last, and only once every chunk is on the topic, so a reader
never finds a manifest whose chunks are missing; compaction keeps the latest
manifest and its chunks. A worker that starts with no snapshot reads the topic
once (`read_checkpoint`), restores it, and folds `shared.state` on from the
offsets it holds: the ledger in it keeps every delta counted once.

Every worker holds the same shared state, so which one writes does not matter;
two writers for a moment (a rebalance) write two whole generations, and the
later manifest wins.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from streamrec import serde
from streamrec.contracts import SHARED_CHECKPOINT
from streamrec.errors import CheckpointError
from streamrec.settings import Settings
from streamrec.worker.snapshots import Snapshots

if TYPE_CHECKING:
    from streamrec.core.engine import Engine

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHUNK_BYTES = 256 * 1024
MANIFEST = b"manifest"

Send = Callable[[bytes, bytes | None], Awaitable["asyncio.Future[Any]"]]


def checkpoint_records(blob: bytes, gen: str, by: str, now_ms: int) -> list[tuple[bytes, bytes]]:
    """The records of one generation, chunks first and the manifest last."""
    out = []
    for index, start in enumerate(range(0, max(len(blob), 1), CHUNK_BYTES)):
        data = base64.b64encode(blob[start : start + CHUNK_BYTES]).decode("ascii")
        doc = {"v": FORMAT_VERSION, "kind": "chunk", "gen": gen, "index": index, "data": data}
        out.append((chunk_key(gen, index), serde.dumps(doc)))
    manifest = {"v": FORMAT_VERSION, "kind": "manifest", "gen": gen, "chunks": len(out),
                "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(), "by": by,
                "written_ms": now_ms}  # fmt: skip
    return [*out, (MANIFEST, serde.dumps(manifest))]


def chunk_key(gen: str, index: int) -> bytes:
    return f"chunk/{gen}/{index}".encode()


def assemble(latest: dict[bytes, bytes]) -> tuple[bytes, dict[str, Any]] | None:
    """The snapshot the latest manifest describes, and the manifest; None: no manifest.

    `latest` is the topic as compaction leaves it: the newest value per key.
    """
    if MANIFEST not in latest:
        return None
    manifest = _doc(latest[MANIFEST], "manifest")
    try:
        gen, chunks = str(manifest["gen"]), int(manifest["chunks"])
        size, digest = int(manifest["size"]), str(manifest["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"malformed shared checkpoint manifest: {exc!r}") from exc
    parts = []
    for index in range(chunks):
        raw = latest.get(chunk_key(gen, index))
        if raw is None:
            raise CheckpointError(f"shared checkpoint {gen} lacks chunk {index} of {chunks}")
        doc = _doc(raw, "chunk")
        try:
            parts.append(base64.b64decode(doc["data"], validate=True))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed chunk {index} of checkpoint {gen}: {exc!r}") from exc
    blob = b"".join(parts)
    if len(blob) != size or hashlib.sha256(blob).hexdigest() != digest:
        raise CheckpointError(f"shared checkpoint {gen} does not match its manifest's checksum")
    return blob, manifest


def _doc(raw: bytes, kind: str) -> dict[str, Any]:
    try:
        doc = serde.loads(raw)
    except Exception as exc:
        raise CheckpointError(f"shared checkpoint {kind} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise CheckpointError(f"shared checkpoint record is not a {kind}")
    if doc.get("v") != FORMAT_VERSION:
        raise CheckpointError(f"shared checkpoint of format {doc.get('v')!r}; this streamrec "
                              f"reads {FORMAT_VERSION}: upgrade every worker")  # fmt: skip
    return doc


def read_checkpoint(settings: Settings) -> tuple[bytes, dict[str, Any]] | None:
    """The latest shared checkpoint on the topic (blocking; before the worker's loop
    starts). None when there is none, or the topic cannot be read: logged, never fatal."""
    topic = settings.topic(SHARED_CHECKPOINT)
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_list(),
            enable_auto_commit=False,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            **settings.kafka_python_security(),
        )
    except KafkaError as exc:  # the worker's own start reports an unreachable broker
        log.warning("%s not read (%r); starting without it", topic, exc)
        return None
    try:
        if not consumer.partitions_for_topic(topic):
            log.info("no %s topic: the worker starts from shared.state alone", topic)
            return None
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        latest: dict[bytes, bytes] = {}
        deadline = time.monotonic() + settings.share_sync_timeout_s
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                log.warning("%s not read within %.0f s; starting without it", topic,
                            settings.share_sync_timeout_s)  # fmt: skip
                return None
            for records in consumer.poll(timeout_ms=1_000).values():
                for r in records:
                    if r.value is None:
                        latest.pop(r.key, None)
                    elif r.key is not None:
                        latest[r.key] = r.value
        return assemble(latest)
    except CheckpointError as exc:
        log.error("ignoring the shared checkpoint: %s", exc)
        return None
    except KafkaError as exc:
        log.warning("%s not read (%r); starting without it", topic, exc)
        return None
    finally:
        consumer.close()


def start_from_checkpoint(settings: Settings, snapshots: Snapshots, engine: Engine) -> bool:
    """Restore the latest shared checkpoint into a worker that has no snapshot."""
    found = read_checkpoint(settings)
    if found is None:
        return False
    blob, manifest = found
    try:
        snapshots.restore(engine, blob)
    except Exception as exc:
        log.error("ignoring shared checkpoint %s: %s", manifest.get("gen"), exc)
        return False
    log.info("restored learned state from shared checkpoint %s (by %s): %s",
             manifest["gen"], manifest["by"], engine.recommender.stats())  # fmt: skip
    return True


class CheckpointWriter:
    """Publishes the shared checkpoint through the worker's producer (`send`)."""

    def __init__(self, by: str, send: Send) -> None:
        self.by = by
        self.send = send
        #: Chunk keys of this writer's generations still on the topic (tombstoned next time).
        self._old_keys: list[bytes] = []
        self.written = 0

    async def write(self, blob: bytes) -> str:
        """Publish `blob` as a new generation; returns it. Raises if the broker refused."""
        now = int(time.time() * 1000)
        gen = f"{self.by}-{now}"
        records = checkpoint_records(blob, gen, self.by, now)
        chunks, manifest = records[:-1], records[-1]
        await _all_delivered([await self.send(k, v) for k, v in chunks])
        await _all_delivered([await self.send(*manifest)])
        await _all_delivered([await self.send(k, None) for k in self._old_keys])
        self._old_keys = [k for k, _v in chunks]
        self.written += 1
        log.info("shared checkpoint %s: %d bytes in %d chunks", gen, len(blob), len(chunks))
        return gen


async def _all_delivered(futures: list[asyncio.Future[Any]]) -> None:
    if futures:
        await asyncio.gather(*futures)
