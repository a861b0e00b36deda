"""A partition with events waiting that delivers none is reported, then sought back.

A worker restarted after a SIGKILL has, now and then, stopped receiving the
events of one partition part-way through its backlog: the process answered,
its other partitions flowed, and that partition's events stayed on the broker,
never delivered. Faust keeps a read offset per partition and silently drops
any fetched message below it (`Consumer._drain_messages`); around the seek it
does after an assignment (`faust_tuning`, point 6) that offset can be left
past events that were never handed to the agent, and nothing moves it back.

The watch tells that apart from a busy or caught-up worker from what it can
see: the partition's end on the broker, the last offset the worker processed,
the committed offset, and whether any of the partition's messages are still
in flight in Faust. A partition that has events waiting, nothing in flight,
and has delivered nothing for `after_s` is logged with Faust's view of it and
sought to its next unprocessed event, which also resets Faust's read offset.
Seeking back can only deliver an event again, never skip one: a replayed event
is answered again and learned once (its profile remembers the offsets it
applied), and one below the committed offset is skipped as a redelivery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from streamrec.worker.faust_tuning import committed_offsets, in_flight_floor

log = logging.getLogger(__name__)

EndOffsets = Callable[[list[Any]], Awaitable[dict[Any, int]]]


def waiting(
    ends: dict[Any, int], processed: dict[Any, int], committed: dict[Any, int | None]
) -> dict[Any, int]:
    """Per partition, how many events lie past the last one processed (or past the
    committed offset, for a partition not processed since the assignment).

    >>> waiting({"p0": 10, "p1": 5, "p2": 7}, {"p0": 9, "p1": 2}, {"p2": 7})
    {'p1': 2}
    """
    out: dict[Any, int] = {}
    for tp, end in ends.items():
        start = next_offset(tp, processed, committed)
        if start is not None and end > start:
            out[tp] = end - start
    return out


def next_offset(tp: Any, processed: dict[Any, int], committed: dict[Any, int | None]) -> int | None:
    """The first offset of `tp` not yet processed: past the last one processed, and
    never below the committed offset (below it, Faust skips a redelivery).

    >>> next_offset("p", {"p": 9}, {"p": 5}), next_offset("p", {"p": 2}, {"p": 7})
    (10, 7)
    >>> next_offset("p", {}, {"p": 3}), next_offset("p", {}, {}) is None
    (3, True)
    """
    done = processed.get(tp)
    floor = committed.get(tp)
    if done is None:
        return floor
    return max(done + 1, floor or 0)


class StallWatch:
    """Call `saw` for every batch and `assigned` after every assignment; `check`
    periodically (a Faust timer). `take_sought` counts the partitions sought back."""

    def __init__(
        self,
        app: Any,
        topic: str,
        ends: EndOffsets,
        after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.topic = topic
        self.ends = ends
        self.after_s = after_s
        self.clock = clock
        self.processed: dict[Any, int] = {}
        #: When each partition last delivered an event, or the assignment began.
        self._since: dict[Any, float] = {}
        self._assigned_at = clock()
        self._checked_at = -float("inf")
        self._sought = 0

    def saw(self, batch: Sequence[Any]) -> None:
        now = self.clock()
        for ev in batch:
            tp, offset = ev.message.tp, ev.message.offset
            self._since[tp] = now
            if offset > self.processed.get(tp, -1):
                self.processed[tp] = offset

    def assigned(self) -> None:
        self._assigned_at = self.clock()  # recovery and a first fetch take their time
        self._since.clear()
        self.processed.clear()

    def take_sought(self) -> int:
        n, self._sought = self._sought, 0
        return n

    async def check(self) -> None:
        now = self.clock()
        if self.after_s <= 0 or now - self._checked_at < self.after_s:
            return  # the broker is asked at most once per `after_s`
        consumer = self.app.consumer
        quiet = {
            tp: now - self._since.get(tp, self._assigned_at)
            for tp in consumer.assignment()
            if tp.topic == self.topic
        }
        quiet = {tp: idle for tp, idle in quiet.items() if idle >= self.after_s}
        if not quiet:
            return
        self._checked_at = now
        try:
            ends = await self.ends(list(quiet))
        except Exception as exc:  # the broker is away: that is logged elsewhere
            log.debug("stall check: no partition ends (%r)", exc)
            return
        committed = dict(committed_offsets(self.app))
        behind = waiting({tp: ends[tp] for tp in quiet if tp in ends}, self.processed, committed)
        for tp in sorted(behind, key=lambda t: t.partition):
            await self._stalled(tp, quiet[tp], behind[tp], ends[tp], committed.get(tp))

    async def _stalled(
        self, tp: Any, idle: float, behind: int, end: int, committed: int | None
    ) -> None:
        consumer = self.app.consumer
        target = end - behind  # the first offset not processed (`waiting`)
        paused = tp in (getattr(consumer, "_paused_partitions", ()) or ())
        in_flight = in_flight_floor(consumer._unacked_messages, tp, committed)
        view = (
            f"{tp.topic}[{tp.partition}] delivered no event for {idle:.0f} s while {behind} "
            f"wait: end {end}, processed {self.processed.get(tp)}, committed {committed}, "
            f"read {consumer._read_offset.get(tp)}, in flight from {in_flight}"
            f"{', paused' if paused else ''}"
        )
        if paused or in_flight is not None or not consumer.flow_active:
            # Faust is recovering or rebalancing, or the agent holds the partition's
            # events: the stall is not in the fetch, and seeking would not help.
            log.warning("%s (left as it is)", view)
            return
        log.warning("%s: seeking it to %d", view, target)
        await consumer.seek_wait({tp: target})
        self._since[tp] = self.clock()
        self._sought += 1
