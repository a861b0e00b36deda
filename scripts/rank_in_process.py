"""Events/s of the core stage in process, as a worker runs it (batches, serialisation).

    python scripts/rank_in_process.py                # synthetic shop, 10k items with vectors
    python scripts/rank_in_process.py --no-vectors   # ranking without retrieval
    python scripts/rank_in_process.py --profile      # plus the top of a cProfile
    python scripts/rank_in_process.py --digest       # plus a hash of every list published

`--digest` tells two versions of the core apart: the same events give the same
hash only if every list (items, order, scores, reasons, features) is the same.

No Kafka: the figure the pipeline's `events_per_s_ranked` is compared with, to
tell the core's cost from Faust's and the broker's. Math libraries run on one
thread, as in a worker (STREAMREC_RANK_THREADS).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import cProfile
import hashlib
import pstats
import time

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore
from streamrec.core.profile import Profile
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.heap import freeze_startup
from streamrec.settings import Settings
from streamrec.tools.rank_bench import shop_messages, synthetic_vectors


class EncodingStore(DictProfileStore):
    """Encodes every profile it stores, as the worker does for the changelog."""

    def put(self, user: str, profile: Profile, partition: int = 0) -> None:
        profile.to_bytes()
        super().put(user, profile, partition)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--no-vectors", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--digest", action="store_true", help="print a sha256 of every list")
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    engine = build_engine(Settings.from_env().with_overrides(partitions=1))
    shop = SyntheticShop(seed=1)
    for item in shop.catalog:
        engine.catalog.upsert(item)
    if not args.no_vectors:
        ids = [it.item_id for it in shop.catalog]
        engine.item_vectors.add_many(ids, "synthetic@1", synthetic_vectors(len(ids)))
        engine.item_vectors.mark_complete("synthetic@1", 0, ts=1)
    now = int(time.time() * 1000)
    msgs = shop_messages(shop, args.events, now)
    store = EncodingStore()
    digest = hashlib.sha256() if args.digest else None
    freeze_startup()  # as the worker does before its first event

    def run(lo: int, hi: int) -> None:
        for i in range(lo, hi, args.batch):
            out = engine.process_batch(msgs[i : i + args.batch], store, now)
            for rec in out.recommendations:
                wire = serde.dumps(rec.to_dict())
                if digest is not None:
                    digest.update(wire[wire.index(b'"items"') : wire.index(b'"model_version"')])

    warm = len(msgs) // 3  # profiles, trending and co-visitation fill up first
    run(0, warm)
    profiler = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    run(warm, len(msgs))
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - t0
    n = len(msgs) - warm
    print(
        f"{len(shop.catalog):,} items, vectors={'no' if args.no_vectors else 'yes'}: "
        f"{n / elapsed:,.0f} events/s, {elapsed / n * 1000:.3f} ms/event"
    )
    if digest is not None:
        print(f"lists sha256 {digest.hexdigest()}")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
