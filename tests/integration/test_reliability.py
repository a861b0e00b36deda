"""Lose nothing, stop for nothing: poison events, restarts, a missing or lost broker.

Each test drives `streamrec worker` processes the way an operator would, on
the embedded broker.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from streamrec import serde
from streamrec.broker import EmbeddedBroker, free_port
from streamrec.build import build_dead_letters, build_engine
from streamrec.client import EventProducer, RecommendationReader, read_all, read_table, tail
from streamrec.contracts import EVENTS_DLQ, METRICS
from streamrec.core.engine import DictProfileStore
from streamrec.core.ingest import RawMessage
from streamrec.core.privacy import Pseudonymizer
from streamrec.core.profile import Profile
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.records import DeadLetter, MetricsWindow, RawEvent
from streamrec.settings import Settings
from streamrec.tools.stack import PROBE_USER, LocalStack

pytestmark = pytest.mark.integration

MiB = 1_048_576


def collect(reader: RecommendationReader, want: set[str], timeout_s: float) -> dict[str, int]:
    """event id -> number of lists seen, until every id in `want` has one (or timeout).

    Lists carry hashed event ids: they are mapped back to the ids in `want`."""
    raw = {reader.event_ref(w): w for w in want}
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    while not want <= seen.keys() and time.monotonic() < deadline:
        for r in reader.poll(0.5):
            for ref in r.event_ids:  # its own event and those it covers
                key = raw.get(ref, ref)
                seen[key] = seen.get(key, 0) + 1
    return seen


def test_poison_events_cost_themselves_only(make_stack):
    stack = make_stack(workers=1)
    s = stack.settings
    reader = RecommendationReader(s, from_beginning=False)
    valid: list[str] = []
    big = [
        serde.dumps({"event_id": f"big-{i}", "type": "view", "user_id": f"big-{i}",
                     "ts": int(time.time() * 1000), "item_id": "x" * 100,
                     "context": {"page": "p" * (MiB - 200)}})
        for i in range(3)
    ]  # fmt: skip
    with EventProducer(s, max_request_size=4 * MiB) as p:
        for i in range(40):
            valid.append(p.track("view", f"shopper-{i % 8}", item_id=f"sku-{i}").event_id)
            if i in (5, 15, 25):
                p.send_raw(big[i // 10], key=f"big-{i}".encode())
            if i == 10:  # schema-valid JSON type, a price no shop has: spend would be infinite
                whale = {"event_id": "inf-1", "type": "purchase", "user_id": "whale",
                         "ts": int(time.time() * 1000), "item_id": "sku-1", "price": 1e308,
                         "quantity": 2}  # fmt: skip
                p.send_raw(serde.dumps(whale), key=b"whale")
                valid.append(p.track("view", "whale", item_id="sku-2").event_id)
    seen = collect(reader, set(valid), timeout_s=60)
    reader.close()
    assert set(valid) <= seen.keys()  # every valid event answered, the whale's too

    dlq = tail(s, EVENTS_DLQ)
    dead = [DeadLetter.from_dict(serde.loads(r.value)) for r in read_all(dlq, idle_s=2)]
    dlq.close()
    # Each bad one once: the oversized ones (too big to parse) by their hash.
    oversized = sorted(d.original_sha256 or "" for d in dead if d.reason == "oversized")
    assert oversized == sorted(hashlib.sha256(v).hexdigest() for v in big)
    for d in dead:
        if d.reason == "oversized":
            value = big[[hashlib.sha256(v).hexdigest() for v in big].index(d.original_sha256)]
            assert d.truncated and d.original_size == len(value)
            original = build_dead_letters(s).open(d)[1]
            assert value.startswith(original) and len(original) <= s.dlq_original_max_bytes
    ref = Pseudonymizer(s.resolved_pseudonym_key()).event_id
    by_id = {d.event_id: d for d in dead if d.reason != "oversized"}
    assert len(dead) == 4 and list(by_id) == [ref("inf-1")]
    assert by_id[ref("inf-1")].reason == "schema" and "price" in by_id[ref("inf-1")].detail

    log = (stack.log_dir / "worker-0.log").read_text()
    assert "Traceback" not in log and "crash" not in log.lower()  # the agent never restarted
    assert stack.workers[0].poll() is None
    windows = metrics_windows(s, expect_in=len(valid) + 4 + 1)
    for w in windows:  # every window balances on its own, not only the totals
        c = w.counts
        assert c["in"] == c["valid"] + c["dlq"] + c["duplicates"], c


def metrics_windows(s: Settings, expect_in: int, timeout_s: float = 30) -> list[MetricsWindow]:
    consumer = tail(s, METRICS)
    windows: list[MetricsWindow] = []
    deadline = time.monotonic() + timeout_s
    try:
        while sum(w.counts["in"] for w in windows) < expect_in and time.monotonic() < deadline:
            windows += [
                MetricsWindow.from_dict(serde.loads(r.value)) for r in read_all(consumer, max_s=5)
            ]
            time.sleep(0.3)
    finally:
        consumer.close()
    assert sum(w.counts["in"] for w in windows) >= expect_in
    return windows


def changelog_profiles(s: Settings) -> dict[str, Profile]:
    """The profile table as its changelog holds it: the last record per user."""
    return {k.decode(): Profile.from_bytes(v)[0] for k, v in read_table(s).items()}


def own_state(p: Profile) -> tuple[object, ...]:
    """What a user's own events decide (not the value model, which all users teach)."""
    return (p.counts, p.recent, p.purchased, p.orders, round(p.spend, 6), p.first_seen,
            p.last_seen, p.session_id, p.session_start, p.session_events, p.last_query)  # fmt: skip


