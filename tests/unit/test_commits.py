"""Faust's commits never pass an event the worker has not acked (`faust_tuning`, point 7).

Faust's own offset bookkeeping is driven here without a broker: a consumer's
acked offsets, gap tree, committed offsets and in-flight messages.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from streamrec.worker.faust_tuning import guard_commits, in_flight_floor

TP0 = TP("events", 0)
TP1 = TP("events", 1)


@dataclass(eq=False)
class Msg:
    tp: Any
    offset: int
    acked: bool = False


@dataclass
class Books:
    """The attributes of a Faust consumer that its commit offsets come from."""

    _acked: defaultdict[Any, list[int]] = field(default_factory=lambda: defaultdict(list))
    _acked_index: defaultdict[Any, set[int]] = field(default_factory=lambda: defaultdict(set))
    _gap: defaultdict[Any, IntervalTree] = field(default_factory=lambda: defaultdict(IntervalTree))
    _committed_offset: defaultdict[Any, int | None] = field(
        default_factory=lambda: defaultdict(lambda: None)
    )
    _unacked_messages: set[Msg] = field(default_factory=set)

    def deliver(self, tp: Any, offset: int) -> Msg:
        msg = Msg(tp, offset)
        self._unacked_messages.add(msg)
        return msg

    def ack(self, msg: Msg) -> None:  # what Faust's `Consumer.ack` does to them
        msg.acked = True
        committed = self._committed_offset[msg.tp]
        if (committed is None or msg.offset >= committed) and (
            msg.offset not in self._acked_index[msg.tp]
        ):
            self._unacked_messages.discard(msg)
            self._acked[msg.tp].append(msg.offset)
            self._acked_index[msg.tp].add(msg.offset)

    def commit(self, tp: Any) -> int | None:
        """The offset Faust would commit now (and then records as committed)."""
        offset: int | None = Consumer._new_offset(self, tp)  # type: ignore[arg-type]
        if offset is not None and Consumer._should_commit(self, tp, offset):  # type: ignore[arg-type]
            self._committed_offset[tp] = offset
            return offset
        return None


def setup_module() -> None:
    guard_commits()


def test_an_unacked_event_at_the_committed_head_holds_the_commit():
    # faust-streaming issue 606: committed 2585, 2585 in flight, 2586-2589 acked.
    books = Books()
    books._committed_offset[TP0] = 2585
    head = books.deliver(TP0, 2585)
    for offset in range(2586, 2590):
        books.ack(books.deliver(TP0, offset))
    assert books.commit(TP0) is None  # Faust alone commits 2590: 2585 would be lost
    books.ack(head)
    assert books.commit(TP0) == 2590


def test_a_seek_back_never_commits_past_the_events_it_delivered_before():
    # Delivered 100-104 before the seek back to 100; the fetcher then goes on at
    # 105 and records 101-104 as a gap. Only 100 and 101 are done.
    books = Books()
    books._committed_offset[TP0] = 100
    msgs = [books.deliver(TP0, o) for o in range(100, 106)]
    asyncio.run(Consumer._add_gap(books, TP0, 101, 105))  # type: ignore[arg-type]
    assert sorted((iv.begin, iv.end) for iv in books._gap[TP0]) == [(101, 105)]  # 105 is not
    books.ack(msgs[0])
    books.ack(msgs[1])
    assert books.commit(TP0) == 102  # not 106: 102 is still being processed
    for msg in msgs[2:]:
        books.ack(msg)
    assert books.commit(TP0) == 106


def test_acked_offsets_and_gaps_past_an_event_in_flight_wait_for_it():
    books = Books()
    books._committed_offset[TP0] = 10
    slow = books.deliver(TP0, 12)
    for offset in (10, 11, 13, 14):
        books.ack(books.deliver(TP0, offset))
    books._gap[TP0].addi(15, 18)  # 15-17 were never delivered (compacted away)
    books.ack(books.deliver(TP0, 18))
    assert books.commit(TP0) == 12
    assert books._acked[TP0] == [13, 14, 18]  # kept for later
    assert sorted((iv.begin, iv.end) for iv in books._gap[TP0]) == [(15, 18)]
    books.ack(slow)
    assert books.commit(TP0) == 19


def test_without_events_in_flight_commits_are_faust_s_own():
    books = Books()
    books._committed_offset[TP0] = 5
    for offset in (5, 6, 7):
        books.ack(books.deliver(TP0, offset))
    books._gap[TP0].addi(8, 10)
    books.ack(books.deliver(TP0, 10))
    books.deliver(TP1, 3)  # another partition's event in flight does not matter
    assert books.commit(TP0) == 11


def test_the_floor_ignores_acked_events_and_redeliveries_below_the_commit():
    old = Msg(TP0, 3, acked=True)
    below = Msg(TP0, 4)
    mine = Msg(TP0, 9)
    other = Msg(TP1, 1)
    assert in_flight_floor({old, below, mine, other}, TP0, 5) == 9
    assert in_flight_floor({old, below, other}, TP0, 5) is None
    assert in_flight_floor({below}, TP0, None) == 4
