"""Which way of sharing the online ranker learns better: none, summed updates, averaging.

    python scripts/ranker_sharing.py [--events 100000] [--workers 3]

Replays ml-100k in process through N engines, each on its share of the
partitions (users hashed as the producer keys them), folding every engine's
item and ranker records after every round of batches: the worker pipeline
without Kafka. Reports online quality (HR@10 / NDCG@10 of each list against
the user's next positive, the monitor's own prequential sums, all workers
added up), how many lists the ranker ranked, and its judged AUC against the
blend, next to one engine over all events.
"""

from __future__ import annotations

import argparse
import time
import zlib

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore
from streamrec.core.ingest import RawMessage
from streamrec.core.monitoring.quality import QualitySums
from streamrec.datasets import movielens
from streamrec.settings import Settings


def run(msgs: list[RawMessage], workers: int, mode: str | None, batch: int) -> dict[str, object]:
    s = Settings.from_env({})
    engines = [build_engine(s) for _ in range(workers)]
    shares = [e.share(f"w{i}", mode) if mode else None for i, e in enumerate(engines)]
    stores = [DictProfileStore() for _ in engines]
    now = int(time.time() * 1000)
    by_ranker = lists = 0
    for start in range(0, len(msgs), batch * workers):
        chunk = msgs[start : start + batch * workers]
        deltas = []
        for i, e in enumerate(engines):
            out = e.process_batch([m for m in chunk if m.partition % workers == i], stores[i], now)
            deltas += out.deltas
            lists += len(out.recommendations)
            by_ranker += sum(r.model_version.startswith("river") for r in out.recommendations)
        for share in shares:
            for d in deltas:
                share.fold(d)  # type: ignore[union-attr]
    total = QualitySums()
    for e in engines:
        assert e.monitor is not None and e.recommender.ranker is not None  # built with both
        for sums in e.monitor.reset().quality.values():
            total.add(sums)
    rates = total.rates()
    aucs = [e.recommender.ranker.auc.get("ranker", 0.0) for e in engines]  # type: ignore[union-attr]
    return {"hr@10": round(rates["hit_rate"] or 0, 4), "ndcg@10": round(rates["ndcg"] or 0, 4),
            "ranked_by_ranker": round(by_ranker / max(1, lists), 3),
            "ranker_auc": round(sum(aucs) / len(aucs), 4)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    s = Settings.from_env({})
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=args.events)
    parts = args.workers
    offsets = [0] * parts
    msgs = []
    now = int(time.time() * 1000)
    for e in ml.events:
        p = zlib.crc32(e.user_id.encode()) % parts
        msgs.append(RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), p, offsets[p], now))
        offsets[p] += 1
    print(f"ml-100k, {len(msgs):,} events, {args.workers} workers, batches of {args.batch}")
    print("| run | HR@10 | NDCG@10 | lists ranked by the ranker | ranker AUC |")
    print("|---|---:|---:|---:|---:|")
    runs = [("one worker", 1, None), ("3 workers, nothing shared", parts, None),
            ("3 workers, items shared, ranker not", parts, "off"),
            ("3 workers, items + ranker (summed updates)", parts, "sum"),
            ("3 workers, items + ranker (averaging)", parts, "average")]  # fmt: skip
    for name, n, mode in runs:
        r = run(msgs, n, mode, args.batch)
        print(f"| {name} | {r['hr@10']} | {r['ndcg@10']} | {r['ranked_by_ranker']} | "
              f"{r['ranker_auc']} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
