"""The one place streamrec reaches into Faust's internals, each for a measured reason.

1. Fetch max wait: Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``.
   The embedded broker does not wake a waiting fetch when data arrives, so a
   caught-up consumer sees new data only after ~half of that (0.4-0.8 s per
   hop). We make it a setting (STREAMREC_FETCH_MAX_WAIT_MS, ~100 ms on the
   embedded profile). Real Kafka answers at once, so any value works there.
2. Current event for table access: Faust tables pick the store partition and
   the changelog partition from the *current event* of the stream. In a
   micro-batch (``take_events``) that is the batch's last event, which is the
   wrong partition for every other user in the batch. `as_current_event`
   points it at an event of the right partition around each table access.
3. Acks on delivery: ``take_events`` acks a batch's events as soon as the
   agent's body returns, before what the batch produced has reached Kafka, so
   a crash (or a message the broker refuses) let the committed offsets pass
   events whose lists and dead letters were never written (measured: 76 of 100
   valid events lost behind ten 1 MiB events). `defer_acks` turns those acks
   into no-ops and hands back the real one, which the worker calls once the
   batch's messages are acknowledged by the broker.
4. The end of a changelog: Faust's table recovery reads each changelog's end
   with ListOffsets, which the embedded broker answers with the start of the
   newest record batch. A restart then found its persisted offset "past the
   end" (``ConsistencyError``), or stopped recovering early. `set_end_offsets`
   gives recovery the ends a fetch reports (`streamrec.aio.end_offsets`).
5. Committed offsets: `committed_offsets` reads the consumer's own record of
   what it committed, so the worker can tell an emptied broker (offsets below
   it) from a replay.
6. Redelivery after an assignment: once recovery ends, Faust resumes the
   stream partitions *before* it seeks them to the committed offsets, so the
   fetcher can hand the agent a run of events from the old position and then
   the same run again after the seek. If the first copy is processed and
   committed before the second arrives, the second sits below the committed
   offset, which used to read as "the broker lost its data" and stopped the
   worker (seen in CI: a restarted worker stopped 30 events short of the end
   of a partition). `below_committed` tells the two apart by the partition's
   high watermark: data that is still there is a redelivery, skipped. The
   same race can leave Faust's read offset past events it never handed to the
   agent, which it then drops as already read; `worker/stall.py` finds such a
   partition (events waiting, none in flight, none delivered) and seeks it back.
7. Commits never pass an event in flight: Faust's commit offset is the end of
   the first run of acked offsets, where offsets it counts as a gap (never
   delivered) also count as acked. Two of its rules let a commit pass an event
   that was delivered and not yet acked, which a crash then loses for good:
   the gap it records when the fetcher jumps ahead includes the offset of the
   message it is delivering, and after a seek back (point 6) every offset
   between the seek target and the old position reads as a gap; and an
   unacked offset right at the committed head is taken for a gap of one
   (faust-streaming issue 606). Seen in CI: a restarted worker skipped an
   event below the committed offset that no one had processed, so its
   learning was lost. `guard_commits` keeps every offset at or past the
   lowest unacked event out of the commit until that event is acked, and
   records a gap without the message being delivered.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from faust.streams import _current_event
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

_fetch_max_wait_ms = 1500
_patched = False


def set_fetch_max_wait_ms(value: int) -> None:
    """Make every Faust consumer created from now on use `value` as fetch max wait."""
    global _fetch_max_wait_ms, _patched
    _fetch_max_wait_ms = int(value)
    if _patched:
        return
    original = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = _fetch_max_wait_ms
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    _patched = True


@contextmanager
def as_current_event(event: Any) -> Iterator[None]:
    """Within the block, Faust's `current_event()` is `event`."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def defer_acks(stream: Any) -> Callable[[Sequence[Any]], Awaitable[None]]:
    """Make `stream.take_events` leave its events unacked; returns the real ack.

    Acking is what lets Faust commit an offset, so the caller acks a batch's
    events only when everything it produced for them is on the broker.
    """
    real_ack = stream.ack

    async def _not_yet(event: Any) -> bool:
        return False

    stream.ack = _not_yet

    async def ack(events: Sequence[Any]) -> None:
        for event in events:
            await real_ack(event)

    return ack


EndOffsets = Callable[[list[Any]], Awaitable[dict[Any, int]]]
_end_offsets: EndOffsets | None = None
_end_offsets_patched = False


def set_end_offsets(reader: EndOffsets) -> None:
    """Faust's changelog recovery asks `reader` for the end of each partition."""
    global _end_offsets, _end_offsets_patched
    _end_offsets = reader
    if _end_offsets_patched:
        return
    original = faust_aiokafka.AIOKafkaConsumerThread._highwaters

    async def _highwaters(self: Any, partitions: list[Any]) -> Any:
        listed = await original(self, partitions)
        if _end_offsets is None or self.consumer.in_transaction or not partitions:
            return listed
        # Runs on the consumer thread's loop; the reader opens its own connection there.
        checked = await _end_offsets(list(partitions))
        return {tp: max(listed.get(tp) or 0, checked.get(tp, 0)) for tp in partitions}

    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]
    _end_offsets_patched = True


