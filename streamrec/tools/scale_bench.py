"""`streamrec bench --workers 1,2,3`: throughput per worker count, and what sharing costs.

`run_scale_out` starts a local stack per worker count (learned item state
shared) and measures the backlog rate and the `shared.state` bandwidth. On
one machine the workers share its cores, so events/s per count says what the
sharing costs, not what more hosts would give; docs/scaling.md takes the unit
costs below to a cluster.

Three unit costs that the scale-out plan (docs/scaling.md) is built from:

* `record_us_per_event`: what a worker pays to keep its learning for a delta
  and write the delta (`Sharing.learn` + `take` + `to_bytes`), over the same
  events without sharing;
* `fold_us_per_event`: what a worker pays to fold another worker's deltas in
  (decode + `Sharing.fold`), per event those deltas cover;
* `delta_bytes_per_event` and `deltas_per_1k_events`: the shared topic's
  bandwidth, for micro-batches of `batch_max` events over `partitions`.

With N workers each one folds (N-1)/N of the shop's events, so the fold cost
per worker grows towards `fold_us_per_event` x the shop's events/s.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
import zlib
from itertools import zip_longest
from pathlib import Path
from typing import Any

from streamrec import serde
from streamrec.build import build_engine
from streamrec.client import read_all, tail
from streamrec.contracts import METRICS, SHARED_STATE
from streamrec.core.engine import DictProfileStore, Engine
from streamrec.core.ingest import RawMessage
from streamrec.core.monitoring.windows import merge_windows
from streamrec.core.sharing import decode
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.records import MetricsWindow
from streamrec.settings import Settings
from streamrec.tools.bench import _log, measure_throughput
from streamrec.tools.stack import LocalStack


def _batches(n: int, batch: int, partitions: int, seed: int = 7) -> list[list[RawMessage]]:
    """A synthetic shop's events, keyed to partitions, cut into micro-batches per partition."""
    shop = SyntheticShop(seed=seed)
    now = int(time.time() * 1000)
    offsets = [0] * partitions
    per: list[list[RawMessage]] = [[] for _ in range(partitions)]
    for e in shop.events(n, start_ts=now - n * 50, step_ms=50):
        p = zlib.crc32(e.user_id.encode()) % partitions
        per[p].append(RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), p, offsets[p], now))
        offsets[p] += 1
    # A worker's batch holds `batch` events of its partitions; round-robin over them.
    msgs = [m for group in zip_longest(*per) for m in group if m is not None]
    return [msgs[i : i + batch] for i in range(0, len(msgs), batch)]


def _run(engine: Engine, batches: list[list[RawMessage]]) -> tuple[float, list[bytes]]:
    store = DictProfileStore()
    now = int(time.time() * 1000)
    wire: list[bytes] = []
    t0 = time.process_time()
    for b in batches:
        out = engine.process_batch(b, store, now)
        wire += [d.to_bytes() for d in out.deltas]
    return time.process_time() - t0, wire


def measure_sharing(
    settings: Settings, events: int = 20_000, partitions: int = 4
) -> dict[str, Any]:
    """The unit costs of shared learned state on `events` synthetic-shop events (CPU time)."""
    s = settings.with_overrides(monitoring=False)
    batches = _batches(events, s.batch_max, partitions)
    plain_s, _ = _run(build_engine(s), batches)
    sharing = build_engine(s)
    sharing.share("bench")
    shared_s, wire = _run(sharing, batches)
    folder = build_engine(s).share("folder")
    t0 = time.process_time()
    for blob in wire:
        folder.fold(decode(blob))
    fold_s = time.process_time() - t0
    n = sum(len(b) for b in batches)
    return {
        "events": n,
        "partitions": partitions,
        "batch_max": s.batch_max,
        "core_us_per_event": round(plain_s / n * 1e6, 1),
        "record_us_per_event": round((shared_s - plain_s) / n * 1e6, 1),
        "fold_us_per_event": round(fold_s / n * 1e6, 1),
        "delta_bytes_per_event": round(sum(map(len, wire)) / n, 1),
        "deltas_per_1k_events": round(len(wire) / n * 1000, 1),
        "folded": folder.counts["folded"],
    }


def run_scale_out(base: Settings, counts: list[int], events: int) -> dict[str, Any]:
    """Throughput and shared-topic bandwidth per worker count, and the unit costs."""
    per_count: dict[str, Any] = {}
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="streamrec-bench-") as tmp:
            s = base.with_overrides(
                data_dir=Path(tmp) / "data",
                app_id=f"bench-{uuid.uuid4().hex[:6]}",
                partitions=max(4, n),
            )
            with LocalStack(s, workers=n, log_dir=Path(tmp) / "logs") as stack:
                stack.wait_ready()
                _log(f"{n} worker(s): {events:,} events as a backlog, learned state shared")
                shop = SyntheticShop(seed=n)
                result = measure_throughput(stack.settings, shop, events)
                consumer = tail(stack.settings, SHARED_STATE)
                deltas = read_all(consumer, idle_s=2.0)
                consumer.close()
                time.sleep(stack.settings.metrics_interval_s)  # the last windows close
                consumer = tail(stack.settings, METRICS)
                windows = merge_windows(
                    MetricsWindow.from_dict(serde.loads(r.value))
                    for r in read_all(consumer, max_s=30)
                ).summary()
                consumer.close()
        got = max(1, result["received"])
        per_count[str(n)] = {
            "events_per_s": round(result["events_per_s"], 1),
            "received": result["received"],
            "delta_messages_per_1k_events": round(len(deltas) / got * 1000, 1),
            "delta_bytes_per_1k_events": round(sum(len(r.value) for r in deltas) / got * 1000),
            # publish -> fold, of the other workers' deltas (none with one worker)
            "shared_lag_p50_ms": windows["shared_lag_p50_ms"],
            "shared_lag_p99_ms": windows["shared_lag_p99_ms"],
        }
    _log("unit costs of sharing, in process")
    return {
        "scale_out": per_count,
        "sharing": measure_sharing(base),
        "config": {
            "cpus": os.cpu_count(),
            "batch_max": base.batch_max,
            "broker": "embedded tansu (memory)",
        },
    }
