"""What the worker hands to the producer, by kind: the topics, the raw send path,
and what a failure of each kind means.

Lists, changelog records, dead letters and shared-state deltas belong to a
batch: their deliveries are returned, and the batch is acked only once all of
them are delivered (`worker.delivery`). Monitoring records are not tied to
events: a failure is logged. Dead letters are logged with where they came from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import faust

from streamrec import serde
from streamrec.contracts import (
    EVENTS_DLQ,
    PRIVACY_AUDIT,
    RECOMMENDATIONS,
    SHARED_CHECKPOINT,
    SHARED_STATE,
)
from streamrec.records import AuditRecord, DeadLetter
from streamrec.settings import Settings

log = logging.getLogger(__name__)

#: Longest dead-letter key kept (bytes): keys are user ids; a 1 MiB one must not block.
MAX_DLQ_KEY = 1_024


class Outbox:
    """The worker's sends through its Faust app's producer (set once the app is built)."""

    def __init__(self, settings: Settings) -> None:
        s = settings
        self.app: faust.App | None = None
        self.t_recs = s.topic(RECOMMENDATIONS)
        self.t_dlq = s.topic(EVENTS_DLQ)
        self.t_audit = s.topic(PRIVACY_AUDIT)
        self.t_shared = s.topic(SHARED_STATE)
        self.t_checkpoint = s.topic(SHARED_CHECKPOINT)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        on_delivered: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> asyncio.Future[Any]:
        """Hand one message to the producer (Faust's raw path); returns its delivery."""
        assert self.app is not None, "the worker's app is built before anything is sent"
        fut = cast(
            "asyncio.Future[Any]",
            await self.app.producer.send(topic, key, value, partition, None, None),
        )
        if on_delivered is not None:
            fut.add_done_callback(on_delivered)
        return fut

    async def dead_letter(self, key: bytes | None, dead: DeadLetter) -> asyncio.Future[Any]:
        """Log topic/partition/offset and the reason, send to events.dlq, carry on."""
        log.warning(
            "dead letter %s at %s[%d]@%d: %s",
            dead.reason,
            dead.source_topic,
            dead.partition,
            dead.offset,
            dead.detail,
        )
        if key is not None and len(key) > MAX_DLQ_KEY:
            key = key[:MAX_DLQ_KEY]  # a key is the user id in practice; a huge one must not block
        return await self.send(self.t_dlq, key, serde.dumps(dead.to_dict()))

    async def audit(self, record: AuditRecord) -> None:
        log.info("erased %s (%s)", record.user, record.detail)
        await self.send(self.t_audit, record.key.encode(), serde.dumps(record.to_dict()))

    async def checkpoint(self, key: bytes, value: bytes | None) -> asyncio.Future[Any]:
        return await self.send(self.t_checkpoint, key, value)

    async def monitoring(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """Monitoring records: not tied to events, so a failure is logged, not fatal."""
        fut = await self.send(topic, key.encode(), serde.dumps(value))
        fut.add_done_callback(lambda f: _log_failed_send(f, topic))


def _log_failed_send(fut: asyncio.Future[Any], topic: str) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("a record for %s was not delivered: %r", topic, fut.exception())
