"""`streamrec finetune`: adapt the encoder to a shop's own (query, clicked item) pairs.

Pairs come from an event log (a search, then a click / add_to_cart / purchase
by the same user within the session gap: the query led there) joined with a
catalog file for the item text, or from a CSV of ``query,item_title``.

Training: in-batch negatives (every other item of the batch is a negative for
a query; an item twice in a batch is one target, never its own negative),
symmetric cross-entropy over cosine similarities / temperature, AdamW with
linear warm-up and decay. A held-out split is scored with Recall@10 against
every item text before training and after every epoch (or `eval_every`
steps); training stops after `patience` evaluations without improvement and
the best weights are kept. The output is a versioned directory
``<out>/<base>-ft-<UTC time>/`` with the model, its tokenizer and
``training.json``; `streamrec scorer --model-dir` or `streamrec load-model`
takes it as is. CPU works for small data; CUDA is used when present.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamrec import serde
from streamrec.datasets.eventlog import read_events
from streamrec.errors import DatasetError, SerdeError
from streamrec.records import CatalogItem
from streamrec.scorer.embedder import item_text
from streamrec.scorer.encoder import (
    default_model_dir,
    load_pretrained,
    mean_pool,
    model_version,
    select_device,
)
from streamrec.settings import Settings

log = logging.getLogger(__name__)

POSITIVE_TYPES = {"click": 1, "add_to_cart": 2, "purchase": 3}


@dataclass(frozen=True)
class Pair:
    query: str
    text: str


@dataclass
class FinetuneConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 2e-5
    warmup: float = 0.1
    holdout: float = 0.2
    patience: int = 2
    eval_every: int = 0
    temperature: float = 0.05
    seed: int = 0
    query_max_tokens: int = 32
    title_max_tokens: int = 128
    device: str = "auto"


@dataclass
class FinetuneResult:
    out_dir: Path
    recall_before: float
    recall_best: float
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)


# -- pairs ----------------------------------------------------------------------


def pairs_from_csv(path: Path) -> list[Pair]:
    """A CSV with a header naming `query` and `item_title` columns."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"query", "item_title"} <= set(reader.fieldnames):
                raise DatasetError(f"{path} needs a header with columns query,item_title")
            pairs = [
                Pair(row["query"].strip(), row["item_title"].strip())
                for row in reader
                if (row.get("query") or "").strip() and (row.get("item_title") or "").strip()
            ]
    except FileNotFoundError as exc:
        raise DatasetError(f"no pairs file at {path}") from exc
    return pairs


