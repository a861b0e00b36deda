"""Benchmark `streamrec serve` with a load generator we did not write (Debian's wrk).

    .venv/bin/python scripts/bench_serve.py [--users 100000] [--items 10000] [--out F.json]

Starts an embedded broker, publishes `--users` lists (20 items each, as the
workers publish them) and `--items` catalog items with 384-dim vectors, starts
one `streamrec serve` replica (its own process, scorer off), waits until it
has read them all (the catch-up time is a figure too), then runs wrk against
it from this machine:

* GET /v1/users/{id}/recommendations, a random user of the 100k per request:
  offered at 1,000 requests/s (paced by wrk's `delay()`, jittered), and flat out;
* GET /v1/items/{id}/similar over the item vectors: at 1,000/s and flat out;
* POST /v1/events, batches of 100 valid events: flat out (events/s accepted).

Then the store's bytes per user, as the replica left it and compacted.
wrk is closed-loop: its latency is measured from each request's send, so a
server stall shows as fewer requests, not as longer tails (coordinated
omission); the achieved rate is reported next to the offered one for that reason.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from streamrec import serde
from streamrec.broker import EmbeddedBroker, free_port
from streamrec.client import EventProducer
from streamrec.contracts import CATALOG_EMBEDDINGS, RECOMMENDATIONS, partitions_for
from streamrec.core.privacy import Pseudonymizer
from streamrec.http_client import RecommendationClient
from streamrec.records import CatalogItem, RecItem, Recommendation
from streamrec.serve.store import ListStore
from streamrec.settings import Settings
from streamrec.tools.admin import create_topics

READ, WRITE = "bench-read-key-0123456789", "bench-write-key-0123456789"
#: The offered rate of the paced runs, requests/s.
RATE = 1_000

LUA_COMMON = """
local done_fn = function(summary, latency, requests)
  local out = {requests = summary.requests, duration_s = summary.duration / 1e6,
    errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    non_2xx = summary.errors.status,
    p50_ms = latency:percentile(50) / 1000, p90_ms = latency:percentile(90) / 1000,
    p99_ms = latency:percentile(99) / 1000, max_ms = latency.max / 1000}
  io.write("WRKJSON ")
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "errors": %d, "non_2xx": %d, "p50_ms": %.3f, ' ..
    '"p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\\n',
    out.requests, out.duration_s, out.errors, out.non_2xx, out.p50_ms, out.p90_ms,
    out.p99_ms, out.max_ms))
end
done = done_fn
local pace_ms = tonumber(os.getenv("PACE_MS") or "0")
delay = function()
  if pace_ms > 0 then return math.random() * 2 * pace_ms end
  return 0
end
"""

LUA_GET = """
local n = tonumber(os.getenv("N"))
local prefix, suffix = os.getenv("PREFIX"), os.getenv("SUFFIX")
local headers = {["Authorization"] = "Bearer " .. os.getenv("KEY")}
request = function()
  return wrk.format("GET", prefix .. math.random(0, n - 1) .. suffix, headers)
end
"""

LUA_POST = """
local n = tonumber(os.getenv("N"))
local headers = {["Authorization"] = "Bearer " .. os.getenv("KEY"),
                 ["Content-Type"] = "application/json"}
local seq = 0
request = function()
  local parts = {}
  local now = os.time() * 1000
  for i = 1, 100 do
    seq = seq + 1
    parts[i] = string.format(
      '{"type":"view","user_id":"bench-user-%d","item_id":"item-%d","event_id":"b-%d-%d","ts":%d}',
      math.random(0, n - 1), math.random(0, 9999), seq, math.random(0, 1e9), now)
  end
  return wrk.format("POST", "/v1/events", headers, "[" .. table.concat(parts, ",") .. "]")
