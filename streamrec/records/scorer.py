"""The scorer's records: requests and replies, catalog embeddings, control messages."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from streamrec.records.base import _drop_none


@dataclass(frozen=True, slots=True)
class ScorerRequest:
    """Texts a rank worker wants embedded (scorer.requests)."""

    request_id: str
    texts: list[str]
    reply_to: str
    reply_partition: int
    sent_ts: int
    deadline_ts: int
    kind: str = "query"
    model_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScorerRequest:
        return cls(
            request_id=d["request_id"],
            texts=list(d["texts"]),
            reply_to=d["reply_to"],
            reply_partition=int(d["reply_partition"]),
            sent_ts=int(d["sent_ts"]),
            deadline_ts=int(d["deadline_ts"]),
            kind=d.get("kind", "query"),
            model_version=d.get("model_version"),
        )


@dataclass(frozen=True, slots=True)
class ScorerReply:
    """The vectors for one request (scorer.replies); `vectors` is base64 float16."""

    request_id: str
    model_version: str
    dim: int
    vectors: str
    valid: list[bool]
    produced_ts: int
    error: str | None = None
    scorer: str = ""
    batch_texts: int = 0
    queue_wait_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScorerReply:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class CatalogEmbedding:
    """One record of catalog.embeddings: an item vector, or a partition's completion marker."""

    kind: str  # "item" | "complete"
    model_version: str
    ts: int
    item_id: str | None = None
    dim: int | None = None
    vector: str | None = None
    text_hash: str | None = None
    partition: int | None = None
    items: int | None = None

    @property
    def key(self) -> str:
        if self.kind == "complete":
            return f"__complete__/{self.model_version}/{self.partition}"
        return str(self.item_id)

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CatalogEmbedding:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class ScorerControl:
    """A command to every scorer (scorer.control)."""

    command: str
    command_id: str
    ts: int
    model_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScorerControl:
        return cls(**d)
