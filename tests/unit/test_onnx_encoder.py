"""The encoder on ONNX Runtime against torch, on a tiny random BERT (no download)."""

import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from streamrec.errors import ConfigError
from streamrec.scorer.embedder import make_encoder
from streamrec.scorer.encoder import TextEncoder, model_version
from streamrec.settings import Settings

TEXTS = ["red shoes", "tv", "", "wireless headphones for running", "tv", "lamp kitchen sink"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


def test_fp32_onnx_gives_torch_vectors_and_int8_stays_close(tiny_model_dir, cache):
    ref = TextEncoder(tiny_model_dir, device="cpu").encode(TEXTS, max_length=16)
    fp32 = make_encoder(tiny_model_dir, backend="onnx", cache_dir=cache).encode(TEXTS, 16)
    int8 = make_encoder(tiny_model_dir, backend="onnx-int8", cache_dir=cache).encode(TEXTS, 16)
    for out in (fp32, int8):
        assert out.valid.tolist() == ref.valid.tolist() == [True, True, False, True, True, True]
        assert not out.vectors[2].any()
        assert np.array_equal(out.vectors[1], out.vectors[4])  # duplicates encoded once
    assert np.allclose(fp32.vectors, ref.vectors, atol=1e-5)
    cos = (int8.vectors * ref.vectors).sum(axis=1)[ref.valid]
    assert cos.min() > 0.95  # a random 32-wide model; the real one: scripts/encoder_agreement.py


def test_batches_and_padding_change_no_vector(tiny_model_dir, cache):
    enc = make_encoder(tiny_model_dir, backend="onnx", cache_dir=cache, batch_size=2)
    together = enc.encode(TEXTS, 16).vectors
    one_by_one = np.stack([enc.encode([t], 16).vectors[0] for t in TEXTS])
    assert np.allclose(together, one_by_one, atol=1e-5)


def test_the_export_is_cached_per_model_version_and_reused(tiny_model_dir, tiny_model_dir_b, cache):
    a = make_encoder(tiny_model_dir, backend="onnx-int8", cache_dir=cache)
    exported = cache / "onnx"
    version = model_version(tiny_model_dir)
    model_a = next(p for p in exported.rglob("model.int8.onnx") if version in str(p))
    stamp = os.stat(model_a).st_mtime_ns
    again = make_encoder(tiny_model_dir, backend="onnx-int8", cache_dir=cache)
    assert os.stat(model_a).st_mtime_ns == stamp  # loaded, not exported again
    assert again.version == a.version == model_version(tiny_model_dir)
    b = make_encoder(tiny_model_dir_b, backend="onnx-int8", cache_dir=cache)
    assert b.version != a.version  # another model (a hot swap, a fine-tune): its own export
    assert len(list(exported.rglob("model.int8.onnx"))) >= 2
    assert not any(p.name.startswith("tmp") for p in exported.rglob("*"))  # no half-written files


def test_auto_is_int8_onnx_on_cpu_and_bad_backends_are_refused(tiny_model_dir, cache):
    assert make_encoder(tiny_model_dir, device="cpu", cache_dir=cache).backend == "onnx-int8"
    assert make_encoder(tiny_model_dir, backend="torch", device="cpu").backend == "torch"
    with pytest.raises(ConfigError, match="STREAMREC_ENCODER_BACKEND"):
        Settings.from_env({"STREAMREC_ENCODER_BACKEND": "tensorrt"})
    with pytest.raises(ConfigError, match="runs on CPU"):
        make_encoder(tiny_model_dir, backend="onnx-int8", device="cuda", cache_dir=cache)