def test_ten_restarts_onto_one_data_dir_lose_nothing_and_count_nothing_twice(make_stack, tmp_path):
    stack = make_stack(workers=1, store="rocksdb", data_dir=tmp_path / "node", partitions=2)
    s = stack.settings
    start = int(time.time() * 1000) - 3_600_000
    events = SyntheticShop(users=60, items=300, seed=11).events(3_000, start_ts=start, step_ms=100)
    reader = RecommendationReader(s, from_beginning=False)
    chunks = [events[i : i + 300] for i in range(0, len(events), 300)]
    raw = {reader.event_ref(e.event_id): e.event_id for e in events}  # lists carry hashes
    kills = []
    answered: set[str] = set()
    with EventProducer(s) as producer:
        for n, chunk in enumerate(chunks):
            for e in chunk:
                producer.send_event(e)
            producer.flush()
            # Stop the worker while it works on this chunk: SIGKILL and SIGTERM in turn.
            wanted = {e.event_id for e in chunk}
            deadline = time.monotonic() + 30
            while len(answered & wanted) < len(wanted) // 3 and time.monotonic() < deadline:
                refs = {ref for r in reader.poll(0.2) for ref in r.event_ids}
                answered |= {raw[ref] for ref in refs if ref in raw}
            sig = signal.SIGKILL if n % 2 == 0 else signal.SIGTERM
            worker = stack.workers.pop()
            os.killpg(worker.pid, sig)
            t0 = time.monotonic()
            worker.wait(30)
            kills.append((sig.name, round(time.monotonic() - t0, 1), worker.returncode))
            stack.start_worker()
            stack.wait_ready(timeout_s=90)  # each restart comes up and answers
    answered |= collect(reader, {e.event_id for e in events} - answered, timeout_s=120).keys()
    reader.close()
    missing = {e.event_id for e in events} - answered
    assert not missing, f"{len(missing)} events without a list after {kills}"
    assert all(t < 10 for name, t, _code in kills if name == "SIGTERM"), kills
    assert all(code == 0 for name, _t, code in kills if name == "SIGTERM"), kills

    # The profiles equal one uninterrupted run over the same events.
    engine = build_engine(s)
    reference = DictProfileStore()
    now = int(time.time() * 1000)
    msgs = [
        RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), 0, i, now)
        for i, e in enumerate(events)
    ]
    engine.process_batch(msgs, reference, now)
    stored = changelog_profiles(s)
    stored.pop(Pseudonymizer(s.resolved_pseudonym_key())(PROBE_USER), None)
    assert stored.keys() == reference.keys()
    differing = [u for u in reference if own_state(stored[u]) != own_state(reference[u])]
    assert differing == [], f"{len(differing)} of {len(reference)} profiles differ ({kills})"


