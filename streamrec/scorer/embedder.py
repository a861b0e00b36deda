"""The scorer's core: requests in, vectors out, across model versions. No Kafka here.

`Embedder` owns the loaded encoders (the current one, the previous one while a
hot swap settles, and a staged one while the catalog is re-embedded for it),
one query LRU cache per version, and the batching rules: every request that
the shell collected in one micro-batch is answered from one `encode` call per
(version, kind), after de-duplication and cache look-ups.

A model that raises costs the requests of that batch their vectors (each
answer carries the error, so requesters fall back at once), never the process.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamrec.core.lru import LRUCache
from streamrec.errors import ConfigError
from streamrec.records import CatalogItem
from streamrec.scorer.encoder import Encoder, TextEncoder, select_device
from streamrec.settings import Settings

log = logging.getLogger(__name__)


def item_text(item: CatalogItem) -> str:
    """What an item is embedded from: title, category path, brand, attributes.

    >>> item_text(CatalogItem("1", "Runner 2", ("Shoes", "Running"), brand="Acme",
    ...                       attributes={"colour": "red"}))
    'Runner 2 | Shoes > Running | Acme | colour: red'
    """
    parts = [item.title.strip()]
    if item.category:
        parts.append(" > ".join(item.category))
    if item.brand:
        parts.append(item.brand)
    if item.attributes:
        parts.append(", ".join(f"{k}: {v}" for k, v in sorted(item.attributes.items())))
    return " | ".join(p for p in parts if p)


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass
class Answer:
    """Vectors for one request's texts, in its order."""

    version: str
    vectors: np.ndarray
    valid: np.ndarray
    error: str | None = None


@dataclass
class BatchStats:
    texts: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    encoded: int = 0
    errors: int = 0
    versions: dict[str, int] = field(default_factory=dict)


LoadEncoder = Callable[[str | Path | None], Encoder]


