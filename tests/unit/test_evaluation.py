"""`streamrec evaluate`: metrics, protocols, baselines, report, CLI, and the quality guard."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from streamrec import serde
from streamrec.cli import main
from streamrec.datasets import movielens
from streamrec.datasets.interactions import InteractionLog
from streamrec.evaluation.baselines import BiasedMF, CoVisit, Popular, SortedCounts
from streamrec.evaluation.metrics import MetricSums, popularity_ranks, segments_of
from streamrec.evaluation.models import COVERED, StreamrecModel
from streamrec.evaluation.protocols import (
    ModelRun,
    leave_last_out,
    leave_last_out_split,
    micro_batches,
    prequential,
    prequential_targets,
)
from streamrec.evaluation.report import write_report
from streamrec.evaluation.runner import MODELS, evaluate
from streamrec.evaluation.sequential import SequentialRules, SessionKNN
from streamrec.evaluation.uncertainty import ratio_interval
from streamrec.records import RawEvent
from streamrec.settings import Settings


def ev(i: int, user: str, item: str | None = None, etype: str = "click", **kw: object) -> RawEvent:
    return RawEvent(f"e{i}", etype, user, 1_700_000_000_000 + i * 1000, item_id=item, **kw)  # type: ignore[arg-type]


# -- metrics -------------------------------------------------------------------------------


def test_metrics_are_exact_on_known_lists():
    pop = {"a": 1, "b": 2, "c": 3, "d": 4}
    sums = MetricSums(ks=(10, 20))
    items = [f"x{i}" for i in range(11)] + ["t"]  # target at rank 12: a hit at 20 only
    sums.add(items, "t", pop)
    sums.add(["t", "a"], "t", pop)  # rank 1
    sums.add(["a", "b", "t"], "t", pop)  # rank 3
    sums.add(["a"], "missing", pop)
    r = sums.result(catalog_size=100)
    assert r["n"] == 4
    assert r["hr@10"] == pytest.approx(2 / 4)
    assert r["hr@20"] == pytest.approx(3 / 4)
    assert r["mrr@10"] == pytest.approx((1 + 1 / 3) / 4)
    assert r["mrr@20"] == pytest.approx((1 / 12 + 1 + 1 / 3) / 4)
    assert r["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert r["ndcg@20"] == pytest.approx((1 / math.log2(13) + 1 + 1 / math.log2(4)) / 4)
    # Coverage and novelty look at the displayed top 10 of every list.
    shown = set(items[:10]) | {"t", "a", "b"}
    assert r["coverage@10"] == pytest.approx(len(shown) / 100)
    unknown = len(pop) + 1  # items the log never saw rank after every known one
    novelty = (10 * unknown + (unknown + 1) + (1 + 2 + unknown) + 1) / (10 + 2 + 3 + 1)
    assert r["novelty"] == pytest.approx(novelty)


def test_popularity_ranks_and_segments():
    assert popularity_ranks(["b", "a", "b", "c", "a", "b"]) == {"b": 1, "a": 2, "c": 3}
    assert segments_of(1, False) == ("all", "cold_1", "cold_1_5", "no_search")
    assert segments_of(5, True) == ("all", "cold_2_5", "cold_1_5", "after_search")
    assert segments_of(6, False) == ("all", "warm", "no_search")


# -- protocols -----------------------------------------------------------------------------


class Foresight:
    """Publishes, after each event, the item the same user will go to next (cheats on purpose)."""

    name = "foresight"

    def __init__(self, events: Sequence[RawEvent], lag: int = 1) -> None:
        self.next_of: dict[str, str] = {}
        per_user: dict[str, list[RawEvent]] = {}
        for e in events:
            per_user.setdefault(e.user_id, []).append(e)
        for evs in per_user.values():
            for a, b in zip(evs, evs[lag:], strict=False):
                self.next_of[a.event_id] = b.item_id or ""

    def process(self, events: Sequence[RawEvent], k: int) -> list[list[str] | None]:
        return [[self.next_of.get(e.event_id, "none")] for e in events]

    def recommend(self, user: str, k: int) -> list[str]:
        return []


def _log() -> list[RawEvent]:
    rng = random.Random(0)
    out = []
    for i in range(400):
        out.append(ev(i, f"u{rng.randrange(20)}", f"i{rng.randrange(300)}"))
    return out


def test_prequential_scores_the_list_published_after_the_users_previous_event():
    events = _log()
    targets = prequential_targets(events)
    scored = sum(t is not None for t in targets)
    # A list naming the user's next item is a hit every time; one naming the item after
    # that never is: the protocol uses the latest list before the event, no other.
    right = prequential(events, Foresight(events, 1), catalog_size=300)  # type: ignore[arg-type]
    late = prequential(events, Foresight(events, 2), catalog_size=300)  # type: ignore[arg-type]
    assert right.segments["all"]["n"] == scored
    assert right.segments["all"]["hr@10"] == 1.0
    assert right.segments["all"]["mrr@10"] == 1.0
    assert late.segments["all"]["hr@10"] < 0.05


class OneListPerUser(Foresight):
    """Foresight that publishes one list per user per call, after their last event."""

    def process(self, events: Sequence[RawEvent], k: int) -> list[list[str] | None]:
        lists = super().process(events, k)
        last = {e.user_id: i for i, e in enumerate(events)}
        return [lst if last[e.user_id] == i else COVERED for i, (e, lst) in enumerate(
            zip(events, lists, strict=True))]  # fmt: skip


def test_micro_batches_close_at_the_window_the_size_and_a_users_second_event():
    events = [ev(0, "a"), ev(0, "b"), ev(0, "a"), ev(5, "c"), ev(5, "d"), ev(5, "e")]
    assert list(micro_batches(events, window_ms=1_000)) == [(0, 2), (2, 3), (3, 6)]
    assert list(micro_batches(events, window_ms=1_000, size=2)) == [(0, 2), (2, 3), (3, 5), (5, 6)]
    assert list(micro_batches(events, window_ms=10_000)) == [(0, 2), (2, 6)]


def test_a_users_event_answered_with_the_previous_one_by_one_list_is_not_scored():
    events = _log()
    targets = prequential_targets(events)
    batches = [(lo, min(lo + 40, len(events))) for lo in range(0, len(events), 40)]
    every = prequential(events, Foresight(events, 1), catalog_size=300, batches=batches)  # type: ignore[arg-type]
    coalesced = prequential(events, OneListPerUser(events, 1), catalog_size=300, batches=batches)  # type: ignore[arg-type]
    assert every.segments["all"]["n"] == sum(t is not None for t in targets)
    # Scored: a user's first event of each batch, against the list after their last
    # event of an earlier batch (which names it: a hit every time).
    first_in_batch = sum(
        targets[i] is not None and all(e.user_id != events[i].user_id for e in events[lo:i])
        for lo, hi in batches
        for i in range(lo, hi)
    )
    assert coalesced.segments["all"]["n"] == first_in_batch < every.segments["all"]["n"]
    assert coalesced.segments["all"]["hr@10"] == 1.0 and coalesced.unanswered == 0


def test_prequential_targets_skip_first_events_and_repeats_and_mark_searches():
    events = [
        ev(0, "a", "x"),  # first event of a: nothing published before it
        ev(1, "a", "y"),
        ev(2, "a", "x"),  # a repeat: not a target unless asked
        ev(3, "a", None, "search", query="red shoes"),
        ev(4, "a", "z"),
        ev(5, "b", None, "search", query="q"),
        ev(6, "b", "x"),
    ]
    t = prequential_targets(events)
    assert [x is not None for x in t] == [False, True, False, False, True, False, True]
    assert t[1] is not None and t[1].segments == ("all", "cold_1", "cold_1_5", "no_search")
    assert t[4] is not None and "after_search" in t[4].segments and t[4].events_before == 4
    assert prequential_targets(events, repeats=True)[2] is not None


def test_leave_last_out_holds_out_each_users_last_new_item_and_what_follows():
    events = [
        ev(0, "a", "x"),
        ev(1, "b", "x"),
        ev(2, "a", "y"),
        ev(3, "a", "x"),  # a repeat: y stays a's last new item
        ev(4, "b", "z"),
        ev(5, "a", None, "search", query="later"),
    ]
    train, held = leave_last_out_split(events)
    assert held == {"a": ("y", 1), "b": ("z", 1)}
    assert [e.event_id for e in train] == ["e0", "e1"]


def test_leave_last_out_ranks_by_the_models_list_now():
    events = [ev(i, f"u{i % 3}", f"i{i % 7}") for i in range(60)]
    run = leave_last_out(events, Popular(), catalog_size=7)
    assert run.segments["all"]["n"] == 3
    assert 0.0 <= run.segments["all"]["hr@10"] <= 1.0
    assert len(run.rank) == 3


# -- baselines -----------------------------------------------------------------------------


def test_sorted_counts_stay_sorted_under_random_increments():
    rng = random.Random(1)
    sc = SortedCounts()
    truth: dict[str, int] = {}
    for _ in range(3000):
        item = f"i{int(rng.paretovariate(1.2)) % 50}"
        sc.add(item)
        truth[item] = truth.get(item, 0) + 1
        counts = [truth[i] for i in sc.order]
        assert counts == sorted(counts, reverse=True)
    assert sc.top(3, excluded={sc.order[0]}) == sc.order[1:4]


def test_baselines_never_recommend_what_the_user_has_seen_and_fill_with_popular():
    events = [ev(i, f"u{i % 4}", f"i{i % 9}") for i in range(80)]
    for model in (Popular(), CoVisit(), SequentialRules(), SessionKNN(), BiasedMF()):
        lists = model.process(events, 5)
        seen: dict[str, set[str]] = {}
        known: set[str] = set()
        for e, lst in zip(events, lists, strict=True):
            seen.setdefault(e.user_id, set()).add(e.item_id or "")
            known.add(e.item_id or "")
            assert lst is not None and not set(lst) & seen[e.user_id], model.name
            assert len(lst) == min(5, len(known - seen[e.user_id])), model.name


def test_covisit_recommends_what_others_did_next():
    events = []
    for u in range(30):
        events += [ev(len(events), f"u{u}", "phone"), ev(len(events) + 1, f"u{u}", "case")]
        events.append(ev(len(events), f"u{u}", f"noise{u}"))
    model = CoVisit()
    model.process(events, 5)
    top = model.process([ev(999, "new", "phone")], 5)[0]
    assert top is not None and top[0] == "case" and "phone" not in top and len(top) == 5


def test_sequential_rules_follow_the_order_of_what_users_did():
    events = []
    for u in range(20):  # everyone: phone, then case, then charger
        for item in ("phone", "case", "charger"):
            events.append(ev(len(events), f"u{u}", item))
    model = SequentialRules()
    model.process(events, 3)
    assert model.process([ev(999, "new", "case")], 3)[0][0] == "charger"  # next, not before
    assert model.rules["case"].get("phone") is None  # rules are directed


def test_session_knn_recommends_what_the_most_similar_users_had():
    rng = random.Random(5)
    events = []
    for u in range(40):  # two tastes; within a taste users share most items
        group = "a" if u % 2 else "b"
        for item in rng.sample(range(12), 8):
            events.append(ev(len(events), f"u{u}", f"{group}{item}"))
    model = SessionKNN(k=10)
    model.process(events, 5)
    top = model.process([ev(9_999, "new", "a1"), ev(10_000, "new", "a2")], 5)[-1]
    assert top is not None and all(i.startswith("a") for i in top), top


def test_a_validation_part_and_a_test_part_split_the_stream_by_time():
    events = [ev(i, f"u{i % 5}", f"i{i}") for i in range(100)]
    targets = prequential_targets(events, scored_from=50)
    scored = [t.index for t in targets if t is not None]
    assert scored and min(scored) >= 50 and len(scored) == 50
    _train, held = leave_last_out_split(events, scored_from=50)
    assert set(held) == {f"u{u}" for u in range(5)}  # every user's last item is late
    train_early, held_early = leave_last_out_split(events[:50], scored_from=0)
    assert len(held_early) == 5 and len(train_early) == 45
    late_only = [ev(1_000, "late", "x"), ev(1_001, "late", "y")]
    _, held_late = leave_last_out_split(events[:20] + late_only, scored_from=20)
    assert set(held_late) == {"late"}  # users whose held-out item is early are not scored
    log = InteractionLog("t", events, [])
    val = evaluate(log, Settings.from_env(), models=("popular",), part="validation",
                   progress=False, say=lambda _m: None)  # fmt: skip
    test = evaluate(log, Settings.from_env(), models=("popular",), part="test",
                    progress=False, say=lambda _m: None)  # fmt: skip
    late = evaluate(log, Settings.from_env(), models=("popular",), part="validation-late",
                    progress=False, say=lambda _m: None)  # fmt: skip
    assert val.meta["scored_events"] == [0, 50] and test.meta["scored_events"] == [50, 100]
    assert late.meta["scored_events"] == [25, 50]  # the validation half's second half
    assert late.runs["prequential"]["popular"].segments["all"]["n"] == 25
    assert val.runs["prequential"]["popular"].segments["all"]["n"] == 45  # 5 first events
    assert test.runs["prequential"]["popular"].segments["all"]["n"] == 50


def test_a_log_without_times_is_split_by_each_users_last_items(tmp_path):
    """ "user item" lines have no time to split on: validation holds out each user's
    second-to-last item, test their last (what the literature reports); gzip reads."""
    import gzip

    lines = [f"u{u} i{(u * 7 + k) % 40}" for u in range(30) for k in range(6)]
    path = tmp_path / "shop.txt.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    from streamrec.datasets.interactions import read_interactions

    log = read_interactions(path)
    assert not log.timed and log.name == "shop" and len(log.events) == 180

    def held(part: str) -> str:
        out = evaluate(log, Settings.from_env(), models=("popular",), part=part,
                       protocols=("leave_last_out",), progress=False,
                       say=lambda _m: None)  # fmt: skip
        assert out.meta["protocols"]["leave_last_out"]["test_users"] == 30
        return out.meta["split"]

    assert held("validation") == "each user's second-to-last item"
    assert held("test") == "each user's last item"
    from streamrec.evaluation.runner import without_last

    kept = without_last(log.events)
    assert len(kept) == 150 and {e.item_id for e in kept if e.user_id == "u0"} == {
        f"i{k}" for k in range(5)
    }
    _train, second = leave_last_out_split(kept)
    assert second["u0"] == ("i4", 4)  # the second-to-last of i0..i5


def test_biased_mf_learns_two_tastes_from_implicit_feedback():
    rng = random.Random(3)
    events = []
    for i in range(3000):
        u = rng.randrange(40)
        group = "a" if u < 20 else "b"
        events.append(ev(i, f"u{u}", f"{group}{rng.randrange(60)}"))
    model = BiasedMF()
    model.process(events, 10)
    top = model.recommend("u0", 10)
    assert sum(i.startswith("a") for i in top) >= 8


# -- streamrec in process ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml_slice() -> InteractionLog:
    s = Settings.from_env()
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=10_000)
    return InteractionLog("ml-100k", ml.events, ml.items)


def test_quality_guard_streamrec_beats_every_baseline_on_ml100k(ml_slice, tmp_path):
    """A later change that degrades ranking quality fails here (in process, under a minute).

    On this slice (the first 10k events) streamrec measured NDCG@10 0.0772 against the
    best baseline's 0.0659 (covisit) when this guard was raised; it asks for 5% ahead.
    """
    s = Settings.from_env()
    result = evaluate(
        ml_slice,
        s,
        models=MODELS,
        protocols=("prequential",),
        progress=False,
        say=lambda _m: None,
    )
    runs = result.runs["prequential"]
    ours = runs["streamrec"].segments
    pop = runs["popular"].segments
    assert ours["all"]["n"] == pop["all"]["n"] > 9_000
    best = max((r.segments["all"]["ndcg@10"], name) for name, r in runs.items()
               if name != "streamrec")  # fmt: skip
    assert ours["all"]["ndcg@10"] > 1.05 * best[0], (ours["all"]["ndcg@10"], best)
    assert ours["cold_1_5"]["hr@10"] > 2.0 * pop["cold_1_5"]["hr@10"]
    # The report says which model ranked streamrec's lists: one count per list published.
    by_model = result.meta["lists_by_model"]["prequential: streamrec"]
    assert set(by_model) <= {"blend-1", "river-logreg-1"}
    # Batches of live traffic hold one action per person: every event gets its own list.
    assert sum(by_model.values()) == len(ml_slice.events)
    # The margin comes with a paired bootstrap interval over users.
    vs = result.meta["protocols"]["prequential"]["vs_best_baseline"]
    assert vs["baseline"] == best[1] and vs["targets"] == ours["all"]["n"]
    assert vs["ratio"] == pytest.approx(ours["all"]["ndcg@10"] / best[0], abs=1e-4)
    assert vs["low"] < vs["ratio"] < vs["high"]
    write_report(result, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "prequential: streamrec: the online ranker ranked" in md
    assert f"95% interval {vs['low']:.3f}-{vs['high']:.3f}x" in md


def test_streamrec_model_answers_every_valid_event_and_skips_invalid_ones(ml_slice):
    model = StreamrecModel(Settings.from_env(), ml_slice.items)
    bad = RawEvent("bad", "click", "u", 5)  # a timestamp from 1970: rejected by ingest
    lists = model.process([*ml_slice.events[:50], bad], 20)
    # One list per user (after their last event), the others answered by it.
    own = [i for i, lst in enumerate(lists[:50]) if lst is not COVERED]
    assert [ml_slice.events[i].user_id for i in own] == list(
        {e.user_id: None for e in reversed(ml_slice.events[:50])}
    )[::-1]
    assert all(lists[i] is not None for i in own)
    # Full once trending's young top list holds 32 items (it doubles as the shop starts).
    assert all(len(lists[i] or ()) == 20 for i in own if i >= 32)
    assert lists[-1] is None
    users = {e.user_id for e in ml_slice.events[:50]}
    now = model.recommend_many(sorted(users), 10)
    assert set(now) == users and all(len(v) == 10 for v in now.values())
    # Nothing the user just saw comes back (recent items are excluded).
    last = ml_slice.events[49]
    assert last.item_id not in now[last.user_id]


# -- report and CLI ------------------------------------------------------------------------


def test_report_writes_tables_plots_and_results_json(tmp_path):
    events = [ev(i, f"u{i % 5}", f"i{(i * 7) % 23}") for i in range(300)]
    log = InteractionLog("toy", events)
    result = evaluate(
        log,
        Settings.from_env(),
        models=("popular", "covisit"),
        progress=False,
        say=lambda _m: None,
    )
    paths = write_report(result, tmp_path)
    data = serde.loads((tmp_path / "results.json").read_bytes())
    assert set(data) == {"prequential", "leave_last_out", "meta"}
    assert data["prequential"]["covisit"]["all"]["n"] > 0
    assert {"hr@10", "ndcg@10", "mrr@10", "hr@20", "coverage@10", "novelty"} <= set(
        data["prequential"]["popular"]["all"]
    )
    md = (tmp_path / "report.md").read_text()
    assert "| popular |" in md and "**" in md  # the best of each column is marked
    assert "<table>" in (tmp_path / "report.html").read_text()
    pngs = [p for k, p in paths.items() if k.startswith("plot_")]
    assert len(pngs) == 4
    for p in pngs:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_evaluates_a_user_item_log(tmp_path, capsys):
    rng = random.Random(5)
    lines = [f"user{rng.randrange(30)} item{rng.randrange(40)}" for _ in range(500)]
    log = tmp_path / "clicks.txt"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report"
    code = main(["evaluate", "--dataset", str(log), "--out", str(out), "--no-vectors",
                 "--models", "streamrec,popular", "--quiet"])  # fmt: skip
    assert code == 0
    data = serde.loads((out / "results.json").read_bytes())
    assert data["meta"]["events"] == 500
    assert data["leave_last_out"]["streamrec"]["all"]["n"] == len({ln.split()[0] for ln in lines})


def test_cli_says_what_to_do_with_an_unknown_dataset_or_model(tmp_path, capsys):
    assert main(["evaluate", "--dataset", "nope.csv", "--out", str(tmp_path)]) == 2
    assert "neither one of ml-100k, synthetic" in capsys.readouterr().err
    log = tmp_path / "l.txt"
    log.write_text("u i\n")
    args = ["evaluate", "--dataset", str(log), "--out", str(tmp_path), "--models", "magic"]
    assert main(args) == 2
    assert "models are streamrec, popular" in capsys.readouterr().err


def test_rolling_curve_and_history_bins_cover_every_scored_target():
    from streamrec.evaluation.report import HISTORY_BINS, _rolling

    n = 1000
    run = ModelRun("m", {}, np.arange(n), np.arange(n) % 120 + 1, np.where(np.arange(n) % 2, 1, 0))
    x, y = _rolling(run, 10)
    assert len(x) == len(y) == n - 50 + 1
    assert y.mean() == pytest.approx(0.5, abs=0.01)
    assert all(any(lo <= h <= hi for lo, hi in HISTORY_BINS) for h in run.events_before)


def test_the_ratio_interval_resamples_users_not_targets():
    """Targets of one user move together: the interval over 20 users of 50 targets is
    wider than over 1,000 users of one target each, with the same gains."""
    rng = np.random.default_rng(3)
    n = 1_000
    taste = rng.random(20) < 0.5  # half the users like what model a shows
    clustered = np.repeat(np.arange(20), 50)
    rank_a = np.where(taste[clustered], 1, 0)
    rank_b = np.where(rng.random(n) < 0.4, 1, 0)
    index = np.arange(n)

    def run(name: str, rank: np.ndarray, users: np.ndarray) -> ModelRun:
        return ModelRun(name, {}, index, np.zeros(n, dtype=np.int64), rank, users)

    grouped = ratio_interval(run("a", rank_a, clustered), run("b", rank_b, clustered))
    alone = ratio_interval(run("a", rank_a, index), run("b", rank_b, index))
    assert (
        grouped["ratio"] == alone["ratio"] == pytest.approx(rank_a.sum() / rank_b.sum(), abs=1e-4)
    )
    assert grouped["users"] == 20 and alone["users"] == n
    assert grouped["high"] - grouped["low"] > 2 * (alone["high"] - alone["low"])
    # Targets only one model scored are left out of the pairing.
    half = ModelRun("b", {}, index[::2], np.zeros(n // 2, dtype=np.int64), rank_b[::2], index[::2])
    fewer = ratio_interval(run("a", rank_a, index), half)
    assert fewer["targets"] == fewer["users"] == n // 2
    assert fewer["ratio"] == pytest.approx(rank_a[::2].sum() / rank_b[::2].sum(), abs=1e-4)
