"""A tiny random BERT on disk (no download): for unit tests and scorer processes in tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SHOP_WORDS = [
    "wireless",
    "headphones",
    "bluetooth",
    "headset",
    "kitchen",
    "sink",
    "red",
    "shoes",
    "running",
    "tv",
    "lamp",
]


def make_tiny_bert(
    path: Path, words: Sequence[str] = SHOP_WORDS, *, seed: int = 0, hidden: int = 32
) -> Path:
    """Write a 2-layer, `hidden`-wide BERT with a word-level vocabulary to `path`."""
    import torch
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *[f"w{i}" for i in range(40)]]
    vocab = list(dict.fromkeys(vocab))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    transformers.BertModel(config).save_pretrained(path)
    return path
