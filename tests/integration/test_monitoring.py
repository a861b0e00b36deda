"""Monitoring on the embedded broker: metrics, drift.stats and alerts, per variant; /metrics."""

from __future__ import annotations

import contextlib
import io
import time
import urllib.request
from typing import Any

import pytest

from streamrec import serde
from streamrec.broker import free_port
from streamrec.cli import main
from streamrec.client import EventProducer, RecommendationReader, read_all, tail
from streamrec.contracts import ALERTS, DRIFT_STATS, METRICS, load_contract
from streamrec.core.monitoring.windows import merge_windows
from streamrec.records import Alert, CatalogItem, DriftStat, MetricsWindow, Recommendation

pytestmark = pytest.mark.integration

VARIANTS = '{"control": {"weight": 1}, "blend_only": {"weight": 1, "ranker": false, "top_k": 5}}'
RULES = (
    '[{"name": "busy", "signal": "events_in", "op": ">", "threshold": 0, "for_windows": 1},'
    ' {"name": "mix_shift", "signal": "drift:category_mix", "severity": "critical"}]'
)


def read_topic(settings: Any, topic: str, want: Any, timeout_s: float = 30) -> list[dict]:
    """Validated documents of `topic`, once `want(docs)` holds (or the time is up)."""
    validate = load_contract(topic).validator
    consumer = tail(settings, topic)
    docs: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            docs += [validate(serde.loads(r.value)) for r in read_all(consumer, max_s=5)]
            if want(docs) or time.monotonic() > deadline:
                return docs
            time.sleep(0.5)
    finally:
        consumer.close()


def answered(recs: list[Recommendation]) -> int:
    return sum(len(r.event_ids) for r in recs)


def test_metrics_drift_and_alerts_flow_while_the_pipeline_runs(make_stack):
    port = free_port()
    stack = make_stack(
        workers=1,
        metrics_port=port,
        variants=VARIANTS,
        alert_rules=RULES,
        drift_warmup=0,
        drift_psi_chunk=40,
    )
    s = stack.settings
    reader = RecommendationReader(s, from_beginning=False)
    recs = []
    with EventProducer(s) as p:
        for i in range(20):
            cat = "Garden" if i < 10 else "Kitchen"
            p.publish_item(CatalogItem(f"i{i}", f"item {i}", (cat, f"{cat}-leaf")))
        p.flush()
        time.sleep(1.5)  # the catalog follower reads catalog.items in the background
        # 40 item events on Garden items, then (once those are processed) 40 on
        # Kitchen items: a category-mix shift. Every 4th is preceded by an impression.
        for phase in (0, 1):
            for n in range(40):
                item = f"i{10 * phase + n % 10}"
                user = f"shopper-{n % 8}"
                if n % 4 == 3:
                    p.track("impression", user, shown=[item, f"i{(n + 1) % 20}"])
                p.track("click" if n % 2 else "view", user, item_id=item)
            p.flush()
            deadline = time.monotonic() + 60
            while answered(recs) < 50 * (phase + 1) and time.monotonic() < deadline:
                recs += reader.poll(0.5)
    reader.close()
    assert answered(recs) == 100  # every event, by its user's list of its batch
    assert {r.variant for r in recs} == {"control", "blend_only"}
    assert all(len(r.items) <= 5 for r in recs if r.variant == "blend_only")

    drift = read_topic(
        s, DRIFT_STATS, lambda ds: any(d.get("immediate") for d in ds) and len(ds) >= 10
    )
    stats = [DriftStat.from_dict(d) for d in drift]
    fired = [d for d in stats if d.immediate]
    assert fired and fired[0].name == "category_mix" and fired[0].drift
    assert fired[0].detector == "PSI" and fired[0].statistic > 0.25
    assert {d.name for d in stats if not d.immediate} == {
        "hit_rate", "ctr", "ranker_score", "category_mix", "query_embedding"
    }  # fmt: skip

    alerts = [Alert.from_dict(a) for a in read_topic(s, ALERTS, lambda a: len(a) >= 2)]
    firing = {a.alert for a in alerts if a.state == "firing"}
    assert {"busy", "mix_shift"} <= firing
    assert "category_mix" in next(a for a in alerts if a.alert == "mix_shift").message

    windows = [
        MetricsWindow.from_dict(w)
        for w in read_topic(
            s,
            METRICS,
            lambda ws: merge_windows(MetricsWindow.from_dict(w) for w in ws).counts["in"] >= 101,
        )
    ]
    summary = merge_windows(windows).summary()
    assert summary["events_in"] == 101  # + the readiness probe
    assert set(summary["variants"]) == {"control", "blend_only"}
    assert sum(v["impressions"] for v in summary["variants"].values()) == 20
    assert sum(v["lists"] for v in summary["variants"].values()) == len(recs) + 1  # + probe
    # Each impression's first shown item is clicked right after it (odd n): CTR 1.
    assert summary["ctr"] == 1.0
    assert summary["latency_p99_ms"] is not None and summary["latency_p50_ms"] > 0

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'streamrec_events_total{outcome="valid",type="click"}' in body
    assert 'streamrec_quality_lists_total{variant="blend_only"}' in body
    assert "streamrec_event_latency_ms_bucket" in body
    assert 'streamrec_drift_detections_total{detector="category_mix"} 1.0' in body

    # `streamrec monitor --once --json` reads the same topics and adds the same windows up.
    flags = ["--bootstrap", s.kafka_bootstrap, "--topic-prefix", s.topic_prefix]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["monitor", "--once", "--json", *flags]) == 0
    snap = serde.loads(out.getvalue())
    assert snap["total"]["events_in"] == 101 and snap["total"]["ctr"] == 1.0
    assert snap["drift"].keys() == {"hit_rate", "ctr", "ranker_score", "category_mix",
                                    "query_embedding"}  # fmt: skip
    assert snap["detections"][0]["name"] == "category_mix"
    assert {t["metric"] for t in snap["ab_tests"]} == {"hit_rate", "ctr"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # the rich view renders the same snapshot
        assert main(["monitor", "--once", *flags]) == 0
    assert "A/B variants" in out.getvalue() and "category_mix" in out.getvalue()
