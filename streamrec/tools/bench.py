"""`streamrec bench`: sustained throughput, freshness at fixed offered loads, and the raw ceiling.

Starts its own embedded broker and worker processes (or attaches to a running
pipeline with --bootstrap / --topic-prefix) and prints one JSON object:

* ``events_per_s``: sustained rate of the worker(s) on a backlog of synthetic
  events (middle 80% of the recommendations, by produce time);
* ``freshness_ms``: per offered load, p50/p95/p99 of event produced -> list
  produced (``produced_ts - ingest_ts``), and ``e2e_ms`` to the reader;
* ``raw_passthrough_per_s``: a plain aiokafka consume -> produce loop on the
  same broker in the same run: the ceiling any Kafka consumer here could reach;
* ``faust_passthrough_per_s``: a Faust agent with the worker's own app and
  batching settings that decodes each event and sends one message on, with no
  core (`worker/passthrough.py`): the ceiling of one Faust hop here;
* with ``--scorer``: ``scorer_round_trip`` (Kafka request/reply to a scorer);
* with ``--rank-items 10000,100000``: ``rank_latency_ms`` (items -> p50/p95/p99
  of the core stage per event, in process, synthetic 384-d vectors; HNSW above
  STREAMREC_INDEX_HNSW_ABOVE, with the build time and the resident memory per
  item beyond its vector) and ``events_per_s_ranked``: a second throughput run
  after the shop's catalog and item vectors are loaded, so every event runs
  retrieval and ranking (``events_per_s`` is the first run, without vectors).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamrec import clients, serde
from streamrec.client import EventProducer, RecommendationReader
from streamrec.contracts import CATALOG_EMBEDDINGS, partitions_for
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.records import RawEvent
from streamrec.settings import Settings
from streamrec.tools.admin import admin_client
from streamrec.tools.rank_bench import (
    measure_rank_latency,
    synthetic_vectors,
    tuning_cost,
)
from streamrec.tools.stack import LocalStack, interrupt_on_signals
from streamrec.worker import passthrough


def run_bench(args: argparse.Namespace) -> int:
    interrupt_on_signals()
    loads = [int(x) for x in str(args.loads).split(",") if x.strip()]
    base = Settings.from_env()
    counts = [int(x) for x in str(args.workers).split(",") if x.strip()]
    if len(counts) > 1:
        from streamrec.tools.scale_bench import run_scale_out

        return _emit(run_scale_out(base, counts, args.events), args)
    args.workers = counts[0] if counts else 1
    with tempfile.TemporaryDirectory(prefix="streamrec-bench-") as tmp:
        if args.bootstrap:
            settings = base.with_overrides(
                kafka_bootstrap=args.bootstrap, topic_prefix=args.topic_prefix
            )
            result = _measure(settings, args, loads, attached=True)
        else:
            settings = base.with_overrides(
                data_dir=Path(tmp) / "data", app_id=f"bench-{uuid.uuid4().hex[:6]}"
            )
            if args.scorer and not settings.encoder_threads:
                # Workers and scorer share this machine's cores; production puts the
                # scorer on its own (GPU) host.
                threads = max(1, (os.cpu_count() or 2) - args.workers)
                settings = settings.with_overrides(encoder_threads=threads)
            with LocalStack(
                settings,
                workers=args.workers,
                scorers=1 if args.scorer else 0,
                log_dir=Path(tmp) / "logs",
            ) as stack:
                stack.wait_ready()
                result = _measure(stack.settings, args, loads, attached=False)
    return _emit(result, args)


def _emit(result: dict[str, Any], args: argparse.Namespace) -> int:
    text = serde.dumps(result).decode()
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
    elif "scale_out" in result:
        print(text)  # a few numbers per worker count: the JSON reads well enough
    else:
        _print_human(result)
    return 0


def _measure(
    settings: Settings, args: argparse.Namespace, loads: list[int], attached: bool
) -> dict[str, Any]:
    shop = SyntheticShop(seed=int(time.time()))
    rank_items = [int(x) for x in str(getattr(args, "rank_items", "") or "").split(",") if x]
    rank_latency: dict[str, Any] = {}
    for n_items in rank_items:
        _log(f"rank stage latency in process, {n_items:,} items with 384-d vectors")
        rank_latency[str(n_items)] = measure_rank_latency(settings, n_items)
        if settings.blend_tuning_sample > 0:
            _log("the same without the self-tuning blend, for its cost")
            untuned = measure_rank_latency(
                settings.with_overrides(blend_tuning_sample=0.0), n_items
            )
            rank_latency[str(n_items)]["blend_tuning"] = tuning_cost(
                rank_latency[str(n_items)], untuned, settings.blend_tuning_sample
            )
    _log(f"throughput: {args.events:,} events as a backlog")
    throughput = measure_throughput(settings, shop, args.events)
    ranked: dict[str, Any] | None = None
    if rank_items and not attached:
        _log(f"publishing the catalog and {len(shop.catalog):,} item vectors for the ranked run")
        publish_shop_vectors(settings, shop)
        time.sleep(5)  # the worker follows catalog.embeddings from the start
        _log(f"ranked throughput: {args.events:,} events, retrieval and ranking on every one")
        ranked = measure_throughput(settings, shop, args.events)
    freshness: dict[str, Any] = {}
    for load in loads:
        _log(f"freshness: {load} events/s offered for {args.seconds:.0f} s")
        freshness[str(load)] = measure_freshness(
            settings, lambda _i: shop.event_for(shop.user(), _now_ms()), load, args.seconds
        )
    scorer: dict[str, Any] | None = None
    if getattr(args, "scorer", False):
        from streamrec.tools.scorer_bench import kafka_round_trip

        scorer = {}
        for concurrency in (1, 4):
            _log(f"scorer round trip over Kafka, {concurrency} request(s) in flight")
            scorer[str(concurrency)] = asyncio.run(
                kafka_round_trip(settings, concurrency=concurrency)
            )
    raw = faust = None
    if not attached:
        _log("raw aiokafka consume -> produce ceiling")
        raw = asyncio.run(raw_passthrough(settings, n=min(100_000, args.events * 2)))
        _log(f"Faust pass-through ceiling: {args.events:,} events, the worker's app settings")
        faust = passthrough.measure(settings, [
            (e.user_id.encode(), serde.dumps(e.to_dict()))
            for e in shop.events(args.events, start_ts=_now_ms() - args.events, step_ms=1)
        ])  # fmt: skip
    return {
        "events_per_s": round(throughput["events_per_s"], 1),
        "throughput": throughput,
        "freshness_ms": {k: v["freshness_ms"] for k, v in freshness.items()},
        "e2e_ms": {k: v["e2e_ms"] for k, v in freshness.items()},
        "offered": freshness,
        "raw_passthrough_per_s": round(raw, 1) if raw else None,
        # One Faust hop that decodes and sends on: the ceiling for a Faust worker here.
        "faust_passthrough_per_s": round(faust, 1) if faust else None,
        "scorer_round_trip": scorer,
        "rank_latency_ms": rank_latency or None,
        # Its own run, after the item vectors are loaded: every event runs retrieval
        # (FAISS) and ranking. `events_per_s` is the same worker before that.
        "events_per_s_ranked": round(ranked["events_per_s"], 1) if ranked else None,
        "throughput_ranked": ranked,
        "ranked_share_of_faust_passthrough": round(ranked["events_per_s"] / faust, 3)
        if ranked and faust
        else None,
        "config": {
            "scorer": bool(getattr(args, "scorer", False)),
            "encoder_threads": settings.encoder_threads,
            "workers": None if attached else args.workers,
            "broker": settings.kafka_bootstrap if attached else "embedded tansu (memory)",
            "fetch_max_wait_ms": settings.fetch_max_wait_ms,
            "batch_max": settings.batch_max,
            "batch_within_ms": settings.batch_within_ms,
            "top_k": settings.top_k,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            # A host can pin OpenBLAS to older kernels (AVX2 on an AVX-512 processor):
            # the interest search's matrix product took 15.5 ms instead of 9.2 here.
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE") or "detected",
        },
    }


def publish_shop_vectors(settings: Settings, shop: SyntheticShop, dim: int = 384) -> None:
    """The shop's catalog and a random vector per item, as the scorer would publish them."""
    vectors = synthetic_vectors(len(shop.catalog), dim)
    with EventProducer(settings) as producer:
        for item in shop.catalog:
            producer.publish_item(item)
        producer.publish_vectors(
            {it.item_id: vectors[i] for i, it in enumerate(shop.catalog)},
            "synthetic@1",
            partitions=partitions_for(CATALOG_EMBEDDINGS, settings.partitions),
        )


