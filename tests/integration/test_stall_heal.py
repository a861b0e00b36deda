"""A partition that stops delivering while it has events waiting is sought back:
every event still gets its list, and the metrics count the seek."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamrec.client import EventProducer, RecommendationReader
from streamrec.contracts import STOREFRONT_EVENTS
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.tools.stack import LocalStack

from .conftest import metrics_totals

pytestmark = pytest.mark.integration


def test_a_partition_whose_events_faust_swallowed_is_sought_back(kafka_settings, broker, tmp_path):
    s = kafka_settings.with_overrides(partitions=2, stall_warn_s=3.0)
    stack = LocalStack(s, workers=0, broker=broker, log_dir=tmp_path / "logs").start()
    start = int(time.time() * 1000) - 3_600_000
    events = SyntheticShop(users=40, items=200, seed=5).events(600, start_ts=start, step_ms=100)
    reader = RecommendationReader(s, from_beginning=False)
    with EventProducer(s) as producer:
        for e in events:
            producer.send_event(e)
    log = tmp_path / "logs" / "worker-0.log"
    env = {**os.environ, **s.to_env(), "SWALLOW_TOPIC": s.topic(STOREFRONT_EVENTS),
           "SWALLOW_FROM": "40"}  # fmt: skip
    with open(log, "ab") as out:
        script = str(Path(__file__).with_name("swallowing_worker.py"))
        proc = subprocess.Popen([sys.executable, script], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        stack.workers.append(proc)
    try:
        want = {reader.event_ref(e.event_id) for e in events}
        seen: set[str] = set()
        deadline = time.monotonic() + 120
        while not want <= seen and time.monotonic() < deadline:
            seen.update(ref for r in reader.poll(0.5) for ref in r.event_ids)
        reader.close()
        text = log.read_text()
        assert want <= seen, f"{len(want - seen)} events without a list\n{text[-3000:]}"
        assert "delivered no event for" in text and "seeking it to 40" in text, text[-3000:]
        totals = metrics_totals(s, expect_in=len(events), more=("partitions_sought",))
        assert totals["partitions_sought"] >= 1, totals
    finally:
        stack.stop()
