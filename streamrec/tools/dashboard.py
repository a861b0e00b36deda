"""`streamrec monitor`: follow metrics, drift.stats and alerts live in the terminal.

    streamrec monitor                 # a rich view, refreshed every second (Ctrl-C ends)
    streamrec monitor --once          # what the topics hold now, then exit
    streamrec monitor --once --json   # the same as one JSON object, for scripts

"now" is each process's latest window added up; "total" is every window of
the last `--since` seconds added up (windows are sums, so both are exact
across workers). The A/B tests compare every variant with control (the first
in STREAMREC_VARIANTS) on hit rate and CTR over the total.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from streamrec import clients, serde
from streamrec.contracts import ALERTS, DRIFT_STATS, METRICS
from streamrec.core.monitoring.view import MonitorView
from streamrec.settings import Settings


def render(snap: dict[str, Any]) -> Any:
    """The snapshot as rich tables."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def fmt(v: Any, pct: bool = False) -> str:
        if v is None:
            return "-"
        if pct:
            return f"{100 * v:.2f}%"
        return f"{v:,.4g}" if isinstance(v, float) else f"{v:,}"

    now, total = snap["now"], snap["total"]
    k = total.get("quality_k", 10)
    head = Table(
        title=f"streamrec: now (latest window per process) and the last {snap['since_s']:.0f} s"
    )
    head.add_column("")
    head.add_column("now", justify="right")
    head.add_column("total", justify="right")
    rows = [
        ("workers", "workers", False),
        ("events/s", "events_per_s", False),
        ("events in", "events_in", False),
        ("DLQ share", "dlq_share", True),
        ("duplicates", "duplicate_share", True),
        ("latency p50 ms", "latency_p50_ms", False),
        ("latency p95 ms", "latency_p95_ms", False),
        ("latency p99 ms", "latency_p99_ms", False),
        (f"HR@{k}", "hit_rate", True),
        (f"NDCG@{k}", "ndcg", False),
        (f"MRR@{k}", "mrr", False),
        ("CTR", "ctr", True),
        ("no query vector", "no_query_vector_share", True),
        ("scorer timeouts", "scorer_timeouts", False),
        ("scorer cache hits", "scorer_cache_hit_rate", True),
        ("scorer batch p95 (texts)", "scorer_batch_texts_p95", False),
        ("scorer queue wait p95 ms", "scorer_queue_wait_p95", False),
    ]
    for label, key, pct in rows:
        head.add_row(label, fmt(now.get(key), pct), fmt(total.get(key), pct))

    variants = Table(title="A/B variants (total)")
    for col in ("variant", "lists", f"HR@{k}", "CTR", "impressions", "vs control"):
        variants.add_column(col, justify="right" if col != "variant" else "left")
    tests: dict[str, list[str]] = {}
    for t in snap["ab_tests"]:
        mark = "significant" if t["significant"] else "n.s."
        lift = "-" if t["lift"] is None else f"{100 * t['lift']:+.1f}%"
        p = "-" if t["p_value"] is None else f"p={t['p_value']:.3g}"
        tests.setdefault(t["variant"], []).append(f"{t['metric']} {lift} {p} {mark}")
    for name, v in total["variants"].items():
        variants.add_row(
            name,
            fmt(v["lists"]),
            fmt(v["hit_rate"], True),
            fmt(v["ctr"], True),
            fmt(v["impressions"]),
            "; ".join(tests.get(name, ["control"] if snap["ab_tests"] else [""])),
        )

    drift = Table(title="drift detectors (latest window)")
    for col in ("detector", "on", "statistic", "threshold", "drift"):
        drift.add_column(col)
    for name, d in snap["drift"].items():
        flag = Text("DRIFT", style="bold red") if d["drift"] else Text("ok", style="green")
        drift.add_row(name, d["detector"], fmt(d.get("statistic")), fmt(d["threshold"]), flag)
    parts: list[Any] = [head, variants, drift, _blend_table(snap)]
    for sw in snap["blend_switches"][-5:]:
        gain = sw["ndcg_after"] - sw["ndcg_before"]
        parts.append(Text(f"blend switch ({sw['worker']}): {sw['before']} -> {sw['after']} after "
                          f"{sw['scored']:,} scored events, NDCG {sw['ndcg_before']:.4f} -> "
                          f"{sw['ndcg_after']:.4f} (+{gain:.4f} +- {sw['se']:.4f})",
                          style="cyan"))  # fmt: skip
    for d in snap["detections"][-5:]:
        parts.append(Text(f"drift: {d.get('message', d['name'])}", style="yellow"))
    for a in snap["alerts_firing"]:
        parts.append(Text(f"ALERT [{a['severity']}] {a['message']}", style="bold red"))
    if not snap["alerts_firing"]:
        parts.append(Text("no alerts firing", style="green"))
    return Group(*parts)


