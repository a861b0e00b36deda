"""A log-bucketed latency histogram: constant memory, mergeable, ~1% accurate.

Windows from several workers merge by adding bucket counts, which a list of
samples cannot do cheaply. Values are bucketed by ``floor(log(v) / log(1 + 2 * precision))``.

>>> h = LogHistogram()
>>> for v in range(1, 101): h.record(v)
>>> abs(h.percentile(50) - 50) <= 1, abs(h.percentile(99) - 99) <= 1, h.count
(True, True, 100)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping


class LogHistogram:
    def __init__(self, precision: float = 0.01) -> None:
        self.precision = precision
        self._log_base = math.log1p(2 * precision)
        self.buckets: Counter[int] = Counter()
        self.zeros = 0
        self.count = 0
        self.max = 0.0
        self.sum = 0.0

    def record(self, value: float) -> None:
        self.count += 1
        self.sum += value
        if value > self.max:
            self.max = value
        if value <= 0:
            self.zeros += 1
            return
        self.buckets[math.floor(math.log(value) / self._log_base)] += 1

    def extend(self, values: Iterable[float]) -> None:
        for v in values:
            self.record(v)

    def merge(self, other: LogHistogram) -> None:
        if other.precision != self.precision:
            raise ValueError("cannot merge histograms of different precision")
        self.buckets.update(other.buckets)
        self.zeros += other.zeros
        self.count += other.count
        self.max = max(self.max, other.max)
        self.sum += other.sum

    def count_at_most(self, value: float) -> int:
        """Values <= `value`, counting whole buckets whose upper bound is <= `value`
        (a cumulative bucket of a Prometheus histogram, to the bucket precision)."""
        if value < 0:
            return 0
        n = self.zeros
        if value == 0:
            return n
        if math.isinf(value):
            return self.count
        limit = math.floor(math.log(value) / self._log_base)
        return n + sum(c for idx, c in self.buckets.items() if idx < limit)

    def percentile(self, q: float) -> float:
        """Value at percentile q (0-100): the midpoint of the bucket holding that rank."""
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q / 100.0 * self.count))
        if rank <= self.zeros:
            return 0.0
        seen = self.zeros
        for idx in sorted(self.buckets):
            seen += self.buckets[idx]
            if seen >= rank:
                lo = math.exp(idx * self._log_base)
                hi = math.exp((idx + 1) * self._log_base)
                return min((lo + hi) / 2, self.max)
        return self.max

    def summary(self, qs: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
        out = {f"p{q:g}": round(self.percentile(q), 2) for q in qs}
        out["count"] = self.count
        out["max"] = round(self.max, 2)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "precision": self.precision,
            "zeros": self.zeros,
            "max": self.max,
            "sum": self.sum,
            "buckets": {str(k): v for k, v in self.buckets.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> LogHistogram:
        h = cls(float(d["precision"]))  # type: ignore[arg-type]
        buckets = d["buckets"]
        assert isinstance(buckets, Mapping)
        h.buckets = Counter({int(k): int(v) for k, v in buckets.items()})
        h.zeros = int(d["zeros"])  # type: ignore[call-overload]
        h.max = float(d["max"])  # type: ignore[arg-type]
        h.sum = float(d.get("sum", 0.0))  # type: ignore[arg-type]
        h.count = h.zeros + sum(h.buckets.values())
        return h
