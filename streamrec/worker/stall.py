"""A worker that has events waiting and receives none says so, with Faust's view.

Twice in CI a worker restarted after a SIGKILL stopped receiving events part-way
through its backlog: its event loop answered (it stopped at once on SIGTERM),
its last batches were normal, and then nothing came for the rest of the test.
The logs could not say where the events stopped: in the broker's fetch, in
Faust's read offsets (Faust drops a message below the offset it read last), or
in the agent's stream. This watch makes the next occurrence readable: when no
batch has arrived for `after_s` while the partitions it owns end past what it
processed, it logs one warning with, per partition, the end, the committed
offset and the read offset Faust keeps, the last offset processed, and whether
the partition is paused. It only reports; it changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

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
        done = processed.get(tp)
        start = done + 1 if done is not None else committed.get(tp) or 0
        if end > start:
            out[tp] = end - start
    return out


class StallWatch:
    """Call `saw` for every batch and `assigned` after every assignment; `check`
    periodically (a Faust timer)."""

    def __init__(self, app: Any, topic: str, ends: EndOffsets, after_s: float) -> None:
        self.app = app
        self.topic = topic
        self.ends = ends
        self.after_s = after_s
        self.last = time.monotonic()
        self.processed: dict[Any, int] = {}
        self._checked_at = -float("inf")

    def saw(self, batch: Sequence[Any]) -> None:
        self.last = time.monotonic()
        for ev in batch:
            tp, offset = ev.message.tp, ev.message.offset
            if offset > self.processed.get(tp, -1):
                self.processed[tp] = offset

    def assigned(self) -> None:
        self.last = time.monotonic()  # recovery and a first fetch take their time
        self.processed.clear()

    async def check(self) -> None:
        now = time.monotonic()
        idle = now - self.last
        if self.after_s <= 0 or idle < self.after_s or now - self._checked_at < self.after_s:
            return  # an idle worker asks the broker at most once per `after_s`
        self._checked_at = now
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic == self.topic]
        if not tps:
            return
        try:
            ends = await self.ends(tps)
        except Exception as exc:  # the broker is away: that is logged elsewhere
            log.debug("stall check: no partition ends (%r)", exc)
            return
        ends = {tp: ends[tp] for tp in tps if tp in ends}
        committed = dict(consumer._committed_offset)
        behind = waiting(ends, self.processed, committed)
        if not behind:
            return
        paused = set(getattr(consumer, "_paused_partitions", ()) or ())
        detail = "; ".join(
            f"{tp.topic}[{tp.partition}]: end {ends[tp]}, processed {self.processed.get(tp)}, "
            f"committed {committed.get(tp)}, read {consumer._read_offset.get(tp)}"
            f"{', paused' if tp in paused else ''}"
            for tp in sorted(behind, key=lambda t: t.partition)
        )
        log.warning(
            "no event received for %.0f s while %d wait in partitions this worker owns "
            "(they are not lost: a restart reads them from the committed offset): %s",
            idle, sum(behind.values()), detail,
        )  # fmt: skip
