"""`streamrec evaluate --through-kafka`: the deployed pipeline scores as the in-process run."""

from __future__ import annotations

import numpy as np

from streamrec.datasets import movielens
from streamrec.evaluation.metrics import popularity_ranks
from streamrec.evaluation.models import StreamrecModel
from streamrec.evaluation.pipeline import RecordedModel, run_pipeline
from streamrec.evaluation.protocols import prequential, prequential_targets


def test_pipeline_and_in_process_evaluation_agree_on_a_movielens_slice(make_stack, tmp_path):
    stack = make_stack(workers=1, partitions=1)
    s = stack.settings
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=1_500)
    events = ml.events
    recorded = run_pipeline(events, ml.items, s, log_dir=tmp_path, stack=stack, progress=False)
    assert len(recorded.lists) == len(events)  # every event answered, none lost

    targets = prequential_targets(events)
    pop = popularity_ranks([e.item_id or "" for e in events])
    common = {"catalog_size": len(ml.items), "popularity": pop, "targets": targets}
    online = prequential(events, RecordedModel("streamrec", recorded), **common)  # type: ignore[arg-type]
    offline = prequential(events, StreamrecModel(s, ml.items), **common)  # type: ignore[arg-type]

    assert online.segments["all"]["n"] == offline.segments["all"]["n"] > 1_000
    assert np.array_equal(online.rank, offline.rank)
    for seg, metrics in offline.segments.items():
        for name in ("hr@10", "ndcg@10", "mrr@10", "hr@20", "coverage@10", "novelty"):
            assert online.segments[seg][name] == metrics[name], (seg, name)
    assert recorded.freshness.count == len(events)


def test_three_workers_rank_within_two_percent_of_one_worker_on_live_traffic(make_stack, tmp_path):
    """Within 2% of one worker, on events paced as a shop sends them (a backlog replay puts each
    worker at its own point in event time: docs/scaling.md measures that case)."""
    stack = make_stack(workers=3, partitions=4)
    s = stack.settings
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=4_000)
    events = ml.events
    recorded = run_pipeline(
        events, ml.items, s, log_dir=tmp_path, stack=stack, progress=False, rate=200
    )
    assert len(recorded.lists) == len(events)
    targets = prequential_targets(events)
    pop = popularity_ranks([e.item_id or "" for e in events])
    common = {"catalog_size": len(ml.items), "popularity": pop, "targets": targets}
    three = prequential(events, RecordedModel("streamrec", recorded), **common)  # type: ignore[arg-type]
    one = prequential(events, StreamrecModel(s, ml.items), **common)  # type: ignore[arg-type]
    got, want = three.segments["all"]["ndcg@10"], one.segments["all"]["ndcg@10"]
    print(f"NDCG@10: 3 workers {got:.4f}, one worker {want:.4f} ({got / want - 1:+.2%})")
    assert got >= 0.98 * want
