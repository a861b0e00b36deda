"""`streamrec demo`: the whole backbone on the embedded broker, with a readable summary.

1. start the embedded broker, create the topics, start the worker(s);
2. replay MovieLens-100k (catalog first), with malformed events and retried
   duplicates mixed in, as fast as the producer goes (the worker runs flat out);
3. a live phase at a steady 1,000 events/s, to show freshness when caught up;
4. print users with their top-5 and titles, in / valid / DLQ / duplicates,
   events/s and event -> recommendation latency;
5. `streamrec serve` runs alongside from the start (a curl line is printed):
   the same lists, similar items and a search over HTTP; then stop every process.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from streamrec import serde
from streamrec.broker import free_port
from streamrec.client import (
    EventProducer,
    RecommendationReader,
    changelog_written,
    read_all,
    read_table,
    tail,
)
from streamrec.contracts import METRICS
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.core.monitoring.windows import WindowTotals, merge_windows
from streamrec.datasets import movielens
from streamrec.datasets.malformed import malformed_events
from streamrec.http_client import RecommendationClient, ServeError
from streamrec.records import MetricsWindow, RawEvent, Recommendation
from streamrec.settings import Settings
from streamrec.tools.bench import measure_freshness
from streamrec.tools.replay import replay
from streamrec.tools.stack import LocalStack, interrupt_on_signals

LIVE_RATE = 1000
LIVE_SECONDS = 5.0


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def run_demo(
    limit: int | None = None, workers: int = 1, scorer: bool = True, live_rate: int = LIVE_RATE
) -> int:
    interrupt_on_signals()
    base = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="streamrec-demo-") as tmp:
        settings = base.with_overrides(
            data_dir=Path(tmp) / "data", metrics_interval_s=1.0, app_id="streamrec-demo"
        )
        if scorer and not settings.encoder_threads:
            # Worker and scorer share this machine; in production the scorer has its own host.
            threads = max(1, (os.cpu_count() or 2) - workers)
            settings = settings.with_overrides(encoder_threads=threads)
        say("loading MovieLens-100k from the recbole wheel")
        ml = movielens.load(movielens.fetch(settings.cache_dir), limit=limit)
        titles = {i.item_id: i.title for i in ml.items}
        what = f"{workers} worker(s)" + (" and the BERT scorer" if scorer else "")
        say(f"starting the embedded broker and {what}; logs in {tmp}")
        with LocalStack(
            settings, workers=workers, scorers=int(scorer), log_dir=Path(tmp) / "logs"
        ) as stack:
            settings = stack.settings
            waited = stack.wait_ready()
            say(f"worker ready after {waited:.1f} s (consumer-group join on the embedded broker)")
            http = _start_serve(stack, ml)
            reader = RecommendationReader(settings, from_beginning=False)
            try:
                code = _run(settings, ml, titles, reader, live_rate)
                if scorer:
                    _cold_start(settings, titles, reader)
                _show_serve(http, _pick_users(ml), scorer)
                return code
            finally:
                reader.close()
                say("stopping the worker(s) and the broker")


def _run(
    settings: Settings,
    ml: movielens.MovieLens,
    titles: dict[str, str],
    reader: RecommendationReader,
    live_rate: int = LIVE_RATE,
) -> int:
    now = int(time.time() * 1000)
    bad = malformed_events(25, now)
    rng = random.Random(3)
    retried = rng.sample(ml.events, 10)  # storefront retries: same event id sent twice

    say(f"replaying {len(ml.events):,} events + {len(bad)} malformed + {len(retried)} retries")
    recs: list[Recommendation] = []
    t0 = time.time()
    with EventProducer(settings) as producer:
        rows: list[RawEvent | tuple[bytes | None, bytes, int]] = list(ml.events)
        for key, value, _reason in bad:
            rows.insert(rng.randrange(len(rows)), (key, value, 0))
        for ev in retried:
            rows.append(ev)
        stats = replay(producer, rows, items=ml.items)  # type: ignore[arg-type]
    sent = stats.events
    expected_valid = len(ml.events)

    say("waiting for the worker to work through the backlog")
    reader.wait_quiet(timeout_s=600)
    # Read until every list is in, or nothing new has come for 30 s: the live phase
    # must start on an idle worker, or it measures the tail of the backlog.
    idle_deadline = time.time() + 30
    answered = 0  # events: a list answers its user's events of one micro-batch
    while answered < expected_valid and time.time() < idle_deadline:
        got = reader.poll(0.5)
        if got:
            recs.extend(got)
            answered += sum(len(r.event_ids) for r in got)
            idle_deadline = time.time() + 30
    span_s = (max(r.produced_ts for r in recs) - min(r.produced_ts for r in recs)) / 1000
    backlog_rate = answered / max(span_s, 1e-9)
    say(
        f"replay processed: {answered:,} events answered by {len(recs):,} lists "
        f"in {time.time() - t0:.1f} s"
    )

    say(f"live phase: {live_rate} events/s for {LIVE_SECONDS:.0f} s, stamped with the current time")
    sample = ml.events[-2000:]

    def live_event(i: int) -> RawEvent:
        ev = sample[i % len(sample)]
        return replace(ev, event_id=f"live-{i}", ts=int(time.time() * 1000))

    live = measure_freshness(settings, live_event, live_rate, LIVE_SECONDS, reader=reader)["e2e_ms"]
    live["rate"] = live_rate

    merged = merge_windows(_metrics(settings))
    totals = {k: merged.counts.get(k, 0) for k in ("in", "valid", "dlq", "duplicates")}
    reasons = dict(merged.dlq_reasons)

    sent += live["count"] + 1  # the live phase and the readiness probe
    _summary(reader, ml, titles, totals, reasons, sent, backlog_rate, recs, live)
    _profile_sizes(settings, totals["valid"])
    _online_quality(merged)
    ok = totals["in"] == totals["valid"] + totals["dlq"] + totals["duplicates"]
    return 0 if ok else 1


def _metrics(settings: Settings) -> list[MetricsWindow]:
    time.sleep(settings.metrics_interval_s * 1.5)  # let the last window close
    consumer = tail(settings, METRICS)
    try:
        return [MetricsWindow.from_dict(serde.loads(r.value)) for r in read_all(consumer)]
    finally:
        consumer.close()


def _summary(
    reader: RecommendationReader,
    ml: movielens.MovieLens,
    titles: dict[str, str],
    totals: dict[str, int],
    reasons: dict[str, int],
    sent: int,
    backlog_rate: float,
    recs: list[Recommendation],
    live: dict[str, float],
) -> None:
    backlog = LogHistogram()
    backlog.extend(rec.produced_ts - rec.ingest_ts for rec in recs)

    print()
    print("=" * 78)
    print("streamrec demo summary")
    print("=" * 78)
    users = _pick_users(ml)
    for user in users:
        latest = reader.latest(user)
        if latest is None:
            continue
        print(f"\nuser {user} ({latest.user[:14]}...), after a {latest.event_type} event:")
        for rank, item in enumerate(latest.items[:5], 1):
            reason = item.reason
            if reason.startswith("co-visited with "):
                anchor = reason.removeprefix("co-visited with ")
                reason = f"co-visited with {titles.get(anchor, anchor)[:28]}"
            print(
                f"  {rank}. {titles.get(item.item_id, item.item_id)[:44]:<44} "
                f"{item.score:5.2f}  {reason}"
            )
    print()
    print(f"events sent      {sent:>9,}  (replay + malformed + retries, live phase, probe)")
    print(f"events in        {totals['in']:>9,}")
    print(f"  valid          {totals['valid']:>9,}")
    print(f"  dead-lettered  {totals['dlq']:>9,}  {reasons}")
    print(f"  duplicates     {totals['duplicates']:>9,}")
    balanced = totals["in"] == totals["valid"] + totals["dlq"] + totals["duplicates"]
    print(f"in = valid + DLQ + duplicates: {'yes' if balanced else 'NO'}")
    print(
        f"throughput       {backlog_rate:>9,.0f} events/s  (worker flat out on the replay backlog)"
    )
    print(
        f"latency, live at {live['rate']:,.0f}/s: p50 {live['p50']:.0f} ms, "
        f"p99 {live['p99']:.0f} ms  (event produced -> recommendation received, "
        f"{live['count']:.0f} events)"
    )
    print(
        f"latency, replay backlog: p50 {backlog.percentile(50):.0f} ms, "
        f"p99 {backlog.percentile(99):.0f} ms  (event produced -> list produced; queueing, "
        "as all events were sent at once)"
    )
    print("=" * 78)


def _profile_sizes(settings: Settings, events: int) -> None:
    """Bytes per user profile as stored (the changelog's latest value per user), and what
    the changelog took per event (a profile is written once per batch it is in)."""
    sizes = np.array([len(v) for v in read_table(settings).values() if v is not None])
    if not len(sizes):
        return
    print(
        f"profiles stored  {len(sizes):>9,}  bytes each: mean {sizes.mean():,.0f}, "
        f"p99 {np.percentile(sizes, 99):,.0f}  (changelog records, {sizes.sum() / 2**20:.1f} MiB)"
    )
    records, written = changelog_written(settings)
    print(
        f"changelog        {records:>9,}  records, {written / 2**20:.1f} MiB written: "
        f"{written / max(events, 1):,.0f} bytes per valid event"
    )


def _online_quality(merged: WindowTotals) -> None:
    s = merged.summary()
    trials = merged.quality_total().trials
    if s["hit_rate"] is None:
        return
    k = s["quality_k"]
    print(
        f"online quality   HR@{k} {s['hit_rate']:.4f}  NDCG@{k} {s['ndcg']:.4f}  "
        f"MRR@{k} {s['mrr']:.4f}  over {trials:,} clicks/purchases, each scored against "
        "the list that user had (prequential)"
    )
    print("follow it live: streamrec monitor   (metrics, drift.stats, alerts)")
    print("=" * 78)


COLD_START_QUERIES = ("space adventure with aliens", "romantic comedy", "animated film for kids")


def _cold_start(settings: Settings, titles: dict[str, str], reader: RecommendationReader) -> None:
    """Brand-new users whose first event is a search: lists from the query alone."""
    say("cold start: waiting until every movie title has its vector (the scorer's catalog pass)")
    deadline = time.time() + 300
    version = None
    while version is None and time.time() < deadline:
        version = next(
            (w.scorer.get("encoder_version") for w in reversed(_metrics(settings))
             if w.role == "worker" and w.scorer.get("encoder_version")),
            None,
        )  # fmt: skip
        time.sleep(1)
    if version is None:
        say("the catalog vectors are not complete after 300 s; skipping the cold-start part")
        return
    print()
    print(f"cold start: new users, first event a search (encoder {version})")
    with EventProducer(settings) as producer:
        for n, query in enumerate(COLD_START_QUERIES):
            user = f"new-shopper-{n}-{int(time.time())}"
            ev = producer.track("search", user, query=query)
            producer.flush()
            rec = reader.wait_for(user, timeout_s=30, until=reader.answers(ev.event_id))
            if rec is None:
                print(f'  "{query}": no list within 30 s')
                continue
            flag = f"  flags {list(rec.flags)}" if rec.flags else ""
            print(f'  "{query}"{flag}')
            for rank, item in enumerate(rec.items[:5], 1):
                title = titles.get(item.item_id, item.item_id)[:44]
                print(f"    {rank}. {title:<44} {item.score:5.2f}  {item.reason}")
    print("=" * 78)


def _start_serve(stack: LocalStack, ml: movielens.MovieLens) -> RecommendationClient:
    """`streamrec serve` next to the worker, and a curl line that works while the demo runs."""
    port = stack.settings.serve_port
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:  # taken: any free one
            port = free_port()
    stack.start_serve(port)
    base = f"http://127.0.0.1:{port}"
    user = _pick_users(ml)[0]
    say(f"HTTP API on {base} (streamrec serve), while the demo runs:")
    print(f"    curl -s '{base}/v1/users/{user}/recommendations?k=5'", flush=True)
    print(f"    page: {base}/ui    API docs: {base}/docs", flush=True)
    return RecommendationClient(base)


def _show_serve(http: RecommendationClient, users: list[str], scorer: bool) -> None:
    """The same lists over HTTP, timed; similar items and a search when the scorer ran."""
    try:
        http.wait_ready(60)
        print()
        print("over HTTP (streamrec serve, the same lists from its own store):")
        t0 = time.perf_counter()
        doc = http.recommendations(users[0], k=3)
        took = (time.perf_counter() - t0) * 1000
        if doc is not None:
            titles = ", ".join(i.get("title", i["item_id"])[:30] for i in doc["items"])
            print(f"  GET /v1/users/{users[0]}/recommendations?k=3  {took:.1f} ms: {titles}")
            if scorer:
                first = doc["items"][0]
                similar = http.similar(first["item_id"], k=3)
                names = ", ".join(i.get("title", i["item_id"])[:30] for i in similar)
                print(f"  GET /v1/items/{first['item_id']}/similar?k=3: {names}")
                found = http.search(COLD_START_QUERIES[0], k=3)
                names = ", ".join(i.get("title", i["item_id"])[:30] for i in found)
                print(f'  GET /v1/search?q="{COLD_START_QUERIES[0]}": {names}')
        print("=" * 78)
    except (ServeError, OSError) as exc:
        say(f"the HTTP service did not answer: {exc}")
    finally:
        http.close()


def _pick_users(ml: movielens.MovieLens, n: int = 3) -> list[str]:
    counts: dict[str, int] = {}
    for ev in ml.events:
        counts[ev.user_id] = counts.get(ev.user_id, 0) + 1
    ranked = sorted(counts, key=lambda u: -counts[u])
    return [ranked[0], ranked[len(ranked) // 2], ranked[-1]][:n]
