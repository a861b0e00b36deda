import base64
import hashlib

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore
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


def test_counts_balance_and_every_valid_event_is_answered_by_one_list_per_user():
    engine = build_engine(Settings.from_env({}))
    msgs = raw_batch()
    out = engine.process_batch(msgs, DictProfileStore(), NOW)
    c = engine.counters.snapshot()
    assert c["in"] == len(msgs) == c["valid"] + c["dlq"] + c["duplicates"]
    assert c["dlq"] == 11 and c["duplicates"] == 10
    users = [e.user for e in out.events]
    assert len(out.events) == c["valid"] and len(set(users)) < len(users)
    # One list per user, after their last event, answering all of theirs in order.
    assert c["recommendations"] == len(out.recommendations) == len(set(users))
    by_user = {r.user: r for r in out.recommendations}
    assert len(by_user) == len(out.recommendations)
    for user, rec in by_user.items():
        assert rec.event_ids == tuple(e.event_id for e in out.events if e.user == user)
        assert rec.model_version and rec.items
        assert rec.event_type == next(e.type for e in reversed(out.events) if e.user == user)


def test_dead_letters_carry_reason_position_and_sealed_original_bytes():
    engine = build_engine(Settings.from_env({}, dlq_original_max_bytes=4_096))
    msgs = raw_batch(n=20)
    out = engine.process_batch(msgs, DictProfileStore(), NOW)
    by_offset = {m.offset: m for m in msgs}
    pseudonym = engine.ingestor.pseudonymize
    truncated = 0
    for key, dead in out.dead_letters:
        msg = by_offset[dead.offset]
        original = msg.value
        assert original is not None
        wire = DeadLetter.from_dict(serde.loads(serde.dumps(dead.to_dict())))
        assert wire == dead
        assert base64.b64decode(dead.to_dict()["sealed"]) == dead.sealed
        assert "original" not in dead.to_dict() and original[:40] not in dead.sealed
        opened_key, opened = engine.dead_letters.open(wire)
        assert opened_key == msg.key
        if len(original) <= 4_096:
            assert opened == original and not dead.truncated
        else:  # the oversized one: its start, its size and its hash, within the bound
            truncated += 1
            assert dead.truncated and opened == original[:4_096]
            assert dead.original_size == len(original)
            assert dead.original_sha256 == hashlib.sha256(original).hexdigest()
            assert len(serde.dumps(dead.to_dict())) < 4_096 * 4 / 3 + 2_000
        # Keyed by the user's pseudonym (from the body, else from the raw key).
        assert msg.key is not None and key == pseudonym(msg.key.decode()).encode()
        assert dead.partition == 1 and dead.reason


def test_a_bug_costs_one_event_not_the_worker():
    engine = build_engine(Settings.from_env({}))
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
    ((_, dead),) = out.dead_letters
    assert dead.reason == "processing_error" and "boom" in dead.detail
    answered = [e for r in out.recommendations for e in r.event_ids]
    assert len(answered) == len(set(answered)) == 9 and dead.event_id not in answered


def _lists(msgs, size):
    engine, store, lists = build_engine(Settings.from_env({})), DictProfileStore(), []
    for i in range(0, len(msgs), size):
        lists += engine.process_batch(msgs[i : i + size], store, NOW).recommendations
    return lists


def test_the_same_batches_give_the_same_lists():
    msgs = raw_batch(n=400, bad=0)
    a, b = _lists(msgs, 7), _lists(msgs, 7)
    assert [(r.event_ids, r.items) for r in a] == [(r.event_ids, r.items) for r in b]


def test_a_batchs_list_is_the_one_after_the_users_last_event_in_it():
    msgs = raw_batch(n=400, bad=0)
    one_by_one = {r.event_id: r.items for r in _lists(msgs, 1)}
    batched = _lists(msgs, 25)
    assert len(batched) < len(one_by_one)
    assert sum(len(r.event_ids) for r in batched) == len(one_by_one)
    assert [r.items for r in batched] == [one_by_one[r.event_id] for r in batched]


# -- query vectors ----------------------------------------------------------------


def _search(user, query, n):
    doc = {"event_id": f"e{n}", "type": "search", "user_id": user, "ts": NOW - 100 + n}
    if query is not None:
        doc["query"] = query
    return RawMessage(serde.dumps(doc), user.encode(), 0, n, NOW - 100)


