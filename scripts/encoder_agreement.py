"""How far an encoder backend agrees with fp32 torch on the same model.

    python scripts/encoder_agreement.py                      # onnx-int8 against torch
    python scripts/encoder_agreement.py --backend onnx --json out.json

On the MovieLens-100k catalog (1,682 titles, as the demo embeds them):

* cosine of each title's vector to fp32 torch's: mean and minimum;
* the demo's cold-start searches: the top 5 titles for each, on both;
* known-item search: each title's first two words (lower case, no year) as
  the query, the film as the target; HR@10 over the whole catalog, on both.
  A held-out query -> product set replaces this where a shop has one.
* the top 10 titles of 2,000 shop-like queries (`streamrec bench-scorer`'s
  generator): the share of each fp32 top 10 the backend also returns.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from streamrec import serde
from streamrec.datasets import movielens
from streamrec.scorer.embedder import make_encoder
from streamrec.settings import Settings
from streamrec.tools.demo import COLD_START_QUERIES
from streamrec.tools.scorer_bench import synthetic_queries


def known_item_queries(titles: list[str]) -> list[str]:
    """'Toy Story (1995)' -> 'toy story': what a shopper half-remembers."""
    out = []
    for t in titles:
        words = re.sub(r"\(\d{4}\)", "", t).replace(",", " ").split()
        out.append(" ".join(words[:2]).lower())
    return out


def top(query_vecs: np.ndarray, item_vecs: np.ndarray, k: int) -> np.ndarray:
    scores = query_vecs @ item_vecs.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="onnx-int8", choices=("onnx", "onnx-int8"))
    ap.add_argument("--model", help="model directory (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    s = Settings.from_env()
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True))
    titles = [it.title for it in ml.items]
    ref = make_encoder(args.model, backend="torch", device="cpu")
    enc = make_encoder(args.model, backend=args.backend, cache_dir=s.cache_dir)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    say(f"embedding {len(titles):,} titles with torch fp32 and {args.backend}")
    a = ref.encode(titles, s.title_max_tokens).vectors
    b = enc.encode(titles, s.title_max_tokens).vectors
    cos = (a * b).sum(axis=1)

    cold = {}
    qa = ref.encode(list(COLD_START_QUERIES), s.query_max_tokens).vectors
    qb = enc.encode(list(COLD_START_QUERIES), s.query_max_tokens).vectors
    ta, tb = top(qa, a, 5), top(qb, b, 5)
    for i, q in enumerate(COLD_START_QUERIES):
        cold[q] = {
            "same_top5": bool((ta[i] == tb[i]).all()),
            "torch": [titles[j] for j in ta[i]],
            args.backend: [titles[j] for j in tb[i]],
        }

    queries = known_item_queries(titles)
    target = np.arange(len(titles))
    ka = top(ref.encode(queries, s.query_max_tokens).vectors, a, 10)
    kb = top(enc.encode(queries, s.query_max_tokens).vectors, b, 10)
    hr_a = float((ka == target[:, None]).any(axis=1).mean())
    hr_b = float((kb == target[:, None]).any(axis=1).mean())

    shop = synthetic_queries(2_000, seed=5)
    sa = top(ref.encode(shop, s.query_max_tokens).vectors, a, 10)
    sb = top(enc.encode(shop, s.query_max_tokens).vectors, b, 10)
    overlap = float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(sa, sb, strict=True)]))

    out = {
        "backend": args.backend,
        "model_version": enc.version,
        "catalog": "MovieLens-100k titles",
        "titles": len(titles),
        "cosine_mean": round(float(cos.mean()), 5),
        "cosine_min": round(float(cos.min()), 5),
        "cosine_min_title": titles[int(cos.argmin())],
        "cold_start_same_top5": all(c["same_top5"] for c in cold.values()),
        "cold_start": cold,
        "known_item_hr10": {"torch": round(hr_a, 4), args.backend: round(hr_b, 4)},
        "known_item_hr10_loss": round(1 - hr_b / hr_a, 4) if hr_a else None,
        "shop_queries_top10_overlap": round(overlap, 4),
    }
    text = serde.dumps(out).decode()
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
