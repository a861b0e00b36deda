"""`streamrec dlq`: list dead letters by reason, open one, replay chosen ones after a fix.

Dead letters are sealed (`core/deadletters.py`): listing needs no key,
opening and replaying need the same keys as the worker that wrote them
(STREAMREC_DLQ_KEY, or the pseudonym key it is derived from). A replay sends
the original key and bytes back to the topic they came from and records it on
`privacy.audit`, so the same dead letter is not replayed twice by accident
(`--again` to insist). Dead letters of erased users (`streamrec forget`) are
never listed, opened or replayed. A truncated dead letter (an oversized
message) holds only the start of the message and cannot be replayed.

    streamrec dlq list [--reason schema] [--limit 20]
    streamrec dlq show storefront.events:0:1234
    streamrec dlq replay --reason oversized         # after raising the limit
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streamrec import serde
from streamrec.build import build_dead_letters
from streamrec.client import EventProducer, read_all, tail
from streamrec.contracts import EVENTS_DLQ, PRIVACY_AUDIT
from streamrec.erasure import read_audit
from streamrec.errors import StreamrecError
from streamrec.records import AuditRecord, DeadLetter
from streamrec.settings import Settings


@dataclass(frozen=True)
class Letter:
    dead: DeadLetter
    replayed: bool


def read_letters(settings: Settings, idle_s: float = 1.0) -> list[Letter]:
    """The dead letters on the topic, oldest first, without those of erased users."""
    audit = read_audit(settings, idle_s=idle_s)
    erased = {a.user: a.ts for a in audit if a.action == "erase" and a.user}
    replayed = {a.ref for a in audit if a.action == "dlq_replay"}
    consumer = tail(settings, EVENTS_DLQ)
    try:
        records = read_all(consumer, idle_s=idle_s)
    finally:
        consumer.close()
    out = []
    for r in records:
        if r.value is None:
            continue
        dead = DeadLetter.from_dict(serde.loads(r.value))
        if dead.user is not None and dead.dlq_ts <= erased.get(dead.user, -1):
            continue  # erased: never shown again; retention removes the sealed bytes
        out.append(Letter(dead, dead.ref in replayed))
    return out


def by_reason(letters: Iterable[Letter]) -> Counter[str]:
    return Counter(x.dead.reason for x in letters)


def select(
    letters: list[Letter], *, reason: str | None = None, refs: Iterable[str] = ()
) -> list[Letter]:
    wanted = set(refs)
    return [
        x
        for x in letters
        if (reason is None or x.dead.reason == reason) and (not wanted or x.dead.ref in wanted)
    ]


def replay(
    settings: Settings,
    letters: list[Letter],
    *,
    again: bool = False,
    log: Callable[[str], None] = print,
) -> int:
    """Send each chosen dead letter's original back to its topic; how many were sent."""
    writer = build_dead_letters(settings)
    sent = 0
    with EventProducer(settings) as producer:
        for x in letters:
            dead = x.dead
            if x.replayed and not again:
                log(f"{dead.ref}: replayed before (--again to send it once more)")
                continue
            if dead.truncated:
                log(f"{dead.ref}: truncated ({dead.original_size} bytes); cannot be replayed")
                continue
            key, value = writer.open(dead)
            producer.send_raw(value, key, topic=dead.source_topic)
            record = AuditRecord(
                "dlq_replay",
                int(time.time() * 1000),
                ref=dead.ref,
                detail=f"{dead.reason} dead letter sent back to {dead.source_topic}",
                by="streamrec dlq",
            )
            producer.send_raw(
                serde.dumps(record.to_dict()),
                record.key.encode(),
                topic=settings.topic(PRIVACY_AUDIT),
            )
            sent += 1
    return sent


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    letters = read_letters(settings)
    chosen = select(letters, reason=args.reason, refs=args.refs)
    if args.dlq_command == "list":
        counts = by_reason(letters)
        print(f"{len(letters)} dead letters" + (":" if letters else ""))
        for reason, n in counts.most_common():
            print(f"  {reason:<18} {n:>8,}")
        if chosen:
            print(f"\nlatest {min(args.limit, len(chosen))} of {len(chosen)}:")
        for x in chosen[-args.limit :]:
            d = x.dead
            mark = "  [replayed]" if x.replayed else ""
            print(f"  {d.ref}  {_when(d.dlq_ts)}  {d.reason:<14} {d.user or '-':<34} "
                  f"{d.detail[:70]}{mark}")  # fmt: skip
        return 0
    if args.dlq_command == "show":
        if not chosen:
            raise StreamrecError(f"no dead letter {' '.join(args.refs)} (see `streamrec dlq list`)")
        writer = build_dead_letters(settings)
        for x in chosen:
            key, value = writer.open(x.dead)
            print(serde.dumps(x.dead.to_dict() | {"sealed": "..."}).decode())
            print(f"key: {key!r}")
            print(value.decode("utf-8", "replace"))
        return 0
    if not chosen or (args.reason is None and not args.refs):
        raise StreamrecError("name the dead letters to replay: --reason R and/or their refs")
    if args.dry_run:
        for x in chosen:
            print(f"would replay {x.dead.ref} ({x.dead.reason})")
        return 0
    n = replay(settings, chosen, again=args.again)
    print(f"replayed {n} of {len(chosen)} dead letters")
    return 0
