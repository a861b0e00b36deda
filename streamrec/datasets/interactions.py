"""Interaction logs for `streamrec evaluate`: a user's own data in three plain formats.

* CSV with a header, or JSONL, one interaction per row. Columns (aliases in brackets):
  `user` [user_id], `item` [item_id], `timestamp` [ts, time]; optional `type`
  [event, event_type], `query`, `title`, `category` (`;` or `|` separated, most
  general first), `price`, `event_id`. Timestamps in seconds or milliseconds since
  the epoch (told apart by size) or ISO 8601.
* "user item" lines (whitespace separated), already in time order; a third
  column, if there, is the timestamp. Without one the log has no times
  (`InteractionLog.timed` is False): events are one second apart in file order.

Any of them may be gzip-compressed (a name ending in `.gz`).

A row with an item and no type is a click. A row with a query and no item is a
search. A row with both is the search followed by the click on its result.
Titles and categories build the catalog. Rows that cannot be read are counted
and skipped; the error names the first few with their line numbers.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "log.txt"
>>> _ = p.write_text("u1 i1\\nu2 i1\\nu1 i2\\n")
>>> log = read_interactions(p)
>>> [(e.user_id, e.item_id) for e in log.events]
[('u1', 'i1'), ('u2', 'i1'), ('u1', 'i2')]
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from streamrec import serde
from streamrec.errors import DatasetError, SerdeError
from streamrec.records import EVENT_TYPES, CatalogItem, RawEvent

ALIASES = {
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "iid", "sku"),
    "ts": ("timestamp", "ts", "time"),
    "type": ("type", "event", "event_type"),
    "query": ("query", "search"),
    "title": ("title", "item_title", "name"),
    "category": ("category", "categories", "genre", "genres"),
    "price": ("price",),
    "event_id": ("event_id", "id"),
}
#: Below this a number is seconds since the epoch, at or above milliseconds (year 5138).
_MS_FROM = 10**11
_BASE_TS_MS = 1_700_000_000_000  # "user item" lines without a time: one second apart from here


@dataclass
class InteractionLog:
    name: str
    events: list[RawEvent]
    items: list[CatalogItem] = field(default_factory=list)
    #: False for "user item" lines without times: there is no time to split on, so
    #: `streamrec evaluate` splits by each user's last items instead.
    timed: bool = True
    #: Rows that could not be read: (line number, why), the first 20.
    skipped: list[tuple[int, str]] = field(default_factory=list)
    skipped_count: int = 0


def read_interactions(path: Path, fmt: str | None = None) -> InteractionLog:
    """Events in time order (stable: equal times keep file order) and the catalog they name."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no interaction log at {path}")
    fmt = fmt or _guess_format(path.with_suffix("") if path.suffix == ".gz" else path)
    rows: Iterator[tuple[int, dict[str, Any]]]
    if fmt == "csv":
        rows = _csv_rows(path)
    elif fmt == "jsonl":
        rows = _jsonl_rows(path)
    elif fmt == "pairs":
        rows = _pair_rows(path)
    else:
        raise DatasetError(f"unknown log format {fmt!r}: use csv, jsonl or pairs")
    log = InteractionLog(path.name.removesuffix(".gz").rsplit(".", 1)[0], [])
    items: dict[str, CatalogItem] = {}
    timed: list[tuple[int, int, RawEvent]] = []
    untimed = 0
    for line, row in rows:
        untimed += bool(row.pop("_untimed", False))
        try:
            for ev in _events(row, line):
                timed.append((ev.ts, len(timed), ev))
            _catalog(row, items)
        except (DatasetError, ValueError, TypeError) as exc:
            log.skipped_count += 1
            if len(log.skipped) < 20:
                log.skipped.append((line, str(exc)))
    if not timed:
        why = f"; first problems: {log.skipped[:3]}" if log.skipped else ""
        raise DatasetError(f"{path} holds no readable interactions ({fmt}){why}")
    timed.sort(key=lambda t: (t[0], t[1]))
    log.events = [ev for _ts, _i, ev in timed]
    log.timed = untimed < len(timed)
    log.items = list(items.values())
    return log


def _guess_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    return "pairs"


