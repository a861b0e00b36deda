"""Acks on delivery, without a broker: what is acked when, and which failures cost one event."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from streamrec.logs import OutageFilter
from streamrec.worker.delivery import BatchDelivery, is_message_error
from streamrec.worker.faust_tuning import defer_acks


class FakeStream:
    def __init__(self) -> None:
        self.acked: list[str] = []

    async def ack(self, event: str) -> bool:
        self.acked.append(event)
        return True


def test_take_events_acks_become_no_ops_and_the_real_ack_is_handed_back():
    stream = FakeStream()
    ack = defer_acks(stream)

    async def go() -> None:
        assert await stream.ack("e1") is False  # what take_events calls after each batch
        assert stream.acked == []
        await ack(["e1", "e2"])  # what the worker calls once the batch is delivered

    asyncio.run(go())
    assert stream.acked == ["e1", "e2"]


def test_errors_about_one_message_are_told_from_errors_about_kafka():
    too_big = MessageSizeTooLargeError("1.4 MB")
    assert is_message_error(too_big)
    try:
        raise ProducerSendError("Error while sending") from too_big
    except ProducerSendError as wrapped:
        assert is_message_error(wrapped)  # Faust wraps what aiokafka raises at send time
    assert not is_message_error(KafkaConnectionError("gone"))
    assert not is_message_error(RuntimeError("bug"))


def test_a_batch_settles_only_when_every_message_is_done():
    async def go() -> list[BaseException]:
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        d = BatchDelivery(events=["e1", "e2"])
        d.add(first)
        d.add(second)
        waiting = asyncio.ensure_future(d.failures())
        await asyncio.sleep(0)
        assert not waiting.done()  # nothing settles while a message is in flight
        first.set_result("md")
        await asyncio.sleep(0)
        assert not waiting.done()
        second.set_exception(MessageSizeTooLargeError("x"))
        return [exc for _sent, exc in await waiting]

    [exc] = asyncio.run(go())
    assert isinstance(exc, MessageSizeTooLargeError)


def test_outage_lines_are_shown_once_per_period_with_the_count_held_back():
    f = OutageFilter(every_s=3600)

    def rec(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("aiokafka.conn", level, "", 0, msg, (), None)

    assert f.filter(rec("Unable connect to node with id 1: [Errno 111]"))
    shown = [f.filter(rec("Unable to update metadata from [1]")) for _ in range(500)]
    assert not any(shown) and f.held_back == 500
    assert f.filter(rec("Committing offsets: a different error"))  # others pass untouched
    assert f.filter(rec("Unable connect to node 1", logging.INFO))  # below WARNING: as before
