"""The scale-out table of docs/scaling.md, from a `streamrec bench --workers 1,2,3 --json` run.

    streamrec bench --workers 1,2,3 --events 10000 --json --out scale.json
    python scripts/scale_plan.py scale.json [--rates 1000,10000,30000,50000,100000]

A worker (one core) spends R*f of every second folding the other workers' deltas
and t per event of its own, so it processes (1 - R*f) / t events/s and the shop
needs N = R*t / (1 - R*f) of them; the shared topic carries R*b bytes/s in and
N*R*b out. Past R = 1/f no number of workers is enough.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def plan(t_s: float, f_s: float, b: float, rates: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in rates:
        busy = r * f_s
        n = r * t_s / (1 - busy) if busy < 1 else None
        rows.append({
            "rate": r, "workers": n, "fold_share": busy,
            "in_mb_s": r * b / 1e6, "out_mb_s": n * r * b / 1e6 if n else None,
        })  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bench_json")
    ap.add_argument("--rates", default="1000,10000,30000,50000,100000")
    args = ap.parse_args()
    d = json.loads(Path(args.bench_json).read_text())
    sharing = d["sharing"]
    t = sharing["core_us_per_event"] / 1e6
    f = sharing["fold_us_per_event"] / 1e6
    b = max(v["delta_bytes_per_1k_events"] / 1000 for v in d["scale_out"].values())
    print(f"t = {t * 1e3:.2f} ms/event, f = {f * 1e6:.1f} us/event, b = {b:.0f} B/event; "
          f"ceiling 1/f = {1 / f:,.0f} events/s")  # fmt: skip
    print("| R (events/s) | worker cores | fold share | shared in | fetched by all |")
    print("|---:|---:|---:|---:|---:|")
    for row in plan(t, f, b, [int(x) for x in args.rates.split(",")]):
        n, out = row["workers"], row["out_mb_s"]
        print(f"| {row['rate']:,} | {f'{n:,.1f}' if n else 'none suffice'} | "
              f"{min(1.0, row['fold_share']):.0%} | {row['in_mb_s']:.2f} MB/s | "
              f"{f'{out:,.1f} MB/s' if out else '-'} |")  # fmt: skip


if __name__ == "__main__":
    main()
