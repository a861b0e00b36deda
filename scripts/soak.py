"""Soak: many events from many users through one worker; does its memory level off?

    python scripts/soak.py                                  # 1,000,000 events, 200,000 users
    python scripts/soak.py --events 200000 --users 50000    # quicker

Starts its own embedded broker and one `streamrec worker` (RocksDB store, no
scorer), produces the events (users drawn uniformly, so new users keep coming
for most of the run), and samples the worker's resident memory (RSS) every
`--every` seconds until it has processed them all. Writes `soak.json` and
`soak.png` (RSS against events processed) to `--out`, and prints:

* RSS at the start of the last quarter of the events and its highest value
  in that quarter (the bar: within 10%);
* bytes per profile as stored (the changelog record) and per decoded profile
  in the worker's cache (measured with tracemalloc on profiles read back).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

from streamrec import serde
from streamrec.client import EventProducer, read_all, read_table, tail
from streamrec.contracts import METRICS
from streamrec.core.profile import Profile
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.records import MetricsWindow
from streamrec.settings import Settings
from streamrec.tools.stack import LocalStack


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def produce(s: Settings, n: int, users: int, seed: int, done: list[int]) -> None:
    shop = SyntheticShop(users=users, items=10_000, seed=seed)
    rng = random.Random(seed)
    start = int(time.time() * 1000) - n  # all in the past, 1 ms apart
    with EventProducer(s, linger_ms=20) as producer:
        for i in range(n):
            producer.send_event(shop.event_for(rng.randrange(users), start + i))
            if i % 50_000 == 0:
                done[0] = i
        producer.flush()
    done[0] = n


def profile_sizes(s: Settings, sample: int = 20_000) -> dict[str, float]:
    """Bytes per profile on the changelog, and per decoded profile in memory."""
    latest = read_table(s)
    values = list(latest.values())[:sample]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    decoded = [Profile.from_bytes(v)[0] for v in values]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    sizes = sorted(len(v) for v in latest.values())
    return {
        "profiles": len(latest),
        "stored_bytes_mean": round(statistics.fmean(sizes), 1),
        "stored_bytes_p99": sizes[int(0.99 * (len(sizes) - 1))],
        "decoded_bytes_mean": round((after - before) / max(1, len(decoded)), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--out", default="out/soak")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:6]
    s = Settings.from_env().with_overrides(
        app_id=f"soak-{tag}",
        topic_prefix=f"soak-{tag}.",
        data_dir=out / "data",
        store="rocksdb",
        scorer_enabled=False,
        metrics_port=0,
        metrics_interval_s=5.0,
    )
    with LocalStack(s, workers=1, log_dir=out / "logs") as stack:
        stack.wait_ready()
        s = stack.settings
        pid = stack.workers[0].pid
        produced = [0]
        threading.Thread(
            target=produce, args=(s, args.events, args.users, args.seed, produced), daemon=True
        ).start()
        metrics = tail(s, METRICS)
        processed, samples = 0, []
        t0 = time.monotonic()
        next_sample = t0
        while processed < args.events + 1:  # + the readiness probe
            for r in read_all(metrics, idle_s=0.2, max_s=5):
                processed += MetricsWindow.from_dict(serde.loads(r.value)).counts["in"]
            if time.monotonic() >= next_sample:
                next_sample += args.every
                sample = {
                    "t_s": round(time.monotonic() - t0, 1),
                    "produced": produced[0],
                    "processed": processed,
                    "rss_mb": round(rss_mb(pid), 1),
                }
                samples.append(sample)
                print(json.dumps(sample), flush=True)
            if stack.workers[0].poll() is not None:
                raise SystemExit(f"the worker exited; see {out / 'logs'}")
            time.sleep(0.5)
        metrics.close()
        elapsed = time.monotonic() - t0
        sizes = profile_sizes(s)
    quarter = [x for x in samples if x["processed"] >= 0.75 * args.events]
    start_rss = quarter[0]["rss_mb"] if quarter else None
    peak_rss = max(x["rss_mb"] for x in quarter) if quarter else None
    growth = round(peak_rss / start_rss - 1, 4) if start_rss and peak_rss else None
    result = {
        "events": args.events,
        "users": args.users,
        "seconds": round(elapsed, 1),
        "events_per_s": round(args.events / elapsed, 1),
        "rss_mb_first": samples[0]["rss_mb"],
        "rss_mb_last_quarter_start": start_rss,
        "rss_mb_last_quarter_max": peak_rss,
        "last_quarter_growth": growth,
        **sizes,
        "settings": {
            "profile_cache_size": s.profile_cache_size,
            "dedup_max_ids": s.dedup_max_ids,
            "tracked_users": s.tracked_users,
        },
        "samples": samples,
    }
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    plot(samples, out / "soak.png", args)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


def plot(samples: list[dict[str, float]], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([x["processed"] for x in samples], [x["rss_mb"] for x in samples], marker=".")
    ax.axvline(0.75 * args.events, color="grey", linestyle="--", label="last quarter")
    ax.set_xlabel("events processed")
    ax.set_ylabel("worker RSS (MiB)")
    ax.set_title(f"streamrec worker memory: {args.events:,} events, {args.users:,} users")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