def load_catalog(path: Path) -> dict[str, CatalogItem]:
    """A JSONL catalog: one catalog.items object per line."""
    items: dict[str, CatalogItem] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise DatasetError(f"no catalog file at {path}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = CatalogItem.from_dict(serde.loads(line))
        except (SerdeError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}:{n} is not a catalog item: {exc}") from exc
        items[item.item_id] = item
    return items


def pairs_from_events(
    events: Iterable[dict[str, Any]], catalog: dict[str, CatalogItem], session_gap_s: float
) -> list[Pair]:
    """(query, item text) for each positive event that follows a search of that user.

    >>> cat = {"7": CatalogItem("7", "Trail shoe")}
    >>> evs = [{"type": "search", "user_id": "u", "ts": 0, "query": "hiking shoes"},
    ...        {"type": "view", "user_id": "u", "ts": 1000, "item_id": "7"},
    ...        {"type": "click", "user_id": "u", "ts": 2000, "item_id": "7"}]
    >>> pairs_from_events(evs, cat, 1800)
    [Pair(query='hiking shoes', text='Trail shoe')]
    """
    gap_ms = session_gap_s * 1000
    last_query: dict[str, tuple[str, int]] = {}
    seen: set[tuple[str, str, str]] = set()
    pairs = []
    for ev in sorted(events, key=lambda e: e.get("ts", 0)):
        user, ts = str(ev.get("user_id", "")), int(ev.get("ts", 0))
        if ev.get("type") == "search" and str(ev.get("query", "")).strip():
            last_query[user] = (str(ev["query"]).strip(), ts)
        elif ev.get("type") in POSITIVE_TYPES and user in last_query:
            query, qts = last_query[user]
            item = catalog.get(str(ev.get("item_id")))
            if item is None or ts - qts > gap_ms:
                continue
            key = (user, query, item.item_id)  # a click then a purchase is one pair
            if key not in seen:
                seen.add(key)
                pairs.append(Pair(query, item_text(item)))
    return pairs


def read_event_docs(path: Path) -> list[dict[str, Any]]:
    docs = []
    for _key, value, _ts in read_events(path):
        try:
            doc = serde.loads(value)
        except SerdeError:
            continue  # a bad line is the replay's business, not training's
        if isinstance(doc, dict):
            docs.append(doc)
    return docs


def split(pairs: Sequence[Pair], holdout: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Shuffle and split; every held-out pair's item text is in the search corpus."""
    unique = list(dict.fromkeys(pairs))
    random.Random(seed).shuffle(unique)
    n_eval = max(1, int(len(unique) * holdout)) if len(unique) > 1 else 0
    return unique[n_eval:], unique[:n_eval]


# -- training -------------------------------------------------------------------


class _Trainer:
    def __init__(self, base: Path, cfg: FinetuneConfig) -> None:
        import torch

        self.torch = torch
        self.cfg = cfg
        self.device = select_device(cfg.device)
        self.tokenizer, self.model = load_pretrained(base)
        self.model.to(self.device)
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else torch.autocast("cpu", enabled=False)
        )

    def _pooled(self, texts: Sequence[str], max_length: int) -> Any:
        batch = self.tokenizer(
            list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        ).to(self.device)
        with self.autocast:
            hidden = self.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state
        return self.torch.nn.functional.normalize(
            mean_pool(hidden.float(), batch["attention_mask"]), dim=-1
        )

    def embed(self, texts: Sequence[str], max_length: int, batch: int = 256) -> np.ndarray:
        self.model.eval()
        out = []
        with self.torch.inference_mode():
            for i in range(0, len(texts), batch):
                out.append(self._pooled(texts[i : i + batch], max_length).cpu().numpy())
        self.model.train()
        return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)

    def loss(self, batch: Sequence[Pair]) -> Any:
        docs = list(dict.fromkeys(p.text for p in batch))
        index = {d: i for i, d in enumerate(docs)}
        labels = self.torch.tensor([index[p.text] for p in batch], device=self.device)
        q = self._pooled([p.query for p in batch], self.cfg.query_max_tokens)
        d = self._pooled(docs, self.cfg.title_max_tokens)
        logits = q @ d.T / self.cfg.temperature
        ce = self.torch.nn.functional.cross_entropy
        loss = ce(logits, labels)
        if len(docs) == len(batch):  # symmetric term only when every doc has one query
            loss = (loss + ce(logits.T, labels)) / 2
        return loss


def recall_at_k(
    trainer: _Trainer, pairs: Sequence[Pair], corpus: Sequence[str], k: int = 10
) -> float:
    """Share of held-out queries whose item text ranks in the top k of the whole corpus."""
    if not pairs:
        return 0.0
    cfg = trainer.cfg
    docs = trainer.embed(corpus, cfg.title_max_tokens)
    queries = trainer.embed([p.query for p in pairs], cfg.query_max_tokens)
    row = {t: i for i, t in enumerate(corpus)}
    scores = queries @ docs.T
    k = min(k, len(corpus))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    hits = sum(row[p.text] in set(top[i].tolist()) for i, p in enumerate(pairs))
    return hits / len(pairs)


