"""The scorer's metrics window (a part of `ScorerService`): counters and histograms since
the last window, published on `metrics` with role "scorer"."""

from __future__ import annotations

import logging
from typing import Any

from streamrec import serde
from streamrec.clock import now_ms
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.records import MetricsWindow
from streamrec.scorer.catalog_work import ScorerPart

log = logging.getLogger(__name__)

SCORER_COUNTS = (
    "requests",
    "bad_requests",
    "expired",
    "batches",
    "texts",
    "cache_hits",
    "cache_misses",
    "encoded",
    "model_errors",
    "catalog_embedded",
    "catalog_removed",
    "catalog_invalid",
    "catalog_errors",
    "swap_failures",
)


def _summary(h: LogHistogram, qs: tuple[float, ...]) -> dict[str, float]:
    if not h.count:
        return {}
    return {("max" if q == 100 else f"p{q:g}"): round(h.percentile(q), 2) for q in qs}


class ScorerMetrics(ScorerPart):
    """Counters since the last window, and publishing them."""

    scorer_id: str
    t_metrics: str
    w_start: int
    w_batch_texts: LogHistogram
    w_queue_wait: LogHistogram

    def _reset_window(self) -> None:
        self.w_start = now_ms()
        self.w_counts: dict[str, int] = dict.fromkeys(SCORER_COUNTS, 0)
        self.w_batch_texts = LogHistogram()
        self.w_queue_wait = LogHistogram()

    def window(self) -> MetricsWindow:
        """The counters since the last window, as a metrics record (then reset)."""
        c = self.w_counts
        lookups = c["cache_hits"] + c["cache_misses"]
        scorer: dict[str, Any] = {
            **c,
            "cache_hit_rate": round(c["cache_hits"] / lookups, 4) if lookups else None,
            "batch_texts": _summary(self.w_batch_texts, (50, 95, 100)),
            "queue_wait_ms": _summary(self.w_queue_wait, (50, 95, 99)),
            # Mergeable forms of the two above: readers add windows of many scorers.
            "batch_texts_hist": self.w_batch_texts.to_dict(),
            "queue_wait_hist": self.w_queue_wait.to_dict(),
            "model_version": self.embedder.current,
            "staged_version": self.embedder.staged,
            "catalog_pending": sum(len(i) for ps in self.dirty.values() for i in ps.values()),
            # The version being embedded (a staged one first): its rate and time left.
            **self._catalog_progress(),
        }
        window = MetricsWindow(
            worker=self.scorer_id,
            window_start=self.w_start,
            window_end=now_ms(),
            counts={"in": 0, "valid": 0, "dlq": 0, "duplicates": 0},
            by_type={},
            role="scorer",
            scorer=scorer,
        )
        self._reset_window()
        return window

    def _catalog_progress(self) -> dict[str, Any]:
        version = self.embedder.staged or self.embedder.current
        waiting = sum(len(i) for i in self.dirty.get(version, {}).values())
        rate = self.progress.rate(version)
        left = self.progress.seconds_left(version, waiting)
        return {
            "catalog_rate_per_s": round(rate, 1) if rate else None,
            "catalog_seconds_left": round(left, 1) if left is not None else None,
        }

    async def publish_metrics(self) -> None:
        w = self.window()
        await self._send(self.t_metrics, self.scorer_id.encode(), serde.dumps(w.to_dict()))
        sc = w.scorer
        if sc["requests"] or sc["catalog_embedded"]:
            log.info(
                "window: requests=%d texts=%d hit_rate=%s batch p50=%s wait p95=%s ms "
                "catalog embedded=%d pending=%d",
                sc["requests"], sc["texts"], sc["cache_hit_rate"], sc["batch_texts"].get("p50"),
                sc["queue_wait_ms"].get("p95"), sc["catalog_embedded"], sc["catalog_pending"],
            )  # fmt: skip
