"""MovieLens-100k, read straight out of the `recbole` wheel (never committed, never unpacked).

Mapping to storefront events: every rating is an interaction at its timestamp;
rating 1-2 -> view, 3-4 -> click, 5 -> purchase (at a flat rental price, since
movies have none). Movies become catalog items with their genres as categories.
No session ids: the engine starts a new session after 30 minutes of inactivity.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from streamrec.errors import DatasetError
from streamrec.records import CatalogItem, RawEvent

_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"
RENTAL_PRICE = 3.99


def find_wheel(cache_dir: Path) -> Path | None:
    wheels = sorted(Path(cache_dir).glob("recbole-*.whl"))
    return wheels[-1] if wheels else None


def fetch(cache_dir: Path, quiet: bool = False) -> Path:
    """The recbole wheel in `cache_dir`, downloaded once with `pip download --no-deps`."""
    cache_dir = Path(cache_dir)
    found = find_wheel(cache_dir)
    if found:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "-q",
        "recbole",
        "-d",
        str(cache_dir),
    ]
    if not quiet:
        print(f"downloading the MovieLens-100k sample (wheel 'recbole') into {cache_dir}")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = find_wheel(cache_dir)
    if proc.returncode != 0 or found is None:
        raise DatasetError(
            f"could not download the recbole wheel ({' '.join(cmd)}): {proc.stderr.strip()[-500:]}"
        )
    return found


@dataclass(frozen=True)
class MovieLens:
    events: list[RawEvent]
    items: list[CatalogItem]


def load(wheel: Path, limit: int | None = None) -> MovieLens:
    """Events in time order (ties keep file order) and the catalog, from the wheel."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            inter = zf.read(_MEMBER.format("inter")).decode("latin-1")
            item = zf.read(_MEMBER.format("item")).decode("latin-1")
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{wheel} does not hold MovieLens-100k: {exc}") from exc

    rows: list[tuple[int, str, str, int]] = []
    for line in inter.splitlines()[1:]:
        user, movie, rating, ts = line.split("\t")
        rows.append((int(float(ts)) * 1000, user, movie, int(float(rating))))
    rows.sort(key=lambda r: r[0])
    if limit is not None:
        rows = rows[:limit]
    events = [_event(ts, user, movie, rating) for ts, user, movie, rating in rows]

    items = []
    for line in item.splitlines()[1:]:
        movie, title, year, genres = ([*line.split("\t"), "", "", ""])[:4]
        attrs: dict[str, str | int | float | bool] = {"year": int(year)} if year.isdigit() else {}
        items.append(
            CatalogItem(
                item_id=movie,
                title=f"{title} ({year})" if year else title,
                category=tuple(genres.split()),
                price=RENTAL_PRICE,
                attributes=attrs,
            )
        )
    return MovieLens(events, items)


def _event(ts: int, user: str, movie: str, rating: int) -> RawEvent:
    etype = "view" if rating <= 2 else "click" if rating <= 4 else "purchase"
    return RawEvent(
        event_id=f"ml-{user}-{movie}-{ts}",
        type=etype,
        user_id=user,
        ts=ts,
        item_id=movie,
        price=RENTAL_PRICE if etype == "purchase" else None,
        quantity=1 if etype == "purchase" else None,
    )
