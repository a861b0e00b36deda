"""The shared checkpoint: the whole shared learned state on a compacted topic.

`shared.state` is a time-retained log of deltas: a worker with a snapshot of
its own refolds it from where the snapshot stopped, but a worker with none (a
new host, a lost volume) would refold only what the log still holds, and miss
everything older than its retention. So every
`STREAMREC_SHARE_CHECKPOINT_INTERVAL_S` the worker that owns partition 0 of
`storefront.events` publishes its learned-state snapshot (the format of
`worker/snapshots.py`, without per-user state: no monitoring, no pending
offers) on `shared.checkpoint`:

    chunk/<slot>/0 .. chunk/<slot>/n-1   slices of the snapshot (256 KiB each)
    manifest                             slot, generation, chunk count, size, sha256

There are two slots, used in turn: a generation is written into the slot the
current manifest does not name, and the manifest goes last, once every chunk is
on the topic. So a writer that dies half-way leaves the previous generation
whole, and compaction keeps at most two generations' chunks (keys are reused;
no tombstones, no orphans from writers that come and go). Each chunk names its
generation: a reader takes the manifest's slot and checks every chunk of it,
and the checksum of the whole.

A worker that starts with no snapshot reads the topic once
(`read_checkpoint`), restores it, and folds `shared.state` on from the offsets
it holds: the ledger in it keeps every delta counted once. Every worker holds
the same shared state, so which one writes does not matter. Two writers for a
moment (a rebalance) may write into one slot at once; the reader then finds it
broken, says so, and the worker starts from `shared.state` alone until the
next checkpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from streamrec import clients, serde
from streamrec.compaction import latest_per_key
from streamrec.contracts import SHARED_CHECKPOINT
from streamrec.errors import CheckpointError
from streamrec.offsets import end_offsets
from streamrec.settings import Settings
from streamrec.worker.snapshots import Snapshots

if TYPE_CHECKING:
    from streamrec.core.engine import Engine

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHUNK_BYTES = 256 * 1024
MANIFEST = b"manifest"

Send = Callable[[bytes, bytes | None], Awaitable["asyncio.Future[Any]"]]


def checkpoint_records(
    blob: bytes, slot: int, gen: str, by: str, now_ms: int
) -> list[tuple[bytes, bytes]]:
    """The records of one generation in `slot`, chunks first and the manifest last."""
    out = []
    for index, start in enumerate(range(0, max(len(blob), 1), CHUNK_BYTES)):
        data = base64.b64encode(blob[start : start + CHUNK_BYTES]).decode("ascii")
        doc = {"v": FORMAT_VERSION, "kind": "chunk", "gen": gen, "index": index, "data": data}
        out.append((chunk_key(slot, index), serde.dumps(doc)))
    manifest = {"v": FORMAT_VERSION, "kind": "manifest", "slot": slot, "gen": gen,
                "chunks": len(out), "size": len(blob), "by": by, "written_ms": now_ms,
                "sha256": hashlib.sha256(blob).hexdigest()}  # fmt: skip
    return [*out, (MANIFEST, serde.dumps(manifest))]


def chunk_key(slot: int, index: int) -> bytes:
    return f"chunk/{slot}/{index}".encode()


def next_slot(latest: dict[bytes, bytes]) -> int:
    """The slot a new generation goes into: the one the current manifest does not name."""
    try:
        return 1 - int(serde.loads(latest[MANIFEST])["slot"]) if MANIFEST in latest else 0
    except Exception:
        return 0  # an unreadable manifest names nothing worth keeping


def assemble(latest: dict[bytes, bytes]) -> tuple[bytes, dict[str, Any]] | None:
    """The snapshot the latest manifest describes, and the manifest; None: no manifest.

    `latest` is the topic as compaction leaves it: the newest value per key.
    """
    if MANIFEST not in latest:
        return None
    manifest = _doc(latest[MANIFEST], "manifest")
    try:
        slot, gen, chunks = int(manifest["slot"]), str(manifest["gen"]), int(manifest["chunks"])
        size, digest = int(manifest["size"]), str(manifest["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"malformed shared checkpoint manifest: {exc!r}") from exc
    parts = []
    for index in range(chunks):
        raw = latest.get(chunk_key(slot, index))
        if raw is None:
            raise CheckpointError(f"shared checkpoint {gen} lacks chunk {index} of {chunks}")
        doc = _doc(raw, "chunk")
        if doc.get("gen") != gen:
            raise CheckpointError(f"chunk {index} of shared checkpoint {gen} was overwritten "
                                  f"by {doc.get('gen')} (two writers at once?)")  # fmt: skip
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
    latest = read_topic(settings)
    if latest is None:
        return None
    try:
        return assemble(latest)
    except CheckpointError as exc:
        log.error("ignoring the shared checkpoint: %s", exc)
        return None


def read_topic(settings: Settings) -> dict[bytes, bytes] | None:
    """The checkpoint topic as compaction leaves it: the newest value per key (blocking).
    None when it cannot be read (logged)."""
    topic = settings.topic(SHARED_CHECKPOINT)
    try:
        consumer = clients.consumer(
            settings, enable_auto_commit=False, fetch_max_wait_ms=settings.fetch_max_wait_ms
        )
    except KafkaError as exc:  # the worker's own start reports an unreachable broker
        log.warning("%s not read (%r); starting without it", topic, exc)
        return None
    try:
        if not consumer.partitions_for_topic(topic):
            log.info("no %s topic: the worker starts from shared.state alone", topic)
            return {}
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = end_offsets(settings, [tp])[tp]
        latest: dict[bytes, bytes] = {}
        deadline = time.monotonic() + settings.share_sync_timeout_s
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                log.warning("%s not read within %.0f s; starting without it", topic,
                            settings.share_sync_timeout_s)  # fmt: skip
                return None
            for records in consumer.poll(timeout_ms=1_000).values():
                latest_per_key(((r.key, r.value) for r in records), into=latest)
        return latest
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

    def __init__(self, by: str, send: Send, read: Callable[[], dict[bytes, bytes] | None]) -> None:
        self.by = by
        self.send = send
        #: Reads the topic (blocking): a writer's first generation learns the current slot.
        self.read = read
        self.slot: int | None = None
        self.written = 0

    async def write(self, blob: bytes) -> str:
        """Publish `blob` as a new generation; returns it. Raises if the broker refused."""
        if self.slot is None:
            latest = await asyncio.to_thread(self.read)
            if latest is None:
                raise CheckpointError("the checkpoint topic could not be read")
            self.slot = next_slot(latest)
        now = int(time.time() * 1000)
        gen = f"{self.by}-{now}"
        records = checkpoint_records(blob, self.slot, gen, self.by, now)
        chunks, manifest = records[:-1], records[-1]
        await _all_delivered([await self.send(k, v) for k, v in chunks])
        await _all_delivered([await self.send(*manifest)])
        self.slot = 1 - self.slot
        self.written += 1
        log.info("shared checkpoint %s: %d bytes in %d chunks", gen, len(blob), len(chunks))
        return gen


async def _all_delivered(futures: list[asyncio.Future[Any]]) -> None:
    if futures:
        await asyncio.gather(*futures)
