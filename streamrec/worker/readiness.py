"""Is the worker whole? What it waits for before it applies an event, and how it says so.

A worker applies no event of `storefront.events` before:

* its learned state is restored (its snapshot, or the shared checkpoint on a
  new host), which happens before anything else;
* `catalog.items` and `catalog.embeddings` are read back up to where they
  ended when it started (`CatalogFollower.catch_up`): an event applied
  without its item's categories, price or vector is learned wrong for good;
* after every partition assignment, `shared.state` is folded up to where it
  ended (`SharedStateFollower.sync`), so the previous owner's learning is in
  the ledger before its events come again.

`/readyz` on the metrics port (`STREAMREC_METRICS_PORT`) answers 200 with
these facts once all hold, 503 with what is still missing before; `/healthz`
answers 200 while the process runs. The log says "worker ready" once, with
the figures, and Prometheus has `streamrec_ready` (0 or 1) and
`streamrec_startup_seconds`.

>>> r = Readiness(learned="snapshot", sharing=True)
>>> r.ready, r.missing()
(False, ['catalog', 'partitions', 'shared state'])
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from streamrec.worker.catalog import CatchUp

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    #: Where the learned state came from: "snapshot", "checkpoint" or "nothing".
    learned: str = "nothing"
    #: Whether learned state is shared (then shared.state must be in sync).
    sharing: bool = True
    catalog: CatchUp = field(default_factory=CatchUp)
    #: Partitions of storefront.events the worker holds (None: none assigned yet).
    partitions: list[int] | None = None
    shared_in_sync: bool = False
    started: float = field(default_factory=time.monotonic)
    #: Seconds from start to the first time it was ready (None: not yet).
    ready_after_s: float | None = None

    def missing(self) -> list[str]:
        out = []
        if not self.catalog.done:
            out.append("catalog")
        if self.partitions is None:
            out.append("partitions")
        if self.sharing and not self.shared_in_sync:
            out.append("shared state")
        return out

    @property
    def ready(self) -> bool:
        return not self.missing()

    def assigning(self) -> None:
        """A rebalance began: not ready until its shared state is folded."""
        self.shared_in_sync = False

    def assigned(self, partitions: list[int], shared_in_sync: bool) -> None:
        self.partitions = sorted(partitions)
        self.synced(shared_in_sync)

    def synced(self, shared_in_sync: bool = True) -> None:
        """Shared state folded up to its end (at an assignment, or by the first batch)."""
        self.shared_in_sync = shared_in_sync or not self.sharing
        if self.ready and self.ready_after_s is None:
            self.ready_after_s = time.monotonic() - self.started
            c = self.catalog
            log.info(
                "worker ready after %.1f s: catalog %d items and %d item vectors (read back "
                "in %.1f s), learned state from %s, partitions %s",
                self.ready_after_s, c.items, c.vectors, c.seconds, self.learned,
                self.partitions,
            )  # fmt: skip

    def report(self) -> dict[str, Any]:
        """What /readyz answers."""
        c = self.catalog
        return {
            "ready": self.ready,
            "missing": self.missing(),
            "catalog": {"read": c.done, "items": c.items, "item_vectors": c.vectors,
                        "records": c.records, "seconds": round(c.seconds, 3)},
            "learned_state": self.learned,
            "shared_state_in_sync": self.shared_in_sync if self.sharing else None,
            "partitions": self.partitions,
            "ready_after_s": round(self.ready_after_s, 3) if self.ready_after_s else None,
        }  # fmt: skip

    def gauges(self) -> dict[str, float]:
        """For Prometheus (`MetricsState.gauges`)."""
        out = {"ready": float(self.ready), "catalog_items": float(self.catalog.items)}
        if self.ready_after_s is not None:
            out["startup_seconds"] = self.ready_after_s
        return out
