from streamrec.core.profile import Profile, ProfileUpdater
from streamrec.records import Event

DAY = 86_400_000


def ev(i, etype="view", item="1", ts=1_000, **kw) -> Event:
    return Event(f"e{i}", etype, "u_1", ts, item_id=item if etype != "search" else None, **kw)


def test_recent_items_bounded_latest_first_and_unique():
    up, p = ProfileUpdater(recent_items=3), Profile.new("u_1")
    for i, item in enumerate(["a", "b", "c", "a", "d"]):
        up.update(p, ev(i, item=item, ts=1_000 + i))
    assert p.recent_item_ids() == ["c", "a", "d"]


def test_counts_first_last_seen_and_query():
    up, p = ProfileUpdater(), Profile.new("u_1")
    up.update(p, ev(1, ts=5_000))
    up.update(p, Event("e2", "search", "u_1", 9_000, query="red shoes"))
    up.update(p, ev(3, ts=4_000))  # out of order
    assert p.counts == {"view": 2, "search": 1}
    assert (p.first_seen, p.last_seen, p.last_query) == (4_000, 9_000, "red shoes")


def test_category_affinity_decays_with_half_life():
    up, p = ProfileUpdater(affinity_half_life_s=86_400), Profile.new("u_1")
    up.update(p, ev(1, "purchase", ts=DAY, price=1.0), ("Books",))
    up.update(p, ev(2, "view", item="2", ts=2 * DAY), ("Garden",))
    assert abs(p.affinity["Books"] - 2.5) < 1e-9  # 5.0 halved after one day
    assert abs(p.affinity["Garden"] - 1.0) < 1e-9


def test_purchases_sum_spend_and_remember_items():
    up, p = ProfileUpdater(), Profile.new("u_1")
    up.update(p, ev(1, "purchase", item="9", price=2.5, quantity=4))
    assert (p.orders, p.spend, p.purchased) == (1, 10.0, ["9"])


def test_sessions_by_id_and_by_inactivity_gap():
    up, p = ProfileUpdater(session_gap_s=1800), Profile.new("u_1")
    up.update(p, ev(1, ts=0 + 10**12))
    up.update(p, ev(2, item="2", ts=10**12 + 60_000))
    first = p.session_id
    assert p.session_events == 2
    up.update(p, ev(3, item="3", ts=10**12 + 3 * 3_600_000))
    assert p.session_id != first and p.session_item_ids() == ["3"]
    up.update(p, ev(4, item="4", ts=10**12 + 3 * 3_600_000 + 1, session_id="s-9"))
    assert p.session_id == "s-9"


def test_bytes_round_trip():
    up, p = ProfileUpdater(), Profile.new("u_1")
    up.update(p, ev(1, "purchase", price=3.0), ("A", "B"))
    assert Profile.from_bytes(p.to_bytes()) == (p, False)
