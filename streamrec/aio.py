"""Small aiokafka helpers shared by the worker's side tasks and the scorer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamrec.settings import Settings


async def wait_partitions(consumer: AIOKafkaConsumer, topic: str, poll_s: float = 0.5) -> list[int]:
    """The partitions of `topic`, waiting until its metadata is known (topics created late)."""
    parts = consumer.partitions_for_topic(topic)
    while not parts:
        await asyncio.sleep(poll_s)
        await consumer.topics()
        parts = consumer.partitions_for_topic(topic)
    return sorted(parts)


async def read_partition(
    settings: Settings, topic: str, partition: int, take: Callable[[Any], None]
) -> int:
    """Feed every record of one partition, from its start to its end now, to `take`.

    Returns the offset to continue from.
    """
    s = settings
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.bootstrap_list(),
        enable_auto_commit=False,
        fetch_max_wait_ms=s.scorer_fetch_max_wait_ms,
        **s.aiokafka_security(),
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        position = await consumer.position(tp)
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            records = batch.get(tp, [])
            if not records:
                break  # the end offset can trail on some brokers: nothing more is coming
            for r in records:
                take(r)
            position = records[-1].offset + 1
        return position
    finally:
        await consumer.stop()