end
"""


def wrk(url: str, lua: str, env: dict[str, str], seconds: int, conns: int, tmp: Path) -> dict:
    script = tmp / f"bench-{abs(hash(lua))}.lua"
    script.write_text(LUA_COMMON + lua)
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url]
    out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON "))
    result = json.loads(line.removeprefix("WRKJSON "))
    result["requests_per_s"] = round(result["requests"] / result["duration_s"], 1)
    return result


def pace_for(url: str, lua: str, env: dict[str, str], conns: int, tmp: Path) -> float:
    """The mean wait per connection that offers `RATE` requests/s: each connection
    sends every conns/RATE s, its wait plus the response time (measured in a short
    calibration run, since wrk's Lua has no millisecond clock to schedule with)."""
    interval_ms = conns * 1000 / RATE
    probe = wrk(url, lua, env | {"PACE_MS": str(interval_ms)}, 4, conns, tmp)
    response_ms = max(0.0, conns * 1000 / probe["requests_per_s"] - interval_ms)
    return round(max(0.1, interval_ms - response_ms), 3)


def publish(settings: Settings, users: int, items: int, dim: int) -> None:
    pseudonym = Pseudonymizer(settings.resolved_pseudonym_key())
    rng = np.random.default_rng(0)
    topic = settings.topic(RECOMMENDATIONS)
    cats = ["Shoes", "Running", "Books", "Toys", "Garden", "Kitchen", "Audio", "Games"]
    now = int(time.time() * 1000)
    with EventProducer(settings, linger_ms=20) as p:
        for i in range(items):
            p.publish_item(CatalogItem(f"item-{i}", f"Item number {i}", ("Shop", cats[i % 8]),
                                       price=float(5 + i % 200)))  # fmt: skip
        vecs = rng.standard_normal((items, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        p.publish_vectors({f"item-{i}": vecs[i] for i in range(items)}, "bench@1",
                          partitions_for(CATALOG_EMBEDDINGS, settings.partitions))  # fmt: skip
        picks = rng.integers(0, items, size=(users, 20))
        for u in range(users):
            user = pseudonym(f"bench-user-{u}")
            recs = tuple(
                RecItem(f"item-{j}", round(1.0 - r / 25, 4), "co-visited with item-7",
                        ("covisit", "trending"), (("covisit", 0.61), ("popularity", 0.22),
                                                   ("affinity", 0.09)),
                        0.3, cats[j % 8], float(5 + j % 200))
                for r, j in enumerate(picks[u].tolist())
            )  # fmt: skip
            rec = Recommendation(
                user, recs, "ranker-1", f"e_{u:032x}", "view", now, now, now,
                encoder_version="bench@1", user_value=12.5, variant="A",
            )  # fmt: skip
            p.send_raw(serde.dumps(rec.to_dict()), user.encode(), topic=topic)
        p.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs Debian's wrk: apt-get install wrk")
    results: dict = {"users": args.users, "items": args.items, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        broker = EmbeddedBroker(free_port(), log_path=tmp / "broker.log").start()
        port, store = free_port(), tmp / "store"
        settings = Settings.from_env(
            {}, kafka_bootstrap=broker.bootstrap, topic_prefix="bench.", data_dir=tmp / "data",
            serve_store_dir=str(store), api_read_keys=READ, api_write_keys=WRITE,
            serve_port=port, scorer_enabled=False,
        )  # fmt: skip
        proc = None
        try:
            create_topics(settings)
            t0 = time.monotonic()
            publish(settings, args.users, args.items, args.dim)
            print(f"published {args.users:,} lists, {args.items:,} items in "
                  f"{time.monotonic() - t0:.1f} s", flush=True)  # fmt: skip
            env = {**os.environ, **settings.to_env()}
            log = open(tmp / "serve.log", "wb")  # noqa: SIM115
            t0 = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "streamrec", "serve"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            with RecommendationClient(url, READ) as c:
                c.wait_ready(600)
                results["catch_up_s"] = round(time.monotonic() - t0, 1)
                ready = c.readiness()
                assert ready["users"] > 0.9 * args.users and ready["item_vectors"] == args.items
            print(f"replica ready after {results['catch_up_s']} s: {ready}", flush=True)
            base = {"KEY": READ, "N": str(args.users)}
            recs = base | {"PREFIX": "/v1/users/bench-user-", "SUFFIX": "/recommendations?k=10"}
            sim = {"KEY": READ, "N": str(args.items), "PREFIX": "/v1/items/item-",
                   "SUFFIX": "/similar?k=10"}  # fmt: skip
            runs = {
                # 10 connections, each waiting 10 ms on average between requests: 1,000/s.
                "recommendations_at_1000": (LUA_GET, recs | {"PACE_MS": "10"}, 10),
                "recommendations_max": (LUA_GET, recs, 32),
                "similar_at_1000": (LUA_GET, sim | {"PACE_MS": "10"}, 10),
                "similar_max": (LUA_GET, sim, 32),
                "events_batches_of_100_max": (LUA_POST, {"KEY": WRITE, "N": str(args.users)}, 8),
            }
            wrk(url, LUA_GET, recs, 3, 8, tmp)  # warm-up: caches, connections
            for name, (lua, wenv, conns) in runs.items():
                if "PACE_MS" in wenv:
                    wenv = wenv | {"PACE_MS": str(pace_for(url, lua, wenv, conns, tmp))}
                r = wrk(url, lua, wenv, args.seconds, conns, tmp)
                if "PACE_MS" in wenv:
                    r["offered_per_s"] = RATE
                    r["pace_ms"] = float(wenv["PACE_MS"])
                if name.startswith("events"):
                    r["events_per_s"] = round(r["requests_per_s"] * 100, 1)
                results[name] = r
                print(f"{name}: {r}", flush=True)
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            broker.stop()
        on_disk = sum(f.stat().st_size for f in store.iterdir() if f.is_file())
        with ListStore(store) as s:
            s._db.compact_range(None, None)
            s.flush()
            compacted = s.disk_bytes()
        results["store_bytes_per_user"] = round(on_disk / args.users, 1)
        results["store_bytes_per_user_compacted"] = round(compacted / args.users, 1)
        list_json = len(serde.dumps(Recommendation("u_" + "0" * 32, tuple(
            RecItem(f"item-{j}", 0.5, "co-visited with item-7", ("covisit", "trending"),
                    (("covisit", 0.61), ("popularity", 0.22), ("affinity", 0.09)), 0.3,
                    "Shoes", 10.0) for j in range(20)), "ranker-1", "e_" + "0" * 32, "view",
            0, 0, 0).to_dict()))  # fmt: skip
        results["list_json_bytes"] = list_json
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
