"""Do crashes change what a worker stores? Profiles after kill -9s against uninterrupted runs.

MovieLens-100k's catalog, then its first `--events` events, go into a fresh
set of topics on an embedded broker; one `streamrec worker` processes them.
The uninterrupted run processes them all; the crashed run is SIGKILLed
`--kills` times, at fixed shares of the events answered, and each time
restarted onto the same data dir. Then every stored profile is read back from
`<app>-profiles-changelog` with kafka-python and orjson only (no streamrec
code reads them), and compared field by field with the first uninterrupted
run's. A second uninterrupted run shows what differs without any crash.

    python scripts/crash_probe.py                   # 20,000 events, 4 kills
    python scripts/crash_probe.py --events 5000 --kills 2 --json out.json

Prints, per run, how many users differ in each field; exits 1 if any do.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from streamrec.broker import EmbeddedBroker, free_port
from streamrec.client import EventProducer, RecommendationReader
from streamrec.core.privacy import Pseudonymizer
from streamrec.datasets import movielens
from streamrec.records import CatalogItem
from streamrec.settings import Settings
from streamrec.tools.replay import replay
from streamrec.tools.stack import PROBE_USER, LocalStack


def stored_profiles(bootstrap: str, topic: str, idle_s: float = 3.0) -> dict[bytes, Any]:
    """The latest value per key of a changelog topic, decoded as plain JSON."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts: set[int] | None = None
        deadline = time.monotonic() + 30
        while not parts and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        latest: dict[bytes, Any] = {}
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s:
            got = consumer.poll(timeout_ms=500)
            if any(got.values()):
                quiet_since = time.monotonic()
            for records in got.values():
                for r in records:
                    if r.value is None:
                        latest.pop(r.key, None)
                    else:
                        latest[r.key] = orjson.loads(r.value)
        return latest
    finally:
        consumer.close()


def padding(n: int) -> list[CatalogItem]:
    """`n` catalog items no event touches: a catalog that takes a while to read back."""
    return [CatalogItem(item_id=f"pad-{i}", title=f"Padding item {i}", category=("Padding",),
                        price=9.99) for i in range(n)]  # fmt: skip


def run_once(
    broker: EmbeddedBroker,
    ml: movielens.MovieLens,
    kills: int,
    workdir: Path,
    label: str,
    extra_items: int,
) -> dict[bytes, Any]:
    tag = uuid.uuid4().hex[:8]
    s = Settings.from_env({}).with_overrides(
        kafka_bootstrap=broker.bootstrap,
        topic_prefix=f"probe-{tag}.",
        app_id=f"probe-{tag}",
        data_dir=workdir / label,
        snapshot_interval_s=5.0,
    )
    stack = LocalStack(s, workers=1, broker=broker, log_dir=workdir / f"{label}-logs")
    stack.start()
    s = stack.settings
    try:
        stack.wait_ready(timeout_s=120)
        reader = RecommendationReader(s, from_beginning=False)
        want = {reader.event_ref(e.event_id) for e in ml.events}
        with EventProducer(s) as producer:
            replay(producer, ml.events, items=[*padding(extra_items), *ml.items], progress=False)
        marks = [len(want) * (k + 1) // (kills + 1) for k in range(kills)]
        seen: set[str] = set()
        deadline = time.monotonic() + 900
        while not want <= seen and time.monotonic() < deadline:
            seen.update(r.event_id for r in reader.poll(0.2) if r.event_id in want)
            if marks and len(seen) >= marks[0]:
                marks.pop(0)
                worker = stack.workers.pop()
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(30)
                print(f"  {label}: kill -9 at {len(seen):,} of {len(want):,} answered")
                stack.start_worker()
        reader.close()
        if not want <= seen:
            raise SystemExit(f"{label}: {len(want - seen)} events never answered; "
                             f"see {workdir / f'{label}-logs'}")  # fmt: skip
        stored = stored_profiles(broker.bootstrap, f"{s.app_id}-profiles-changelog")
        stored.pop(Pseudonymizer(s.resolved_pseudonym_key())(PROBE_USER).encode(), None)
        return stored
    finally:
        stack.stop()


def compare(a: dict[bytes, Any], b: dict[bytes, Any]) -> dict[str, int]:
    """Per field, how many users' values differ (and users present in one run only)."""
    out: dict[str, int] = {}
    if a.keys() != b.keys():
        out["<users>"] = len(a.keys() ^ b.keys())
    for user in a.keys() & b.keys():
        for name in sorted(set(a[user]) | set(b[user])):
            if a[user].get(name) != b[user].get(name):
                out[name] = out.get(name, 0) + 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--kills", type=int, default=4)
    ap.add_argument(
        "--extra-items",
        type=int,
        default=0,
        help="catalog items published before MovieLens's (a catalog slow to read)",
    )
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    s = Settings.from_env({})
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=args.events)
    with tempfile.TemporaryDirectory(prefix="crash-probe-") as tmp:
        work = Path(tmp)
        broker = EmbeddedBroker(free_port(), log_path=work / "broker.log").start()
        try:
            pad = args.extra_items
            base = run_once(broker, ml, 0, work, "uninterrupted", pad)
            crashed = run_once(broker, ml, args.kills, work, "crashed", pad)
            again = run_once(broker, ml, 0, work, "uninterrupted-again", pad)
        finally:
            broker.stop()
    result = {
        "events": len(ml.events),
        "users": len(base),
        "kills": args.kills,
        "extra_catalog_items": args.extra_items,
        "differ_after_kills": compare(base, crashed),
        "differ_between_uninterrupted_runs": compare(base, again),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    differ = result["differ_after_kills"] or result["differ_between_uninterrupted_runs"]
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
