"""Fine-tuning on synthetic (query, item) pairs with a tiny BERT: Recall@10 must improve."""

import json
import random

import pytest

pytest.importorskip("transformers")

from streamrec.cli import main
from streamrec.scorer.encoder import TextEncoder
from streamrec.scorer.finetune import FinetuneConfig, Pair, finetune, pairs_from_csv
from tests.tiny_bert import make_tiny_bert

QUERY_WORDS = [f"x{i}" for i in range(40)]


def synthetic_pairs(n=150, seed=0):
    """Query words x_i map to item words w_i: learnable, and unseen combinations are held out."""
    rng = random.Random(seed)
    combos: set[tuple[int, ...]] = set()
    while len(combos) < n:
        combos.add(tuple(sorted(rng.sample(range(40), 2))))
    return [Pair(f"x{i} x{j}", f"w{i} w{j}") for i, j in sorted(combos)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("ft") / "tiny-q", QUERY_WORDS)


def test_finetune_improves_heldout_recall_and_writes_a_loadable_version(base, tmp_path):
    cfg = FinetuneConfig(epochs=10, batch_size=16, lr=1e-3, patience=3, device="cpu")
    result = finetune(synthetic_pairs(), tmp_path, base, cfg, progress=False)
    assert result.recall_before < 0.3
    assert result.recall_best >= result.recall_before + 0.4, result.history
    assert result.out_dir.parent == tmp_path and result.out_dir.name.startswith("tiny-q-ft-")
    report = json.loads((result.out_dir / "training.json").read_text())
    assert report["recall@10"]["best"] == result.recall_best
    enc = TextEncoder(result.out_dir, device="cpu")
    assert enc.version != TextEncoder(base, device="cpu").version
    assert not list(tmp_path.glob("*.partial"))


def test_finetune_cli_from_an_event_log_and_catalog(base, tmp_path, capsys):
    pairs = synthetic_pairs(60, seed=1)
    events, catalog = [], []
    for n, p in enumerate(pairs):
        catalog.append({"item_id": f"i{n}", "title": p.text})
        user, ts = f"u{n}", 1_700_000_000_000 + n * 10_000
        events.append({"event_id": f"s{n}", "type": "search", "user_id": user, "ts": ts,
                       "query": p.query})  # fmt: skip
        events.append({"event_id": f"c{n}", "type": "click", "user_id": user, "ts": ts + 5_000,
                       "item_id": f"i{n}"})  # fmt: skip
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\nnot json\n")
    (tmp_path / "cat.jsonl").write_text("\n".join(json.dumps(c) for c in catalog) + "\n")
    code = main(["finetune", "--events", str(tmp_path / "log.jsonl"), "--catalog",
                 str(tmp_path / "cat.jsonl"), "--out", str(tmp_path / "models"), "--base",
                 str(base), "--epochs", "2", "--lr", "1e-3", "--batch-size", "16", "--quiet",
                 "--device", "cpu"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "held-out Recall@10" in out and "model written to" in out
    assert len(list((tmp_path / "models").iterdir())) == 1


def test_pairs_csv_needs_its_columns(tmp_path):
    from streamrec.errors import DatasetError

    (tmp_path / "p.csv").write_text("query,item_title\nred shoes,Runner\n , empty\n")
    assert pairs_from_csv(tmp_path / "p.csv") == [Pair("red shoes", "Runner")]
    (tmp_path / "bad.csv").write_text("q,title\na,b\n")
    with pytest.raises(DatasetError, match="query,item_title"):
        pairs_from_csv(tmp_path / "bad.csv")
    assert main(["finetune", "--pairs", str(tmp_path / "bad.csv"), "--out", str(tmp_path)]) == 2
