"""Adding up metrics windows from many workers, partitions and scorers.

Every field of a `MetricsWindow` that readers need is a count, a sum or a
mergeable histogram, so the windows of any set of processes over any span add
up to exactly what one process would have counted. `merge_windows` does that
sum; `WindowTotals.summary()` turns it into the rates people look at (and
alert rules test): events/s, DLQ share, latency percentiles, online HR@K,
NDCG@K, MRR@K and CTR, overall and per A/B variant.

>>> from streamrec.records import MetricsWindow
>>> w = MetricsWindow("a", 0, 10_000, {"in": 10, "valid": 8, "dlq": 2, "duplicates": 0}, {})
>>> merge_windows([w, w]).summary()["dlq_share"]
0.2
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.core.monitoring.quality import QualitySums
from streamrec.records import MetricsWindow

#: Scorer-window counters that add up (the rest are summaries or versions).
_SCORER_HISTS = ("batch_texts_hist", "queue_wait_hist")


@dataclass
class WindowTotals:
    windows: int = 0
    start: int = 0
    end: int = 0
    workers: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    per_type: dict[str, Counter[str]] = field(default_factory=dict)
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    latency: LogHistogram = field(default_factory=LogHistogram)
    #: How long after it was published a worker folded another worker's delta.
    shared_lag: LogHistogram = field(default_factory=LogHistogram)
    quality: dict[str, QualitySums] = field(default_factory=dict)
    quality_k: int = 10
    #: Rank workers' scorer-client counters (requests, timeouts, ...).
    scorer_client: Counter[str] = field(default_factory=Counter)
    #: Scorer processes' own counters, and their histograms.
    scorer: Counter[str] = field(default_factory=Counter)
    scorer_hists: dict[str, LogHistogram] = field(default_factory=dict)

    def add(self, w: MetricsWindow) -> None:
        self.windows += 1
        self.start = min(self.start, w.window_start) if self.windows > 1 else w.window_start
        self.end = max(self.end, w.window_end)
        self.workers.add(w.worker)
        if w.role == "scorer":
            for k, v in w.scorer.items():
                if k in _SCORER_HISTS and v:
                    h = self.scorer_hists.get(k)
                    if h is None:
                        h = self.scorer_hists[k] = LogHistogram()
                    h.merge(LogHistogram.from_dict(v))
                elif isinstance(v, int) and not isinstance(v, bool):
                    self.scorer[k] += v
            return
        self.counts.update(w.counts)
        self.by_type.update(w.by_type)
        for t, c in w.per_type.items():
            self.per_type.setdefault(t, Counter()).update(c)
        self.dlq_reasons.update(w.dlq_reasons)
        if w.latency_hist:
            self.latency.merge(LogHistogram.from_dict(w.latency_hist))
        if w.shared_lag_hist:
            self.shared_lag.merge(LogHistogram.from_dict(w.shared_lag_hist))
        self.quality_k = w.quality_k
        for variant, sums in w.quality.items():
            self.quality.setdefault(variant, QualitySums()).add(QualitySums.from_dict(sums))
        for k, v in w.scorer.items():
            if isinstance(v, int) and not isinstance(v, bool):
                self.scorer_client[k] += v

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start) / 1000.0)

    def quality_total(self) -> QualitySums:
        total = QualitySums()
        for s in self.quality.values():
            total.add(s)
        return total

    def summary(self) -> dict[str, Any]:
        """Flat rates for people and alert rules (None: nothing to measure it on)."""
        c = self.counts
        n_in = c.get("in", 0)
        lat = self.latency
        out: dict[str, Any] = {
            "windows": self.windows,
            "workers": len(self.workers),
            "seconds": round(self.seconds, 3),
            "events_in": n_in,
            "events_valid": c.get("valid", 0),
            "events_dlq": c.get("dlq", 0),
            "events_duplicates": c.get("duplicates", 0),
            "recommendations": c.get("recommendations", 0),
            "events_per_s": round(n_in / self.seconds, 2) if self.seconds else None,
            "dlq_share": round(c.get("dlq", 0) / n_in, 6) if n_in else None,
            "duplicate_share": round(c.get("duplicates", 0) / n_in, 6) if n_in else None,
        }
        for q in (50, 95, 99):
            out[f"latency_p{q}_ms"] = round(lat.percentile(q), 2) if lat.count else None
        out["latency_max_ms"] = round(lat.max, 2) if lat.count else None
        lag = self.shared_lag
        for q in (50, 99):
            out[f"shared_lag_p{q}_ms"] = round(lag.percentile(q), 2) if lag.count else None
        searches = c.get("query_vector", 0) + c.get("no_query_vector", 0)
        out["no_query_vector_share"] = (
            round(c.get("no_query_vector", 0) / searches, 6) if searches else None
        )
        out["scorer_timeouts"] = self.scorer_client.get("timeouts", 0)
        # hit_rate, ndcg and mrr are at K = quality_k (the top K of each list).
        out["quality_k"] = self.quality_k
        out |= _rates(self.quality_total())
        out["variants"] = {v: _rates(s) | _counts(s) for v, s in sorted(self.quality.items())}
        lookups = self.scorer.get("cache_hits", 0) + self.scorer.get("cache_misses", 0)
        out["scorer_cache_hit_rate"] = (
            round(self.scorer["cache_hits"] / lookups, 4) if lookups else None
        )
        for name, h in self.scorer_hists.items():
            out[f"scorer_{name.removesuffix('_hist')}_p95"] = (
                round(h.percentile(95), 2) if h.count else None
            )
        return out


def _rates(s: QualitySums) -> dict[str, float | None]:
    return {name: _round(value) for name, value in s.rates().items()}


def _counts(s: QualitySums) -> dict[str, int]:
    return {
        "lists": s.lists,
        "trials": s.trials,
        "hits": s.hits,
        "impressions": s.impressions,
        "clicks": s.clicks,
    }


def _round(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 6)


def merge_windows(windows: Iterable[MetricsWindow]) -> WindowTotals:
    totals = WindowTotals()
    for w in windows:
        totals.add(w)
    return totals
