"""What the engine tells monitoring about each event: online quality and drift.

`Monitor.observe` runs once per processed event, after its list is made. It
scores the event against the user's *previous* list (prequential), feeds the
drift detectors, and remembers the new list. Drift detections are kept for
the shell to publish at once; `reset` hands over a window of sums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamrec.core.monitoring.drift import Detection, DriftMonitor
from streamrec.core.monitoring.quality import OnlineQuality, QualitySums
from streamrec.core.ranking.models import POSITIVE_TYPES
from streamrec.records import Event, Recommendation


@dataclass
class MonitorWindow:
    quality: dict[str, QualitySums] = field(default_factory=dict)
    drift: list[dict[str, Any]] = field(default_factory=list)


class Monitor:
    def __init__(self, quality: OnlineQuality, drift: DriftMonitor | None = None) -> None:
        self.quality = quality
        self.drift = drift
        self.detections: list[Detection] = []

    def observe(
        self,
        event: Event,
        variant: str,
        rec: Recommendation | None,
        categories: tuple[str, ...] = (),
        query: tuple[str, np.ndarray] | None = None,
        follows: bool = False,
    ) -> None:
        """`rec`: the list after this event (None: a later event of the batch answers it);
        `categories` of the event's item; `query`: (encoder version, vector) of a search;
        `follows`: the user's previous event is in the same batch (no list came between,
        so a positive is no trial of the lists)."""
        q = self.quality
        d = self.drift
        q.expire(event.ts)
        if event.item_id is not None and event.type in POSITIVE_TYPES:
            hit = q.observe_positive(event.user, event.item_id, event.ts, variant, not follows)
            if hit is not None and d is not None:
                self._keep(d.hit(hit))
        elif event.type == "impression" and event.shown:
            q.observe_impression(event.user, event.shown, event.ts, variant)
        if rec is not None:
            self.listed(variant, rec)
        if d is None:
            q.ctr_outcomes.clear()
            return
        if q.ctr_outcomes:
            for outcome in q.ctr_outcomes:
                self._keep(d.ctr(outcome))
            q.ctr_outcomes.clear()
        if categories:
            self._keep(d.category(categories[0]))
        if query is not None:
            self._keep(d.query(query[1], query[0]))

    def listed(self, variant: str, rec: Recommendation) -> None:
        """A list was published: the user's next positives are scored against it."""
        items = rec.items
        self.quality.published(rec.user, tuple([i.item_id for i in items]), variant)
        if self.drift is not None and items:
            self._keep(self.drift.top_score(items[0].score, rec.model_version))

    def _keep(self, detection: Detection | None) -> None:
        if detection is not None:
            self.detections.append(detection)

    def forget(self, user: str) -> int:
        """Erasure: the user's online-quality state (drift keeps no per-user state)."""
        return self.quality.forget(user)

    def take_detections(self) -> list[Detection]:
        out, self.detections = self.detections, []
        return out

    def reset(self) -> MonitorWindow:
        return MonitorWindow(
            quality=self.quality.reset(),
            drift=self.drift.window() if self.drift is not None else [],
        )
