from streamrec.core import snapshot
from streamrec.core.profile import Profile, ProfileUpdater
from streamrec.core.ranking.recommender import Recommender
from streamrec.records import CatalogItem, Event
from tests.unit.learn import observe

HOUR = 3_600_000
T0 = 1_700_000_000_000


def view(i, user, item, ts, etype="view", **kw) -> Event:
    return Event(f"e{i}", etype, user, ts, item_id=item, **kw)


def feed(rec: Recommender, events, profiles=None):
    profiles = profiles if profiles is not None else {}
    up = ProfileUpdater()
    items = rec.items
    for e in events:
        p = profiles.setdefault(e.user, Profile.new(e.user))
        session = [] if up.is_new_session(p, e) else items.rows(p.session_item_ids()).tolist()
        observe(rec, e, items.row(e.item_id), session)
        up.update(p, e)
    return profiles


def test_trending_prefers_what_is_popular_now():
    rec = Recommender(top_k=2, trending_half_life_s=3600)
    old = [view(i, f"u{i}", "old", T0) for i in range(10)]
    new = [view(100 + i, f"v{i}", "new", T0 + 10 * HOUR) for i in range(3)]
    feed(rec, old + new)
    assert next(x.item_id for x in rec.recommend(Profile.new("x"), None)) == "new"


def test_covisitation_recommends_items_seen_together():
    rec = Recommender(top_k=3)
    events = []
    for u in range(20):  # many sessions: a then b
        events += [view(2 * u, f"u{u}", "a", T0 + u), view(2 * u + 1, f"u{u}", "b", T0 + u + 1)]
    events += [view(500 + i, f"w{i}", "popular", T0 + 100) for i in range(30)]
    profiles = feed(rec, [*events, view(999, "me", "a", T0 + 200)])
    top = rec.recommend(profiles["me"], rec.items.row("a"))
    assert top[0].item_id == "b"
    assert top[0].reason == "co-visited with a"
    assert any(x.reason == "trending" for x in top)


def test_transitions_propose_what_users_did_next_and_only_forward():
    rec = Recommender(top_k=5, sequence_anchors=2, blend={"sequence": 2.0, "covisit": 0.0})
    events = []
    for u in range(20):  # everyone: phone, then case
        events += [
            view(2 * u, f"u{u}", "phone", T0 + u),
            view(2 * u + 1, f"u{u}", "case", T0 + u + 1),
        ]
    events += [view(500 + i, f"w{i}", "popular", T0 + 100) for i in range(30)]
    profiles = feed(rec, [*events, view(998, "me", "phone", T0 + 200),
                          view(999, "her", "case", T0 + 200)])  # fmt: skip
    top = rec.recommend(profiles["me"], rec.items.row("phone"))
    assert top[0].item_id == "case" and "sequence" in top[0].sources
    assert top[0].reason == "often next after phone"
    after_case = rec.recommend(profiles["her"], rec.items.row("case"))
    phone = next(x for x in after_case if x.item_id == "phone")  # co-visited, not next
    assert "sequence" not in phone.sources and "covisit" in phone.sources


def test_co_visitation_normalised_by_popularity_lifts_the_specific_neighbour():
    rec = Recommender(top_k=5, blend={"covisit_idf": 1.0, "covisit": 0.0, "popularity": 0.0})
    events = []
    for u in range(30):  # "hit" is co-visited with everything, "lens" with the camera only
        events += [view(3 * u, f"u{u}", f"other{u}", T0 + u), view(3 * u + 1, f"u{u}", "hit",
                   T0 + u + 1)]  # fmt: skip
    for u in range(6):
        events += [view(200 + 3 * u, f"c{u}", "camera", T0 + 50 + u),
                   view(201 + 3 * u, f"c{u}", "lens", T0 + 51 + u),
                   view(202 + 3 * u, f"c{u}", "hit", T0 + 52 + u)]  # fmt: skip
    for u in range(8):  # and more camera buyers look at the everywhere item than the lens
        events += [view(400 + 2 * u, f"d{u}", "camera", T0 + 80 + u),
                   view(401 + 2 * u, f"d{u}", "hit", T0 + 81 + u)]  # fmt: skip
    profiles = feed(rec, [*events, view(999, "me", "camera", T0 + 300)])
    top = rec.recommend(profiles["me"], rec.items.row("camera"))
    assert top[0].item_id == "lens" and "covisit_idf" in top[0].sources
    plain = Recommender(top_k=5)  # raw counts: the everywhere item wins
    profiles = feed(plain, [*events, view(999, "me", "camera", T0 + 300)])
    assert plain.recommend(profiles["me"], plain.items.row("camera"))[0].item_id == "hit"


def test_business_rules_exclude_purchased_recent_current_and_unavailable():
    rec = Recommender(top_k=10)
    items = ["p", "r", "cur", "gone", "ok"]
    feed(rec, [view(i, f"u{i}", it, T0 + i) for i, it in enumerate(items * 3)])
    profiles = feed(
        rec,
        [
            view(90, "me", "p", T0 + 50, "purchase", price=1.0),
            view(91, "me", "r", T0 + 51 + 4 * HOUR),
        ],
    )
    rec.items.upsert(CatalogItem("gone", "Gone", available=False))
    got = [x.item_id for x in rec.recommend(profiles["me"], rec.items.row("cur"))]
    assert got == ["ok"]


