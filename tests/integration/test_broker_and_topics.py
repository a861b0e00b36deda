import os
import signal
import subprocess
import sys
import time

import pytest

from streamrec.broker import free_port, wait_for_port
from streamrec.contracts import all_contracts
from streamrec.tools.admin import admin_client, create_topics

pytestmark = pytest.mark.integration


def test_topics_create_is_idempotent_and_follows_the_contracts(kafka_settings):
    first = create_topics(kafka_settings)
    assert all(r.created for r in first)
    second = create_topics(kafka_settings)
    assert not any(r.created for r in second) and not any(r.note for r in second)
    admin = admin_client(kafka_settings)
    try:
        for c in all_contracts():
            meta = admin.describe_topics([kafka_settings.topic(c.name)])[0]
            assert len(meta["partitions"]) == c.partitions
    finally:
        admin.close()


def test_broker_command_runs_in_foreground_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {**os.environ, "STREAMREC_BROKER_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrec", "broker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for_port(port, timeout_s=20)
        second = subprocess.run(
            [sys.executable, "-m", "streamrec", "broker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert "already taken" in second.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        out = proc.stdout.read() if proc.stdout else ""
        assert "memory storage only" in out
        time.sleep(0.2)
        assert not wait_for_port(port, timeout_s=0.5)  # the broker child is gone too
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_readers_lag_counts_every_unread_list_on_the_embedded_broker(kafka_settings):
    """The broker's ListOffsets stops at each partition's newest record batch; the lag
    a reader reports counts the records of that batch too."""
    from kafka import KafkaProducer

    from streamrec.client import RecommendationReader
    from streamrec.contracts import RECOMMENDATIONS

    s = kafka_settings
    create_topics(s)
    reader = RecommendationReader(s, from_beginning=False)
    assert reader.lag() == 0
    producer = KafkaProducer(bootstrap_servers=s.bootstrap_list(), linger_ms=50)
    for _batch in range(3):  # several multi-record batches per partition
        for i in range(25):
            producer.send(s.topic(RECOMMENDATIONS), key=f"u{i}".encode(), value=b"{}")
        producer.flush()
    producer.close()
    try:
        assert reader.lag() == 75
    finally:
        reader.close()
