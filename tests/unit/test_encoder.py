"""The text encoder on a tiny random BertConfig model (no download), plus the real one."""

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from streamrec.scorer.encoder import ModelLoadError, TextEncoder, mean_pool  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> TextEncoder:
    return TextEncoder(tiny_model_dir, device="cpu", batch_size=4)


def test_unit_vectors_in_input_order(tiny):
    texts = ["red shoes", "tv", "wireless headphones", "lamp running tv"]
    out = tiny.encode(texts, max_length=16)
    assert out.vectors.shape == (4, 32) and out.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(out.vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([tiny.encode([t], max_length=16).vectors[0] for t in texts])
    assert np.allclose(out.vectors, one_by_one, atol=1e-5)  # batching, padding, sorting invisible


def test_duplicates_and_empty_texts(tiny):
    out = tiny.encode(["tv", "", "   ", "tv", "lamp"], max_length=16)
    assert out.valid.tolist() == [True, False, False, True, True]
    assert np.array_equal(out.vectors[0], out.vectors[3])
    assert not out.vectors[1].any() and not out.vectors[2].any()
    assert tiny.encode([], max_length=16).vectors.shape == (0, 32)


def test_bucketed_padding_and_warm_up_of_the_cuda_path_change_no_vector(tiny_model_dir):
    # What CUDA does (pad to a multiple of 16 tokens, warm every shape up), checked on the CPU.
    plain = TextEncoder(tiny_model_dir, device="cpu", batch_size=4)
    bucketed = TextEncoder(tiny_model_dir, device="cpu", batch_size=4)
    bucketed.pad_multiple = 16
    bucketed.warm_up(max_tokens=32)
    texts = ["red shoes", "a much longer text about wireless headphones for running", "tv"]
    assert np.allclose(
        plain.encode(texts, max_length=64).vectors,
        bucketed.encode(texts, max_length=64).vectors,
        atol=1e-5,
    )


def test_long_text_is_truncated_not_fatal(tiny):
    out = tiny.encode(["red shoes " * 2000], max_length=64)  # ~20 kB
    assert out.valid.all() and abs(np.linalg.norm(out.vectors[0]) - 1) < 1e-5


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 2.0]]


def test_version_names_the_model_and_changes_with_it(tiny_model_dir, tmp_path):
    import shutil

    a = TextEncoder(tiny_model_dir, device="cpu").version
    copy = tmp_path / tiny_model_dir.name
    shutil.copytree(tiny_model_dir, copy)
    cfg = (
        (copy / "config.json")
        .read_text()
        .replace('"hidden_act"', '"initializer_range": 0.03, "hidden_act"', 1)
    )
    (copy / "config.json").write_text(cfg)
    b = TextEncoder(copy, device="cpu").version
    assert a.startswith(tiny_model_dir.name + "@") and a != b


def test_missing_or_corrupt_model_directory_says_which_and_what(tmp_path):
    with pytest.raises(ModelLoadError, match=re.escape(f"{tmp_path / 'nope'} does not exist")):
        TextEncoder(tmp_path / "nope", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        TextEncoder(tmp_path / "empty", device="cpu")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        TextEncoder(bad, device="cpu")


def test_cuda_requested_without_a_gpu_is_a_clear_error(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from streamrec.errors import ConfigError

    with pytest.raises(ConfigError, match="no CUDA device"):
        TextEncoder(tiny_model_dir, device="cuda")


def test_real_packaged_model_relates_shop_texts():
    enc = TextEncoder(device="cpu")
    v = enc.encode(
        ["wireless headphones", "bluetooth headset", "kitchen sink"], max_length=16
    ).vectors
    assert enc.dim == 384
    related, unrelated = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert related > unrelated + 0.2, (related, unrelated)


def test_bench_scorer_helpers_on_the_tiny_model(tiny):
    from streamrec.tools.scorer_bench import cached_rate, synthetic_queries, texts_per_s

    queries = synthetic_queries(2_000)
    assert len(set(queries)) == 2_000
    assert texts_per_s(tiny, queries[:64], batch=32, max_length=16) > 0
    rate, hit_rate = cached_rate(tiny, queries, n=3_000)
    assert rate > 0 and 0.3 < hit_rate < 1.0  # Zipf(1.1): the head repeats, the tail does not
