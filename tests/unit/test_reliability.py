"""Lose nothing, stop for nothing: the core's side (no broker).

Replays after a crash are applied once, bad state is repaired on read, extreme
values never make state non-finite, a list that cannot be encoded costs its
own event only, and a failing batch-wide step falls back to one event at a time.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.engine import BatchOutput, DictProfileStore, Engine
from streamrec.core.ingest import RawMessage
from streamrec.core.monitoring.counters import Counters
from streamrec.core.profile import Profile
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.records import CatalogItem, RecItem, Recommendation
from streamrec.settings import Settings

from .stores import BytesProfileStore

NOW = 1_800_000_000_000


def engine() -> Engine:
    e = build_engine(Settings.from_env({}, scorer_enabled=False))
    for item in SyntheticShop(users=1, items=200, seed=1).catalog:
        e.upsert_item(item)
    return e


def messages(n: int, users: int = 40, partitions: int = 3) -> list[RawMessage]:
    """Events as Kafka delivers them: per partition, offsets counting up."""
    shop = SyntheticShop(users=users, items=200, seed=5)
    next_offset = [0] * partitions
    out = []
    for e in shop.events(n, start_ts=NOW - 10 * n, step_ms=10):
        p = hash(e.user_id) % partitions
        out.append(RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), p, next_offset[p], NOW))
        next_offset[p] += 1
    return out


def user_state(store: DictProfileStore) -> dict[str, tuple]:
    """What a user's own events decide (not the globally learned value estimate)."""
    return {
        u: (p.counts, p.recent, p.purchased, p.orders, p.spend, p.affinity, p.first_seen,
            p.last_seen, p.session_id, p.session_events)
        for u, p in store.items()
    }  # fmt: skip


def run(e: Engine, store: DictProfileStore, msgs: list[RawMessage], batch: int = 50) -> BatchOutput:
    out = BatchOutput()
    for i in range(0, len(msgs), batch):
        out.extend(e.process_batch(msgs[i : i + batch], store, NOW))
    return out


def test_events_replayed_after_a_crash_are_answered_but_applied_once():
    msgs = messages(600)
    once = DictProfileStore()
    run(engine(), once, msgs)

    # A worker that crashed after 400 events, committed only up to 250: the next
    # one re-reads 250..599 with the profiles as they were stored at the crash.
    crashed = DictProfileStore()
    run(engine(), crashed, msgs[:400])
    e = engine()  # a new process: its de-duplication window starts empty
    out = run(e, crashed, msgs[250:])
    assert user_state(crashed) == user_state(once)
    assert out.counters.counts["replayed"] == 150
    # Every replayed event is answered again: by its user's list of its batch.
    assert sum(len(r.event_ids) for r in out.recommendations) == 350
    assert e.counters.snapshot()["replayed"] == 150


def test_a_profile_remembers_the_last_offset_per_partition():
    p = Profile.new("u")
    p.mark_applied(2, 10)
    p.mark_applied(2, 7)  # never backwards
    p.mark_applied(0, 3)
    assert p.applied(2, 10) and p.applied(2, 4) and not p.applied(2, 11)
    assert not p.applied(1, 0) and p.applied(0, 3)
    assert Profile.from_bytes(p.to_bytes())[0].offsets == {"2": 10, "0": 3}


@pytest.mark.parametrize(
    "stored",
    [
        b'{"user": "u", "spend": null, "orders": 2}',  # inf spend written by an old version
        b'{"user": "u", "spend": "12.5", "value": null, "affinity": {"A": null, "B": 1.5}}',
        b'{"user": "u", "recent": [["a", "view"], 5, ["b", "click", 3]], "counts": {"view": -1}}',
        b'{"user": "u", "offsets": {"0": "x"}, "purchased": "a", "vectors": 7}',
        b'{"user": "u", "some_future_field": 1}',
        b'{"user": ',  # not JSON
        b"[1, 2]",  # not an object
        b'{"not_a_field": 1, "spend": 1}',
    ],
)
def test_stored_state_that_is_corrupt_is_repaired_on_read_and_keeps_working(stored):
    profile, repaired = Profile.from_bytes(stored, "u")
    assert repaired
    assert math.isfinite(profile.spend)
    back, again = Profile.from_bytes(profile.to_bytes(), "u")
    assert back == profile and not again  # what a repair writes back reads clean

    e = engine()
    store = BytesProfileStore()
    user = e.ingestor.pseudonymize("alice")
    store[user] = stored
    doc = {"event_id": "p1", "type": "purchase", "user_id": "alice", "ts": NOW - 5,
           "item_id": "sku-1", "price": 10.0}  # fmt: skip
    out = e.process_batch([RawMessage(serde.dumps(doc), b"alice", 0, 0, NOW)], store, NOW)
    assert len(out.recommendations) == 1 and not out.dead_letters
    assert store.repaired == 1
    assert Profile.from_bytes(store[user])[0].orders >= 1


