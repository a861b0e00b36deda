"""The encoder on ONNX Runtime: the CPU path, int8 by default. No Kafka here.

The torch model (`encoder.load_pretrained`) is exported once to ONNX with the
mean pooling and the L2 normalisation inside the graph, so one call returns
the vectors. The int8 model quantises the weights of the linear layers per
output channel (`onnxruntime.quantization.quantize_dynamic`), activations per
batch, except the feed-forward output projections: their inputs, after GELU,
have outliers that one activation scale per batch clips. On all-MiniLM-L6-v2
and the MovieLens titles that keeps the cosine to fp32 torch at 0.995 on
average and 0.990 at worst; quantising them too gave 0.992 / 0.976
(docs/benchmarks.md, "The encoder on ONNX Runtime").

Batches are cut where padding would waste more than a quarter of the cells:
on a CPU a padded token costs as much as a real one.

Exported models are cached under `<cache dir>/onnx/<model version>/`: the
version is a hash of the model's files, so a hot swap or a fine-tune (a new
directory) exports its own, and a restart reuses it. The export runs in a
temporary directory and is moved into place, so two scorers starting together
cannot read a half-written file.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.scorer.encoder import (
    Encoded,
    ModelLoadError,
    default_model_dir,
    distinct_texts,
    load_pretrained,
    mean_pool,
    model_version,
    scatter,
)

log = logging.getLogger("streamrec.scorer")

#: Bump when the export or the quantisation recipe changes: old caches are ignored.
EXPORT_FORMAT = 1
BACKENDS = ("torch", "onnx", "onnx-int8")


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export(model_dir: Path, out: Path, *, int8: bool) -> Path:
    """`model.onnx` (fp32) and, with `int8`, `model.int8.onnx` in `out`; returns the one to run."""
    name = "model.int8.onnx" if int8 else "model.onnx"
    target = out / name
    if target.is_file():
        return target  # a cached export: torch is not even imported
    import torch

    _tokenizer, model = load_pretrained(model_dir)
    model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)
            pooled = mean_pool(hidden.last_hidden_state, attention_mask)
            return torch.nn.functional.normalize(pooled, dim=-1)

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        ids = torch.ones((2, 8), dtype=torch.long)
        dynamic = {0: "batch", 1: "tokens"}
        # The exporter's warnings (a deprecation, traced control flow) say nothing to a shop.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pooled(model).eval(),
                (ids, ids),
                str(fp32),
                input_names=["input_ids", "attention_mask"],
                output_names=["vectors"],
                dynamic_axes={
                    "input_ids": dynamic,
                    "attention_mask": dynamic,
                    "vectors": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
        if int8:
            _quantize(fp32, Path(tmp) / name)
        os.replace(Path(tmp) / name, target)
        if int8 and not (out / "model.onnx").exists():
            os.replace(fp32, out / "model.onnx")
    return target


def _quantize(fp32: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32)).graph
    weights = {t.name for t in graph.initializer}

    def quantised(node: Any) -> bool:
        if node.op_type != "MatMul" or not any(i in weights for i in node.input):
            return False  # attention's products of two activations stay fp32
        ffn_out = node.name.endswith("/output/dense/MatMul") and "/attention/" not in node.name
        return not ffn_out

    keep_fp32 = [n.name for n in graph.node if n.op_type == "MatMul" and not quantised(n)]
    quantize_dynamic(
        str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
        nodes_to_exclude=keep_fp32,
    )  # fmt: skip


class OnnxEncoder:
    """The `TextEncoder` interface on ONNX Runtime (CPU): same vectors, to the agreement
    `scripts/encoder_agreement.py` measures, at several times the speed with int8."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        cache_dir: str | Path,
        int8: bool = True,
        threads: int | None = None,
        batch_size: int = 64,
    ) -> None:
        import onnxruntime as ort

        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.batch_size = batch_size
        self.version = model_version(self.model_dir)
        self.backend = "onnx-int8" if int8 else "onnx"
        self.device = "cpu"
        out = Path(cache_dir) / "onnx" / f"{self.version}-f{EXPORT_FORMAT}"
        try:
            path = export(self.model_dir, out, int8=int8)
        except ModelLoadError:
            raise
        except Exception as exc:  # the exporter raises many kinds; say which model failed
            shutil.rmtree(out, ignore_errors=True)
            raise ModelLoadError(f"cannot export {self.model_dir} to ONNX: {exc}") from exc
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        options = ort.SessionOptions()
        # ONNX Runtime's default counts physical cores: one on a 2-vCPU host.
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        log.info("encoder %s on ONNX Runtime (%s), %s", self.version, self.backend, path)

    def encode(self, texts: Sequence[str], max_length: int) -> Encoded:
        """Encode `texts` (any order, duplicates, empties allowed) to unit vectors."""
        unique, where = distinct_texts(texts)
        if not unique:
            return scatter(np.zeros((0, self.dim), dtype=np.float32), where)
        ids = self.tokenizer(unique, truncation=True, max_length=max_length)["input_ids"]
        return scatter(self.encode_ids(ids), where)

    def encode_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Vectors of token id lists, in batches of similar length (less padding)."""
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for chunk in self._batches(order, lengths):
            width = int(lengths[chunk].max())
            input_ids = np.full((len(chunk), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for r, j in enumerate(chunk.tolist()):
                row = ids[j]
                input_ids[r, : len(row)] = row
                mask[r, : len(row)] = 1
            out[chunk] = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        return out

    def _batches(self, order: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        """Runs of `order` (by length) of at most `batch_size`, cut early where padding to
        the run's longest would waste more than a quarter of the cells: on a CPU a
        padded cell costs as much as a real one, and a small batch costs little more."""
        out: list[np.ndarray] = []
        start = 0
        n = len(order)
        while start < n:
            end = start + 1
            total = int(lengths[order[start]])
            while end < n and end - start < self.batch_size:
                width = int(lengths[order[end]])
                if width * (end - start + 1) > 1.25 * (total + width) and end - start >= 8:
                    break
                total += width
                end += 1
            out.append(order[start:end])
            start = end
        return out
