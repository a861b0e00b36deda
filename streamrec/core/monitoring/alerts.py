"""Alert rules over metrics windows and drift detections.

A threshold rule tests one number of a window's summary (`WindowTotals.summary`)
and fires when it holds for `for_windows` windows in a row; it resolves at the
first window where it does not hold. A window without the number (no events,
no clicks) changes nothing. A drift rule (`"signal": "drift:<detector>"`) fires
the moment that detector reports drift in `direction`, and resolves after a
window without another one.

Rules come from `STREAMREC_ALERT_RULES`: a JSON list (or `@file.json`); empty
means `DEFAULT_RULES`, `[]` means none.

>>> engine = AlertEngine([AlertRule("slow", "latency_p99_ms", ">", 100, for_windows=2)], "w1")
>>> [a.state for a in engine.on_window({"latency_p99_ms": 150}, ts=1)]
[]
>>> [a.state for a in engine.on_window({"latency_p99_ms": 160}, ts=2)]
['firing']
>>> [a.state for a in engine.on_window({"latency_p99_ms": 50}, ts=3)]
['resolved']
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from streamrec.core.monitoring.drift import DETECTORS, Detection
from streamrec.errors import ConfigError
from streamrec.records import Alert
from streamrec.serde import json_setting

#: Numbers of a window summary a rule can test.
SIGNALS = (
    "events_per_s",
    "events_in",
    "dlq_share",
    "duplicate_share",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "hit_rate",
    "ndcg",
    "mrr",
    "ctr",
    "no_query_vector_share",
    "scorer_timeouts",
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
DRIFT_PREFIX = "drift:"


@dataclass(frozen=True)
class AlertRule:
    name: str
    signal: str
    op: str = ">"
    threshold: float = 0.0
    for_windows: int = 1
    severity: str = "warning"
    #: Drift rules only: "down", "up", "shift" or "any".
    direction: str = "any"

    def __post_init__(self) -> None:
        if self.signal.startswith(DRIFT_PREFIX):
            detector = self.signal[len(DRIFT_PREFIX) :]
            if detector not in DETECTORS:
                raise ConfigError(
                    f"alert rule {self.name!r}: no drift detector {detector!r}; "
                    f"detectors: {', '.join(DETECTORS)}"
                )
            if self.direction not in {"any", "up", "down", "shift"}:
                raise ConfigError(f"alert rule {self.name!r}: direction must be any/up/down/shift")
            return
        if self.signal not in SIGNALS:
            raise ConfigError(
                f"alert rule {self.name!r}: unknown signal {self.signal!r}; signals: "
                f"{', '.join(SIGNALS)}, or drift:<{'|'.join(DETECTORS)}>"
            )
        if self.op not in _OPS:
            raise ConfigError(f"alert rule {self.name!r}: op must be one of {sorted(_OPS)}")
        if self.for_windows < 1:
            raise ConfigError(f"alert rule {self.name!r}: for_windows must be >= 1")

    @property
    def is_drift(self) -> bool:
        return self.signal.startswith(DRIFT_PREFIX)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_RULES = (
    AlertRule("latency_p99_high", "latency_p99_ms", ">", 2_000.0, for_windows=3),
    AlertRule("dlq_share_high", "dlq_share", ">", 0.05, for_windows=1),
    AlertRule("scorer_unavailable", "no_query_vector_share", ">", 0.5, for_windows=3),
    AlertRule("hit_rate_drop", "drift:hit_rate", direction="down", severity="critical"),
    AlertRule("ctr_drop", "drift:ctr", direction="down", severity="critical"),
)


def parse_rules(spec: str) -> tuple[AlertRule, ...]:
    spec = spec.strip()
    if not spec:
        return DEFAULT_RULES
    raw = json_setting(
        "STREAMREC_ALERT_RULES",
        spec,
        'a JSON list of rules, e.g. \'[{"name": "slow", "signal": "latency_p99_ms", '
        '"op": ">", "threshold": 500, "for_windows": 3}]\'',
    )
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ConfigError("STREAMREC_ALERT_RULES must be a JSON list of objects")
    rules = []
    for r in raw:
        try:
            rules.append(AlertRule(**r))
        except TypeError as exc:
            raise ConfigError(f"STREAMREC_ALERT_RULES: bad rule {r}: {exc}") from exc
    return tuple(rules)


class AlertEngine:
    """Rule state for one worker: breaches in a row, and what is firing."""

    def __init__(self, rules: tuple[AlertRule, ...] | list[AlertRule], worker: str) -> None:
        self.rules = tuple(rules)
        self.worker = worker
        self.streak: dict[str, int] = {r.name: 0 for r in self.rules}
        self.firing: set[str] = set()
        self._drift_this_window: set[str] = set()

    def on_window(self, summary: dict[str, Any], ts: int) -> list[Alert]:
        out = []
        for rule in self.rules:
            if rule.is_drift:
                if rule.name in self.firing and rule.name not in self._drift_this_window:
                    self.firing.discard(rule.name)
                    out.append(self._alert(rule, "resolved", ts, None, 0, "no drift since"))
                continue
            value = summary.get(rule.signal)
            if value is None:
                continue
            if _OPS[rule.op](float(value), rule.threshold):
                self.streak[rule.name] += 1
                n = self.streak[rule.name]
                if n >= rule.for_windows and rule.name not in self.firing:
                    self.firing.add(rule.name)
                    out.append(self._alert(rule, "firing", ts, float(value), n))
            else:
                self.streak[rule.name] = 0
                if rule.name in self.firing:
                    self.firing.discard(rule.name)
                    out.append(self._alert(rule, "resolved", ts, float(value), 0))
        self._drift_this_window = set()
        return out

    def on_drift(self, d: Detection, ts: int) -> list[Alert]:
        out = []
        for rule in self.rules:
            if rule.signal != DRIFT_PREFIX + d.name:
                continue
            if rule.direction not in ("any", d.direction):
                continue
            self._drift_this_window.add(rule.name)
            if rule.name not in self.firing:
                self.firing.add(rule.name)
                out.append(self._alert(rule, "firing", ts, d.statistic, 1, d.describe()))
        return out

    def _alert(
        self, rule: AlertRule, state: str, ts: int, value: float | None, n: int, why: str = ""
    ) -> Alert:
        if rule.is_drift:
            message = f"{rule.name} {state}: {why}"
        elif state == "firing":
            message = (
                f"{rule.name} firing: {rule.signal} = {value:.4g} {rule.op} {rule.threshold:g} "
                f"for {n} window(s) on {self.worker}"
            )
        else:
            message = f"{rule.name} resolved: {rule.signal} = {value:.4g} on {self.worker}"
        return Alert(
            alert=rule.name,
            state=state,
            severity=rule.severity,
            message=message,
            signal=rule.signal,
            worker=self.worker,
            ts=ts,
            value=None if value is None else round(value, 6),
            threshold=None if rule.is_drift else rule.threshold,
            windows=n,
        )