def test_extreme_purchases_keep_every_number_finite():
    e, store = engine(), DictProfileStore()
    docs = [
        {"event_id": f"p{i}", "type": "purchase", "user_id": "whale", "ts": NOW - 100 + i,
         "item_id": f"sku-{i}", "price": 1e12, "quantity": 10_000}
        for i in range(50)
    ]  # fmt: skip
    docs.append({"event_id": "inf", "type": "purchase", "user_id": "whale", "ts": NOW - 10,
                 "item_id": "sku-9", "price": 1e308, "quantity": 2})  # fmt: skip
    docs.append({"event_id": "v", "type": "view", "user_id": "whale", "ts": NOW - 5,
                 "item_id": "sku-3"})  # fmt: skip
    msgs = [RawMessage(serde.dumps(d), b"whale", 0, i, NOW) for i, d in enumerate(docs)]
    out = e.process_batch(msgs, store, NOW)
    [dead] = [d for _k, d in out.dead_letters]
    ref = e.ingestor.pseudonymize.event_id
    assert dead.event_id == ref("inf") and dead.reason == "schema" and "price" in dead.detail
    ((rec,),) = [out.recommendations]  # one list answers every other event
    assert rec.event_ids == tuple(ref(d["event_id"]) for d in docs if d["event_id"] != "inf")
    p = next(iter(store.values()))
    assert math.isfinite(p.spend) and p.spend == 50 * 1e12 * 10_000
    for rec in out.recommendations:
        assert math.isfinite(rec.user_value)
        assert serde.loads(serde.dumps(rec.to_dict()))["user_value"] is not None


def test_a_non_finite_number_never_reaches_the_wire_as_null():
    item = RecItem("a", float("nan"), "trending", features=(("covisit", float("inf")),))
    bad = Recommendation("u", (item,), "m", "e", "view", 1, 1, 1, user_value=float("inf"))
    ok = Recommendation("v", (RecItem("b", 0.5, "trending"),), "m", "f", "view", 1, 1, 1)
    out = BatchOutput(recommendations=[bad, ok])
    wire = engine().encode(out, NOW)
    d = serde.loads(wire[0][1])
    assert d["user_value"] == 0.0 and d["items"][0]["score"] == 0.0
    assert d["items"][0]["features"] == {"covisit": 0.0}
    assert serde.loads(wire[1][1]) == ok.to_dict()  # finite lists are written as they are


def test_a_list_that_cannot_be_encoded_dead_letters_the_events_it_answers_only():
    e, store = engine(), DictProfileStore()
    msgs = messages(60, users=20)
    out = e.ingest_batch(msgs, NOW)
    result = e.apply_batch(out, store, NOW)
    n = len(result.recommendations)
    i = next(i for i, r in enumerate(result.recommendations) if len(r.event_ids) > 1)
    bad = result.recommendations[i]
    result.recommendations[i] = dataclasses.replace(  # an object orjson cannot encode
        bad,
        encoder_version=object(),  # type: ignore[arg-type]
    )
    wire = e.encode(result, NOW)
    assert len(wire) == n - 1 and all(j != i for _k, _v, j in wire)
    assert [d.event_id for _key, d in result.dead_letters] == list(bad.event_ids)
    assert {d.reason for _key, d in result.dead_letters} == {"encode_error"}
    c = result.counters.snapshot()
    assert c["in"] == 60 == c["valid"] + c["dlq"] + c["duplicates"]
    assert c["dlq"] == len(bad.event_ids) and c["recommendations"] == n - 1


def test_a_failing_batch_step_falls_back_to_one_event_at_a_time():
    e, store = engine(), DictProfileStore()
    real = e._search_queries
    calls = {"n": 0}

    def fails_once(ingested, listed):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("index went away")
        return real(ingested, listed)

    e._search_queries = fails_once  # type: ignore[method-assign]
    msgs = messages(40)
    out = e.process_batch(msgs, store, NOW)
    assert len(out.recommendations) == 40 and not out.dead_letters  # one at a time
    assert calls["n"] == 41  # the batch, then each event alone


def test_counters_merge_and_unpublish_keep_the_balance():
    window, batch = Counters(), Counters()
    batch.counts.update({"in": 3, "valid": 3, "recommendations": 3})
    batch.by_type.update({"view": 3})
    batch.unpublish("publish_error", "view")
    window.merge(batch)
    c = window.snapshot()
    assert (c["in"], c["valid"], c["dlq"], c["recommendations"]) == (3, 2, 1, 2)
    assert window.per_type()["view"] == {"in": 3, "valid": 2, "dlq": 1, "duplicates": 0}
    assert window.dlq_reasons == {"publish_error": 1}


def test_catalog_prices_past_the_contract_are_rejected():
    from streamrec.contracts import CATALOG_ITEMS, load_contract
    from streamrec.core.ingest import Rejection, parse_document

    validate = load_contract(CATALOG_ITEMS).validator
    ok = CatalogItem("a", "A", price=99.0).to_dict()
    assert not isinstance(parse_document(serde.dumps(ok), validate, "item"), Rejection)
    huge = parse_document(serde.dumps(ok | {"price": 1e300}), validate, "item")
    assert isinstance(huge, Rejection) and huge.reason == "schema"
