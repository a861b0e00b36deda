"""The self-tuning blend: shadow weightings, evidence, switches, state, and what users see."""

import random

import numpy as np

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core import snapshot
from streamrec.core.engine import DictProfileStore
from streamrec.core.ingest import RawMessage
from streamrec.core.monitoring.view import MonitorView
from streamrec.core.ranking.feedback import ops_from_wire, ops_to_wire, replay
from streamrec.core.ranking.models import FEATURES
from streamrec.core.ranking.tuner import BlendTuner
from streamrec.records import MetricsWindow, RawEvent
from streamrec.settings import Settings
from streamrec.tools.dashboard import render

NOW = 1_800_000_000_000


def journeys(users: int = 300, steps: int = 8, seed: int = 3) -> list[RawMessage]:
    """Users walk chains of items in one direction (i -> i+1 -> ...): what comes *next*
    predicts the next item, what went with it (both ways) does half as well."""
    rng = random.Random(seed)
    events = []
    for u in range(users):
        start = rng.randrange(0, 200)
        for s in range(steps):
            ts = NOW - 10_000_000 + u * 10_000 + s
            events.append(RawEvent(f"e{u}-{s}", "view", f"u{u}", ts, item_id=f"i{start + s}"))
    events.sort(key=lambda e: e.ts)
    return [RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), 0, i, NOW)
            for i, e in enumerate(events)]  # fmt: skip


def engine(**overrides: object):
    s = Settings.from_env({}, sequence_anchors=5, blend_tuning_sample=1.0,
                          blend_tuning_min_scored=300, monitoring=False, **overrides)  # fmt: skip
    return build_engine(s)


def test_the_live_blend_moves_to_what_ranks_the_users_next_item_better():
    e = engine()
    store = DictProfileStore()
    msgs = journeys()
    for msg in msgs:  # a journey's steps a millisecond apart: each its own batch
        e.process_batch([msg], store, NOW)
    tuner = e.recommender.tuner
    assert tuner is not None and tuner.switches, tuner.stats()
    first = tuner.switches[0]
    assert first.before == "default" and first.ndcg_after > first.ndcg_before + 2 * first.se
    assert tuner.live[FEATURES.index("sequence")] > 0  # what comes next, weighed in
    assert e.recommender.model_for(None) is tuner.blend  # lists are ranked by it
    more = RawEvent("more", "view", "u0", NOW - 1, item_id="i5")
    msg = RawMessage(serde.dumps(more.to_dict()), b"u0", 0, len(msgs), NOW)
    last = e.process_batch([msg], store, NOW).recommendations
    assert [r.model_version for r in last] == [f"blend-1+tuned-{len(tuner.switches)}"]


def test_its_state_survives_a_snapshot_and_its_kept_lists_a_replay():
    e = engine()
    store = DictProfileStore()
    msgs = journeys(users=120)
    e.process_batch(msgs, store, NOW)
    tuner = e.recommender.tuner
    assert tuner is not None and tuner._pending
    back = engine()
    header, arrays = snapshot.capture(e.recommender)
    snapshot.restore(back.recommender, header, arrays)
    restored = back.recommender.tuner
    assert restored is not None and restored.stats() == tuner.stats()
    assert restored.names == tuner.names and np.array_equal(restored.weights, tuner.weights)
    assert {u: (g, t.tolist()) for u, (g, t) in restored._pending.items()} == {
        u: (g, t.tolist()) for u, (g, t) in tuner._pending.items()
    }
    # Kept lists go through the journal as the ranker's inputs do, and come back.
    live = BlendTuner(tuner.live.copy())
    live.recording = []
    live.keep("u1", 0, np.arange(10).reshape(1, 10))
    live.keep("u2", 0, np.arange(10, 20).reshape(1, 10))
    live.drop("u1")
    again = BlendTuner(tuner.live.copy())
    replay(None, ops_from_wire(serde.loads(serde.dumps(ops_to_wire(live.recording)))), again)
    assert list(again._pending) == ["u2"] and again._pending["u2"][1].tolist() == [
        list(range(10, 20))
    ]


def test_switches_show_on_the_metrics_window_and_in_streamrec_monitor():
    tuner = BlendTuner(np.ones(len(FEATURES)), sample=1.0, min_scored=10, check_every=5, z=1.0)
    best = tuner.names.index("popularity+")
    for _ in range(10):
        tuner.learn(np.where(np.arange(len(tuner.names)) == best, 0.5, 0.1))
    [switch] = tuner.switches
    window = MetricsWindow("w1", 0, 1, {}, {},
                           blend={**tuner.stats(), "new_switches": [switch.to_dict()]})  # fmt: skip
    view = MonitorView()
    view.add("metrics", serde.dumps(window.to_dict()))
    snap = view.snapshot(now_ms=1)
    assert snap["blend"]["w1"]["live"] == "popularity+"
    assert snap["blend_switches"][0]["after"] == "popularity+"
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(render(snap))
    text = console.export_text()
    assert "blend switch (w1): default -> popularity+ after 10 scored events" in text
    assert "self-tuning blend" in text
