"""Drift detectors over the live stream (river ADWIN and Page-Hinkley, and PSI).

Signals and detectors:

* ``hit_rate``: river ADWIN over the prequential hit (1: the item the user
  took was in the top K of their last list, 0: it was not);
* ``ctr``: ADWIN over impressions resolved as clicked (1) or not (0);
* ``ranker_score``: river Page-Hinkley over each list's top score, watching
  for drops. Scores climb while co-visitation and trending fill up (measured
  on a stationary synthetic stream: 0.89 -> 1.36 over the first 2,500 events),
  which is learning, not drift; a falling top score means the candidates got
  worse (a scorer down, a catalog change, behaviour the model does not know).
  It restarts when the ranking model changes (the blend handing over to the
  online ranker is an announced change of scale);
* ``category_mix``: population-stability index of the events' top-level
  categories, per chunk of events, against a reference chunk;
* ``query_embedding``: PSI of the search queries' embedding region (the sign
  pattern of the vector on a few fixed random hyperplanes), per chunk of
  searches; the reference restarts when the encoder version changes.

PSI compares counts, so it is cheap and deterministic: a chunk's PSI above
the threshold (0.25 is the usual "significant shift") is drift, and that
chunk becomes the new reference. Nothing fires during the first
``warmup`` updates of a detector, while the models it watches are learning.

>>> m = DriftMonitor(warmup=0)
>>> fired = [m.hit(1 if i < 2000 else 0) for i in range(3000)]
>>> d = next(x for x in fired if x is not None); (d.name, d.direction, d.at > 2000)
('hit_rate', 'down', True)
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamrec.records import DriftStat

DETECTORS = ("hit_rate", "ctr", "ranker_score", "category_mix", "query_embedding")


@dataclass(frozen=True)
class Detection:
    """A drift, as it is detected."""

    name: str
    detector: str
    signal: str
    statistic: float
    threshold: float
    direction: str  # "up" | "down" | "shift"
    #: ADWIN: window mean before and after; Page-Hinkley: running mean and the value that tipped it.
    before: float | None
    after: float | None
    at: int  # updates the detector had seen

    def to_stat(self, worker: str, ts: int) -> DriftStat:
        """The drift.stats record sent the moment this is detected."""
        return DriftStat(
            worker=worker,
            ts=ts,
            name=self.name,
            detector=self.detector,
            signal=self.signal,
            threshold=self.threshold,
            drift=True,
            statistic=self.statistic,
            immediate=True,
            detections=1,
            n=self.at,
            direction=self.direction,
            before=self.before,
            after=self.after,
            message=self.describe(),
        )

    def describe(self) -> str:
        if self.before is not None and self.after is not None:
            change = f"{self.before:.4g} -> {self.after:.4g}"
        else:
            change = f"statistic {self.statistic:.4g} > {self.threshold:g}"
        return f"{self.name} drift ({self.detector} on {self.signal}): {self.direction}, {change}"


class _Signal:
    detector = ""

    def __init__(self, name: str, signal: str, threshold: float, warmup: int) -> None:
        self.name = name
        self.signal = signal
        self.threshold = threshold
        self.warmup = warmup
        self.n = 0  # updates since start
        self.window_n = 0
        self.window_detections = 0
        self.statistic: float | None = None

    def window(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "detector": self.detector,
            "signal": self.signal,
            "statistic": None if self.statistic is None else round(self.statistic, 6),
            "threshold": self.threshold,
            "drift": self.window_detections > 0,
            "detections": self.window_detections,
            "n": self.window_n,
        }
        self.window_n = 0
        self.window_detections = 0
        return out

    def _detected(self, d: Detection) -> Detection | None:
        if self.n <= self.warmup:
            return None
        self.window_detections += 1
        return d


class AdwinSignal(_Signal):
    """ADWIN over a 0/1 stream; the statistic is the mean of its adaptive window."""

    detector = "ADWIN"

    def __init__(self, name: str, signal: str, delta: float, warmup: int) -> None:
        super().__init__(name, signal, delta, warmup)
        from river import drift as river_drift  # ~0.8 s to import: only where detectors run

        self.adwin = river_drift.ADWIN(delta=delta)

    def update(self, x: float) -> Detection | None:
        self.n += 1
        self.window_n += 1
        before = self.adwin.estimation
        self.adwin.update(x)
        after = self.adwin.estimation
        self.statistic = after
        if not self.adwin.drift_detected:
            return None
        direction = "down" if after < before else "up"
        return self._detected(
            Detection(
                self.name, self.detector, self.signal, after, self.threshold, direction,
                before, after, self.n,
            )
        )  # fmt: skip


class PageHinkleySignal(_Signal):
    """Page-Hinkley for drops in a real-valued stream, restarted when its model changes.

    `version` is a model version such as ``river-logreg-1@5300``: the part
    before ``@`` names the model, the rest counts its updates.
    """

    detector = "PageHinkley"

    def __init__(self, name: str, signal: str, threshold: float, delta: float, warmup: int) -> None:
        super().__init__(name, signal, threshold, warmup)
        self.delta = delta
        self.version: str | None = None
        self._new()

    def _new(self) -> None:
        from river import drift as river_drift

        self.ph = river_drift.PageHinkley(threshold=self.threshold, delta=self.delta, mode="down")
        self.since_version = 0

    def update(self, x: float, version: str) -> Detection | None:
        model = version.split("@", 1)[0]
        if model != self.version:
            self.version = model
            self._new()
        self.n += 1
        self.window_n += 1
        self.since_version += 1
        ph = self.ph
        before = ph._x_mean.get()
        ph.update(x)
        down = ph._max_decrease - ph._sum_decrease
        self.statistic = down if math.isfinite(down) else 0.0
        if not ph.drift_detected:
            return None
        if self.since_version <= self.warmup:
            return None  # a new model is still finding its level
        return self._detected(
            Detection(
                self.name, self.detector, self.signal, self.statistic, self.threshold,
                "down", before, x, self.n,
            )
        )  # fmt: skip


def psi(reference: Counter[str], current: Counter[str]) -> float:
    """Population-stability index of two count tables (0.5 added to every cell).

    >>> round(psi(Counter(a=50, b=50), Counter(a=50, b=50)), 6)
    0.0
    >>> round(psi(Counter(a=90, b=10), Counter(a=10, b=90)), 2)
    3.41
    """
    keys = reference.keys() | current.keys()
    n_ref = sum(reference.values()) + 0.5 * len(keys)
    n_cur = sum(current.values()) + 0.5 * len(keys)
    total = 0.0
    for k in keys:
        p = (reference.get(k, 0) + 0.5) / n_ref
        q = (current.get(k, 0) + 0.5) / n_cur
        total += (q - p) * math.log(q / p)
    return total


class PsiSignal(_Signal):
    """PSI of each chunk of categorical values against a reference chunk."""

    detector = "PSI"

    def __init__(
        self, name: str, signal: str, threshold: float, chunk: int, warmup: int, max_bins: int = 32
    ) -> None:
        super().__init__(name, signal, threshold, warmup)
        self.chunk = chunk
        self.max_bins = max_bins
        self.reference: Counter[str] | None = None
        self.current: Counter[str] = Counter()
        self.filled = 0
        self.version: str | None = None

    def update(self, key: str, version: str | None = None) -> Detection | None:
        if version != self.version:
            self.version = version
            self.reference, self.current, self.filled = None, Counter(), 0
        self.n += 1
        self.window_n += 1
        cur = self.current
        if key not in cur and len(cur) >= self.max_bins:
            key = "other"
        cur[key] += 1
        self.filled += 1
        if self.filled < self.chunk:
            return None
        self.current, self.filled = Counter(), 0
        if self.reference is None or self.n <= self.warmup:
            self.reference = cur
            return None
        value = self.statistic = psi(self.reference, cur)
        if value <= self.threshold:
            return None
        self.reference = cur  # the new normal, until the next shift
        return self._detected(
            Detection(
                self.name, self.detector, self.signal, value, self.threshold, "shift",
                None, None, self.n,
            )
        )  # fmt: skip


class DriftMonitor:
    """The five detectors, fed event by event by `Monitor`."""

    def __init__(
        self,
        *,
        warmup: int = 1_000,
        adwin_delta: float = 0.002,
        ph_threshold: float = 50.0,
        ph_delta: float = 0.005,
        psi_threshold: float = 0.25,
        psi_chunk: int = 2_000,
        query_chunk: int = 500,
        hyperplanes: int = 4,
        seed: int = 0,
    ) -> None:
        self.hit_rate = AdwinSignal(
            "hit_rate", "online HR@K (0/1 per taken item)", adwin_delta, warmup
        )
        self.ctr_rate = AdwinSignal("ctr", "impression clicked (0/1)", adwin_delta, warmup)
        self.score = PageHinkleySignal(
            "ranker_score", "top score of each list", ph_threshold, ph_delta, warmup
        )
        self.categories = PsiSignal(
            "category_mix", "top-level category of events", psi_threshold, psi_chunk, warmup
        )
        self.queries = PsiSignal(
            "query_embedding",
            f"query-vector region ({hyperplanes} random hyperplanes)",
            psi_threshold,
            query_chunk,
            min(warmup, query_chunk),
        )
        self.hyperplanes = hyperplanes
        self.seed = seed
        self._planes: np.ndarray | None = None
        self._powers = 1 << np.arange(hyperplanes)

    @property
    def signals(self) -> tuple[_Signal, ...]:
        return (self.hit_rate, self.ctr_rate, self.score, self.categories, self.queries)

    def hit(self, x: int) -> Detection | None:
        return self.hit_rate.update(x)

    def ctr(self, x: int) -> Detection | None:
        return self.ctr_rate.update(x)

    def top_score(self, score: float, model_version: str) -> Detection | None:
        return self.score.update(score, model_version)

    def category(self, top_level: str) -> Detection | None:
        return self.categories.update(top_level)

    def query(self, vector: np.ndarray, version: str) -> Detection | None:
        planes = self._planes
        if planes is None or planes.shape[1] != vector.shape[0]:
            rng = np.random.default_rng(self.seed)
            planes = self._planes = rng.standard_normal((self.hyperplanes, vector.shape[0]))
        region = int(((planes @ vector.astype(np.float64)) > 0) @ self._powers)
        return self.queries.update(str(region), version)

    def window(self) -> list[dict[str, Any]]:
        return [s.window() for s in self.signals]
