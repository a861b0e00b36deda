"""The scorer on a GPU host: pack what it needs here, run the checks there.

    python scripts/gpu_check.py pack DIR     # here: fp16 model copy, orjson wheel, pairs CSV
    python scripts/gpu_check.py run DIR OUT [STEP ...]  # there: the checks (all, or the named)

`run` needs only torch, transformers, numpy and orjson (the GPU image has all
but orjson, which `pack` downloads as a wheel). It runs, each step on its own
so one failure does not hide the others:

1. the scorer's GPU path: `Embedder` (the scorer core) embeds catalog titles
   on CUDA (fp16) and on the CPU (fp32); the two must agree (cosine);
2. `streamrec bench-scorer --json --device cuda` (encoder texts/s at batch
   1/32/256, the cached Zipf stream, request latency), plus titles/s at the
   batch sizes a GPU wants (512, 1024);
3. `streamrec finetune --device cuda` on (search -> clicked item) pairs of the
   synthetic shop: steps/s, pairs/s and held-out Recall@10 before and after.

The model travels as fp16 (the device tool carries at most 64 MiB) and is
widened back to fp32 there, so fine-tuning starts from fp32 weights.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def pack(out: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from streamrec.datasets.synthetic import SyntheticShop
    from streamrec.scorer.embedder import item_text
    from streamrec.scorer.encoder import default_model_dir
    from streamrec.scorer.finetune import pairs_from_events

    out.mkdir(parents=True, exist_ok=True)
    src = default_model_dir()
    model = out / "model16"
    model.mkdir(exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors" and f.suffix in {".json", ".txt"}:
            (model / f.name).write_bytes(f.read_bytes())
    weights = {k: v.to(torch.float16) for k, v in load_file(src / "model.safetensors").items()}
    save_file(weights, model / "model.safetensors")

    shop = SyntheticShop(users=3_000, items=3_000, seed=7)
    events = [e.to_dict() for e in shop.events(300_000, start_ts=1_700_000_000_000, step_ms=200)]
    catalog = {item.item_id: item for item in shop.catalog}
    pairs = pairs_from_events(events, catalog, 1_800.0)
    with open(out / "pairs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "item_title"])
        w.writerows((p.query, p.text) for p in pairs)
    titles = [item_text(i) for i in shop.catalog]
    (out / "titles.json").write_text(json.dumps(titles))
    wheels = out / "whl"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--implementation", "cp",
         "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
         "-d", str(wheels), "orjson"],
        check=True,
    )  # fmt: skip
    print(f"packed {len(pairs)} pairs, {len(titles)} titles, fp16 model in {out}")


def _step(name: str, results: dict[str, Any], fn: Any) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception:
        results[name] = {"error": traceback.format_exc()}
    results[name + "_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"== {name}: {json.dumps(results[name])[:2000]}", flush=True)


def run(src: Path, out: Path, only: list[str]) -> None:
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    model = Path("/tmp/streamrec-model32")
    model.mkdir(exist_ok=True)
    for f in (src / "model16").iterdir():
        if f.name != "model.safetensors":
            (model / f.name).write_bytes(f.read_bytes())
    widened = {
        k: v.to(torch.float32) for k, v in load_file(src / "model16/model.safetensors").items()
    }
    save_file(widened, model / "model.safetensors")
    results: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }
    import transformers

    results["transformers"] = transformers.__version__
    titles = json.loads((src / "titles.json").read_text())

    def scorer_path() -> dict[str, Any]:
        from streamrec.scorer.embedder import BatchStats, Embedder
        from streamrec.scorer.encoder import TextEncoder

        gpu = TextEncoder(model, device="cuda", batch_size=256)
        cpu = TextEncoder(model, device="cpu", batch_size=64)
        emb = Embedder(gpu, query_max_tokens=32, cache_size=10_000)
        t0 = time.perf_counter()
        (answer,) = emb.answer([(titles, "item", None)], BatchStats())
        torch.cuda.synchronize()
        gpu_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = cpu.encode(titles, max_length=128)
        cpu_s = time.perf_counter() - t0
        cos = np.sum(answer.vectors * ref.vectors, axis=1)
        return {
            "titles": len(titles),
            "gpu_dtype": str(gpu.dtype),
            "gpu_titles_per_s": round(len(titles) / gpu_s, 1),
            "cpu16_titles_per_s": round(len(titles) / cpu_s, 1),
            "cosine_gpu_fp16_vs_cpu_fp32": {
                "min": round(float(cos.min()), 5),
                "mean": round(float(cos.mean()), 5),
            },
            "valid": int(answer.valid.sum()),
        }

    def bench() -> dict[str, Any]:
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "streamrec", "bench-scorer", "--json", "--device", "cuda",
               "--model", str(model), "--stream", "200000"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        if done.returncode != 0:
            return {"error": done.stderr[-3000:]}
        return json.loads(done.stdout.strip().splitlines()[-1])

    def big_batches() -> dict[str, Any]:
        from streamrec.scorer.encoder import TextEncoder
        from streamrec.tools.scorer_bench import synthetic_queries, synthetic_titles, texts_per_s

        enc = TextEncoder(model, device="cuda")
        t, q = synthetic_titles(40_000), synthetic_queries(100_000)
        return {
            "titles_per_s": {b: round(texts_per_s(enc, t, b, 64)) for b in (256, 512, 1024)},
            "queries_per_s": {b: round(texts_per_s(enc, q, b, 16)) for b in (256, 1024, 4096)},
        }

    def finetune() -> dict[str, Any]:
        cmd = [sys.executable, "-m", "streamrec", "finetune", "--pairs", str(src / "pairs.csv"),
               "--out", "/tmp/streamrec-ft", "--base", str(model), "--device", "cuda",
               "--epochs", "2", "--batch-size", "128", "--quiet"]  # fmt: skip
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=420)
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            return {"error": done.stderr[-3000:]}
        report = json.loads(next(Path("/tmp/streamrec-ft").glob("*/training.json")).read_text())
        return {"seconds": round(seconds, 1), "stdout": done.stdout.strip()[-500:], **report}

    steps = {
        "scorer_path": scorer_path,
        "bench_scorer": bench,
        "big_batches": big_batches,
        "finetune": finetune,
    }
    for name, fn in steps.items():
        if not only or name in only:
            _step(name, results, fn)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "pack":
        pack(Path(sys.argv[2]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "run":
        run(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit(__doc__)
