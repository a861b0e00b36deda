"""Hot swap (a part of `ScorerService`): a new encoder staged, the catalog re-embedded in
it, then promoted; `scorer.control` carries the commands, and a scorer that starts late
follows the newest one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from streamrec import clients, serde
from streamrec.aio import read_partition
from streamrec.clock import now_ms
from streamrec.contracts import SCORER_CONTROL
from streamrec.core.ingest import Rejection, parse_document
from streamrec.records import ScorerControl
from streamrec.scorer.catalog_work import ScorerPart
from streamrec.scorer.embedder import load_encoder
from streamrec.settings import Settings

log = logging.getLogger(__name__)


class HotSwap(ScorerPart):
    """Model swaps: staged in the background, promoted when the catalog is re-embedded."""

    swaps: asyncio.Queue[str]
    last_command_id: str | None
    control_next: int
    validate_control: Callable[[Any], Any]
    t_control: str

    def request_swap(self, model_dir: str) -> None:
        self.swaps.put_nowait(model_dir)

    async def _swapper(self) -> None:
        while True:
            model_dir = await self.swaps.get()
            await self._swap(model_dir)

    async def _swap(self, model_dir: str) -> None:
        log.info("loading encoder %s for a hot swap", model_dir)
        loop = asyncio.get_running_loop()
        try:
            encoder = await loop.run_in_executor(None, load_encoder, self.s, model_dir)
        except Exception as exc:
            log.error("hot swap refused, still serving %s: %s", self.embedder.current, exc)
            self.w_counts["swap_failures"] += 1
            return
        previous_stage = self.embedder.staged
        version = self.embedder.stage(encoder)
        if version == self.embedder.current:
            log.info("encoder %s is already current; nothing to swap", version)
            return
        if previous_stage is not None and previous_stage != version:
            self.dirty.pop(previous_stage, None)
        self.marked = {(v, p) for v, p in self.marked if v != version}
        parts = self.dirty.setdefault(version, {})
        for p, items in self.items.items():
            have = self.known.get(p, {})
            ids = parts.setdefault(p, {})
            for item_id, t in items.items():
                if have.get(item_id, {}).get(version) != t.text_hash:
                    ids[item_id] = None
        todo = sum(len(ids) for ids in parts.values())
        log.info("staged %s: re-embedding %d catalog items before switching", version, todo)

    async def _start_on_latest_command(self) -> None:
        """A scorer that starts late follows the fleet: the newest load_model wins."""
        latest: list[ScorerControl] = []

        def take(r: Any) -> None:
            doc = parse_document(r.value or b"", self.validate_control, "control")
            if not isinstance(doc, Rejection):
                latest.append(ScorerControl.from_dict(doc))

        self.control_next = await read_partition(self.s, self.t_control, 0, take)
        if not latest or latest[-1].model_dir is None:
            return
        cmd = latest[-1]
        self.last_command_id = cmd.command_id
        try:
            encoder = await asyncio.get_running_loop().run_in_executor(
                None, load_encoder, self.s, cmd.model_dir
            )
        except Exception as exc:
            log.error("cannot load commanded model %s, keeping the configured one: %s", cmd, exc)
            return
        if encoder.version != self.embedder.current:
            log.info("starting on the last commanded encoder %s", encoder.version)
            self.embedder.stage(encoder)
            self.embedder.promote()
            self.embedder.previous = None

    async def _follow_control(self) -> None:
        s = self.s
        consumer = clients.aio_consumer(
            s, enable_auto_commit=False, fetch_max_wait_ms=max(s.fetch_max_wait_ms, 100)
        )
        await consumer.start()
        try:
            tp = TopicPartition(self.t_control, 0)
            consumer.assign([tp])
            consumer.seek(tp, getattr(self, "control_next", 0))
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in records:
                        doc = parse_document(r.value or b"", self.validate_control, "control")
                        if isinstance(doc, Rejection):
                            log.warning("ignoring a bad control message: %s", doc.detail)
                            continue
                        cmd = ScorerControl.from_dict(doc)
                        if cmd.command == "load_model" and cmd.model_dir:
                            self.last_command_id = cmd.command_id
                            self.request_swap(cmd.model_dir)
        finally:
            await consumer.stop()


async def send_control(settings: Settings, model_dir: str) -> ScorerControl:
    """Publish a load_model command (what `streamrec scorer load-model DIR` does)."""
    cmd = ScorerControl("load_model", uuid.uuid4().hex, now_ms(), model_dir)
    producer = clients.aio_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(SCORER_CONTROL), serde.dumps(cmd.to_dict()), key=b"load_model"
        )
    finally:
        await producer.stop()
    return cmd
