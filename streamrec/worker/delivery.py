"""What one micro-batch sent to Kafka, until the broker has acknowledged all of it.

The worker hands every message of a batch (lists, dead letters, its learning
log) to the producer without waiting, then settles the batch in the
background: once the learning log is acknowledged its profiles are stored (the
local store and changelog records), and once every message is acknowledged,
the batch's events are acked (only then may Faust commit past them) and its
counts join the metrics window.
A list the broker refuses for what it is (too large, corrupt) dead-letters its
own event; any other failure means the worker cannot deliver at all, and it
stops without acking, so a restarted worker processes the batch again.

Batches are acked in the order they were processed (`AckOrder`), whatever
order their deliveries finish in: Faust commits the first run of consecutive
acked offsets, and its check for a gap at the head misses a gap of one offset
(and any gap before the first commit), so acks out of order could commit past
an event whose list was still in flight. Measured: one event of 4,000 lost to
a SIGKILL in one of two runs of the crash test.

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
from streamrec.worker.profile_store import Write

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
    #: The deliveries of the batch's learning log (its profiles are stored after them).
    learning: list[asyncio.Future[Any]] = field(default_factory=list)
    #: The profiles the batch wrote, stored once its learning is delivered.
    writes: Sequence[Write] = ()

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


class AckOrder:
    """Hands each batch the previous batch's turn, so acks follow processing order.

    >>> async def demo():
    ...     order, done = AckOrder(), []
    ...     async def settle(name, turn, delay):
    ...         previous, mine = turn
    ...         await asyncio.sleep(delay)  # the broker answers the later batch first
    ...         await order.wait(previous)
    ...         done.append(name)
    ...         mine.set_result(None)
    ...     first, second = order.take(), order.take()
    ...     await asyncio.gather(settle("b1", first, 0.02), settle("b2", second, 0.0))
    ...     return done
    >>> asyncio.run(demo())
    ['b1', 'b2']
    """

    def __init__(self) -> None:
        self._tail: asyncio.Future[None] | None = None

    def take(self) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        """(the previous batch's turn or None, this batch's turn: set it when done)."""
        previous = self._tail
        self._tail = mine = asyncio.get_running_loop().create_future()
        return previous, mine

    @staticmethod
    async def wait(previous: asyncio.Future[None] | None) -> None:
        if previous is not None:
            await previous
