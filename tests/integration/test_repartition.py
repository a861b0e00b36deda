import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import pytest
from kafka import KafkaProducer
from kafka.admin import NewTopic

from streamrec import serde
from streamrec.client import RecommendationReader, read_all, tail
from streamrec.contracts import EVENTS_DLQ, STOREFRONT_EVENTS
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.tools.admin import admin_client

pytestmark = pytest.mark.integration


def test_events_keyed_by_session_reach_the_worker_keyed_by_user(make_stack):
    stack = make_stack(workers=1)
    s = stack.settings
    source = f"{s.topic_prefix}sessions-{uuid.uuid4().hex[:6]}"
    admin = admin_client(s)
    admin.create_topics([NewTopic(source, 3, 1)])
    admin.close()

    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrec", "repartition", "--source", source],
        env={**os.environ, **s.to_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        reader = RecommendationReader(s, from_beginning=False)
        now = int(time.time() * 1000)
        events = SyntheticShop(users=40, items=100, seed=5).events(600, now - 6000, 10)
        producer = KafkaProducer(bootstrap_servers=s.bootstrap_list())
        for i, ev in enumerate(events):  # keyed by a random session, not by user
            producer.send(source, key=f"session-{i % 17}".encode(), value=serde.dumps(ev.to_dict()))
        producer.send(source, key=b"session-x", value=b"not json at all")
        producer.flush()
        producer.close()

        seen: set[str] = set()
        deadline = time.monotonic() + 90
        while len(seen) < len(events) and time.monotonic() < deadline:
            seen.update(ref for r in reader.poll(0.5) for ref in r.event_ids)
        reader.close()
        assert seen == {reader.event_ref(e.event_id) for e in events}

        # Every user's events now sit on exactly one partition of storefront.events.
        consumer = tail(s, STOREFRONT_EVENTS)
        partitions: dict[bytes, set[int]] = defaultdict(set)
        for r in read_all(consumer):
            partitions[r.key].add(r.partition)
        consumer.close()
        assert all(len(p) == 1 for key, p in partitions.items() if key != b"session-x")
        assert {f"user-{u}".encode() for u in range(40)} >= set(partitions) - {
            b"session-x",
            b"__streamrec_probe__",
        }

        dlq = tail(s, EVENTS_DLQ)
        dead = [serde.loads(r.value) for r in read_all(dlq, idle_s=2)]
        dlq.close()
        assert [d["reason"] for d in dead] == ["not_json"]  # validated once, by the worker
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "repartition stopped after copying 601 messages" in out
