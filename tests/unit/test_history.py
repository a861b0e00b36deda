"""The per-user item history against a plain-list model of it, and on the wire."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.core.history import ItemHistory, hash_of
from streamrec.core.profile import Profile


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=300), st.integers(1, 40))
def test_the_history_is_the_newest_distinct_items_within_its_cap(items, cap):
    history, model = ItemHistory(), []
    for i in items:
        history.add(f"sku-{i}", cap)
        h = hash_of(f"sku-{i}")
        if h in model:
            model.remove(h)
        if len(model) >= cap:  # full: the oldest tenth leaves
            model = model[len(model) - cap + 1 + cap // 10 :]
        model.append(h)
        assert history.order.tolist() == model and history.sorted.tolist() == sorted(model)
    assert len(history) <= cap
    probe = [hash_of(f"sku-{i}") for i in range(70)]
    assert history.contains(probe).tolist() == [h in model for h in probe]
    assert ItemHistory.from_wire(history.to_wire()) == history


def test_a_profile_keeps_its_history_across_the_wire_and_repairs_a_bad_one():
    p = Profile.new("u_1")
    for i in range(5):
        p.history.add(f"sku-{i}", 10)
    back, repaired = Profile.from_bytes(p.to_bytes())
    assert back.history == p.history and not repaired
    broken = p.to_bytes().replace(p.history.to_wire().encode(), b"not base64!")
    again, repaired = Profile.from_bytes(broken, "u_1")
    assert repaired and len(again.history) == 0 and again.recent == p.recent
    old = Profile.from_bytes(b'{"user": "u_2", "counts": {"view": 3}}')[0]  # before history
    assert len(old.history) == 0 and old.counts == {"view": 3}
