"""Prometheus `/metrics` for a rank worker (the same numbers as its metrics windows),
and its `/healthz` and `/readyz` (`worker/readiness.py`).

The worker adds every window it publishes to `MetricsState` (cumulative since
start) and keeps the last window's summary, the drift detectors' states and
the alerts firing. A scrape renders that state with prometheus_client's
exposition format; counters are cumulative, so PromQL's `rate()` /
`increase()` give any window a dashboard wants (HR@K over 5 minutes =
increase(hits) / increase(trials)). The endpoint is a small aiohttp server on
the worker's event loop: no threads read the state while the loop writes it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from streamrec.core.monitoring.windows import WindowTotals
from streamrec.records import DriftStat, MetricsWindow

log = logging.getLogger(__name__)

#: Upper bounds (ms) of the event -> recommendation latency histogram.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class MetricsState:
    worker: str
    totals: WindowTotals = field(default_factory=WindowTotals)
    last: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, DriftStat] = field(default_factory=dict)
    drift_detections: dict[str, int] = field(default_factory=dict)
    firing: dict[str, str] = field(default_factory=dict)  # alert -> severity
    gauges: dict[str, float] = field(default_factory=dict)

    def add_window(self, window: MetricsWindow, summary: dict[str, Any]) -> None:
        self.totals.add(window)
        self.last = summary

    def add_drift(self, stat: DriftStat) -> None:
        if stat.immediate:
            self.drift_detections[stat.name] = self.drift_detections.get(stat.name, 0) + 1
        else:
            self.drift[stat.name] = stat


class _Collector(Collector):
    def __init__(self, state: MetricsState) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        st = self.state
        t = st.totals
        events = CounterMetricFamily(
            "streamrec_events", "Events consumed, by type and outcome", labels=["type", "outcome"]
        )
        for etype, row in sorted(t.per_type.items()):
            for outcome in ("valid", "dlq", "duplicates"):
                events.add_metric([etype, outcome], row.get(outcome, 0))
        yield events
        dlq = CounterMetricFamily(
            "streamrec_dead_letters", "Events sent to the dead-letter topic", labels=["reason"]
        )
        for reason, n in sorted(t.dlq_reasons.items()):
            dlq.add_metric([reason], n)
        yield dlq
        yield CounterMetricFamily(
            "streamrec_recommendations", "Lists published", value=t.counts.get("recommendations", 0)
        )
        lat = t.latency
        buckets = [(str(b), lat.count_at_most(b)) for b in LATENCY_BUCKETS_MS]
        buckets.append(("+Inf", lat.count))
        yield HistogramMetricFamily(
            "streamrec_event_latency_ms",
            "Event (Kafka timestamp) -> recommendation produced, ms",
            buckets=buckets,
            sum_value=lat.sum,
        )
        window = GaugeMetricFamily(
            "streamrec_window", "The last metrics window's rates", labels=["measure"]
        )
        for key in (
            "events_per_s",
            "dlq_share",
            "latency_p50_ms",
            "latency_p95_ms",
            "latency_p99_ms",
            "hit_rate",
            "ndcg",
            "mrr",
            "ctr",
            "no_query_vector_share",
        ):
            value = st.last.get(key)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                window.add_metric([key], float(value))
        yield window
        q_labels = ["variant"]
        quality = {
            name: CounterMetricFamily(f"streamrec_quality_{name}", help_, labels=q_labels)
            for name, help_ in (
                ("lists", "Lists published, per A/B variant"),
                ("trials", "Clicks/carts/purchases of users who had a list"),
                ("hits", f"... in the top {t.quality_k} of that list (HR@K = hits / trials)"),
                ("ndcg_sum", "Sum of 1/log2(rank+2) over hits (NDCG@K = ndcg_sum / trials)"),
                ("rr_sum", "Sum of 1/(rank+1) over hits (MRR@K = rr_sum / trials)"),
                ("impressions", "Impressions"),
                ("clicks", "Impressions clicked within the feedback window"),
            )
        }
        for variant, s in sorted(t.quality.items()):
            quality["lists"].add_metric([variant], s.lists)
            quality["trials"].add_metric([variant], s.trials)
            quality["hits"].add_metric([variant], s.hits)
            quality["ndcg_sum"].add_metric([variant], s.ndcg)
            quality["rr_sum"].add_metric([variant], s.rr)
            quality["impressions"].add_metric([variant], s.impressions)
            quality["clicks"].add_metric([variant], s.clicks)
        yield from quality.values()
        drift_stat = GaugeMetricFamily(
            "streamrec_drift_statistic", "Drift detectors' statistics", labels=["detector"]
        )
        drift_flag = GaugeMetricFamily(
            "streamrec_drift_detected", "1: drift in the last window", labels=["detector"]
        )
        for name, d in sorted(st.drift.items()):
            if d.statistic is not None:
                drift_stat.add_metric([name], d.statistic)
            drift_flag.add_metric([name], 1.0 if d.drift else 0.0)
        yield drift_stat
        yield drift_flag
        detections = CounterMetricFamily(
            "streamrec_drift_detections", "Drift detections", labels=["detector"]
        )
        for name, n in sorted(st.drift_detections.items()):
            detections.add_metric([name], n)
        yield detections
        firing = GaugeMetricFamily(
            "streamrec_alert_firing", "1 while an alert rule fires", labels=["alert", "severity"]
        )
        for name, severity in sorted(st.firing.items()):
            firing.add_metric([name, severity], 1.0)
        yield firing
        scorer = CounterMetricFamily(
            "streamrec_scorer_client", "Calls to the scorer", labels=["outcome"]
        )
        for key in ("requests", "replies", "timeouts", "skipped_down", "late", "errors"):
            scorer.add_metric([key], t.scorer_client.get(key, 0))
        yield scorer
        for name, value in sorted(st.gauges.items()):
            yield GaugeMetricFamily(f"streamrec_{name}", name.replace("_", " "), value=value)


def render(state: MetricsState) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(state))
    return generate_latest(registry)


async def serve(
    state: MetricsState,
    host: str,
    port: int,
    tries: int = 16,
    readiness: Callable[[], dict[str, Any]] | None = None,
) -> web.AppRunner:
    """Serve /metrics, /healthz and /readyz on `port`, or the next free one of `tries`;
    logs where. `readiness()` answers /readyz (its "ready" says 200 or 503)."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=render(state), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_request: web.Request) -> web.Response:
        doc = readiness() if readiness is not None else {"ready": True}
        return web.json_response(doc, status=200 if doc["ready"] else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    last: OSError | None = None
    for p in range(port, port + tries):
        try:
            site = web.TCPSite(runner, host, p)
            await site.start()
        except OSError as exc:
            last = exc
            continue
        log.info("Prometheus metrics on http://%s:%d/metrics", host, p)
        return runner
    await runner.cleanup()
    raise OSError(f"no free port for /metrics in {port}..{port + tries - 1}: {last}")


async def serve_until_stopped(
    state: MetricsState,
    host: str,
    port: int,
    readiness: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Serve until the task running this is cancelled (a port in use: logged)."""
    try:
        runner = await serve(state, host, port, readiness=readiness)
    except OSError as exc:
        log.warning("Prometheus /metrics not served: %s", exc)
        return
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
