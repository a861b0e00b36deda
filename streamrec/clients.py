"""Every Kafka client streamrec builds, with the bootstrap servers and the security
settings applied in one place.

kafka-python serves the synchronous side (the client SDK, tools, start-up
reads), aiokafka the asynchronous one (the scorer, the serving API, the
worker's side tasks); Faust builds its own from the same settings
(`worker/faust_app.py`). A caller passes only what is particular to its use:
topics, group, offsets, batching.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from streamrec.settings import Settings

if TYPE_CHECKING:  # imported where used: the client SDK stays free of aiokafka
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.client import AIOKafkaClient


def _kafka_python(settings: Settings) -> dict[str, Any]:
    return {"bootstrap_servers": settings.bootstrap_list(), **settings.kafka_python_security()}


def _aiokafka(settings: Settings) -> dict[str, Any]:
    return {"bootstrap_servers": settings.bootstrap_list(), **settings.aiokafka_security()}


def consumer(settings: Settings, *topics: str, **options: Any) -> KafkaConsumer:
    """A kafka-python consumer of `topics` (none: assign partitions yourself)."""
    return KafkaConsumer(*topics, **_kafka_python(settings), **options)


def producer(settings: Settings, **options: Any) -> KafkaProducer:
    """A kafka-python producer."""
    return KafkaProducer(**_kafka_python(settings), **options)


def aio_consumer(settings: Settings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer of `topics` (start it on the loop that uses it)."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(*topics, **_aiokafka(settings), **options)


def aio_producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer (start it on the loop that uses it)."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**_aiokafka(settings), **options)


def admin(settings: Settings, **options: Any) -> KafkaAdminClient:
    """A kafka-python admin client (topics)."""
    return KafkaAdminClient(**_kafka_python(settings), **options)


def aio_client(settings: Settings, **options: Any) -> AIOKafkaClient:
    """aiokafka's bare client: metadata only (is a broker there?)."""
    from aiokafka.client import AIOKafkaClient

    return AIOKafkaClient(**_aiokafka(settings), **options)
