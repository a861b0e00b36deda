"""The stall watch: a worker with events waiting that receives none says so."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from streamrec.worker.stall import StallWatch

P0, P1 = TP("events", 0), TP("events", 1)


@dataclass
class FakeConsumer:
    _committed_offset: dict[Any, int | None] = field(default_factory=dict)
    _read_offset: dict[Any, int | None] = field(default_factory=dict)
    _paused_partitions: set[Any] = field(default_factory=set)

    def assignment(self) -> set[Any]:
        return {P0, P1, TP("other", 0)}


@dataclass
class FakeApp:
    consumer: FakeConsumer


@dataclass
class Ev:
    message: Any


@dataclass
class Msg:
    tp: Any
    offset: int


def watch(ends: dict[Any, int], after_s: float = 30.0) -> StallWatch:
    async def read(tps: list[Any]) -> dict[Any, int]:
        assert set(tps) == {P0, P1}  # only the events topic's partitions
        return ends

    consumer = FakeConsumer({P0: 5, P1: 3}, {P0: 9, P1: 2})
    return StallWatch(FakeApp(consumer), "events", read, after_s)


def test_a_worker_idle_with_events_waiting_says_where_they_stopped(caplog):
    w = watch({P0: 12, P1: 3})  # a partition's end is its next offset
    w.saw([Ev(Msg(P0, 8)), Ev(Msg(P0, 9)), Ev(Msg(P1, 2))])
    w.last -= 31  # 31 s without a batch
    w.app.consumer._paused_partitions.add(P0)
    with caplog.at_level(logging.WARNING, "streamrec.worker.stall"):
        asyncio.run(w.check())
    (record,) = caplog.records
    assert "no event received for 31 s while 2 wait" in record.getMessage()
    assert "events[0]: end 12, processed 9, committed 5, read 9, paused" in record.getMessage()
    assert "events[1]" not in record.getMessage()  # processed to its end
    caplog.clear()
    with caplog.at_level(logging.WARNING, "streamrec.worker.stall"):
        asyncio.run(w.check())  # once per `after_s`, not at every check
    assert caplog.records == []


def test_an_idle_worker_with_nothing_waiting_or_a_busy_one_says_nothing(caplog):
    caught_up = watch({P0: 10, P1: 3})
    caught_up.saw([Ev(Msg(P0, 9)), Ev(Msg(P1, 2))])
    caught_up.last -= 60
    busy = watch({P0: 100, P1: 100})
    busy.saw([Ev(Msg(P0, 9))])
    fresh = watch({P0: 100, P1: 100})
    fresh.last -= 60
    fresh.assigned()  # an assignment restarts the clock
    with caplog.at_level(logging.WARNING, "streamrec.worker.stall"):
        for w in (caught_up, busy, fresh):
            asyncio.run(w.check())
    assert caplog.records == []


def test_a_partition_not_processed_since_the_assignment_counts_from_its_commit(caplog):
    w = watch({P0: 5, P1: 7})  # P0: committed 5, nothing waiting; P1: committed 3, 4 waiting
    w.last -= 45
    with caplog.at_level(logging.WARNING, "streamrec.worker.stall"):
        asyncio.run(w.check())
    (record,) = caplog.records
    assert "while 4 wait" in record.getMessage()
    assert "events[1]: end 7, processed None, committed 3, read 2" in record.getMessage()