def measure_throughput(settings: Settings, shop: SyntheticShop, n: int) -> dict[str, Any]:
    """Send n events as fast as the producer goes; rate from the lists' produce times."""
    reader = RecommendationReader(settings, from_beginning=False)
    now = int(time.time() * 1000)
    events = shop.events(n, start_ts=now - n, step_ms=1)
    ids = {reader.event_ref(e.event_id) for e in events}
    produced: list[int] = []
    t0 = time.monotonic()
    with EventProducer(settings) as producer:
        for ev in events:
            producer.send_event(ev)
    send_s = time.monotonic() - t0
    reader.wait_quiet(timeout_s=max(120.0, n / 200))
    idle_deadline = time.monotonic() + 10
    while len(produced) < n and time.monotonic() < idle_deadline:
        got = reader.poll(0.5)
        if got:
            idle_deadline = time.monotonic() + 10
        # Per event answered: a list answers its user's events of one micro-batch.
        produced.extend(r.produced_ts for r in got for ref in r.event_ids if ref in ids)
    reader.close()
    rate = passthrough.middle_rate(produced)
    return {
        "events": n,
        "received": len(produced),
        "events_per_s": rate,
        "producer_events_per_s": round(n / send_s, 1),
    }


def measure_freshness(
    settings: Settings,
    make_event: Callable[[int], RawEvent],
    rate: int,
    seconds: float,
    reader: RecommendationReader | None = None,
) -> dict[str, Any]:
    """Offer `rate` events/s for `seconds` (event i from `make_event(i)`, stamped now);
    freshness of each event's list. Pass `reader` to keep it (and its latest lists)."""
    own_reader = reader is None
    reader = reader or RecommendationReader(settings, from_beginning=False)
    produced_hist, e2e_hist = LogHistogram(), LogHistogram()
    #: event ref -> when it was sent (ms): a list carries the ingest time of its newest
    #: event only, and answers the user's earlier events of its batch too.
    pending: dict[str, float] = {}
    n = int(rate * seconds)

    def collect(timeout_s: float) -> None:
        for rec in reader.poll(timeout_s):
            now = time.time() * 1000
            for ref in rec.event_ids:
                sent = pending.pop(ref, None)
                if sent is not None:
                    ingest = rec.ingest_ts if ref == rec.event_id else sent
                    produced_hist.record(rec.produced_ts - ingest)
                    e2e_hist.record(now - ingest)

    with EventProducer(settings, linger_ms=1) as producer:
        t0 = time.monotonic()
        for i in range(n):
            due = t0 + i / rate
            while (lag := due - time.monotonic()) > 0:
                collect(min(lag, 0.005))
            ev = make_event(i)
            producer.send_event(ev)
            pending[reader.event_ref(ev.event_id)] = time.time() * 1000
            if i % max(1, rate // 200) == 0:
                producer.flush()
        producer.flush()
        achieved = n / (time.monotonic() - t0)
    deadline = time.monotonic() + 15
    while pending and time.monotonic() < deadline:
        collect(0.05)
    if own_reader:
        reader.close()
    return {
        "offered_per_s": rate,
        "achieved_per_s": round(achieved, 1),
        "events": n,
        "missing": len(pending),
        "freshness_ms": produced_hist.summary((50, 95, 99)),
        "e2e_ms": e2e_hist.summary((50, 95, 99)),
    }


async def raw_passthrough(settings: Settings, n: int, size: int = 400) -> float:
    """aiokafka consume -> produce on the same broker: the ceiling for any consumer here."""
    from aiokafka import TopicPartition
    from kafka.admin import NewTopic

    tag = uuid.uuid4().hex[:8]
    src, dst = f"bench-raw-in-{tag}", f"bench-raw-out-{tag}"
    admin = admin_client(settings)
    admin.create_topics([NewTopic(src, 4, 1), NewTopic(dst, 4, 1)])
    admin.close()
    payload = serde.dumps(
        {
            "event_id": "e" * 32,
            "type": "view",
            "user_id": "u" * 16,
            "ts": 1_700_000_000_000,
            "item_id": "sku-1",
            "context": {"page": "p" * max(0, size - 150)},
        }
    )
    producer = clients.aio_producer(settings, linger_ms=5)
    await producer.start()
    try:
        for i in range(n):
            await producer.send(src, payload, key=str(i % 1000).encode())
        await producer.flush()
        consumer = clients.aio_consumer(
            settings,
            enable_auto_commit=False,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(src, p) for p in range(4)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            done = 0
            t0 = time.perf_counter()
            while done < n:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                futures = []
                for records in batches.values():
                    for r in records:
                        value = serde.dumps(serde.loads(r.value))  # decode + encode, no logic
                        futures.append(await producer.send(dst, value, key=r.key))
                done += len(futures)
                if futures:
                    await asyncio.gather(*futures)
            return n / (time.perf_counter() - t0)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _print_human(r: dict[str, Any]) -> None:
    print(f"sustained throughput   {r['events_per_s']:>10,.0f} events/s")
    for load, f in r["freshness_ms"].items():
        print(
            f"freshness at {load:>5}/s  p50 {f['p50']:.0f} ms  "
            f"p95 {f['p95']:.0f} ms  p99 {f['p99']:.0f} ms"
        )
    for n, rt in (r.get("scorer_round_trip") or {}).items():
        q = rt["round_trip_ms"]
        print(
            f"scorer over Kafka, {n} in flight: {rt['texts_per_s']:,.0f} texts/s, round trip "
            f"p50 {q.get('p50', 0):.0f} ms p99 {q.get('p99', 0):.0f} ms"
        )
    for n, rl in (r.get("rank_latency_ms") or {}).items():
        print(f"rank stage, {int(n):,} items ({rl['index']}): p50 {rl['p50']:.2f} ms, "
              f"p99 {rl['p99']:.2f} ms, index build {rl['index_build_s']} s, "
              f"{rl['bytes_per_item_beyond_vector']:,} B/item beyond its vector")  # fmt: skip
        if rl.get("blend_tuning"):
            bt = rl["blend_tuning"]
            print(f"  self-tuning blend ({bt['sample']:.0%} of users in shadow): "
                  f"{bt['share_of_core']:+.1%} of the rank stage "
                  f"({rl['mean']:.2f} ms, {bt['mean_ms_without']:.2f} ms without)")  # fmt: skip
    if r.get("events_per_s_ranked"):
        print(f"ranked throughput      {r['events_per_s_ranked']:>10,.0f} events/s")
    if r["raw_passthrough_per_s"]:
        print(f"raw aiokafka ceiling   {r['raw_passthrough_per_s']:>10,.0f} msg/s")
    if r.get("faust_passthrough_per_s"):
        print(f"Faust hop ceiling      {r['faust_passthrough_per_s']:>10,.0f} msg/s")
