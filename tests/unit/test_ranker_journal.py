"""The ranker journal: a restarted worker gets its ranker back exactly, inputs counted once."""

import numpy as np

from streamrec.core.deltas import Ledger
from streamrec.core.ranking.feedback import replay
from streamrec.core.ranking.models import FEATURES, OnlineRanker
from streamrec.worker.ranker_journal import RankerJournal


def ranker() -> OnlineRanker:
    r = OnlineRanker(min_updates=10, min_positives=2, seed=7)
    r.recording = []
    return r


def batches(n: int = 30):
    """Per batch: (offset range on partition 0, a function feeding its inputs)."""
    xs = np.random.default_rng(3).random((n, 6, len(FEATURES)))
    out = []
    for b in range(n):

        def feed(r: OnlineRanker, b: int = b) -> None:
            user = f"u{b % 4}"
            x = xs[b]
            r.on_list(user, [f"i{b}-{j}" for j in range(6)], x, ts=1_000 * b)
            r.expire(1_000 * b + 1)
            if b % 3:
                r.on_positive(f"u{(b - 1) % 4}", f"i{b - 1}-2", ts=1_000 * b + 2)
            if b == 17:
                r.forget("u3")

        out.append(((0, 10 * b, 10 * b + 9), feed))
    return out


def state(r: OnlineRanker):
    return (r.weights().tolist(), float(r.model.intercept), r.positives, r.negatives,
            list(r._eval), r._rng.getstate(),
            [(u, o.ts, sorted(o.open)) for u, o in r.open_offers()])  # fmt: skip


def test_replaying_the_journal_gives_back_the_ranker_that_never_stopped(tmp_path):
    whole, crashed = ranker(), ranker()
    journal = RankerJournal(tmp_path / "r.journal")
    journal.open(1, lambda *_: False)
    plan = batches()
    for i, (span, feed) in enumerate(plan):
        feed(whole)
        if i < 20:  # the crashed worker: its inputs go to the journal before its log
            feed(crashed)
            journal.append("w-1", [span], crashed.recording)
            crashed.recording = []
    journal.close()
    # The ledger holds batches 0..17 (the logs of 18 and 19 never reached the broker).
    ledger = Ledger()
    for span, _feed in plan[:18]:
        ledger.add(*span)
    restarted = ranker()
    again = RankerJournal(tmp_path / "r.journal")
    assert again.writers(1) == {"w-1"} and again.writers(2) == set()
    frames = again.open(1, ledger.covers_range)
    assert len(frames) == 18
    for _by, ops in frames:
        replay(restarted, ops)
    for _span, feed in plan[18:]:  # 18 and 19 come again, then the rest
        feed(restarted)
    assert state(restarted) == state(whole)
    # The journal goes on after the last frame it replayed: 18 and 19 are gone from it.
    again.append("w-2", [plan[18][0]], [("expire", 5)])
    again.close()
    assert [by for by, _ops in RankerJournal(tmp_path / "r.journal").open(1, lambda *_: True)] == (
        ["w-1"] * 18 + ["w-2"]
    )


def test_a_torn_frame_ends_the_journal_and_another_generation_is_ignored(tmp_path):
    path = tmp_path / "r.journal"
    journal = RankerJournal(path)
    journal.open(3, lambda *_: True)
    journal.append("w", [(0, 0, 0)], [("expire", 1)])
    journal.append("w", [(0, 1, 1)], [("expire", 2)])
    journal.close()
    path.write_bytes(path.read_bytes()[:-5])  # killed while writing the second frame
    frames = RankerJournal(path).open(3, lambda *_: True)
    assert [ops for _by, ops in frames] == [[("expire", 1)]]
    # A snapshot of generation 4 is in place: a journal of 3 holds nothing it lacks.
    assert RankerJournal(path).open(4, lambda *_: True) == []
    journal = RankerJournal(path)
    journal.open(4, lambda *_: True)
    journal.rotate(5)
    journal.close()
    assert RankerJournal(path).writers(5) == set()
