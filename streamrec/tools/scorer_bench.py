"""`streamrec bench-scorer --json`: encoder throughput, cache effect and request latency.

In process (no Kafka): what the scorer worker can do at most on this device.

* ``queries_per_s`` / ``titles_per_s``: texts/s at batch sizes 1, 32, 256
  (queries max_length 16, titles max_length 64), all distinct texts;
* ``cached_queries_per_s``: effective queries/s of the scorer's core
  (`Embedder`: LRU cache, cross-request batches of 256 texts from requests of
  8) on a Zipf(s=1.1) stream over 50k distinct queries;
* ``latency_ms``: per-request latency (queueing included) for requests of 8
  uncached queries offered at a fixed rate;
* ``seconds_per_100k_titles``: a catalog re-embed, from batch-256 titles;
* ``backend`` (torch, onnx, onnx-int8), ``device`` and ``dtype``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

import numpy as np

from streamrec import serde
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.scorer.encoder import Encoder

_ADJ = [
    "red",
    "blue",
    "black",
    "white",
    "wireless",
    "waterproof",
    "organic",
    "vintage",
    "mini",
    "smart",
    "cheap",
    "leather",
]
_NOUN = [
    "shoes",
    "headphones",
    "headset",
    "lamp",
    "sofa",
    "kettle",
    "jacket",
    "watch",
    "backpack",
    "camera",
    "tent",
    "drill",
    "blender",
    "charger",
    "mattress",
    "guitar",
    "keyboard",
    "monitor",
    "scarf",
    "bottle",
]
_EXTRA = [
    "for",
    "men",
    "women",
    "kids",
    "running",
    "office",
    "garden",
    "travel",
    "gaming",
    "kitchen",
    "outdoor",
]


def synthetic_queries(n: int, seed: int = 1) -> list[str]:
    """n distinct shop-like queries ("red waterproof jacket for running 17")."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        words = [rng.choice(_ADJ), rng.choice(_NOUN)]
        if rng.random() < 0.5:
            words.insert(0, rng.choice(_ADJ))
        if rng.random() < 0.5:
            words += ["for", rng.choice(_EXTRA)]
        words.append(str(len(out) % 997))  # keeps texts distinct past the word combinations
        out.add(" ".join(words))
    return sorted(out)


def synthetic_titles(n: int, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(_ADJ + _NOUN + _EXTRA) for _ in range(rng.randint(10, 24))) + f" {i}"
        for i in range(n)
    ]


def texts_per_s(enc: Encoder, texts: list[str], batch: int, max_length: int) -> float:
    enc.batch_size = batch
    enc.encode(texts[:batch], max_length)  # warm-up at this shape
    start, done = time.perf_counter(), 0
    for i in range(0, len(texts), batch):
        enc.encode(texts[i : i + batch], max_length)
        done += len(texts[i : i + batch])
    return done / (time.perf_counter() - start)


