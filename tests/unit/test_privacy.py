"""Privacy in the core: hashed ids past ingest, sealed dead letters, erasure of a user."""

from __future__ import annotations

import pytest

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.deadletters import DeadLetterWriter
from streamrec.core.engine import DictProfileStore
from streamrec.core.ingest import RawMessage, Rejection
from streamrec.core.privacy import Pseudonymizer, Sealer, SealError
from streamrec.records import DeadLetter
from streamrec.settings import Secret, Settings

NOW = 1_700_000_000_000


def event(
    n: int, user: str, type: str = "view", offset: int | None = None, **fields: object
) -> RawMessage:
    doc = {"event_id": f"ord-{user}-{n}", "type": type, "user_id": user, "ts": NOW - 1_000 + n}
    if type in ("view", "click", "purchase"):
        doc["item_id"] = fields.pop("item_id", f"sku-{n % 5}")
    doc |= fields
    return RawMessage(serde.dumps(doc), user.encode(), 0, n if offset is None else offset, NOW)


def test_no_raw_user_event_or_session_id_gets_past_ingest():
    engine = build_engine(Settings.from_env({}))
    store = DictProfileStore()
    msgs = [event(i, "alice-RAW", session_id="sess-alice-RAW") for i in range(5)]
    msgs.append(event(5, "alice-RAW", "purchase", price=9.5))
    out = engine.process_batch(msgs, store, NOW)
    wire = b"".join(serde.dumps(r.to_dict()) for r in out.recommendations)
    wire += b"".join(p.to_bytes() for p in store.values())
    assert b"RAW" not in wire
    ref = engine.ingestor.pseudonymize.event_id
    ((rec,),) = [out.recommendations]
    assert rec.event_ids == tuple(ref(f"ord-alice-RAW-{i}") for i in range(6))


def test_a_dead_letter_keeps_no_readable_identity_and_opens_with_the_key():
    s = Settings.from_env({})
    engine = build_engine(s)
    bad = RawMessage(b'{"event_id": "ord-bob-RAW-1", "type": "teleport", "user_id": "bob-RAW",'
                     b' "ts": 1700000000000}', b"bob-RAW", 3, 42, NOW)  # fmt: skip
    out = engine.process_batch([bad], DictProfileStore(), NOW)
    [(key, dead)] = out.dead_letters
    wire = serde.dumps(dead.to_dict())
    assert b"RAW" not in wire and b"RAW" not in (key or b"")
    assert key == engine.ingestor.pseudonymize("bob-RAW").encode() == (dead.user or "").encode()
    assert dead.event_id == engine.ingestor.pseudonymize.event_id("ord-bob-RAW-1")
    back = DeadLetter.from_dict(serde.loads(wire))
    assert engine.dead_letters.open(back) == (b"bob-RAW", bad.value)
    # Another key does not open it; moved to another record, it does not open either.
    other = DeadLetterWriter(engine.ingestor.pseudonymize, Sealer(b"x" * 32))
    with pytest.raises(SealError, match="another key"):
        other.open(back)
    moved = DeadLetter.from_dict(serde.loads(wire) | {"offset": 43})
    with pytest.raises(SealError):
        engine.dead_letters.open(moved)
    # The DLQ key setting is the one that opens it.
    own = build_engine(s.with_overrides(dlq_key=Secret("d" * 32)))
    with pytest.raises(SealError):
        own.dead_letters.open(back)


def test_an_unparseable_event_is_keyed_by_the_pseudonym_of_its_key():
    writer = build_engine(Settings.from_env({})).dead_letters
    msg = RawMessage(b"{not json carol-RAW", b"carol-RAW", 0, 1, NOW)
    key, _dead = writer.write(Rejection("not_json", "bad"), msg, NOW)
    assert key == Pseudonymizer(Settings().resolved_pseudonym_key())("carol-RAW").encode()
    unkeyed = RawMessage(b"\x00", None, 0, 2, NOW)
    assert writer.write(Rejection("not_json", "bad"), unkeyed, NOW)[0] is None


def test_forget_erases_the_profile_dedup_ids_and_feedback_state_and_starts_over():
    engine = build_engine(Settings.from_env({}, ranker_enabled=True))
    store = DictProfileStore()
    msgs = [event(i, "dave") for i in range(6)] + [event(6, "erin")]
    msgs.append(event(7, "dave", "impression", shown=["sku-1", "sku-2"]))
    engine.process_batch(msgs, store, NOW)
    user = engine.ingestor.pseudonymize("dave")
    assert store[user].events == 7
    assert engine.recommender.ranker is not None
    assert engine.recommender.ranker.stats()["pending_users"] >= 1
    forget = RawMessage(serde.dumps({"event_id": "f-1", "type": "forget", "user_id": "dave",
                                     "ts": NOW - 10}), b"dave", 0, 8, NOW)  # fmt: skip
    # The same batch: an event before the erasure (gone with it), one after (a new profile).
    after = event(9, "dave", item_id="sku-4")
    out = engine.process_batch([event(10, "erin"), forget, after], store, NOW)
    [audit] = out.erasures
    assert (
        audit.user == user and audit.action == "erase" and "dedup_ids=8" in audit.detail
    )  # 7 events and the forget
    assert audit.event_id == engine.ingestor.pseudonymize.event_id("f-1")
    assert out.tombstones == []  # dave has a newer list in this batch: it replaces the old
    assert store[user].events == 1 and store[user].recent_item_ids() == ["sku-4"]
    assert engine.recommender.ranker.stats()["pending_users"] == 0
    assert [r.user for r in out.recommendations][-1] == user
    # The erased user's old event ids are no longer duplicates: a resend is a new event.
    again = engine.process_batch([event(3, "dave", offset=12)], store, NOW)
    assert len(again.recommendations) == 1 and store[user].events == 2
    # Forgotten alone: the profile is deleted and the latest list gets a tombstone.
    forget2 = RawMessage(serde.dumps({"event_id": "f-2", "type": "forget", "user_id": "dave",
                                      "ts": NOW - 5}), b"dave", 0, 13, NOW)  # fmt: skip
    gone = engine.process_batch([forget2], store, NOW)
    assert user not in store and gone.tombstones == [user] and not gone.recommendations
    c = engine.counters.snapshot()
    assert c["in"] == c["valid"] + c["dlq"] + c["duplicates"] and c["erasures"] == 2
