"""Every Kafka client streamrec builds, with the bootstrap servers and the security
settings applied in one place.

kafka-python serves the synchronous side (the client SDK, tools, start-up
reads), aiokafka the asynchronous one (the scorer, the serving API, the
worker's side tasks); Faust builds its own from the same settings
(`worker/faust_app.py`). A caller passes only what is particular to its use:
topics, group, offsets, batching.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from streamrec.settings import Settings


def consumer(settings: Settings, *topics: str, **options: Any) -> KafkaConsumer:
    """A kafka-python consumer of `topics` (none: assign partitions yourself)."""
    return KafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_list(),
        **settings.kafka_python_security(),
        **options,
    )


def producer(settings: Settings, **options: Any) -> KafkaProducer:
    """A kafka-python producer."""
    return KafkaProducer(
        bootstrap_servers=settings.bootstrap_list(),
        **settings.kafka_python_security(),
        **options,
    )


def aio_consumer(settings: Settings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer of `topics` (start it on the loop that uses it)."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_list(),
        **settings.aiokafka_security(),
        **options,
    )


def aio_producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer (start it on the loop that uses it)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_list(),
        **settings.aiokafka_security(),
        **options,
    )


def admin(settings: Settings, **options: Any) -> KafkaAdminClient:
    """A kafka-python admin client (topics)."""
    return KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_list(),
        **settings.kafka_python_security(),
        **options,
    )


def aio_client(settings: Settings, **options: Any) -> AIOKafkaClient:
    """aiokafka's bare client: metadata only (is a broker there?)."""
    return AIOKafkaClient(
        bootstrap_servers=settings.bootstrap_list(),
        **settings.aiokafka_security(),
        **options,
    )
