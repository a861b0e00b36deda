"""Monitoring without a broker: histograms, window merging, online quality, drift, A/B, alerts."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore, Engine
from streamrec.core.ingest import RawMessage
from streamrec.core.monitoring.abtest import compare_variants, two_proportion_test
from streamrec.core.monitoring.alerts import AlertEngine, AlertRule, parse_rules
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.core.monitoring.quality import OnlineQuality, QualitySums
from streamrec.core.monitoring.view import MonitorView
from streamrec.core.monitoring.windows import merge_windows
from streamrec.core.ranking.variants import Experiment
from streamrec.errors import ConfigError
from streamrec.evaluation.metrics import MetricSums
from streamrec.prometheus import MetricsState
from streamrec.prometheus import render as prometheus_text
from streamrec.records import CatalogItem, DriftStat, MetricsWindow, Recommendation
from streamrec.settings import Settings
from streamrec.tools.dashboard import render
from streamrec.worker import metrics_window

T0 = 1_700_000_000_000
CATS = ["Audio", "Books", "Garden", "Kitchen"]


def raw(event: dict, offset: int = 0, partition: int = 0) -> RawMessage:
    return RawMessage(
        serde.dumps(event), event["user_id"].encode(), partition, offset, event["ts"] - 5
    )


def engine(**overrides: object) -> Engine:
    s = Settings.from_env({}, scorer_enabled=False, **overrides)
    e = build_engine(s)
    for i in range(200):
        e.upsert_item(CatalogItem(f"i{i}", f"item {i}", (CATS[i % 4],)))
    return e


# -- histograms and windows ------------------------------------------------------------


def test_histogram_percentiles_are_within_one_percent_and_merge_bucket_exact():
    rng = random.Random(3)
    a_values = [rng.lognormvariate(3, 1) for _ in range(5000)]
    b_values = [rng.expovariate(1 / 40) for _ in range(3000)] + [0.0] * 10
    a, b, both = LogHistogram(), LogHistogram(), LogHistogram()
    a.extend(a_values)
    b.extend(b_values)
    both.extend(a_values + b_values)
    a.merge(b)
    assert a.buckets == both.buckets and a.zeros == both.zeros == 10
    assert a.count == both.count == 8010 and a.max == both.max
    assert a.sum == pytest.approx(sum(a_values + b_values))
    ordered = sorted(a_values + b_values)
    for q in (50, 90, 95, 99, 99.9):
        exact = ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
        assert a.percentile(q) == pytest.approx(exact, rel=0.0101)
    # Prometheus buckets: cumulative counts, right to the bucket precision.
    for le in (1, 10, 50, 200, 1000):
        true = sum(v <= le for v in ordered)
        assert abs(a.count_at_most(le) - true) <= sum(le / 1.03 < v <= le for v in ordered)
    back = LogHistogram.from_dict(serde.loads(serde.dumps(a.to_dict())))
    assert back.buckets == a.buckets and back.count == a.count and back.sum == a.sum


def _stream(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for j in range(n):
        user = f"user-{rng.randrange(60)}"
        kind = rng.choice(["view", "view", "click", "add_to_cart", "impression", "search"])
        ev: dict = {"event_id": f"e{seed}-{j}", "type": kind, "user_id": user, "ts": T0 + j * 1000}
        if kind == "impression":
            ev["shown"] = [f"i{rng.randrange(40)}" for _ in range(4)]
        elif kind == "search":
            ev["query"] = "lamp"
        else:
            ev["item_id"] = f"i{rng.randrange(40)}"
        out.append(ev)
    out += [{"event_id": "bad", "type": "click", "user_id": "x", "ts": T0}]  # no item_id
    out += [out[0]]  # a duplicate
    return out


def run(e: Engine, events: list[dict], batch: int, partition: int = 0) -> list[Recommendation]:
    """The events through `e` in batches of `batch`; the lists it published."""
    store = DictProfileStore()
    recs: list[Recommendation] = []
    for i in range(0, len(events), batch):
        msgs = [raw(ev, i + j, partition) for j, ev in enumerate(events[i : i + batch])]
        recs += e.process_batch(msgs, store, now_ms=T0 + 10**8).recommendations
    return recs


def test_windows_of_partitioned_workers_add_up_to_one_worker_over_everything():
    events = _stream(1200, seed=5)
    # One worker over everything, in batches ...
    one = engine()
    recs = run(one, events, 100)
    whole = metrics_window("one", 0, 1000, one.counters.reset(), one.monitor.reset())
    # ... and three workers, each owning the users of one partition, in smaller windows.
    windows = []
    for part in range(3):
        w = engine()
        mine = [e for e in events if hash(e["user_id"]) % 3 == part]
        st = DictProfileStore()
        for i in range(0, len(mine), 50):
            batch = [raw(e, i + j, part) for j, e in enumerate(mine[i : i + 50])]
            w.process_batch(batch, st, now_ms=T0 + 10**8)
            windows.append(
                metrics_window(f"w{part}", i, i + 1, w.counters.reset(), w.monitor.reset())
            )
    merged = merge_windows(windows)
    # Every count but the lists: one per user per batch, and the batches differ.
    lists = "recommendations"
    assert whole.counts[lists] == len(recs) <= len(events) and merged.counts[lists] <= len(events)

    def but_lists(counts: dict[str, int]) -> dict[str, int]:
        return {k: v for k, v in counts.items() if k not in (lists, "covered")}

    assert but_lists(merged.counts) == but_lists(whole.counts) and len(merged.workers) == 3
    for c in (merged.counts, whole.counts):
        assert c[lists] + c.get("covered", 0) + c.get("erasures", 0) == c["valid"]
    assert {t: dict(c) for t, c in merged.per_type.items()} == whole.per_type
    assert whole.per_type["click"]["dlq"] == 1 and sum(
        r["in"] for r in whole.per_type.values()
    ) == len(events)
    assert merged.latency.buckets == LogHistogram.from_dict(whole.latency_hist).buckets
    # Co-visitation and trending are learned per worker, and the batches differ, so
    # the lists differ; the counts that do not depend on them must agree exactly.
    total = merged.quality_total()
    single = QualitySums.from_dict(whole.quality["default"])
    assert total.impressions == single.impressions
    assert single.lists == len(recs) and total.lists == merged.counts[lists]


def test_shared_state_lag_merges_across_workers_into_percentiles():
    windows = []
    for worker, lags in (("a", [5.0] * 90), ("b", [5.0] * 8 + [2_000.0] * 2)):
        hist = LogHistogram()
        for x in lags:
            hist.record(x)
        w = metrics_window(worker, 0, 1000, engine().counters.reset())
        w.shared_lag_hist.update(hist.to_dict())
        windows.append(MetricsWindow.from_dict(serde.loads(serde.dumps(w.to_dict()))))
    summary = merge_windows(windows).summary()
    assert summary["shared_lag_p50_ms"] == pytest.approx(5.0, rel=0.1)
    assert summary["shared_lag_p99_ms"] == pytest.approx(2_000.0, rel=0.1)
    assert merge_windows(windows[:0]).summary()["shared_lag_p50_ms"] is None


def test_a_metrics_window_from_a_newer_worker_still_reads():
    w = metrics_window("new", 0, 1000, engine().counters.reset()).to_dict()
    back = MetricsWindow.from_dict({**w, "a_field_from_the_future": {"x": 1}})
    assert back.to_dict() == w


def test_online_hit_rate_and_ndcg_equal_an_offline_computation_on_the_same_events():
    events = _stream(3000, seed=11)
    e = engine()
    recs = run(e, events, 50)
    online = e.monitor.reset().quality["default"]
    # Offline: replay the published lists; every click/cart is scored against the
    # list published after that user's previous event (the evaluation code's metrics).
    offline = MetricSums(ks=(10,))
    last: dict[str, list[str]] = {}
    follows: set[str] = set()  # users whose previous event a later list answers
    by_id = {ref: r for r in recs for ref in r.event_ids}
    for ev in events:
        ref = e.ingestor.pseudonymize.event_id(ev["event_id"])
        rec = by_id.get(ref)
        if rec is None:
            continue
        positive = ev["type"] in ("click", "add_to_cart")
        if positive and rec.user in last and rec.user not in follows:
            offline.add(last[rec.user], ev["item_id"], {})
        if rec.event_id == ref:  # published after the user's last event of its batch
            last[rec.user] = rec.item_ids
            follows.discard(rec.user)
        else:
            follows.add(rec.user)
    result = offline.result(200)
    assert online.trials == offline.n > 500
    assert online.hits > 20
    assert online.hits / online.trials == pytest.approx(result["hr@10"], abs=1e-12)
    assert online.ndcg / online.trials == pytest.approx(result["ndcg@10"], abs=1e-9)
    assert online.rr / online.trials == pytest.approx(result["mrr@10"], abs=1e-9)


def test_a_click_in_the_batch_of_the_users_previous_event_is_no_trial_of_the_lists():
    """One list answers both events of a batch: none was shown between them."""
    e, store = engine(), DictProfileStore()

    def click(n: int, item: str) -> RawMessage:
        doc = {"event_id": f"c{n}", "type": "click", "user_id": "u", "ts": T0 + n * 1000,
               "item_id": item}  # fmt: skip
        return raw(doc, n)

    e.process_batch([click(0, "a")], store, now_ms=T0 + 10**6)  # a list: after a
    e.process_batch([click(1, "b"), click(2, "c")], store, now_ms=T0 + 10**6)
    window = e.monitor.reset().quality["default"]
    assert (window.trials, window.lists) == (1, 2)  # b against a's list; c follows b


def test_ctr_counts_an_impression_once_and_only_within_the_feedback_window():
    q = OnlineQuality(k=10, window_s=60)
    q.observe_impression("u", ("a", "b"), ts=0, variant="v")
    q.observe_positive("u", "a", ts=1_000, variant="v")
    q.observe_positive("u", "b", ts=2_000, variant="v")  # same impression: counted once
    q.observe_impression("u", ("c",), ts=3_000, variant="v")
    q.observe_positive("u", "c", ts=70_000, variant="v")  # too late
    q.expire(200_000)
    s = q.window["v"]
    assert (s.impressions, s.clicks) == (2, 1) and q.ctr_outcomes == [1, 0]


# -- drift -------------------------------------------------------------------------------


def _click_stream(n: int, change_at: int | None, seed: int = 7) -> tuple[list[DriftStat], int]:
    """Users click an item of their last list with p=0.5, or a random item; after
    `change_at` they take from their list with p=0.1 only. Returns what the engine
    reports (as drift.stats records) and the number of events."""
    rng = random.Random(seed)
    e = engine(drift_warmup=1000)
    store = DictProfileStore()
    last: dict[str, list[str]] = {}
    fired: list[DriftStat] = []
    j = 0
    while j < n:
        batch = []
        for _ in range(50):
            user = f"user-{rng.randrange(300)}"
            p = 0.5 if change_at is None or j < change_at else 0.1
            shown = last.get(e.ingestor.pseudonymize(user), [])[:10]
            item = rng.choice(shown) if shown and rng.random() < p else f"i{rng.randrange(200)}"
            ev = {"event_id": f"c{j}", "type": "click", "user_id": user, "ts": T0 + j * 1000,
                  "item_id": item}  # fmt: skip
            batch.append(raw(ev, j))
            j += 1
        out = e.process_batch(batch, store, now_ms=T0 + j * 1000 + 50)
        for rec in out.recommendations:
            last[rec.user] = rec.item_ids
        fired += [d.to_stat("w", ts=j) for d in out.drift]
    return fired, j


def test_hit_rate_drift_fires_soon_after_click_behaviour_changes_and_never_on_the_control():
    change = 4000
    fired, _ = _click_stream(7000, change_at=change)
    hit = [d for d in fired if d.name == "hit_rate"]
    assert hit, f"no hit_rate drift; fired: {[(d.name, d.ts) for d in fired]}"
    first = hit[0]
    assert first.direction == "down" and first.before > first.after
    assert change < first.ts <= change + 600  # detected within 600 events of the change
    control, _ = _click_stream(7000, change_at=None)
    assert control == []


def test_psi_fires_on_a_category_mix_shift_and_resets_on_a_new_encoder_version():
    from streamrec.core.monitoring.drift import DriftMonitor

    m = DriftMonitor(warmup=0, psi_chunk=200)
    rng = random.Random(1)
    before = [m.category(rng.choice(CATS)) for _ in range(2000)]
    after = [m.category(rng.choice(["Garden", "Garden", "Toys"])) for _ in range(400)]
    assert not any(before)
    assert [d.name for d in after if d] == ["category_mix"]
    # Query vectors: a new encoder version is a new space, not drift.
    import numpy as np

    g = np.random.default_rng(0)
    assert not any(m.query(g.standard_normal(8), "v1") for _ in range(1000))
    assert not any(m.query(-np.abs(g.standard_normal(8)), "v2") for _ in range(600))


# -- A/B ---------------------------------------------------------------------------------


def test_variant_assignment_is_stable_and_matches_the_weights_on_100k_ids():
    spec = '{"control": {"weight": 70}, "b": {"weight": 20, "ranker": false}, "c": {"weight": 10}}'
    exp = Experiment.parse(spec, "exp-1")
    ids = [f"pseudonym-{i}" for i in range(100_000)]
    counts = Counter(exp.assign(u).name for u in ids)
    for name, share in (("control", 0.7), ("b", 0.2), ("c", 0.1)):
        assert counts[name] / 100_000 == pytest.approx(share, abs=0.006)
    again = Experiment.parse(spec, "exp-1")  # another process, another start
    assert all(exp.assign(u).name == again.assign(u).name for u in ids[:5000])
    other = Experiment.parse(spec, "exp-2")  # a new experiment re-shuffles
    moved = sum(exp.assign(u).name != other.assign(u).name for u in ids[:5000])
    assert moved > 1000


def _simulate_arms(ctr: dict[str, float], n_users: int, seed: int) -> dict[str, QualitySums]:
    exp = Experiment.parse(serde.dumps({v: {"weight": 1} for v in ctr}).decode())
    q = OnlineQuality(k=10, window_s=60)
    rng = random.Random(seed)
    for u in range(n_users):
        user = f"p{u}"
        variant = exp.assign(user).name
        for s in range(4):
            ts = (u * 10 + s) * 100_000
            q.observe_impression(user, ("a", "b", "c"), ts, variant)
            if rng.random() < ctr[variant]:
                q.observe_positive(user, rng.choice("abc"), ts + 1000, variant)
    return q.window


def test_ab_with_a_real_difference_is_significant_and_aa_is_not():
    ab = compare_variants(_simulate_arms({"a": 0.10, "b": 0.13}, 8000, seed=1), "a")
    ctr_ab = next(r for r in ab if r.metric == "ctr")
    assert ctr_ab.significant and ctr_ab.lift > 0.15 and ctr_ab.p_value < 0.001
    aa = compare_variants(_simulate_arms({"a": 0.10, "a2": 0.10}, 8000, seed=2), "a")
    ctr_aa = next(r for r in aa if r.metric == "ctr")
    assert not ctr_aa.significant and ctr_aa.p_value > 0.05
    assert not two_proportion_test(5, 20, 15, 20).significant  # too few trials to say


def test_a_variant_changes_serving_and_every_list_names_its_variant():
    spec = '{"control": {}, "short": {"top_k": 3, "weights": {"popularity": 2.0}, "ranker": false}}'
    e = engine(variants=spec)
    recs = run(e, _stream(600, seed=4)[:600], 600)
    by_variant = {r.variant for r in recs}
    assert by_variant == {"control", "short"}
    assert all(len(r.items) <= 3 and r.model_version == "blend-1+short"
               for r in recs if r.variant == "short")  # fmt: skip
    assert any(len(r.items) > 3 for r in recs if r.variant == "control")
    q = e.monitor.reset().quality
    assert set(q) == {"control", "short"}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ('{"a": {"wieght": 1}}', "unknown key"),
        ('{"a": {"weights": {"colour": 1}}}', "unknown blend feature"),
        ("not json", "must be a JSON object"),
        ('{"a": {"weight": -1}}', "weight must be >= 0"),
    ],
)
def test_bad_variant_settings_say_what_to_fix(spec: str, words: str):
    with pytest.raises(ConfigError, match=words):
        Settings.from_env({"STREAMREC_VARIANTS": spec})


# -- alerts ------------------------------------------------------------------------------


def test_alert_rules_fire_after_n_windows_resolve_and_ignore_windows_without_data():
    rules = parse_rules(
        '[{"name": "dlq", "signal": "dlq_share", "op": ">", "threshold": 0.1, "for_windows": 2},'
        ' {"name": "drop", "signal": "drift:hit_rate", "direction": "down"}]'
    )
    a = AlertEngine(rules, "w1")
    assert a.on_window({"dlq_share": 0.2}, 1) == []
    assert a.on_window({"dlq_share": None}, 2) == []  # no events: no verdict
    fired = a.on_window({"dlq_share": 0.3}, 3)
    assert [(x.alert, x.state, x.windows) for x in fired] == [("dlq", "firing", 2)]
    assert "dlq_share = 0.3 > 0.1 for 2 window(s)" in fired[0].message
    assert a.on_window({"dlq_share": 0.3}, 4) == []  # still firing: said once
    assert [x.state for x in a.on_window({"dlq_share": 0.0}, 5)] == ["resolved"]

    from streamrec.core.monitoring.drift import Detection

    up = Detection("hit_rate", "ADWIN", "hr", 0.4, 0.002, "up", 0.3, 0.4, 100)
    down = Detection("hit_rate", "ADWIN", "hr", 0.1, 0.002, "down", 0.3, 0.1, 200)
    assert a.on_drift(up, 6) == []  # the rule watches for drops only
    [drop] = a.on_drift(down, 7)
    assert drop.state == "firing" and drop.severity == "warning" and "0.3 -> 0.1" in drop.message
    assert a.on_window({}, 8) == []  # the window that saw the drift
    assert [x.state for x in a.on_window({}, 9)] == ["resolved"]


def test_alert_rules_are_checked_with_clear_errors():
    with pytest.raises(ConfigError, match="unknown signal 'p99'"):
        AlertRule("x", "p99")
    with pytest.raises(ConfigError, match="no drift detector 'clicks'"):
        AlertRule("x", "drift:clicks")
    with pytest.raises(ConfigError, match="JSON list"):
        Settings.from_env({"STREAMREC_ALERT_RULES": "{bad"})
    assert parse_rules("[]") == ()
    assert {r.name for r in parse_rules("")} >= {"latency_p99_high", "hit_rate_drop"}


# -- readers: Prometheus and the monitor view --------------------------------------------


def _worker_windows() -> list:
    e = engine(variants='{"a": {}, "b": {}}')
    assert run(e, _stream(800, seed=9), 800)
    return [metrics_window("w1", T0, T0 + 10_000, e.counters.reset(), e.monitor.reset())]


def test_prometheus_text_has_the_windows_numbers():
    [w] = _worker_windows()
    state = MetricsState("w1")
    state.add_window(w, merge_windows([w]).summary())
    state.firing["dlq_share_high"] = "warning"
    text = prometheus_text(state).decode()
    clicks = w.per_type["click"]["valid"]
    assert f'streamrec_events_total{{outcome="valid",type="click"}} {float(clicks)}' in text
    assert f"streamrec_event_latency_ms_count {float(sum(w.counts[k] for k in ('valid',)))}" in text
    assert 'streamrec_quality_trials_total{variant="a"}' in text
    assert 'streamrec_alert_firing{alert="dlq_share_high",severity="warning"} 1.0' in text


def test_monitor_view_adds_windows_and_keeps_drift_and_alerts():
    [w] = _worker_windows()
    view = MonitorView(since_s=60, control="a")
    view.add("metrics", serde.dumps(w.to_dict()))
    view.add("metrics", serde.dumps(w.to_dict() | {"worker": "w2"}))
    view.add("drift.stats", serde.dumps({"worker": "w1", "ts": 1, "name": "ctr",
             "detector": "ADWIN", "signal": "s", "threshold": 0.002, "drift": False}))  # fmt: skip
    view.add("alerts", serde.dumps({"alert": "x", "state": "firing", "severity": "warning",
             "message": "m", "signal": "dlq_share", "worker": "w1", "ts": 1}))  # fmt: skip
    view.add("alerts", b"not json")
    snap = view.snapshot(now_ms=T0 + 20_000)
    assert snap["total"]["events_in"] == 2 * w.counts["in"] and snap["now"]["workers"] == 2
    assert snap["drift"]["ctr"]["detector"] == "ADWIN" and len(snap["alerts_firing"]) == 1
    assert snap["unreadable"] == 1 and {t["variant"] for t in snap["ab_tests"]} == {"b"}
    from rich.console import Console

    console = Console(record=True, width=140)
    console.print(render(snap))
    assert "A/B variants" in console.export_text()
    assert view.snapshot(now_ms=T0 + 10**9)["total"]["events_in"] == 0  # outside --since


def test_page_hinkley_fires_on_a_top_score_drop_but_not_on_a_model_switch():
    from streamrec.core.monitoring.drift import DriftMonitor

    m = DriftMonitor(warmup=500)
    rng = random.Random(2)
    steady = [m.top_score(rng.gauss(1.3, 0.15), "blend-1") for _ in range(3000)]
    switched = [m.top_score(rng.gauss(0.2, 0.05), f"river-logreg-1@{i}") for i in range(3000)]
    assert not any(steady) and not any(switched)  # a new model, a new scale: not drift
    dropped = [m.top_score(rng.gauss(0.1, 0.05), "river-logreg-1@9999") for _ in range(1000)]
    first = next(i for i, d in enumerate(dropped) if d)
    assert first < 1000 and dropped[first].direction == "down"
