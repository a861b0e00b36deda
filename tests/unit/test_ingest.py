from streamrec import serde
from streamrec.contracts import STOREFRONT_EVENTS, load_contract
from streamrec.core.ingest import Deduplicator, Duplicate, Ingestor, RawMessage, Rejection
from streamrec.core.privacy import Pseudonymizer
from streamrec.datasets.malformed import malformed_events
from streamrec.records import Event

NOW = 1_700_000_000_000


def msg(doc, offset=0, partition=2) -> RawMessage:
    value = doc if isinstance(doc, bytes) else serde.dumps(doc)
    return RawMessage(value, b"k", partition, offset, NOW)


def make() -> Ingestor:
    return Ingestor(
        Pseudonymizer(b"k"),
        validate=load_contract(STOREFRONT_EVENTS).validator,
        dedup=Deduplicator(window_ms=60_000, max_ids=1000),
    )


def test_valid_event_is_pseudonymised_and_minimised():
    doc = {
        "event_id": "e1",
        "type": "purchase",
        "user_id": "alice",
        "ts": NOW,
        "item_id": "9",
        "price": 5.0,
        "quantity": 2,
        "context": {"device": "ios", "page": "/p"},
        "extra": "x",
    }
    ev = make().ingest(msg(doc, offset=41), NOW)
    assert isinstance(ev, Event)
    assert ev.user == Pseudonymizer(b"k")("alice")
    assert "alice" not in serde.dumps(ev.to_dict()).decode()
    assert (ev.item_id, ev.price, ev.quantity, ev.offset, ev.partition) == ("9", 5.0, 2, 41, 2)
    assert "context" not in ev.to_dict() and "extra" not in ev.to_dict()


def test_every_malformed_kind_is_rejected_with_its_reason():
    ing = make()
    for key, value, reason in malformed_events(11, NOW):
        result = ing.ingest(RawMessage(value, key, 0, 0, NOW), NOW)
        assert isinstance(result, Rejection), value[:80]
        assert result.reason == reason, (value[:80], result)
        assert result.detail


def test_rejection_messages_say_what_is_wrong():
    ing = make()
    base = {"event_id": "e", "user_id": "u", "ts": NOW}
    unknown = ing.ingest(msg(base | {"type": "teleport"}), NOW)
    assert isinstance(unknown, Rejection) and "unknown event type 'teleport'" in unknown.detail
    click = ing.ingest(msg(base | {"type": "click"}), NOW)
    assert isinstance(click, Rejection) and "item_id" in click.detail and "click" in click.detail
    assert click.event_id == Pseudonymizer(b"k").event_id("e")  # hashed, never the raw id


def test_null_and_oversized_values():
    ing = make()
    assert ing.ingest(RawMessage(None, None, 0, 0, NOW), NOW).reason == "not_object"  # type: ignore[union-attr]
    big = {
        "event_id": "e",
        "type": "view",
        "user_id": "u",
        "ts": NOW,
        "item_id": "1",
        "x": "y" * 20_000,
    }
    assert ing.ingest(msg(big), NOW).reason == "oversized"  # type: ignore[union-attr]


def test_timestamps_historical_ok_negative_and_future_not():
    ing = make()
    base = {"type": "view", "user_id": "u", "item_id": "1"}
    assert isinstance(ing.ingest(msg(base | {"event_id": "a", "ts": 881_250_949_000}), NOW), Event)
    for i, ts in enumerate([-1, NOW + 3_600_000, NOW // 1000]):
        r = ing.ingest(msg(base | {"event_id": f"b{i}", "ts": ts}), NOW)
        assert isinstance(r, Rejection) and r.reason in {"bad_timestamp", "schema"}


def test_duplicates_inside_the_window_are_dropped_outside_forgotten():
    ing = make()
    doc = {"event_id": "dup", "type": "view", "user_id": "u", "ts": NOW, "item_id": "1"}
    assert isinstance(ing.ingest(msg(doc), NOW), Event)
    assert ing.ingest(msg(doc), NOW) == Duplicate("view")
    later = {
        "event_id": "other",
        "type": "view",
        "user_id": "u",
        "ts": NOW + 120_000,
        "item_id": "1",
    }
    ing.ingest(msg(later), NOW + 120_000)
    assert isinstance(ing.ingest(msg(doc), NOW + 120_000), Event)  # aged out of the 60 s window


def test_dedup_memory_is_bounded_and_keeps_the_newest_ids():
    d = Deduplicator(window_ms=10**12, max_ids=100)
    for i in range(1000):
        d.seen(f"u{i % 7}", f"e{i}", i)
        assert len(d) <= 100
    assert all(d.seen(f"u{i % 7}", f"e{i}", 1000) for i in range(950, 1000))  # newest half
    assert not d.seen("u0", "e0", 1000)


def test_dedup_remembers_at_least_half_the_window_and_forgets_after_it():
    d = Deduplicator(window_ms=60_000, max_ids=10**6)
    d.seen("u", "early", 0)
    for t in range(0, 30_000, 1_000):
        d.seen("u", f"x{t}", t)
    assert d.seen("u", "early", 29_000)  # within half the window: always a duplicate
    for t in range(30_000, 200_000, 1_000):
        d.seen("v", f"y{t}", t)
    assert not d.seen("u", "early", 200_000)  # past the window: forgotten


def test_forgetting_a_user_drops_exactly_their_dedup_ids_in_both_generations():
    d = Deduplicator(window_ms=60_000, max_ids=10**6)
    for t in range(0, 50_000, 1_000):  # spans a generation turnover (half the window)
        d.seen("alice", f"a{t}", t)
        d.seen("bob", f"b{t}", t)
    assert d.seen("alice", "a0", 50_000) and d.seen("bob", "b0", 50_000)
    assert d.forget("alice") == 50 and d.forget("alice") == 0
    assert len(d) == 50
    assert not d.seen("alice", "a0", 50_000)  # a new event for a new profile
    assert d.seen("bob", "b0", 50_000) and d.seen("bob", "b49000", 50_000)