def test_a_worker_without_a_broker_exits_with_a_clear_error(tmp_path):
    env = {**os.environ, **Settings.from_env({}).to_env()}
    env |= {
        "STREAMREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "STREAMREC_BROKER_WAIT_S": "2",
        "STREAMREC_DATA_DIR": str(tmp_path),
        "STREAMREC_METRICS_PORT": "0",
    }
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streamrec", "worker"], env=env, capture_output=True, timeout=60
    )
    took = time.monotonic() - t0
    err = done.stderr.decode()
    assert done.returncode != 0 and took < 30, (done.returncode, took)
    assert "no Kafka broker answered" in err and "streamrec broker" in err
    assert err.count("Kafka broker unreachable") <= 1  # one line about it, not a flood


@pytest.fixture
def own_broker(tmp_path: Path):
    """A broker of this test's own: these tests stop and restart it."""
    broker = EmbeddedBroker(free_port(), log_path=tmp_path / "own-broker.log").start()
    yield broker
    broker.stop()


def own_stack(broker: EmbeddedBroker, tmp_path: Path, **overrides: object) -> LocalStack:
    tag = uuid.uuid4().hex[:8]
    s = Settings.from_env(
        {},
        kafka_bootstrap=broker.bootstrap,
        topic_prefix=f"t-{tag}.",
        app_id=f"app-{tag}",
        data_dir=tmp_path / "data",
        metrics_interval_s=1.0,
        metrics_port=0,
        scorer_enabled=False,
        **overrides,
    )
    stack = LocalStack(s, workers=1, broker=broker, log_dir=tmp_path / "logs")
    stack.start()
    stack.wait_ready()
    return stack


def test_sigterm_stops_a_worker_within_10_s_when_the_broker_is_gone(own_broker, tmp_path):
    stack = own_stack(own_broker, tmp_path)
    try:
        own_broker.stop()
        time.sleep(3)  # the worker notices: reconnect attempts, one log line
        worker = stack.workers[0]
        t0 = time.monotonic()
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        assert time.monotonic() - t0 < 10
        log = (stack.log_dir / "worker-0.log").read_text()
        assert log.count("Kafka broker unreachable") <= 2
    finally:
        stack.stop()


def test_a_broker_that_comes_back_empty_stops_the_worker_with_a_clear_message(own_broker, tmp_path):
    stack = own_stack(own_broker, tmp_path, store="rocksdb")
    try:
        s = stack.settings
        with EventProducer(s) as p:
            for i in range(50):
                p.send_event(RawEvent(f"e{i}", "view", f"u{i % 5}", int(time.time() * 1000),
                                      item_id=f"sku-{i}"))  # fmt: skip
        time.sleep(3)
        own_broker.stop()
        own_broker.start()  # the same port at once, and nothing in it
        from streamrec.tools.admin import create_topics

        create_topics(s)
        with EventProducer(s) as p:
            p.track("view", "u1", item_id="sku-1")
        worker = stack.workers[0]
        worker.wait(90)
        log = (stack.log_dir / "worker-0.log").read_text()
        assert worker.returncode not in (0, None)
        assert "the broker lost its data" in log and "topics create" in log
    finally:
        stack.stop()
