"""Records of the monitoring topics: metrics windows, drift statistics, alerts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from streamrec.records.base import _drop_none


@dataclass(frozen=True, slots=True)
class MetricsWindow:
    worker: str
    window_start: int
    window_end: int
    counts: dict[str, int]
    by_type: dict[str, int]
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    freshness_ms: dict[str, float] = field(default_factory=dict)
    role: str = "worker"
    #: Scorer counters: a scorer's own window, or a rank worker's view of its scorer calls.
    scorer: dict[str, Any] = field(default_factory=dict)
    #: Event -> recommendation latency as a mergeable log histogram (`LogHistogram.to_dict`).
    latency_hist: dict[str, Any] = field(default_factory=dict)
    #: Per event type: in / valid / dlq / duplicates (in = the other three).
    per_type: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Online quality sums per A/B variant (`QualitySums`): readers add them up.
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: K of the online HR@K / NDCG@K / MRR@K in `quality`.
    quality_k: int = 10
    events_per_s: float = 0.0
    #: Publish -> fold delay of the other workers' shared-state deltas (`LogHistogram`).
    shared_lag_hist: dict[str, Any] = field(default_factory=dict)
    #: The self-tuning blend: the live weighting and its evidence (`BlendTuner.stats`),
    #: and the switches made in this window (`Switch.to_dict`) as "new_switches".
    blend: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricsWindow:
        # Fields a newer worker adds are left out: readers keep working in a rolling upgrade.
        return cls(**{k: v for k, v in d.items() if k in _METRICS_FIELDS})


_METRICS_FIELDS = frozenset(f.name for f in fields(MetricsWindow))


@dataclass(frozen=True, slots=True)
class DriftStat:
    """One detector's state (drift.stats): per window, and at once when it fires."""

    worker: str
    ts: int
    name: str
    detector: str
    signal: str
    threshold: float
    drift: bool
    statistic: float | None = None
    #: True: sent the moment the drift was detected; False: the window's summary.
    immediate: bool = False
    detections: int = 0
    n: int = 0
    direction: str | None = None
    before: float | None = None
    after: float | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftStat:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert rule that started (firing) or stopped (resolved) holding (alerts)."""

    alert: str
    state: str  # "firing" | "resolved"
    severity: str
    message: str
    signal: str
    worker: str
    ts: int
    value: float | None = None
    threshold: float | None = None
    windows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        return cls(**d)
