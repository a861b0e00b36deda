"""`streamrec topics create`: create every contract topic, idempotently, on any Kafka cluster."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streamrec import clients
from streamrec.contracts import all_contracts, partitions_for
from streamrec.errors import BrokerError
from streamrec.offsets import end_offsets
from streamrec.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicResult:
    name: str
    partitions: int
    created: bool
    note: str = ""


def admin_client(settings: Settings, timeout_s: float = 30.0) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return clients.admin(settings, client_id="streamrec-admin", request_timeout_ms=30_000)
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"no Kafka broker answers at {settings.kafka_bootstrap}; start one with "
                    "`streamrec broker` or set STREAMREC_KAFKA_BOOTSTRAP"
                ) from exc
            time.sleep(0.2)


def create_topics(settings: Settings) -> list[TopicResult]:
    """Create the contract topics that do not exist; report (never alter) those that do."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        results: list[TopicResult] = []
        for contract in all_contracts():
            name = settings.topic(contract.name)
            parts = partitions_for(contract.name, settings.partitions)
            if name in existing:
                have = len(admin.describe_topics([name])[0]["partitions"])
                note = "" if have == parts else f"has {have} partitions, contract says {parts}"
                if note:
                    log.warning("topic %s %s; leaving it as it is", name, note)
                results.append(TopicResult(name, have, False, note))
                continue
            topic = NewTopic(name, parts, settings.replication, topic_configs=contract.config)
            try:
                admin.create_topics([topic])
                results.append(TopicResult(name, parts, True))
            except TopicAlreadyExistsError:  # created concurrently by another process
                results.append(TopicResult(name, parts, False))
            except KafkaError as exc:
                raise BrokerError(f"could not create topic {name}: {exc}") from exc
        return results
    finally:
        admin.close()


def scan_deployment(
    settings: Settings, timeout_s: float = 60.0
) -> tuple[list[str], Iterator[ConsumerRecord]]:
    """(topic names, every record on them) for one deployment: its prefixed topics and the
    worker's own `<app id>-...` topics, read up to their ends as they are now (metrics and
    the scorer's topics never go idle). For privacy probes and audits; reads everything."""
    consumer = clients.consumer(settings, enable_auto_commit=False)
    names = sorted(
        t for t in consumer.topics() if t.startswith((settings.topic_prefix, settings.app_id))
    )
    tps = [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or ()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = {tp: n for tp, n in end_offsets(settings, tps).items() if n > 0}

    def records() -> Iterator[ConsumerRecord]:
        deadline = time.monotonic() + timeout_s
        try:
            while any(consumer.position(tp) < n for tp, n in ends.items()):
                if time.monotonic() > deadline:
                    raise BrokerError(f"could not read {names} to their ends in {timeout_s:.0f} s")
                for batch in consumer.poll(timeout_ms=500).values():
                    yield from batch
        finally:
            consumer.close()

    return names, records()
