"""What a shared checkpoint costs: its size and the time of each step, on ml-100k.

    python scripts/checkpoint_cost.py [--events N]

Learns the events in process (one engine, sharing on, batches of 500), then
times the steps of `worker/checkpoint.py`: encode the learned state without
users (in the worker's loop), cut it into records, put it back together, and
restore it into a new engine. Figures in docs/scaling.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore
from streamrec.core.ingest import RawMessage
from streamrec.datasets import movielens
from streamrec.settings import Settings
from streamrec.worker.checkpoint import assemble, checkpoint_records
from streamrec.worker.snapshots import Snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=0, help="first N events (0: all)")
    args = parser.parse_args()
    s = Settings.from_env({}, data_dir=tempfile.mkdtemp(), monitoring=False)
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=args.events or None)
    engine = build_engine(s)
    engine.share("writer", "sum")
    now = int(time.time() * 1000)
    msgs = [RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), 0, i, now)
            for i, e in enumerate(ml.events)]  # fmt: skip
    profiles = DictProfileStore()
    for i in range(0, len(msgs), 500):
        engine.process_batch(msgs[i : i + 500], profiles, now)

    t0 = time.perf_counter()
    blob = Snapshots(s).encode(engine, users=False)
    t1 = time.perf_counter()
    records = checkpoint_records(blob, 0, "gen", "writer", now)
    t2 = time.perf_counter()
    found = assemble(dict(records))
    t3 = time.perf_counter()
    assert found is not None and found[0] == blob
    fresh = build_engine(s)
    fresh.share("new-host", "sum")
    Snapshots(s).restore(fresh, found[0])
    t4 = time.perf_counter()
    wire = sum(len(v) for _k, v in records)
    print(
        f"{len(msgs)} events, {len(engine.recommender.items)} items: snapshot "
        f"{len(blob) / 1e6:.2f} MB, {len(records) - 1} chunks, {wire / 1e6:.2f} MB on the wire"
    )
    print(f"encode {(t1 - t0) * 1e3:.0f} ms, chunk {(t2 - t1) * 1e3:.0f} ms, "
          f"assemble {(t3 - t2) * 1e3:.0f} ms, restore {(t4 - t3) * 1e3:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