def _vector_engine():
    import numpy as np

    engine = build_engine(Settings.from_env({}, partitions=1))
    space = {"shoes": [1.0, 0.0, 0.0], "sink": [0.0, 1.0, 0.0], "lamp": [0.0, 0.0, 1.0]}
    for word, vec in space.items():
        for k in range(3):
            v = np.array(vec, dtype=np.float32) + 0.1 * k
            engine.item_vectors.upsert(f"{word}-{k}", "enc@1", v / np.linalg.norm(v))
    engine.item_vectors.mark_complete("enc@1", 0, ts=1)
    calls = []

    def embed(texts, version):
        from streamrec.core.engine import QueryVectors

        calls.append((list(texts), version))
        vecs = np.array([space.get(t.split()[-1], [0.0, 0.0, 0.0]) for t in texts], np.float32)
        return QueryVectors("enc@1", texts, vecs, np.array([t in space for t in texts]))

    return engine, embed, calls


def test_search_lists_come_from_query_vectors_from_the_first_event():
    engine, embed, calls = _vector_engine()
    msgs = [_search("new-user", "sink", 1), _search("other", "sink", 2), _search("x", "shoes", 3)]
    out = engine.process_batch(msgs, DictProfileStore(), NOW, embed=embed)
    assert calls == [(["sink", "shoes"], "enc@1")]  # one request per batch, de-duplicated
    first = out.recommendations[0]
    assert first.encoder_version == "enc@1" and first.flags == ()
    assert first.item_ids[:3] == ["sink-0", "sink-1", "sink-2"]
    assert first.items[0].reason == "matches your search"
    assert out.recommendations[2].item_ids[0] == "shoes-0"
    out = engine.process_batch([_search("y", "sink", 4)], DictProfileStore(), NOW, embed=embed)
    assert len(calls) == 1 and out.recommendations[0].item_ids[0] == "sink-0"  # cached
    assert engine.counters.snapshot()["query_vector"] == 4


def test_without_the_scorer_search_events_flow_on_flagged():
    engine, _embed, _calls = _vector_engine()
    msgs = [_search("u", "sink", 1), _search("v", "   ", 2), _search("w", None, 3)]
    out = engine.process_batch(msgs, DictProfileStore(), NOW, embed=lambda texts, v: None)
    assert [r.flags for r in out.recommendations] == [("no_query_vector",)] * 2
    assert len(out.dead_letters) == 1  # a search without a query breaks the contract
    c = engine.counters.snapshot()
    assert c["no_query_vector"] == 2 and c["valid"] == 2


def test_query_vectors_of_another_model_version_are_not_used():
    import numpy as np

    from streamrec.core.engine import QueryVectors

    engine, _embed, _calls = _vector_engine()
    vec = np.array([[0.0, 1.0, 0.0]], np.float32)
    stale = QueryVectors("enc@0", ["sink"], vec, np.ones(1, bool))
    engine.add_query_vectors(stale)
    assert engine.missing_queries(engine.ingest_batch([_search("u", "sink", 1)], NOW)) == ["sink"]


def test_item_events_without_a_vector_are_flagged():
    engine, _embed, _calls = _vector_engine()
    view = {"event_id": "v1", "type": "view", "user_id": "u", "ts": NOW - 5, "item_id": "nope"}
    known = dict(view, event_id="v2", item_id="lamp-0")
    msgs = [RawMessage(serde.dumps(d), b"u", 0, i, NOW) for i, d in enumerate([view, known])]
    out = engine.process_batch(msgs[:1], DictProfileStore(), NOW)
    out.extend(engine.process_batch(msgs[1:], DictProfileStore(), NOW))
    assert [r.flags for r in out.recommendations] == [("no_item_vector",), ()]
    assert engine.counters.snapshot()["no_item_vector"] == 1


def test_only_users_waiting_for_a_query_vector_wait_and_their_order_holds():
    engine, embed, _calls = _vector_engine()

    def view(user, n):
        doc = {"event_id": f"v{n}", "type": "view", "user_id": user, "ts": NOW - 50 + n,
               "item_id": "lamp-0"}  # fmt: skip
        return RawMessage(serde.dumps(doc), user.encode(), 0, n, NOW - 100)

    msgs = [view("a", 1), _search("a", "sink", 2), view("b", 3), view("a", 4), view("b", 5)]
    seen_at_embed: list[int] = []
    store = DictProfileStore()

    def counting_embed(texts, version):
        seen_at_embed.append(sum(p.events for p in store.values()))
        return embed(texts, version)

    out = engine.process_batch(msgs, store, NOW, embed=counting_embed)
    assert seen_at_embed == [2]  # b's two events were done before the scorer answered
    ref = engine.ingestor.pseudonymize.event_id  # lists carry hashed event ids
    assert [r.event_ids for r in out.recommendations] == [
        (ref("v3"), ref("v5")),
        (ref("v1"), ref("e2"), ref("v4")),
    ]