class Embedder:
    """Encoders by version, a query cache per version, and cross-request batching."""

    def __init__(
        self,
        encoder: Encoder,
        *,
        query_max_tokens: int = 32,
        title_max_tokens: int = 128,
        cache_size: int = 100_000,
    ) -> None:
        self.max_tokens = {"query": query_max_tokens, "item": title_max_tokens}
        self.cache_size = cache_size
        self.encoders: dict[str, Encoder] = {}
        self.caches: dict[str, LRUCache[np.ndarray]] = {}
        self.current = self._add(encoder)
        self.previous: str | None = None
        self.staged: str | None = None

    @classmethod
    def from_settings(cls, s: Settings, model_dir: str | Path | None = None) -> Embedder:
        return cls(
            load_encoder(s, model_dir),
            query_max_tokens=s.query_max_tokens,
            title_max_tokens=s.title_max_tokens,
            cache_size=s.scorer_cache_size,
        )

    def _add(self, encoder: Encoder) -> str:
        self.encoders[encoder.version] = encoder
        self.caches.setdefault(encoder.version, LRUCache(self.cache_size))
        return encoder.version

    @property
    def dim(self) -> int:
        return self.encoders[self.current].dim

    # -- versions ---------------------------------------------------------------

    def stage(self, encoder: Encoder) -> str:
        """Hold a new encoder next to the current one until `promote`; returns its version."""
        if encoder.version in self.encoders and encoder.version != self.staged:
            return encoder.version  # already current (or previous): nothing to stage
        if self.staged is not None and self.staged != encoder.version:
            self._drop(self.staged)
        self.staged = self._add(encoder)
        return self.staged

    def promote(self) -> str:
        """The staged version becomes current; the old current stays answerable as previous."""
        if self.staged is None:
            return self.current
        if self.previous is not None and self.previous not in (self.current, self.staged):
            self._drop(self.previous)
        self.previous, self.current, self.staged = self.current, self.staged, None
        log.info("encoder %s is now current (previous: %s)", self.current, self.previous)
        return self.current

    def _drop(self, version: str) -> None:
        self.encoders.pop(version, None)
        self.caches.pop(version, None)

    def resolve(self, requested: str | None) -> str:
        """The version to answer in: the requested one while loaded, else the current one."""
        return requested if requested in self.encoders else self.current

    # -- encoding ---------------------------------------------------------------

    def answer(
        self, requests: Sequence[tuple[Sequence[str], str, str | None]], stats: BatchStats
    ) -> list[Answer]:
        """Answer (texts, kind, requested version) requests with one encode per group."""
        answers: list[Answer | None] = [None] * len(requests)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (_texts, kind, version) in enumerate(requests):
            groups.setdefault((self.resolve(version), kind), []).append(i)
        for (version, kind), members in groups.items():
            texts = [t for i in members for t in requests[i][0]]
            stats.texts += len(texts)
            stats.versions[version] = stats.versions.get(version, 0) + len(texts)
            try:
                vectors, valid = self._encode_cached(texts, version, kind, stats)
                error = None
            except Exception as exc:  # a failing model must cost a batch, not the scorer
                log.exception("encoder %s failed on a batch of %d texts", version, len(texts))
                stats.errors += 1
                vectors = np.zeros((len(texts), self.encoders[version].dim), dtype=np.float32)
                valid = np.zeros(len(texts), dtype=bool)
                error = f"{type(exc).__name__}: {exc}"
            start = 0
            for i in members:
                n = len(requests[i][0])
                answers[i] = Answer(
                    version, vectors[start : start + n], valid[start : start + n], error
                )
                start += n
        return [a for a in answers if a is not None]

    def _encode_cached(
        self, texts: Sequence[str], version: str, kind: str, stats: BatchStats
    ) -> tuple[np.ndarray, np.ndarray]:
        encoder = self.encoders[version]
        n = len(texts)
        vectors = np.zeros((n, encoder.dim), dtype=np.float32)
        valid = np.zeros(n, dtype=bool)
        cache = self.caches[version] if kind == "query" else None
        todo: list[int] = []
        lookups = 0
        for i, text in enumerate(texts):
            if not text or not text.strip():
                continue  # nothing to encode: stays invalid, costs nothing
            lookups += 1
            hit = cache.get(text) if cache is not None else None
            if hit is None:
                todo.append(i)
            else:
                vectors[i] = hit
                valid[i] = True
        if cache is not None:
            stats.cache_hits += lookups - len(todo)
            stats.cache_misses += len(todo)
        if todo:
            out = encoder.encode([texts[i] for i in todo], max_length=self.max_tokens[kind])
            stats.encoded += len({texts[i] for i in todo})  # the encoder de-duplicates
            vectors[todo] = out.vectors
            valid[todo] = out.valid
            if cache is not None:
                for j, i in enumerate(todo):
                    if out.valid[j]:
                        cache.put(texts[i], out.vectors[j])
        return vectors, valid

    def embed_items(
        self, items: Sequence[CatalogItem], version: str
    ) -> list[tuple[CatalogItem, np.ndarray | None, str]]:
        """(item, vector or None, error) per item; a failing batch is retried item by item."""
        encoder = self.encoders[version]
        texts = [item_text(it) for it in items]
        limit = self.max_tokens["item"]
        try:
            out = encoder.encode(texts, max_length=limit)
            return [
                (it, out.vectors[i] if out.valid[i] else None, "" if out.valid[i] else "empty text")
                for i, it in enumerate(items)
            ]
        except Exception:
            log.warning("encoder %s failed on %d items; retrying one by one", version, len(items))
        results: list[tuple[CatalogItem, np.ndarray | None, str]] = []
        for it, text in zip(items, texts, strict=True):
            try:
                one = encoder.encode([text], max_length=limit)
                results.append((it, one.vectors[0] if one.valid[0] else None, ""))
            except Exception as exc:
                results.append((it, None, f"{type(exc).__name__}: {exc}"))
        return results


def load_encoder(s: Settings, model_dir: str | Path | None = None) -> Encoder:
    """The configured encoder (or `model_dir`); ModelLoadError says which path and why."""
    return make_encoder(
        model_dir or s.encoder_model_dir or None,
        backend=s.encoder_backend,
        device=s.encoder_device,
        threads=s.encoder_threads or None,
        batch_size=s.encoder_batch_size,
        cache_dir=s.cache_dir,
    )


def make_encoder(
    model_dir: str | Path | None,
    *,
    backend: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
) -> Encoder:
    """torch on CUDA and where asked for; ONNX Runtime (int8 under "auto") on CPU."""
    from streamrec.scorer.onnx_encoder import OnnxEncoder, onnx_available

    if backend == "auto":
        on_cpu = select_device(device).type == "cpu"
        backend = "onnx-int8" if on_cpu and onnx_available() else "torch"
    if backend == "torch":
        return TextEncoder(model_dir, device=device, threads=threads, batch_size=batch_size)
    if device.startswith("cuda"):
        raise ConfigError(f"encoder backend {backend!r} runs on CPU; use torch for {device}")
    return OnnxEncoder(
        model_dir,
        cache_dir=cache_dir or Path.home() / ".cache" / "streamrec",
        int8=backend == "onnx-int8",
        threads=threads,
        batch_size=batch_size,
    )
