"""A producer's retry is a duplicate even after a restart: event ids kept in the profile."""

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore
from streamrec.core.ingest import RawMessage
from streamrec.core.profile import Profile, ProfileUpdater
from streamrec.records import Event
from streamrec.settings import Settings

NOW = 1_800_000_000_000


def msg(event_id, offset, item="42", user="alice"):
    doc = {"event_id": event_id, "type": "view", "user_id": user, "ts": NOW - 1_000 + offset,
           "item_id": item}  # fmt: skip
    return RawMessage(serde.dumps(doc), user.encode(), 0, offset, NOW)


def test_a_retry_after_a_restart_is_a_duplicate_and_a_replay_is_answered_again():
    profiles = DictProfileStore()  # what the changelog gives a restarted worker
    first = build_engine(Settings.from_env({}))
    out = first.process_batch([msg("ord-1", 5), msg("ord-2", 6)], profiles, NOW)
    assert [len(r.event_ids) for r in out.recommendations] == [2]  # one list per user

    restarted = build_engine(Settings.from_env({}))  # its in-memory window is empty
    out = restarted.process_batch(
        [msg("ord-1", 5), msg("ord-1", 9), msg("ord-3", 10)], profiles, NOW
    )
    c = restarted.counters.snapshot()
    assert c["in"] == 3 and c["duplicates"] == 1 and c["valid"] == 2 and c["replayed"] == 1
    # The replay (same offset) is answered again, the retry (new offset) is not.
    assert [r.event_ids for r in out.recommendations] == [
        tuple(first.ingestor.pseudonymize.event_id(e) for e in ("ord-1", "ord-3"))
    ]
    assert restarted.counters.per_type()["view"] == {
        "in": 3, "valid": 2, "dlq": 0, "duplicates": 1
    }  # fmt: skip


def test_another_users_event_with_the_same_id_is_not_a_duplicate():
    profiles = DictProfileStore()
    build_engine(Settings.from_env({})).process_batch([msg("ord-1", 1)], profiles, NOW)
    restarted = build_engine(Settings.from_env({}))
    out = restarted.process_batch([msg("ord-1", 2, user="bob")], profiles, NOW)
    assert len(out.recommendations) == 1


def test_the_ids_kept_are_capped_and_cost_8_bytes_each():
    up = ProfileUpdater(event_ids=16)
    p = Profile.new("u_1")
    base = len(p.to_bytes())
    for i in range(1_000):
        up.update(p, Event(f"e{i}", "search", "u_1", NOW + i, query="tv"))
    assert len(p.seen) == 16
    assert p.has_seen("e999") and p.has_seen("e984") and not p.has_seen("e983")
    back, repaired = Profile.from_bytes(p.to_bytes())
    assert back.seen == p.seen and not repaired
    assert len(serde.loads(p.to_bytes())["seen"]) == 172  # base64 of 16 x 8 bytes
    assert len(p.to_bytes()) - base < 300  # with the counts and query these events set


def test_off_keeps_nothing():
    up = ProfileUpdater(event_ids=0)
    p = Profile.new("u_1")
    up.update(p, Event("e1", "view", "u_1", NOW, item_id="a"))
    assert p.seen == [] and b'"seen":""' in p.to_bytes()


def test_unreadable_stored_keys_are_dropped_and_counted_as_a_repair():
    p = Profile.new("u_1")
    ProfileUpdater().update(p, Event("e1", "view", "u_1", NOW, item_id="a"))
    for bad in ("***", "AAAA", 7):  # not base64; not 8 bytes a key; not a string
        doc = serde.loads(p.to_bytes())
        doc["seen"] = bad
        back, repaired = Profile.from_bytes(serde.dumps(doc), "u_1")
        assert repaired and back.seen == [] and back.recent == p.recent
