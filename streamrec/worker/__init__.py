"""The streaming shell: the `streamrec worker` process, one module per job.

* `app`: the Faust app, its one agent on the main path (ingest + profile +
  recommend per micro-batch, through the core), and how a batch is published
  and settled;
* `delivery`: what a batch sent, until the broker has all of it;
* `profile_store`: profiles in a Faust table, with a bounded cache;
* `catalog`: the catalog and item-vector follower (pure record functions);
* `monitoring`: `metrics` windows, `drift.stats`, `alerts`;
* `snapshots`: learned state and item vectors in the data dir;
* `lifecycle`: credentials, a stop with a time limit, how the process ends;
* `faust_tuning`: the one place that reaches into Faust's internals.
"""

from streamrec.worker.app import Worker
from streamrec.worker.monitoring import metrics_window

__all__ = ["Worker", "metrics_window"]