def _blend_table(snap: dict[str, Any]) -> Any:
    """The self-tuning blend per worker: what ranks now, and how the best neighbour does;
    the live weights below the table (a column of them would squeeze the others)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title="self-tuning blend (latest window per worker)")
    for col in ("worker", "live", "switches", "scored", "NDCG live", "best", "NDCG best"):
        table.add_column(col)
    lines = []
    for worker, b in snap["blend"].items():
        table.add_row(worker, b["live"], str(b["switches"]), f"{b['scored']:,}",
                      f"{b['ndcg_live']:.4f}", b["best"], f"{b['ndcg_best']:.4f}")  # fmt: skip
        weights = ", ".join(f"{k} {v:g}" for k, v in b.get("weights", {}).items())
        if weights:
            lines.append(Text(f"live weights ({worker}): {weights}"))
    return Group(table, *lines)


def run_monitor(args: argparse.Namespace, settings: Settings) -> int:
    from kafka import TopicPartition

    view = MonitorView(
        since_s=args.since,
        control=settings.experiment_config().control.name,
        alpha=settings.ab_alpha,
    )
    consumer = clients.consumer(
        settings, enable_auto_commit=False, fetch_max_wait_ms=settings.fetch_max_wait_ms
    )
    topics = {settings.topic(t): t for t in (METRICS, DRIFT_STATS, ALERTS)}
    tps = [
        TopicPartition(name, p)
        for name in topics
        for p in sorted(consumer.partitions_for_topic(name) or ())
    ]
    if not tps:
        consumer.close()
        from streamrec.errors import BrokerError

        raise BrokerError(
            f"no monitoring topics at {settings.kafka_bootstrap} (prefix "
            f"{settings.topic_prefix!r}); create them with `streamrec topics create`"
        )
    consumer.assign(tps)
    # Start where the time span starts: no need to read a week of retention.
    start = int(time.time() * 1000 - args.since * 1000)
    try:
        offsets = consumer.offsets_for_times(dict.fromkeys(tps, start))
    except Exception:  # a broker without timestamp lookups: read it all, keep the span
        consumer.seek_to_beginning(*tps)
    else:
        for tp in tps:
            found = offsets.get(tp)
            if found is None:
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, found.offset)

    def drain(timeout_ms: int) -> int:
        n = 0
        for tp, records in consumer.poll(timeout_ms=timeout_ms).items():
            for r in records:
                view.add(topics[tp.topic], r.value)
                n += 1
        return n

    try:
        if args.once:
            while drain(1000):
                pass
            snap = view.snapshot()
            if args.json:
                print(serde.dumps(snap).decode())
            else:
                from rich.console import Console

                Console().print(render(snap))
            return 0
        from rich.live import Live

        with Live(render(view.snapshot()), refresh_per_second=2, screen=False) as live:
            while True:
                drain(1000)
                live.update(render(view.snapshot()))
    finally:
        consumer.close()
