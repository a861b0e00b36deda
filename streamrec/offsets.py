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
    """The true end of each partition: ListOffsets, checked against a fetch's high watermark.

    The embedded broker answers ListOffsets with the first offset of a partition's
    newest record batch, while its fetch responses carry the right high watermark
    (`streamrec.aio.end_offsets` does the same for asyncio). On real Kafka the two agree.
    """
    if not tps:
        return {}
    consumer = clients.consumer(
        settings,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    try:
        ends = dict(consumer.end_offsets(tps))
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])
        pending = set(tps)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=50, max_records=500).items():
                if records:
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
            take_highwaters(consumer, pending, ends)
        return ends
    finally:
        consumer.close()


def take_highwaters(consumer: Any, pending: set[Any], ends: dict[Any, int]) -> None:
    """Raise `ends` to each pending partition's fetch high watermark (kafka-python and
    aiokafka consumers alike); a partition whose watermark is known is no longer pending."""
    for tp in list(pending):
        high = consumer.highwater(tp)
        if high is not None:
            ends[tp] = max(ends[tp], high)
            pending.discard(tp)
