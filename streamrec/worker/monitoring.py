"""What a worker publishes about itself: `metrics` windows, `drift.stats`, `alerts`.

A timer closes a window every `STREAMREC_METRICS_INTERVAL_S`: the counts of
the batches delivered since the last one (the engine's window), the online
quality per variant and the drift detectors' states. A drift detected while
a batch is processed goes out at once, with its alert rules. The same numbers
feed the worker's Prometheus `/metrics` (`MetricsState`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from streamrec.clock import now_ms
from streamrec.contracts import ALERTS, DRIFT_STATS, METRICS
from streamrec.core.engine import Engine
from streamrec.core.monitoring.alerts import AlertEngine
from streamrec.core.monitoring.counters import Counters
from streamrec.core.monitoring.drift import Detection
from streamrec.core.monitoring.monitor import MonitorWindow
from streamrec.core.monitoring.windows import merge_windows
from streamrec.prometheus import MetricsState
from streamrec.records import Alert, DriftStat, MetricsWindow
from streamrec.settings import Settings
from streamrec.worker.scorer_client import ScorerClient

log = logging.getLogger(__name__)

#: Sends one monitoring record: (topic, key, value).
SendValue = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class WorkerMonitoring:
    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        engine: Engine,
        send: SendValue,
        scorer: ScorerClient | None = None,
        repaired: Callable[[], int] = lambda: 0,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.engine = engine
        self.send = send
        self.scorer = scorer
        #: Stored profiles repaired on read since the last call.
        self.repaired = repaired
        #: The shared-state follower's fold lag since the last call (`worker/shared.py`).
        self.shared_lag: Callable[[], dict[str, Any]] = dict
        #: Stalled partitions sought back since the last call (`worker/stall.py`).
        self.sought: Callable[[], int] = lambda: 0
        self.state = MetricsState(worker_id)
        self.alerts = AlertEngine(settings.alert_rule_set(), worker_id)
        self.t_metrics = settings.topic(METRICS)
        self.t_drift = settings.topic(DRIFT_STATS)
        self.t_alerts = settings.topic(ALERTS)
        self._window_start = now_ms()
        #: Switches of the blend tuner already published.
        self._switches_seen = 0

    async def publish_window(self) -> None:
        window = self.engine.counters.reset()
        repaired = self.repaired()
        if repaired:
            window.counts["profiles_repaired"] += repaired
        sought = self.sought()
        if sought:
            window.counts["partitions_sought"] += sought
        if self.engine.sharing is not None:  # deltas published and folded in (core/sharing.py)
            for name, n in self.engine.sharing.take_window().items():
                window.counts[f"shared_{name}"] += n
        monitor = self.engine.monitor
        watched = monitor.reset() if monitor is not None else MonitorWindow()
        end = now_ms()
        record = metrics_window(
            self.worker_id, self._window_start, end, window, watched, self.settings.quality_k
        )
        if self.scorer is not None:
            record.scorer.update(self.scorer.window())
        record.scorer["item_vectors"] = len(self.engine.item_vectors)
        record.scorer["encoder_version"] = self.engine.item_vectors.active_version
        record.shared_lag_hist.update(self.shared_lag())
        self._blend(record)
        self._window_start = end
        await self.send(self.t_metrics, self.worker_id, record.to_dict())
        summary = merge_windows([record]).summary()
        self.state.add_window(record, summary)
        self.state.gauges["item_vectors"] = float(len(self.engine.item_vectors))
        for d in watched.drift:
            stat = DriftStat(worker=self.worker_id, ts=end, **d)
            self.state.add_drift(stat)
            await self.send(self.t_drift, stat.name, stat.to_dict())
        for alert in self.alerts.on_window(summary, end):
            await self.publish_alert(alert)
        c = record.counts
        if c["in"]:
            log.info(
                "window: in=%d valid=%d dlq=%d dup=%d latency p50=%s p99=%s ms hit_rate=%s ctr=%s",
                c["in"],
                c["valid"],
                c["dlq"],
                c["duplicates"],
                record.freshness_ms.get("p50"),
                record.freshness_ms.get("p99"),
                summary["hit_rate"],
                summary["ctr"],
            )

    def _blend(self, record: MetricsWindow) -> None:
        """The self-tuning blend's state and its switches since the last window."""
        tuner = self.engine.recommender.tuner
        if tuner is None:
            return
        new = tuner.switches[self._switches_seen :]
        self._switches_seen = len(tuner.switches)
        for sw in new:
            log.info("blend switched: %s -> %s after %d scored events (NDCG@%d %.4f -> %.4f, "
                     "gain %.4f +- %.4f): %s", sw.before, sw.after, sw.scored, tuner.k,
                     sw.ndcg_before, sw.ndcg_after, sw.ndcg_after - sw.ndcg_before, sw.se,
                     sw.weights)  # fmt: skip
        record.blend.update(tuner.stats(), new_switches=[sw.to_dict() for sw in new])
        self.state.gauges["blend_switches"] = float(len(tuner.switches))

    async def publish_detection(self, d: Detection) -> None:
        """A drift, the moment it is detected: drift.stats, then its alert rules."""
        ts = now_ms()
        stat = d.to_stat(self.worker_id, ts)
        log.info("drift: %s", stat.message)
        self.state.add_drift(stat)
        await self.send(self.t_drift, d.name, stat.to_dict())
        for alert in self.alerts.on_drift(d, ts):
            await self.publish_alert(alert)

    async def publish_alert(self, alert: Alert) -> None:
        if alert.state == "firing":
            log.warning("ALERT %s [%s]: %s", alert.alert, alert.severity, alert.message)
            self.state.firing[alert.alert] = alert.severity
        else:
            log.info("alert resolved: %s", alert.message)
            self.state.firing.pop(alert.alert, None)
        await self.send(self.t_alerts, alert.alert, alert.to_dict())


def metrics_window(
    worker: str,
    start: int,
    end: int,
    window: Counters,
    watched: MonitorWindow | None = None,
    quality_k: int = 10,
) -> MetricsWindow:
    counts = window.snapshot()
    seconds = (end - start) / 1000.0
    latency = window.freshness
    return MetricsWindow(
        worker=worker,
        window_start=start,
        window_end=end,
        counts=counts,
        by_type=dict(window.by_type),
        dlq_reasons=dict(window.dlq_reasons),
        freshness_ms=latency.summary() if latency.count else {},
        latency_hist=latency.to_dict() if latency.count else {},
        per_type=window.per_type(),
        quality={v: s.to_dict() for v, s in (watched.quality if watched else {}).items()},
        quality_k=quality_k,
        events_per_s=round(counts["in"] / seconds, 2) if seconds > 0 else 0.0,
    )
