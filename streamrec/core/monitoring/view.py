"""What `metrics`, `drift.stats` and `alerts` say, kept for a time span: the data
behind `streamrec monitor` and the serving API's health page. No Kafka here: the
caller feeds it records (`add`) and asks for the view (`snapshot`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from streamrec import serde
from streamrec.contracts import ALERTS, DRIFT_STATS, METRICS
from streamrec.core.monitoring.abtest import compare_variants
from streamrec.core.monitoring.windows import merge_windows
from streamrec.errors import SerdeError
from streamrec.records import Alert, DriftStat, MetricsWindow


@dataclass
class MonitorView:
    """What the three topics say, kept for a time span; `snapshot()` is the view's data."""

    since_s: float = 300.0
    control: str | None = None
    alpha: float = 0.05
    windows: list[MetricsWindow] = field(default_factory=list)
    drift: dict[str, DriftStat] = field(default_factory=dict)
    detections: deque[DriftStat] = field(default_factory=lambda: deque(maxlen=20))
    alerts: deque[Alert] = field(default_factory=lambda: deque(maxlen=50))
    firing: dict[tuple[str, str], Alert] = field(default_factory=dict)
    #: The self-tuning blend's switches seen (newest last), with their evidence.
    switches: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    unreadable: int = 0

    def add(self, topic: str, value: bytes) -> None:
        try:
            doc = serde.loads(value)
            if topic == METRICS:
                window = MetricsWindow.from_dict(doc)
                self.windows.append(window)
                for sw in window.blend.get("new_switches", ()):
                    self.switches.append({**sw, "worker": window.worker, "ts": window.window_end})
            elif topic == DRIFT_STATS:
                stat = DriftStat.from_dict(doc)
                if stat.immediate:
                    self.detections.append(stat)
                else:
                    self.drift[stat.name] = stat
            elif topic == ALERTS:
                alert = Alert.from_dict(doc)
                self.alerts.append(alert)
                key = (alert.alert, alert.worker)
                if alert.state == "firing":
                    self.firing[key] = alert
                else:
                    self.firing.pop(key, None)
        except (SerdeError, TypeError, KeyError):
            self.unreadable += 1  # another version's record: skip it, count it

    def snapshot(self, now_ms: int | None = None) -> dict[str, Any]:
        now_ms = now_ms or int(time.time() * 1000)
        cutoff = now_ms - self.since_s * 1000
        self.windows = [w for w in self.windows if w.window_end >= cutoff]
        latest: dict[str, MetricsWindow] = {}
        for w in self.windows:
            if w.worker not in latest or w.window_end > latest[w.worker].window_end:
                latest[w.worker] = w
        total = merge_windows(self.windows)
        return {
            "ts": now_ms,
            "since_s": self.since_s,
            "now": merge_windows(latest.values()).summary(),
            "total": total.summary(),
            "ab_tests": [
                r.to_dict() for r in compare_variants(total.quality, self.control, self.alpha)
            ],
            "drift": {name: d.to_dict() for name, d in sorted(self.drift.items())},
            "detections": [d.to_dict() for d in self.detections],
            "alerts_firing": [a.to_dict() for a in self.firing.values()],
            "alerts_recent": [a.to_dict() for a in list(self.alerts)[-10:]],
            "blend": {w: latest[w].blend for w in sorted(latest) if latest[w].blend},
            "blend_switches": list(self.switches),
            "unreadable": self.unreadable,
        }
