"""The scorer's core on a tiny random BERT: cross-request batching, cache, versions, failures."""

import numpy as np
import pytest

pytest.importorskip("transformers")

from streamrec.records import CatalogItem
from streamrec.scorer.embedder import BatchStats, Embedder, item_text
from streamrec.scorer.encoder import TextEncoder


@pytest.fixture(scope="module")
def enc_a(tiny_model_dir):
    return TextEncoder(tiny_model_dir, device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def enc_b(tiny_model_dir_b):
    return TextEncoder(tiny_model_dir_b, device="cpu", batch_size=4)


def test_requests_are_answered_in_order_from_one_batch(enc_a):
    e = Embedder(enc_a, query_max_tokens=16)
    stats = BatchStats()
    reqs = [(["tv", "red shoes"], "query", None), ([], "query", None)]
    reqs.append((["tv", "  "], "query", None))
    answers = e.answer(reqs, stats)
    assert [len(a.vectors) for a in answers] == [2, 0, 2]
    assert answers[2].valid.tolist() == [True, False]
    assert np.array_equal(answers[0].vectors[0], answers[2].vectors[0])
    alone = enc_a.encode(["red shoes"], max_length=16).vectors[0]
    assert np.allclose(answers[0].vectors[1], alone, atol=1e-5)
    assert stats.texts == 4 and stats.encoded == 2  # "tv" encoded once, the blank not at all
    assert all(a.version == enc_a.version for a in answers)


def test_query_cache_across_batches(enc_a):
    e = Embedder(enc_a)
    e.answer([(["tv", "lamp"], "query", None)], BatchStats())
    stats = BatchStats()
    e.answer([(["tv", "lamp", "sink"], "query", None)], stats)
    assert (stats.cache_hits, stats.cache_misses, stats.encoded) == (2, 1, 1)
    assert e.caches[e.current].hit_rate > 0


def test_versions_stage_promote_and_answer_what_was_asked(enc_a, enc_b):
    e = Embedder(enc_a)
    assert e.stage(enc_b) == enc_b.version and e.current == enc_a.version
    # while staged, requests that name no version still get the current one
    a, b = e.answer([(["tv"], "query", None), (["tv"], "query", enc_b.version)], BatchStats())
    assert (a.version, b.version) == (enc_a.version, enc_b.version)
    assert not np.allclose(a.vectors, b.vectors)
    e.promote()
    assert (e.current, e.previous, e.staged) == (enc_b.version, enc_a.version, None)
    # a rank worker still searching the old space gets old-space vectors
    (old,) = e.answer([(["tv"], "query", enc_a.version)], BatchStats())
    assert old.version == enc_a.version
    (unknown,) = e.answer([(["tv"], "query", "gone@123")], BatchStats())
    assert unknown.version == enc_b.version


class Exploding:
    def __init__(self, inner, bad_word="sink"):
        self.inner, self.bad_word = inner, bad_word
        self.version, self.dim = inner.version, inner.dim

    def encode(self, texts, max_length):
        if any(self.bad_word in t for t in texts):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return self.inner.encode(texts, max_length)


def test_a_model_that_raises_costs_the_batch_not_the_scorer(enc_a):
    e = Embedder(Exploding(enc_a))  # type: ignore[arg-type]
    stats = BatchStats()
    (bad,) = e.answer([(["kitchen sink", "tv"], "query", None)], stats)
    assert not bad.valid.any() and "device-side assert" in (bad.error or "")
    assert stats.errors == 1
    (good,) = e.answer([(["tv"], "query", None)], BatchStats())
    assert good.valid.all() and good.error is None


def test_catalog_items_failing_alone_are_isolated(enc_a):
    e = Embedder(Exploding(enc_a))  # type: ignore[arg-type]
    titles = ["red shoes", "kitchen sink", "tv"]
    items = [CatalogItem(str(n), t) for n, t in enumerate(titles, 1)]
    out = e.embed_items(items, e.current)
    assert [(it.item_id, v is not None) for it, v, _ in out] == [
        ("1", True),
        ("2", False),
        ("3", True),
    ]
    assert "device-side assert" in out[1][2]


def test_item_text_and_ten_kilobyte_titles(enc_a):
    item = CatalogItem("9", "red shoes " * 1000, ("Shoes", "Running"), brand="Acme")
    assert item_text(item).endswith("| Shoes > Running | Acme")
    e = Embedder(enc_a, title_max_tokens=64)
    ((_, vec, err),) = e.embed_items([item], e.current)
    assert vec is not None and err == "" and abs(np.linalg.norm(vec) - 1) < 1e-5
