"""Privacy end to end: no raw id past ingest on any topic, sealed dead letters that
replay once fixed, and erasure of a user that a restart does not undo."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pytest

from streamrec import serde
from streamrec.cli import main
from streamrec.client import EventProducer, RecommendationReader, read_table
from streamrec.core.privacy import Pseudonymizer
from streamrec.core.profile import Profile
from streamrec.records import CatalogItem, RawEvent
from streamrec.settings import Settings
from streamrec.tools.admin import scan_deployment
from streamrec.tools.dlq import read_letters, replay, select

pytestmark = pytest.mark.integration

RAW = b"RAWID7q"  # in every raw user, event and session id of this test


def topics_holding(s: Settings, marker: bytes) -> dict[str, int]:
    """topic -> records whose key or value contains `marker`, over every topic of this
    test's stack (its prefix, and the worker's own `<app id>-...` topics)."""
    names, records = scan_deployment(s)
    found: dict[str, int] = {}
    for r in records:
        if marker in (r.key or b"") or marker in (r.value or b""):
            found[r.topic] = found.get(r.topic, 0) + 1
    assert len(names) >= 10, names  # events, lists, dlq, audit, metrics, scorer, changelog
    return found


def wait_lists(reader: RecommendationReader, event_ids: Iterable[str], timeout_s: float) -> None:
    want = {reader.event_ref(e) for e in event_ids}
    deadline = time.monotonic() + timeout_s
    while want and time.monotonic() < deadline:
        want -= {ref for r in reader.poll(0.3) for ref in r.event_ids}
    assert not want, f"{len(want)} events without a list"


def stored_profile(s: Settings, pseudonym: str) -> Profile | None:
    raw = read_table(s).get(pseudonym.encode())
    return None if raw is None else Profile.from_bytes(raw, pseudonym)[0]


def test_no_raw_id_past_ingest_sealed_dead_letters_and_erasure(make_stack, capsys):
    stack = make_stack(workers=1, max_event_bytes=1_500)
    s = stack.settings
    pseudo = Pseudonymizer(s.resolved_pseudonym_key())
    users = [f"{RAW.decode()}-user-{i}" for i in range(4)]
    now = int(time.time() * 1000)
    reader = RecommendationReader(s, from_beginning=False)
    sent: list[str] = []
    n = 0

    def ev(type: str, user: str, **fields: object) -> RawEvent:
        nonlocal n
        n += 1
        return RawEvent(f"{RAW.decode()}-ev-{n}", type, user, now - 5_000 + n,
                        session_id=f"{RAW.decode()}-sess-{user[-1]}", **fields)  # type: ignore[arg-type]  # fmt: skip

    big = ev("impression", users[1], shown=[f"sku-{i:06d}" for i in range(200)])  # > 1,500 B
    with EventProducer(s) as p:
        for i in range(6):
            p.publish_item(CatalogItem(f"sku-{i}", f"Item {i}", ("Home",), price=10.0 + i))
        p.flush()
        time.sleep(1.0)  # the catalog follower reads the catalog first
        for user in users:
            for e in (ev("view", user, item_id="sku-1"), ev("search", user, query="warm lamp"),
                      ev("click", user, item_id="sku-2"),
                      ev("purchase", user, item_id="sku-2", price=12.0),
                      ev("impression", user, shown=["sku-3", "sku-4"])):  # fmt: skip
                p.send_event(e)
                sent.append(e.event_id)
        p.send_event(RawEvent(sent[0], "view", users[0], now - 4_000, item_id="sku-1"))  # retry
        bad = f'{{"event_id": "{RAW.decode()}-bad", "type": "teleport", "user_id": "{users[2]}",'
        p.send_raw(f'{bad} "ts": {now}}}'.encode(), users[2].encode())  # schema
        p.send_raw(f'{{"user_id": "{users[0]}", broken'.encode(), users[0].encode())  # not JSON
        p.send_raw(serde.dumps(big.to_dict()), users[1].encode())  # valid, but oversized
    wait_lists(reader, sent, timeout_s=60)

    # Every topic: the raw ids are on storefront.events only.
    assert topics_holding(s, RAW) == {s.topic("storefront.events"): len(sent) + 4}

    # Dead letters: by reason, keyed by pseudonym, readable with the key only.
    letters = read_letters(s)
    assert sorted(x.dead.reason for x in letters) == ["not_json", "oversized", "schema"]
    assert {x.dead.user for x in letters} == {pseudo(u) for u in users[:3]}
    assert main(["dlq", "list", "--bootstrap", s.kafka_bootstrap,
                 "--topic-prefix", s.topic_prefix]) == 0  # fmt: skip
    listing = capsys.readouterr().out
    assert "3 dead letters" in listing and "oversized" in listing and RAW.decode() not in listing
    schema = select(letters, reason="schema")[0].dead
    flags = ["--bootstrap", s.kafka_bootstrap, "--topic-prefix", s.topic_prefix]
    assert main(["dlq", "show", schema.ref, *flags]) == 0  # an operator with the key reads it
    assert f'"user_id": "{users[2]}"' in capsys.readouterr().out

    # Erasure: returns once done; the list is gone from a reader within 1 s.
    erased = pseudo(users[2])
    assert reader.latest(users[2]) is not None
    with EventProducer(s) as p:
        record = p.forget(users[2])
    assert record.user == erased and record.action == "erase" and "profile" in record.detail
    deadline = time.monotonic() + 1.0
    while reader.latest(users[2]) is not None and time.monotonic() < deadline:
        reader.poll(0.1)
    assert reader.latest(users[2]) is None
    assert stored_profile(s, erased) is None  # the changelog holds a tombstone
    assert sorted(x.dead.reason for x in read_letters(s)) == ["not_json", "oversized"]  # hidden
    # Its old event ids are gone from de-duplication: a resend starts a new profile.
    with EventProducer(s) as p:
        p.send_event(RawEvent(sent[10], "view", users[2], now, item_id="sku-5"))
    wait_lists(reader, [sent[10]], timeout_s=30)

    # Restart with a higher size limit: nothing of the erased user comes back, and the
    # oversized dead letter, replayed, now gets its list (once).
    stack.settings = s.with_overrides(max_event_bytes=16_384)
    stack.stop_worker(stack.workers.pop())
    stack.start_worker()
    stack.wait_ready(timeout_s=90)
    with EventProducer(s) as p:
        p.send_event(RawEvent(f"{RAW.decode()}-after", "view", users[2], now + 1, item_id="sku-0"))
    wait_lists(reader, [f"{RAW.decode()}-after"], timeout_s=30)
    profile = stored_profile(s, erased)
    assert profile is not None and profile.events == 2 and profile.orders == 0
    assert profile.recent_item_ids() == ["sku-5", "sku-0"]

    oversized = select(read_letters(s), reason="oversized")
    assert replay(s, oversized) == 1
    wait_lists(reader, [big.event_id], timeout_s=30)
    assert replay(s, select(read_letters(s), reason="oversized"), log=lambda _m: None) == 0
    reader.close()

    # Still nowhere but the input topic (audit records, tombstones, replays included).
    holding = topics_holding(s, RAW)
    assert list(holding) == [s.topic("storefront.events")]
    assert RAW.decode() not in (stack.log_dir / "worker-0.log").read_text()  # both runs
