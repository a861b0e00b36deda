"""`streamrec evaluate --through-kafka`: the deployed pipeline scores as the in-process run."""

from __future__ import annotations

import numpy as np

from streamrec.datasets import movielens
from streamrec.evaluation.metrics import popularity_ranks
from streamrec.evaluation.models import COVERED, StreamrecModel
from streamrec.evaluation.pipeline import RecordedModel, run_pipeline
from streamrec.evaluation.protocols import prequential, prequential_targets
from streamrec.evaluation.uncertainty import ratio_interval


def test_pipeline_and_in_process_evaluation_agree_on_a_movielens_slice(make_stack, tmp_path):
    """A backlog: the worker answers users' events together (one list per user per
    batch); in process in the same batches, every list and every score is the same."""
    stack = make_stack(workers=1, partitions=1, log_batches=True)
    s = stack.settings
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=1_500)
    events = ml.events
    recorded = run_pipeline(events, ml.items, s, log_dir=tmp_path, stack=stack, progress=False)
    assert len(recorded.lists) == len(events)  # every event answered, none lost
    assert recorded.batches is not None and len(recorded.batches) < len(events)
    assert sum(lst is COVERED for lst in recorded.lists.values()) > len(events) / 4

    targets = prequential_targets(events)
    pop = popularity_ranks([e.item_id or "" for e in events])
    common = {"catalog_size": len(ml.items), "popularity": pop, "targets": targets,
              "batches": recorded.batches}  # fmt: skip
    online = prequential(events, RecordedModel("streamrec", recorded), **common)  # type: ignore[arg-type]
    offline = prequential(events, StreamrecModel(s, ml.items), **common)  # type: ignore[arg-type]

    # Scored: the first event of a user in a batch, against the list after their last one
    # in an earlier batch (a backlog answers most events together: few of those).
    assert online.segments["all"]["n"] == offline.segments["all"]["n"] > 20
    assert np.array_equal(online.rank, offline.rank)
    for seg, metrics in offline.segments.items():
        for name in ("hr@10", "ndcg@10", "mrr@10", "hr@20", "coverage@10", "novelty"):
            assert online.segments[seg][name] == metrics[name], (seg, name)
    assert recorded.freshness.count == len(events) - sum(
        lst is COVERED for lst in recorded.lists.values()
    )


def test_three_workers_rank_within_two_percent_of_one_worker_on_live_traffic(make_stack, tmp_path):
    """No worse than 2% below one worker, on events paced as a shop sends them (a backlog
    replay puts each worker at its own point in event time: docs/scaling.md measures that
    case)."""
    stack = make_stack(workers=3, partitions=4)
    s = stack.settings
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=4_000)
    events = ml.events
    recorded = run_pipeline(
        events, ml.items, s, log_dir=tmp_path, stack=stack, progress=False, rate=200
    )
    assert len(recorded.lists) == len(events)
    # The same targets for both: those the pipeline scores (a user's event that follows
    # one answered together with it, in one batch, is not scored).
    targets = prequential_targets(events)
    answered_alone: dict[str, bool] = {}
    for i, ev in enumerate(events):
        if not answered_alone.get(ev.user_id, True):
            targets[i] = None
        answered_alone[ev.user_id] = recorded.lists.get(ev.event_id) is not COVERED
    pop = popularity_ranks([e.item_id or "" for e in events])
    common = {"catalog_size": len(ml.items), "popularity": pop, "targets": targets}
    three = prequential(events, RecordedModel("streamrec", recorded), **common)  # type: ignore[arg-type]
    one = prequential(events, StreamrecModel(s, ml.items), **common)  # type: ignore[arg-type]
    assert three.segments["all"]["n"] == one.segments["all"]["n"] > 500
    got, want = three.segments["all"]["ndcg@10"], one.segments["all"]["ndcg@10"]
    # A few hundred targets (those after a batch boundary): the ratio moves by several
    # percent from run to run, so the check is that nothing says 3 workers fall more
    # than 2% below one (the upper end of the users' bootstrap interval).
    iv = ratio_interval(three, one)
    print(f"NDCG@10: 3 workers {got:.4f}, one worker {want:.4f} ({got / want - 1:+.2%}), "
          f"95% interval {iv['low']:.3f}-{iv['high']:.3f}")  # fmt: skip
    assert iv["high"] >= 0.98, iv