def finetune(
    pairs: Sequence[Pair],
    out: Path,
    base: Path | None = None,
    cfg: FinetuneConfig | None = None,
    progress: bool = True,
) -> FinetuneResult:
    import torch
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    cfg = cfg or FinetuneConfig()
    base = Path(base) if base else default_model_dir()
    train, held = split(pairs, cfg.holdout, cfg.seed)
    if len(train) < 2:
        raise DatasetError(f"only {len(pairs)} distinct pairs: too few to fine-tune on")
    corpus = list(dict.fromkeys(p.text for p in [*train, *held]))
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    trainer = _Trainer(base, cfg)
    model = trainer.model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup * total), total)
    eval_every = cfg.eval_every or steps_per_epoch

    before = recall_at_k(trainer, held, corpus)
    best, best_state, bad_evals, step = before, _cpu_state(model), 0, 0
    history = [{"step": 0, "recall@10": before}]
    log.info("held-out Recall@10 before fine-tuning: %.4f (%d pairs)", before, len(held))
    model.train()
    rng = random.Random(cfg.seed)
    bar = tqdm(total=total, desc="finetune", unit="step", disable=not progress)
    stop = False
    for _epoch in range(cfg.epochs):
        order = list(train)
        rng.shuffle(order)
        for i in range(0, len(order), cfg.batch_size):
            loss = trainer.loss(order[i : i + cfg.batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", best_r10=f"{best:.3f}")
            if step % eval_every == 0 or step == total:
                r = recall_at_k(trainer, held, corpus)
                history.append({"step": step, "recall@10": r, "loss": float(loss.item())})
                if r > best:
                    best, best_state, bad_evals = r, _cpu_state(model), 0
                else:
                    bad_evals += 1
                    if bad_evals >= cfg.patience:
                        stop = True
                        break
        if stop:
            break
    bar.close()
    model.load_state_dict(best_state)
    out_dir = _write(model, trainer.tokenizer, base, out, cfg, train, held, before, best, history)
    return FinetuneResult(out_dir, before, best, step, history)


def _cpu_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _write(
    model: Any,
    tokenizer: Any,
    base: Path,
    out: Path,
    cfg: FinetuneConfig,
    train: list[Pair],
    held: list[Pair],
    before: float,
    best: float,
    history: list[dict[str, float]],
) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = Path(out) / f"{base.name}-ft-{stamp}"
    n = 1
    while out_dir.exists():  # two runs in one second: never overwrite a version
        n += 1
        out_dir = Path(out) / f"{base.name}-ft-{stamp}-{n}"
    tmp = out_dir.with_name(out_dir.name + ".partial")
    tmp.mkdir(parents=True)
    model.to("cpu").save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    report = {
        "base": str(base),
        "base_version": model_version(base),
        "pairs": {"train": len(train), "heldout": len(held)},
        "recall@10": {"before": before, "best": best},
        "history": history,
        "config": asdict(cfg),
        "created": stamp,
    }
    (tmp / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    tmp.rename(out_dir)  # a scorer never sees a half-written model directory
    return out_dir


def run_cli(args: argparse.Namespace) -> int:
    s = Settings.from_env()
    if args.pairs:
        pairs = pairs_from_csv(Path(args.pairs))
    else:
        if not args.catalog:
            raise DatasetError("--events needs --catalog (a JSONL of catalog items for titles)")
        pairs = pairs_from_events(
            read_event_docs(Path(args.events)), load_catalog(Path(args.catalog)), s.session_gap_s
        )
    if not pairs:
        raise DatasetError("no (query, item) pairs found: searches followed by clicks/purchases")
    cfg = FinetuneConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        holdout=args.holdout,
        patience=args.patience,
        eval_every=args.eval_every,
        temperature=args.temperature,
        seed=args.seed,
        query_max_tokens=s.query_max_tokens,
        title_max_tokens=s.title_max_tokens,
        device=args.device,
    )
    base_dir = args.base or s.encoder_model_dir
    base = Path(base_dir) if base_dir else None
    result = finetune(pairs, Path(args.out), base, cfg, progress=not args.quiet)
    print(
        f"held-out Recall@10 {result.recall_before:.4f} -> {result.recall_best:.4f} "
        f"after {result.steps} steps; model written to {result.out_dir} "
        f"(version {model_version(result.out_dir)})"
    )
    return 0
