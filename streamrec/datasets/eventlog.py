"""Event logs for `streamrec replay`: JSONL or CSV files of storefront events.

JSONL: one event object per line, the storefront.events schema (user_id, not a pseudonym).
CSV: a header row naming schema fields; `shown` is `;`-separated; empty cells are absent.
Lines are returned as they are: validation is the worker's job, so a replayed
log exercises exactly what live traffic would (bad lines end in events.dlq).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamrec import serde
from streamrec.errors import DatasetError, SerdeError

_INT_FIELDS = {"ts", "quantity"}
_FLOAT_FIELDS = {"price"}


def read_events(path: Path) -> Iterator[tuple[bytes | None, bytes, int]]:
    """(key, value bytes, ts for ordering) per line; unparseable lines keep ts 0."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no event log at {path}")
    if path.suffix.lower() == ".csv":
        yield from _read_csv(path)
    else:
        yield from _read_jsonl(path)


def _key_ts(doc: Any) -> tuple[bytes | None, int]:
    if not isinstance(doc, dict):
        return None, 0
    user = doc.get("user_id")
    ts = doc.get("ts")
    return (
        str(user).encode() if user is not None else None,
        ts if isinstance(ts, int) else 0,
    )


def _read_jsonl(path: Path) -> Iterator[tuple[bytes | None, bytes, int]]:
    with path.open("rb") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                key, ts = _key_ts(serde.loads(line))
            except SerdeError:
                key, ts = None, 0
            yield key, line, ts


def _read_csv(path: Path) -> Iterator[tuple[bytes | None, bytes, int]]:
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            doc: dict[str, Any] = {}
            for k, v in row.items():
                if k is None or v is None or v == "":
                    continue
                if k in _INT_FIELDS:
                    doc[k] = int(v) if v.lstrip("-").isdigit() else v
                elif k in _FLOAT_FIELDS:
                    try:
                        doc[k] = float(v)
                    except ValueError:
                        doc[k] = v
                elif k == "shown":
                    doc[k] = [s for s in v.split(";") if s]
                else:
                    doc[k] = v
            key, ts = _key_ts(doc)
            yield key, serde.dumps(doc), ts
