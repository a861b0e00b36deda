"""Are lists worse when one answers a user's burst? NDCG@10 on the same targets.

    python scripts/coalesced_quality.py            # first 30,000 MovieLens events
    python scripts/coalesced_quality.py --events 100000 --batch 500

Runs the core in batches of `--batch` events (a backlog: one list per user per
batch), takes the targets that run scores (a user's first event of a batch,
against the list after their last event of an earlier one), and scores a run in
live-traffic batches (a list per event) on exactly those targets. Equal NDCG says
a lower online figure on a backlog comes from which events are scored, not from
the lists.
"""

from __future__ import annotations

import argparse

from streamrec.datasets import movielens
from streamrec.evaluation.metrics import popularity_ranks
from streamrec.evaluation.models import COVERED, StreamrecModel
from streamrec.evaluation.protocols import ModelRun, prequential, prequential_targets
from streamrec.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    s = Settings.from_env()
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=args.events)
    events = ml.events
    batches = [(lo, min(lo + args.batch, len(events))) for lo in range(0, len(events), args.batch)]
    probe = StreamrecModel(s, ml.items)
    answers = [a for lo, hi in batches for a in probe.process(events[lo:hi], 20)]
    targets = prequential_targets(events)
    alone: dict[str, bool] = {}
    for i, ev in enumerate(events):
        if not alone.get(ev.user_id, True):
            targets[i] = None  # answered with the user's previous event: no trial
        alone[ev.user_id] = answers[i] is not COVERED
    pop = popularity_ranks([e.item_id or "" for e in events])

    def scored(cut: list[tuple[int, int]] | None) -> ModelRun:
        model = StreamrecModel(s, ml.items)
        return prequential(events, model, catalog_size=len(ml.items), popularity=pop,
                           targets=targets, batches=cut)  # fmt: skip

    runs = {
        f"batches of {args.batch}, one list per user": scored(batches),
        "live batches, a list per event": scored(None),
    }
    for name, run in runs.items():
        a = run.segments["all"]
        print(f"{name}: targets {a['n']}, NDCG@10 {a['ndcg@10']:.4f}, HR@10 {a['hr@10']:.4f}")


if __name__ == "__main__":
    main()
