import random

import pytest

from streamrec import serde
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.core.privacy import Pseudonymizer
from streamrec.errors import SerdeError


def test_serde_round_trip_and_errors():
    assert serde.loads(serde.dumps({"a": [1, 2.5, None], 3: "x"})) == {
        "a": [1, 2.5, None],
        "3": "x",
    }
    with pytest.raises(SerdeError, match="not valid JSON"):
        serde.loads(b"{nope")
    with pytest.raises(SerdeError, match="cannot encode"):
        serde.dumps({"x": object()})


def test_pseudonyms_are_stable_keyed_and_do_not_leak_the_id():
    a, b = Pseudonymizer(b"key-a"), Pseudonymizer(b"key-b")
    assert a("alice") == a("alice")
    assert a("alice") != b("alice")
    assert a("alice") != a("bob")
    assert "alice" not in a("alice")
    with pytest.raises(ValueError):
        Pseudonymizer(b"")


def test_histogram_percentiles_within_precision():
    rng = random.Random(1)
    values = [rng.lognormvariate(3, 1) for _ in range(20_000)]
    h = LogHistogram()
    h.extend(values)
    exact = sorted(values)
    for q in (50, 95, 99):
        want = exact[int(q / 100 * len(exact)) - 1]
        assert abs(h.percentile(q) - want) / want < 0.03


def test_histogram_merge_equals_one_histogram_of_all():
    a, b, both = LogHistogram(), LogHistogram(), LogHistogram()
    for i in range(1, 500):
        (a if i % 2 else b).record(i)
        both.record(i)
    a.merge(b)
    assert a.count == both.count
    assert [a.percentile(q) for q in (10, 50, 90)] == [both.percentile(q) for q in (10, 50, 90)]
    assert LogHistogram.from_dict(a.to_dict()).percentile(50) == a.percentile(50)