def highwater(app: Any, tp: Any) -> int | None:
    """The partition's end as the latest fetch reported it (None before any fetch)."""
    return cast("int | None", app.consumer.highwater(tp))


def below_committed(offset: int, committed: int | None, high: int | None) -> str:
    """What an event at `offset` is: "fresh" (at or past the committed offset),
    "redelivered" (below it, and the partition still holds the committed
    offset's data), or "lost" (below it, and the partition now ends before it:
    the broker restarted empty, or the topic was recreated).

    >>> below_committed(5, None, None), below_committed(7, 7, 10)
    ('fresh', 'fresh')
    >>> below_committed(6, 7, 10), below_committed(0, 7, 1), below_committed(0, 7, None)
    ('redelivered', 'lost', 'lost')
    """
    if committed is None or offset >= committed:
        return "fresh"
    if high is not None and high >= committed:
        return "redelivered"
    return "lost"


def sort_delivered(app: Any, batch: Sequence[Any]) -> tuple[list[Any], list[Any], str | None]:
    """(fresh, delivered again, None) for a batch of Faust events, or the evidence
    that the broker lost its data as the third item (then the rest is unsorted)."""
    committed = committed_offsets(app)
    fresh: list[Any] = []
    again: list[Any] = []
    for ev in batch:
        tp, offset = ev.message.tp, ev.message.offset
        floor = committed.get(tp)
        high = highwater(app, tp) if floor is not None and offset < floor else None
        kind = below_committed(offset, floor, high)
        if kind == "fresh":
            fresh.append(ev)
        elif kind == "redelivered":
            again.append(ev)
        else:
            return fresh, again, (f"{tp.topic}[{tp.partition}] delivered offset {offset}, "
                                  f"below the committed offset {floor}, and the partition "
                                  f"now ends at {high}")  # fmt: skip
    return fresh, again, None


def committed_offsets(app: Any) -> dict[Any, int | None]:
    """Faust's consumer's committed offset per topic partition (its own bookkeeping)."""
    return cast(dict[Any, int | None], app.consumer._committed_offset)


_commits_guarded = False
#: Past any offset a partition can hold: the top of "everything from here on".
_END = 1 << 62


def guard_commits() -> None:
    """Make Faust's commits stop at the lowest delivered, unacked event (point 7)."""
    global _commits_guarded
    if _commits_guarded:
        return
    cls = faust_consumer.Consumer
    new_offset, add_gap = cls._new_offset, cls._add_gap

    def _new_offset(self: Any, tp: Any) -> int | None:
        acked, gap = self._acked[tp], self._gap[tp]
        floor = in_flight_floor(self._unacked_messages, tp, self._committed_offset[tp])
        with held_back(acked, gap, _END if floor is None else floor):
            fill_gaps(acked, gap)
            return cast("int | None", new_offset(self, tp))

    async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        # `offset_to` is the message Faust is about to deliver: it is not missing.
        await add_gap(self, tp, offset_from, offset_to - 1)

    cls._new_offset = _new_offset  # type: ignore[method-assign]
    cls._add_gap = _add_gap  # type: ignore[method-assign]
    _commits_guarded = True


def in_flight_floor(unacked: Any, tp: Any, committed: int | None) -> int | None:
    """The lowest offset of `tp` delivered and not acked, at or past `committed`
    (below it, Faust does not count acks: a redelivery there is skipped)."""
    offsets = [
        m.offset
        for m in list(unacked)  # a WeakSet: a copy, as the loop may drop entries
        if m.tp == tp and not m.acked and (committed is None or m.offset >= committed)
    ]
    return min(offsets) if offsets else None


@contextmanager
def held_back(acked: list[int], gap: Any, floor: int) -> Iterator[None]:
    """Within the block, `acked` and the gap tree hold nothing at or past `floor`;
    afterwards they hold it again, to be committed once the event at `floor` is acked."""
    held = [o for o in acked if o >= floor] if floor < _END else []
    if held:
        acked[:] = [o for o in acked if o < floor]
    upper = sorted(gap.overlap(floor, _END)) if floor < _END else []
    if upper:
        gap.chop(floor, _END)
    try:
        yield
    finally:
        if held:
            acked.extend(held)
            acked.sort()
        for iv in upper:
            gap.addi(max(iv.begin, floor), iv.end)
        if upper:
            gap.merge_overlaps()


def fill_gaps(acked: list[int], gap: Any) -> None:
    """Count the gaps below the highest acked offset as acked, each offset once.

    Faust does this itself, but appends offsets that are acked already: after a
    seek back, offsets it recorded as a gap are delivered and acked too, and a
    duplicate ends its run of consecutive offsets, so commits would crawl.
    """
    if not acked or not gap:
        return
    top = max(acked)
    below = sorted(gap.overlap(0, top))
    if not below:
        return
    have = set(acked)
    acked.extend(o for iv in below for o in range(iv.begin, iv.end) if o not in have)
    gap.chop(0, max(max(iv.end for iv in below), top + 1))