def test_exclusions_are_configurable():
    rec = Recommender(top_k=10, exclude_recent=False, exclude_purchased=False,
                      exclude_history=False)  # fmt: skip
    profiles = feed(rec, [view(1, "me", "p", T0, "purchase", price=1.0)])
    assert [x.item_id for x in rec.recommend(profiles["me"], None)] == ["p"]


def _history_world(updater: ProfileUpdater, **kw: bool) -> tuple[Recommender, Profile]:
    """A user who had "old" 1,000 events ago (long out of their 50 recent items), in a
    shop where "old" is by far the most popular item."""
    rec = Recommender(top_k=5, **kw)
    me = Profile.new("me")
    events = [view(1, "me", "old", T0, "purchase", price=5.0)]
    events += [view(2 + i, "me", f"book-{i}", T0 + (1 + i) * 60_000) for i in range(1000)]
    for e in events:
        observe(rec, e, rec.items.row(e.item_id), [])
        updater.update(me, e)
    now = T0 + 1001 * 60_000
    crowd = [view(5000 + i, f"c{i}", "old", now + i) for i in range(200)]
    crowd += [view(6000 + i, f"c{i}", f"other-{i % 20}", now + i) for i in range(60)]
    feed(rec, crowd)
    return rec, me


def test_what_a_user_had_long_ago_stays_out_of_their_lists_within_the_cap():
    updater = ProfileUpdater(recent_items=50, history_items=2_000)
    rec, me = _history_world(updater)
    assert "old" not in me.recent_item_ids()  # out of the recent window long ago
    assert "old" not in [x.item_id for x in rec.recommend(me, None)]
    assert "old" in [x.item_id for x in rec.recommend(Profile.new("new"), None)]
    assert len(me.history) == 1_001
    capped = ProfileUpdater(recent_items=50, history_items=300)
    _, small = _history_world(capped)
    assert 270 <= len(small.history) <= 300  # the cap holds: the oldest tenth leaves at once
    assert len(small.to_bytes()) < len(me.to_bytes()) - 2_500  # ~4 bytes an item (base64)


def test_a_shop_that_sells_again_leaves_purchases_out_of_the_history():
    updater = ProfileUpdater(recent_items=50, history_types=frozenset({"view", "click"}))
    rec, me = _history_world(updater, exclude_purchased=False)
    assert "old" in [x.item_id for x in rec.recommend(me, None)]  # re-purchasable: back


def test_category_affinity_lifts_matching_items():
    rec = Recommender(top_k=2, blend={"affinity": 0.5})
    feed(rec, [view(i, f"u{i}", it, T0 + i) for i, it in enumerate(["x", "y"] * 5)])
    for item, cat in {"x": "Books", "y": "Garden", "g": "Garden"}.items():
        rec.items.upsert(CatalogItem(item, item, (cat,)))
    p = Profile.new("me")
    ProfileUpdater().update(p, view(50, "me", "g", T0 + 20), ("Garden",))
    top = rec.recommend(p, None)
    assert top[0].item_id == "y" and top[0].reason == "matches your interest in Garden"


def test_favourite_categories_with_nothing_popular_yet_still_give_a_list():
    rec = Recommender(top_k=3)
    feed(rec, [view(i, f"u{i}", it, T0 + i) for i, it in enumerate(["x", "y"] * 3)])
    for item, cat in {"x": "Books", "y": "Books", "g": "Garden", "t": "Tools"}.items():
        rec.items.upsert(CatalogItem(item, item, (cat,)))
    p = Profile.new("me")
    up = ProfileUpdater()
    up.update(p, view(10, "me", "g", T0 + 10), ("Garden",))
    up.update(p, view(11, "me", "t", T0 + 11), ("Tools",))
    # Garden and Tools are the user's two categories; the recommender has seen nothing
    # in them yet (their popular lists are empty).
    assert set(p.affinity) == {"Garden", "Tools"}
    assert {r.item_id for r in rec.recommend(p, None)} == {"x", "y"}


def test_same_events_same_lists_and_snapshot_round_trip():
    def build():
        rec = Recommender(top_k=5)
        events = [view(i, f"u{i % 7}", str(i % 100), T0 + i * 1000) for i in range(300)]
        return rec, feed(rec, events)

    (r1, p1), (r2, p2) = build(), build()
    clone = Recommender(top_k=5)
    snapshot.restore(clone, *snapshot.from_bytes(snapshot.to_bytes(*snapshot.capture(r1))))
    for user in p1:
        a = r1.recommend(p1[user], None)
        assert a == r2.recommend(p2[user], None) == clone.recommend(p1[user], None)
        assert len(a) == 5


def test_rank_pool_takes_every_sources_best_in_turn_not_the_flattest_source():
    """Vector hits all normalise to ~1.0; a cut by score would keep only them."""
    import numpy as np

    from streamrec.core.ranking.candidates import _best_source_rank

    nan = np.nan
    flat = [1.0, 0.999, 0.998, 0.997, 0.996, nan, nan, nan]  # e.g. interest hits
    steep = [nan, nan, nan, nan, nan, 1.0, 0.5, 0.3]  # e.g. co-visitation
    order = np.argsort(_best_source_rank(np.array([flat, steep])), kind="stable")
    assert sorted(order[:4].tolist()) == [0, 1, 5, 6]  # two of each
