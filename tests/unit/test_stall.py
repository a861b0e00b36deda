"""The stall watch: a partition with events waiting that delivers none is reported
and sought back to its next event; a busy, caught-up or recovering one is left."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from streamrec.worker.stall import StallWatch

P0, P1 = TP("events", 0), TP("events", 1)


@dataclass
class Msg:
    tp: Any
    offset: int
    acked: bool = False


@dataclass
class FakeConsumer:
    _committed_offset: dict[Any, int | None] = field(default_factory=dict)
    _read_offset: dict[Any, int | None] = field(default_factory=dict)
    _paused_partitions: set[Any] = field(default_factory=set)
    _unacked_messages: list[Msg] = field(default_factory=list)
    flow_active: bool = True
    sought: list[dict[Any, int]] = field(default_factory=list)

    def assignment(self) -> set[Any]:
        return {P0, P1, TP("other", 0)}

    async def seek_wait(self, partitions: dict[Any, int]) -> None:
        self.sought.append(dict(partitions))
        self._read_offset.update(partitions)


@dataclass
class FakeApp:
    consumer: FakeConsumer


@dataclass
class Ev:
    message: Any


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def watch(ends: dict[Any, int], after_s: float = 30.0) -> tuple[StallWatch, Clock]:
    async def read(tps: list[Any]) -> dict[Any, int]:
        assert {tp.topic for tp in tps} == {"events"}  # only the events topic's partitions
        return {tp: ends[tp] for tp in tps}

    consumer = FakeConsumer({P0: 5, P1: 3}, {P0: 9, P1: 2})
    clock = Clock()
    return StallWatch(FakeApp(consumer), "events", read, after_s, clock), clock


def check(w: StallWatch, caplog: Any) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, "streamrec.worker.stall"):
        asyncio.run(w.check())
    return [r.getMessage() for r in caplog.records]


def test_a_partition_that_stopped_delivering_is_reported_and_sought_to_its_next_event(caplog):
    w, clock = watch({P0: 12, P1: 3})  # a partition's end is its next offset
    w.saw([Ev(Msg(P0, 8)), Ev(Msg(P0, 9)), Ev(Msg(P1, 2))])
    # Faust read past what it delivered: without a seek, 10 and 11 never come.
    w.app.consumer._read_offset[P0] = 11
    clock.t += 31
    (message,) = check(w, caplog)
    assert "events[0] delivered no event for 31 s while 2 wait" in message
    assert "end 12, processed 9, committed 5, read 11, in flight from None" in message
    assert message.endswith("seeking it to 10")
    assert w.app.consumer.sought == [{P0: 10}]
    assert w.app.consumer._read_offset[P0] == 10  # what lets Faust deliver 10 again
    assert w.take_sought() == 1 and w.take_sought() == 0
    assert check(w, caplog) == []  # the broker is asked once per `after_s`, not per check
    clock.t += 31
    assert len(check(w, caplog)) == 1  # still nothing after another `after_s`: again


def test_a_partition_whose_events_the_agent_holds_or_that_faust_recovers_is_left(caplog):
    held, clock = watch({P0: 12, P1: 3})
    held.saw([Ev(Msg(P0, 9))])
    held.app.consumer._unacked_messages.append(Msg(P0, 10))  # delivered, not yet processed
    clock.t += 40
    (message,) = check(held, caplog)
    assert "in flight from 10" in message and message.endswith("(left as it is)")
    paused, clock = watch({P0: 12, P1: 3})
    paused.saw([Ev(Msg(P0, 9))])
    paused.app.consumer._paused_partitions.add(P0)
    clock.t += 40
    (message,) = check(paused, caplog)
    assert message.endswith("paused (left as it is)")
    assert held.app.consumer.sought == paused.app.consumer.sought == []


def test_a_caught_up_a_busy_or_a_just_assigned_worker_says_nothing(caplog):
    caught_up, clock = watch({P0: 10, P1: 3})
    caught_up.saw([Ev(Msg(P0, 9)), Ev(Msg(P1, 2))])
    clock.t += 60
    busy, clock = watch({P0: 100, P1: 100})
    busy.saw([Ev(Msg(P0, 9)), Ev(Msg(P1, 2))])
    clock.t += 5  # delivering: less than `after_s` since each partition's last event
    fresh, clock = watch({P0: 100, P1: 100})
    clock.t += 60
    fresh.assigned()  # an assignment restarts the clock
    for w in (caught_up, busy, fresh):
        assert check(w, caplog) == []
        assert w.app.consumer.sought == []


def test_one_quiet_partition_is_sought_while_the_others_deliver(caplog):
    w, clock = watch({P0: 100, P1: 7})
    w.saw([Ev(Msg(P1, 2))])
    for _ in range(4):  # P0 keeps delivering, P1 has not since its offset 2
        clock.t += 10
        w.saw([Ev(Msg(P0, 9))])
    (message,) = check(w, caplog)
    assert "events[1] delivered no event for 40 s while 4 wait" in message
    assert w.app.consumer.sought == [{P1: 3}]


def test_a_partition_not_processed_since_the_assignment_counts_from_its_commit(caplog):
    w, clock = watch({P0: 5, P1: 7})  # P0: committed 5, nothing waiting; P1: committed 3
    clock.t += 45
    (message,) = check(w, caplog)
    assert "events[1] delivered no event for 45 s while 4 wait" in message
    assert "processed None, committed 3, read 2" in message
    assert w.app.consumer.sought == [{P1: 3}]
