"""What one micro-batch sent to Kafka, until the broker has acknowledged all of it.

The worker hands every message of a batch (profile changelog records, lists,
dead letters) to the producer without waiting, then settles the batch in the
background: once every message is acknowledged, the batch's events are acked
(only then may Faust commit past them) and its counts join the metrics window.
A list the broker refuses for what it is (too large, corrupt) dead-letters its
own event; any other failure means the worker cannot deliver at all, and it
stops without acking, so a restarted worker processes the batch again.

>>> import asyncio
>>> async def demo():
...     d = BatchDelivery(events=["e1"])
...     ok = asyncio.get_running_loop().create_future(); ok.set_result("md")
...     d.add(ok)
...     return await d.failures()
>>> asyncio.run(demo())
[]
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import (
    CorruptRecordException,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from streamrec.core.engine import BatchOutput

#: Broker or client errors about one message itself: that message's event is dead-lettered.
MESSAGE_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, CorruptRecordException)


def is_message_error(exc: BaseException) -> bool:
    """True for an error about the message itself (also when Faust wrapped it)."""
    return isinstance(exc, MESSAGE_ERRORS) or isinstance(exc.__cause__, MESSAGE_ERRORS)


@dataclass(slots=True)
class Sent:
    future: asyncio.Future[Any]
    #: For a list: the output it came from and its index there (else None, -1).
    out: BatchOutput | None = None
    index: int = -1


@dataclass
class BatchDelivery:
    #: The Faust events of the batch: acked when everything is delivered.
    events: Sequence[Any]
    sent: list[Sent] = field(default_factory=list)
    outputs: list[BatchOutput] = field(default_factory=list)

    def add(
        self, future: asyncio.Future[Any], out: BatchOutput | None = None, index: int = -1
    ) -> None:
        self.sent.append(Sent(future, out, index))

    async def failures(self) -> list[tuple[Sent, BaseException]]:
        """Wait for every message; the ones that failed, with why."""
        results = await asyncio.gather(*(s.future for s in self.sent), return_exceptions=True)
        return [
            (s, r) for s, r in zip(self.sent, results, strict=True) if isinstance(r, BaseException)
        ]