def cached_rate(
    enc: Encoder, distinct: list[str], n: int, request: int = 8, batch_texts: int = 256
) -> tuple[float, float]:
    """Effective queries/s of the scorer's core on a Zipf(1.1) stream.

    Requests of `request` queries are answered the way the scorer worker does
    it: collected across requests up to `batch_texts` texts, then one
    `Embedder.answer` (LRU cache, de-duplication, one encode of the misses).
    """
    from streamrec.scorer.embedder import BatchStats, Embedder

    ranks = np.arange(1, len(distinct) + 1, dtype=np.float64)
    p = ranks**-1.1
    stream = np.random.default_rng(3).choice(len(distinct), size=n, p=p / p.sum())
    embedder = Embedder(enc, query_max_tokens=16, cache_size=100_000)
    enc.batch_size = 64
    stats = BatchStats()
    per_batch = max(1, batch_texts // request)
    start = time.perf_counter()
    for i in range(0, n, request * per_batch):
        chunk = stream[i : i + request * per_batch]
        requests = [
            ([distinct[j] for j in chunk[k : k + request]], "query", None)
            for k in range(0, len(chunk), request)
        ]
        embedder.answer(requests, stats)
    lookups = stats.cache_hits + stats.cache_misses
    return n / (time.perf_counter() - start), stats.cache_hits / max(1, lookups)


def request_latency(enc: Encoder, queries: list[str], rps: float, seconds: float) -> dict[str, Any]:
    """Requests of 8 queries arriving every 1/rps s, served in order by one encoder."""
    hist = LogHistogram()
    n = max(1, int(rps * seconds))
    start = time.perf_counter()
    for i in range(n):
        arrival = start + i / rps
        wait = arrival - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        enc.encode(queries[(i * 8) % len(queries) :][:8], max_length=16)
        hist.record((time.perf_counter() - arrival) * 1000)
    return {"offered_rps": rps, "request_size": 8} | hist.summary((50, 99))


def run(args: argparse.Namespace) -> int:
    from streamrec.scorer.embedder import make_encoder
    from streamrec.settings import Settings

    enc = make_encoder(
        args.model,
        backend=getattr(args, "backend", None) or Settings.from_env().encoder_backend,
        device=args.device,
        threads=args.threads,
        cache_dir=Settings.from_env().cache_dir,
    )
    queries = synthetic_queries(50_000)
    titles = synthetic_titles(2_048)
    result: dict[str, Any] = {
        "backend": enc.backend,
        "device": str(getattr(enc, "device", "cpu")),
        "dtype": "int8" if enc.backend == "onnx-int8" else
                 str(getattr(enc, "dtype", "float32")).replace("torch.", ""),
    }  # fmt: skip
    result["model_version"] = enc.version
    q_rate, t_rate = {}, {}
    for batch in (1, 32, 256):
        n = max(batch * 4, 64)
        _log(f"{n} queries and titles at batch {batch}")
        q_rate[str(batch)] = round(texts_per_s(enc, queries[:n], batch, 16), 1)
        t_rate[str(batch)] = round(texts_per_s(enc, titles[:n], batch, 64), 1)
    result["queries_per_s"] = q_rate
    result["titles_per_s"] = t_rate
    result["seconds_per_100k_titles"] = round(100_000 / t_rate["256"], 1)
    _log("Zipf(1.1) query stream through the LRU cache")
    rate, hit = cached_rate(enc, queries, n=args.stream)
    result["cached_queries_per_s"] = round(rate, 1)
    result["cache_hit_rate"] = round(hit, 4)
    # Half of what one request of 8 at a time allows (measured): on a CPU that is about
    # batch-32 throughput; on a GPU a small batch costs its fixed launch overhead.
    per_request = texts_per_s(enc, queries[:256], 8, 16) / 8
    rps = args.rps or max(1.0, per_request * 0.5)
    _log(f"request latency at {rps:.0f} requests/s of 8 queries")
    result["latency_ms"] = request_latency(enc, queries, rps, args.seconds)
    result["threads"] = _threads()
    text = serde.dumps(result).decode()
    if args.json:
        print(text)
    else:
        for k, v in result.items():
            print(f"{k:22} {v}")
    return 0


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())  # ONNX Runtime's default pool: one per core too


def _log(msg: str) -> None:
    print(f"bench-scorer: {msg}", file=sys.stderr, flush=True)


async def kafka_round_trip(
    settings: Any, requests: int = 200, size: int = 8, concurrency: int = 4
) -> dict[str, Any]:
    """Requests of `size` mostly-new queries through a running scorer, over Kafka.

    `concurrency` clients' worth of requests in flight at once (as from that
    many rank workers): the scorer batches across them. Round trip = send ->
    reply decoded, what a rank worker's batch waits.
    """
    from streamrec.worker.scorer_client import ScorerClient

    client = ScorerClient(settings.with_overrides(scorer_timeout_ms=30_000), "bench-rtt")
    await client.start()
    queries = synthetic_queries(50_000, seed=int(time.time()))
    rng = random.Random(0)
    hist = LogHistogram()
    failed = 0

    async def one_loop(n: int) -> None:
        nonlocal failed
        for _ in range(n):
            texts = [queries[rng.randrange(len(queries))] for _ in range(size)]
            t0 = time.perf_counter()
            got = await client.embed(texts, None)
            if got is None:
                failed += 1
            else:
                hist.record((time.perf_counter() - t0) * 1000)

    try:
        await one_loop(3)  # the scorer's first fetch and the reply partition are warm
        hist = LogHistogram()
        t0 = time.perf_counter()
        per = max(1, requests // concurrency)
        import asyncio

        await asyncio.gather(*(one_loop(per) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    finally:
        await client.stop()
    done = hist.count
    return {
        "requests": done,
        "failed": failed,
        "request_size": size,
        "concurrency": concurrency,
        "texts_per_s": round(done * size / elapsed, 1),
        "round_trip_ms": hist.summary((50, 95, 99)),
    }
