"""The item store's contract: rows, columns, availability, row reuse, growth."""

from __future__ import annotations

import numpy as np

from streamrec.core.items import ItemStore, tiebreak_of
from streamrec.records import CatalogItem


def test_rows_are_dense_stable_and_handed_out_once():
    s = ItemStore(capacity=16)
    assert s.rows(["a", "b", "a", "c"]).tolist() == [0, 1, 0, 2]
    assert s.row("b") == 1 and s.find("z") is None and len(s) == 3
    assert s.ids == ["a", "b", "c"]


def test_upsert_update_remove_and_the_same_row_when_an_item_comes_back():
    s = ItemStore()
    row = s.upsert(CatalogItem("hat", "Hat", ("Clothes", "Hats"), price=20.0))
    assert (bool(s.available[row]), float(s.price[row])) == (True, 20.0)
    assert [s.category_name(int(c)) for c in s.cats[row] if c >= 0] == ["Clothes", "Hats"]
    assert s.category_name(int(s.leaf[row])) == "Hats"
    assert s.upsert(CatalogItem("hat", "Hat", ("Sale",), available=False)) == row
    assert not s.available[row] and np.isnan(s.price[row])
    assert s.categories(row) == ("Sale",) and s.in_catalog == 1
    s.remove("hat")
    assert not s.available[row] and s.leaf[row] == -1 and s.in_catalog == 0
    assert s.upsert(CatalogItem("hat", "Hat again", ("Clothes",))) == row  # row reused
    assert s.available[row] and s.in_catalog == 1


def test_items_seen_only_in_events_are_available_without_attributes():
    s = ItemStore()
    row = s.row("from-an-event")
    assert s.available[row] and np.isnan(s.price[row]) and s.leaf[row] == -1
    assert s.categories(row) == ()


def test_columns_grow_and_keep_what_they_held():
    s = ItemStore(capacity=16)
    for i in range(1000):
        s.upsert(CatalogItem(f"i{i}", "x", (f"c{i % 7}",), price=float(i)))
    assert s.capacity >= 1000 and len(s) == 1000
    assert s.price[:1000].tolist() == [float(i) for i in range(1000)]
    assert s.category_name(int(s.leaf[999])) == "c5"
    assert (s.tiebreak[:1000] > 0).all()


def test_long_category_lists_keep_the_first_ones_and_the_leaf():
    s = ItemStore(max_categories=3)
    row = s.upsert(CatalogItem("m", "Movie", ("A", "B", "C", "D", "E")))
    assert [s.category_name(int(c)) for c in s.cats[row]] == ["A", "B", "E"]


def test_tiebreaks_do_not_depend_on_the_order_rows_were_handed_out():
    one, two = ItemStore(), ItemStore()
    one.rows(["x", "y", "z"])
    two.rows(["z", "x", "y"])
    for item in "xyz":
        assert one.tiebreak[one.row(item)] == two.tiebreak[two.row(item)] == tiebreak_of(item)
