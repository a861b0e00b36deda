import base64

from streamrec import serde
from streamrec.core.engine import DictProfileStore, Engine
from streamrec.core.ingest import RawMessage
from streamrec.datasets.malformed import malformed_events
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.records import DeadLetter
from streamrec.settings import Settings

NOW = 1_800_000_000_000


def raw_batch(n=300, bad=11, seed=3):
    shop = SyntheticShop(users=50, items=200, seed=seed)
    msgs = [
        RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), 0, i, NOW - 10)
        for i, e in enumerate(shop.events(n, start_ts=NOW - 10 * n, step_ms=10))
    ]
    for j, (key, value, _) in enumerate(malformed_events(bad, NOW)):
        msgs.insert(j * 20, RawMessage(value, key, 1, 10_000 + j, NOW - 10))
    msgs += msgs[5:15]  # producer retries: duplicates
    return msgs


def test_counts_balance_and_every_valid_event_gets_a_list():
    engine = Engine.from_settings(Settings.from_env({}))
    msgs = raw_batch()
    out = engine.process_batch(msgs, DictProfileStore(), NOW)
    c = engine.counters.snapshot()
    assert c["in"] == len(msgs) == c["valid"] + c["dlq"] + c["duplicates"]
    assert c["dlq"] == 11 and c["duplicates"] == 10
    assert len(out.recommendations) == c["valid"] == len(out.events)
    for ev, rec in zip(out.events, out.recommendations, strict=True):
        assert rec.user == ev.user and rec.event_id == ev.event_id
        assert rec.model_version
    # Only the very first events of an empty system can have nothing to show.
    assert all(r.items for r in out.recommendations[10:])


def test_dead_letters_carry_reason_position_and_original_bytes():
    engine = Engine.from_settings(Settings.from_env({}))
    msgs = raw_batch(n=20)
    out = engine.process_batch(msgs, DictProfileStore(), NOW)
    by_offset = {m.offset: m for m in msgs}
    for key, dead in out.dead_letters:
        wire = DeadLetter.from_dict(serde.loads(serde.dumps(dead.to_dict())))
        assert wire.original == by_offset[dead.offset].value
        assert base64.b64decode(dead.to_dict()["original"]) == by_offset[dead.offset].value
        assert key == by_offset[dead.offset].key and dead.partition == 1 and dead.reason


def test_a_bug_costs_one_event_not_the_worker():
    engine = Engine.from_settings(Settings.from_env({}))
    original = engine.recommender.recommend
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return original(*a, **kw)

    engine.recommender.recommend = flaky  # type: ignore[method-assign]
    msgs = raw_batch(n=10, bad=0)[:10]
    out = engine.process_batch(msgs, DictProfileStore(), NOW)
    assert len(out.recommendations) == 9
    ((_, dead),) = out.dead_letters
    assert dead.reason == "processing_error" and "boom" in dead.detail


def test_batching_does_not_change_the_lists():
    msgs = raw_batch(n=400, bad=0)
    one = Engine.from_settings(Settings.from_env({}))
    many = Engine.from_settings(Settings.from_env({}))
    store1, store2 = DictProfileStore(), DictProfileStore()
    a = one.process_batch(msgs, store1, NOW).recommendations
    b = []
    for i in range(0, len(msgs), 7):
        b += many.process_batch(msgs[i : i + 7], store2, NOW).recommendations
    assert [r.items for r in a] == [r.items for r in b]
