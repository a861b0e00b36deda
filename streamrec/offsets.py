"""Where a partition ends, read right on every broker (kafka-python).

The embedded broker (tansu) answers ListOffsets with the first offset of a
partition's newest record *batch*, not its end (a foreign client saw 1 for
partitions holding 4 to 6 records), while its fetch responses carry the right
high watermark. Anything that reads a topic "to its end" asks here;
`streamrec.aio.end_offsets` is the same for asyncio.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import TopicPartition

from streamrec import clients
from streamrec.settings import Settings


def end_offsets(
    settings: Settings, tps: list[TopicPartition], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """The true end of each partition, once (`EndReader` for a caller that asks often)."""
    if not tps:
        return {}
    reader = EndReader(settings)
    try:
        return reader.ends(tps, timeout_s)
    finally:
        reader.close()


class EndReader:
    """Finds partitions' true ends: ListOffsets, checked against what a fetch from there
    returns. One consumer for its life: a caller that asks every second (a reader's
    `lag`) does not open and close a connection each time."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = clients.consumer(settings, enable_auto_commit=False, fetch_max_wait_ms=10)

    def ends(self, tps: list[TopicPartition], timeout_s: float = 10.0) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        consumer = self.consumer
        ends = dict(consumer.end_offsets(tps))
        if set(consumer.assignment()) != set(tps):
            consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])  # drops what was fetched before: the next fetch is new
        pending, polls = set(tps), 0
        deadline = time.monotonic() + timeout_s
        while (pending or polls < 2) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=50, max_records=500).items():
                if records:
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
            polls += 1
            if polls >= 2:  # a fetch since the seek has reported each watermark
                take_highwaters(consumer, pending, ends)
        return ends

    def close(self) -> None:
        self.consumer.close()


def take_highwaters(consumer: Any, pending: set[Any], ends: dict[Any, int]) -> None:
    """Raise `ends` to each pending partition's fetch high watermark (kafka-python and
    aiokafka consumers alike); a partition whose watermark is known is no longer pending."""
    for tp in list(pending):
        high = consumer.highwater(tp)
        if high is not None:
            ends[tp] = max(ends[tp], high)
            pending.discard(tp)
