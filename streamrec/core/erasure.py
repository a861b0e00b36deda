"""Erasure in the engine: `forget` events, and the state a user leaves in a worker.

A batch that holds `forget` events is applied in runs that each end with one
(`apply_runs`), so whatever follows an erasure reads the profile store after
it and nothing of the erased state carries over: the interest vector computed
for the batch, the profile, the de-duplication ids (but for the same user's
events later in the batch, which are ingested already). The shell deletes the
user's latest list (a tombstone on `recommendations`) unless a newer list of
theirs in the same batch replaces it, then writes the audit record.
"""

from __future__ import annotations

from collections.abc import Callable

from streamrec.core.batch import BatchOutput, Ingested, ProfileStore
from streamrec.core.ingest import Ingestor, RawMessage
from streamrec.core.monitoring.monitor import Monitor
from streamrec.core.ranking.recommender import Recommender
from streamrec.records import AuditRecord, Event


class Erasure:
    """Erasure of users (a part of `Engine`)."""

    ingestor: Ingestor
    recommender: Recommender
    monitor: Monitor | None
    _apply_or_isolate: Callable[[Ingested, ProfileStore, int], BatchOutput]

    def forget_user(self, user: str, keep_ids: frozenset[str] = frozenset()) -> dict[str, int]:
        """Erasure of what this process holds in memory for `user` (a pseudonym): its
        de-duplication ids, pending ranker feedback and online-quality state. The
        profile is deleted by the batch (`forget` events), the list by the shell."""
        return {
            "dedup_ids": self.ingestor.dedup.forget(user, keep_ids),
            "ranker_pending": self.recommender.forget(user),
            "quality_state": self.monitor.forget(user) if self.monitor is not None else 0,
        }

    def apply_runs(self, ingested: Ingested, store: ProfileStore, now_ms: int) -> BatchOutput:
        """A batch with erasures, in runs that each end with one: whatever follows a
        `forget` reads the store after it, so nothing of the erased state carries over."""
        out = BatchOutput(dead_letters=list(ingested.dead_letters), counters=ingested.counters)
        run: list[tuple[RawMessage, Event]] = []
        erased_at: dict[str, int] = {}
        accepted = ingested.accepted
        for j, (msg, event) in enumerate(accepted):
            run.append((msg, event))
            if event.type == "forget":
                later = frozenset(e.event_id for _m, e in accepted[j + 1 :] if e.user == event.user)
                out.extend(self._apply_or_isolate(Ingested(run, keep_ids=later), store, now_ms))
                erased_at[event.user] = len(out.recommendations)
                run = []
        if run:
            out.extend(self._apply_or_isolate(Ingested(run), store, now_ms))
        # The shell sends tombstones after the batch's lists: none for a user whose
        # new list (after the erasure) replaces the old one anyway.
        relisted = {
            u for u, at in erased_at.items() if any(r.user == u for r in out.recommendations[at:])
        }
        out.tombstones = [u for u in dict.fromkeys(out.tombstones) if u not in relisted]
        return out

    def forget(self, event: Event, now_ms: int, out: BatchOutput, keep_ids: frozenset[str]) -> None:
        """A `forget` event: what this process holds for the user goes now; the batch
        deletes the profile, the shell the latest list; the audit says what went."""
        removed = self.forget_user(event.user, keep_ids)
        counters = out.counters
        counters.counts["valid"] += 1
        counters.counts["erasures"] += 1
        counters.by_type[event.type] += 1
        out.erasures.append(
            AuditRecord(
                "erase",
                now_ms,
                user=event.user,
                event_id=event.event_id,
                requested_ts=event.ts,
                detail="profile, latest list, " + ", ".join(f"{k}={v}" for k, v in removed.items()),
            )
        )