def _canonical(raw: dict[str, Any]) -> dict[str, Any]:
    lowered = {str(k).strip().lower(): v for k, v in raw.items() if k is not None}
    out: dict[str, Any] = {}
    for name, aliases in ALIASES.items():
        for alias in aliases:
            value = lowered.get(alias)
            if value is not None and value != "":
                out[name] = value
                break
    return out


def _open(path: Path) -> IO[str]:
    """The file as text, decompressed if its name ends in .gz."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(newline="", encoding="utf-8")


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open(path) as fh:
        reader = csv.DictReader(fh)
        names = {str(n).strip().lower() for n in reader.fieldnames or ()}
        if not names & set(ALIASES["user"]) or not names & set(ALIASES["item"] + ALIASES["query"]):
            raise DatasetError(
                f"{path}: the header needs a user column ({', '.join(ALIASES['user'])}) and an "
                f"item or query column; it has {sorted(names)}"
            )
        for row in reader:
            yield reader.line_num, _canonical(row)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                doc = serde.loads(line)
            except SerdeError as exc:
                yield n, {"_error": f"not JSON: {exc}"}
                continue
            yield n, _canonical(doc) if isinstance(doc, dict) else {"_error": "not an object"}


def _pair_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open(path) as fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) < 2:
                yield n, {"_error": "expected 'user item [timestamp]'"}
                continue
            row: dict[str, Any] = {"user": parts[0], "item": parts[1]}
            if len(parts) > 2:
                row["ts"] = parts[2]
            else:
                row["ts"], row["_untimed"] = _BASE_TS_MS + n * 1000, True
            yield n, row


def parse_ts(value: Any) -> int:
    """Milliseconds since the epoch from seconds, milliseconds or ISO 8601."""
    if isinstance(value, bool):
        raise ValueError(f"bad timestamp {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            try:
                return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
            except ValueError:
                raise ValueError(f"bad timestamp {value!r}") from None
    return int(number) if number >= _MS_FROM else int(number * 1000)


def _events(row: dict[str, Any], line: int) -> list[RawEvent]:
    if "_error" in row:
        raise DatasetError(row["_error"])
    if "user" not in row:
        raise DatasetError("no user")
    if "ts" not in row:
        raise DatasetError("no timestamp")
    user, ts = str(row["user"]), parse_ts(row["ts"])
    item = str(row["item"]) if "item" in row else None
    query = str(row["query"]) if "query" in row else None
    etype = str(row.get("type", "")).strip().lower() or ("click" if item else "search")
    if etype not in EVENT_TYPES or etype == "impression":
        raise DatasetError(f"unknown event type {etype!r}")
    if item is None and etype != "search":
        raise DatasetError(f"a {etype} needs an item")
    eid = str(row.get("event_id") or f"line-{line}")
    price = float(row["price"]) if "price" in row else None
    if etype == "search":
        if not query:
            raise DatasetError("a search needs a query")
        out = [RawEvent(eid, "search", user, ts, query=query)]
        if item is not None:  # a search row naming the item found: its click
            out.append(RawEvent(f"{eid}-c", "click", user, ts, item_id=item))
        return out
    # An item row with a query: the search that led to it, then the interaction.
    out = [RawEvent(f"{eid}-q", "search", user, ts, query=query)] if query else []
    buying = etype == "purchase"
    out.append(
        RawEvent(
            eid,
            etype,
            user,
            ts,
            item_id=item,
            price=(price if price is not None else 0.0) if buying else None,
            quantity=1 if buying else None,
        )
    )
    return out


def _catalog(row: dict[str, Any], items: dict[str, CatalogItem]) -> None:
    item = row.get("item")
    if item is None or str(item) in items:
        return
    cats = row.get("category")
    if isinstance(cats, list):
        category = tuple(str(c) for c in cats)
    elif cats:
        category = tuple(c.strip() for c in re.split(r"[;|]", str(cats)) if c.strip())
    else:
        category = ()
    price = row.get("price")
    items[str(item)] = CatalogItem(
        item_id=str(item),
        title=str(row.get("title") or item),
        category=category,
        price=float(price) if price is not None else None,
    )
