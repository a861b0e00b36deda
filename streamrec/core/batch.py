"""What flows through a micro-batch: the profile store seam, query vectors, a batch
after ingest and a batch's output. Plain records, shared by the engine, the batch
plan and the streaming shell."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from streamrec.core.ingest import RawMessage
from streamrec.core.monitoring.counters import Counters
from streamrec.core.monitoring.drift import Detection
from streamrec.core.profile import Profile
from streamrec.records import AuditRecord, DeadLetter, Event, Recommendation

if TYPE_CHECKING:
    from streamrec.core.sharing import ItemLog, RankerDelta


class ProfileStore(Protocol):
    """Where profiles live. `partition` is the source partition of the user's events."""

    def get(self, user: str, partition: int) -> Profile | None: ...

    def put(self, user: str, profile: Profile, partition: int) -> None: ...

    def delete(self, user: str, partition: int) -> None: ...


class DictProfileStore(dict[str, Profile]):
    """In-process profile store (offline evaluation, tests)."""

    def get(self, user: str, partition: int = 0) -> Profile | None:  # type: ignore[override]
        return dict.get(self, user)

    def put(self, user: str, profile: Profile, partition: int = 0) -> None:
        self[user] = profile

    def delete(self, user: str, partition: int = 0) -> None:
        self.pop(user, None)


@dataclass(frozen=True)
class QueryVectors:
    """Vectors for query texts (a scorer reply, decoded); `valid[i]` False: none."""

    version: str
    texts: Sequence[str]
    vectors: np.ndarray
    valid: np.ndarray


#: In-process stand-in for the scorer: texts, wanted version -> vectors (or None).
EmbedFn = Callable[[list[str], str | None], QueryVectors | None]


@dataclass
class Ingested:
    """A batch after ingest: accepted events with their source message, and dead letters."""

    accepted: list[tuple[RawMessage, Event]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, DeadLetter]] = field(default_factory=list)
    #: What ingest counted (in, dlq, duplicates); travels on with the batch.
    counters: Counters = field(default_factory=Counters)
    #: Event ids an erasure in this run keeps in de-duplication: the same user's
    #: events later in the batch (ingested already, applied after the erasure).
    keep_ids: frozenset[str] = frozenset()


@dataclass
class BatchOutput:
    recommendations: list[Recommendation] = field(default_factory=list)
    #: (record key: a pseudonym or a keyed hash, dead letter).
    dead_letters: list[tuple[bytes | None, DeadLetter]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: Users erased in this batch (`forget` events): what each one removed, for the audit.
    erasures: list[AuditRecord] = field(default_factory=list)
    #: Pseudonyms whose latest list is to be deleted (a tombstone on `recommendations`):
    #: erased users without a newer list in the same batch.
    tombstones: list[str] = field(default_factory=list)
    #: The events each recommendation answers, with their source messages (same order;
    #: oldest first, the list's own event last): what a list that cannot be published
    #: is dead-lettered with.
    sources: list[tuple[tuple[RawMessage, Event], ...]] = field(default_factory=list)
    #: Drift detected while processing the batch (published at once by the shell).
    drift: list[Detection] = field(default_factory=list)
    #: The batch's counts; added to the window once its output reached Kafka.
    counters: Counters = field(default_factory=Counters)
    #: What the batch taught, for the other workers and for recovery (`core/sharing.py`):
    #: on the last output of a batch, empty unless sharing is on. Delivered before the
    #: batch's profiles are stored, and before its events are acked.
    deltas: list[ItemLog | RankerDelta] = field(default_factory=list)

    def extend(self, other: BatchOutput) -> None:
        self.recommendations += other.recommendations
        self.dead_letters += other.dead_letters
        self.events += other.events
        self.erasures += other.erasures
        self.tombstones += other.tombstones
        self.sources += other.sources
        self.drift += other.drift
        self.deltas += other.deltas
        self.counters.merge(other.counters)
