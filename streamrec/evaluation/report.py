"""The report folder: results.json, report.md, report.html and PNG plots.

Tables mark the best value of every column in bold (highest, except latency:
lowest). Plots: NDCG@10 along the stream, HR@10 per segment, HR@10 by how many
events the user had before (the cold-start curve), and leave-last-out.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamrec import serde
from streamrec.evaluation.metrics import SEGMENT_HELP
from streamrec.evaluation.protocols import ModelRun
from streamrec.evaluation.runner import Evaluation
from streamrec.evaluation.uncertainty import best_baseline

COLUMNS = (
    "n", "hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "mrr@20",
    "coverage@10", "novelty", "latency_ms_mean", "latency_ms_p50", "latency_ms_p99",
)  # fmt: skip
SEGMENT_COLUMNS = ("cold_1", "cold_2_5", "cold_1_5", "warm", "after_search", "no_search")
LOWER_IS_BETTER = {"latency_ms_mean", "latency_ms_p50", "latency_ms_p99"}
NOT_RANKED = {"n"}
#: Bins of "events the user had before" for the cold-start curve.
HISTORY_BINS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 20), (21, 50), (51, 10**9))


def write_report(ev: Evaluation, out: Path) -> dict[str, str]:
    """Write everything into `out`; returns the paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_bytes(serde.dumps(ev.results()))
    plots = _plots(ev, out)
    sections = _sections(ev)
    md = _markdown(ev, sections, plots)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(_html(ev, sections, plots))
    return {
        "markdown": str(out / "report.md"),
        "html": str(out / "report.html"),
        "json": str(out / "results.json"),
        **{f"plot_{p}": str(out / p) for p in plots},
    }


# -- tables -----------------------------------------------------------------------------


Table = tuple[str, list[str], list[list[str]], list[set[int]]]  # title, header, rows, bold


def _fmt(metric: str, value: float) -> str:
    if metric == "n":
        return f"{int(value):,}"
    if metric == "novelty":
        return f"{value:.0f}"
    if metric.startswith("latency"):
        return f"{value:.3f}"
    return f"{value:.4f}"


def _table(
    title: str,
    rows: dict[str, dict[str, float]],
    columns: Sequence[str],
    metric: str | None = None,
) -> Table:
    """`metric`: what every cell holds (segment tables), if not the column's own name."""
    cols = [c for c in columns if any(c in r for r in rows.values())]
    best: dict[str, float] = {}
    for c in cols:
        values = [r[c] for r in rows.values() if c in r]
        if c not in NOT_RANKED and len(values) > 1:
            best[c] = min(values) if c in LOWER_IS_BETTER else max(values)
    body: list[list[str]] = []
    bold: list[set[int]] = []
    for name, r in rows.items():
        cells, marks = [name], set()
        for j, c in enumerate(cols, 1):
            if c not in r:
                cells.append("")
                continue
            cells.append(_fmt(metric or c, r[c]))
            if c in best and np.isclose(r[c], best[c], rtol=0, atol=1e-12):
                marks.add(j)
        body.append(cells)
        bold.append(marks)
    return title, ["model", *cols], body, bold


def _sections(ev: Evaluation) -> list[Table]:
    out: list[Table] = []
    pre = ev.runs.get("prequential", {})
    if pre:
        out.append(
            _table(
                "Prequential (test-then-learn), all scored interactions",
                {n: r.segments.get("all", {}) for n, r in pre.items()},
                COLUMNS,
            )
        )
        for metric in ("hr@10", "ndcg@10"):
            out.append(
                _table(
                    f"Prequential {metric.upper()} by segment",
                    {
                        n: {s: r.segments[s][metric] for s in SEGMENT_COLUMNS if s in r.segments}
                        for n, r in pre.items()
                    },
                    SEGMENT_COLUMNS,
                    metric,
                )
            )
        out.append(
            _table(
                "Interactions scored per segment",
                {"scored": _segment_counts(next(iter(pre.values())))},
                SEGMENT_COLUMNS,
                "n",
            )
        )
    llo = ev.runs.get("leave_last_out", {})
    if llo:
        out.append(
            _table(
                "Leave-last-out (time-ordered, full ranking), all users",
                {n: r.segments.get("all", {}) for n, r in llo.items()},
                COLUMNS,
            )
        )
    return out


def _segment_counts(run: ModelRun) -> dict[str, float]:
    return {s: run.segments[s]["n"] for s in SEGMENT_COLUMNS if s in run.segments}


def standing(ev: Evaluation) -> list[str]:
    """Where streamrec stands against the best baseline, in sentences."""
    lines: list[str] = []
    for protocol, runs in ev.runs.items():
        ours = runs.get("streamrec")
        best_name = best_baseline(runs)
        if ours is None or best_name is None or "all" not in ours.segments:
            continue
        a = ours.segments["all"]["ndcg@10"]
        b = runs[best_name].segments["all"]["ndcg@10"]
        verdict = "beats" if a > b else "does not beat"
        interval = ev.meta.get("protocols", {}).get(protocol, {}).get("vs_best_baseline", {})
        sure = (
            f" The ratio is {interval['ratio']:.3f}x, {100 * interval['level']:.0f}% interval "
            f"{interval['low']:.3f}-{interval['high']:.3f}x (paired bootstrap over "
            f"{interval['users']} users)."
            if interval.get("baseline") == best_name and np.isfinite(interval.get("ratio", np.nan))
            else ""
        )
        lines.append(
            f"{protocol}: streamrec NDCG@10 {a:.4f} {verdict} the best baseline "
            f"({best_name}, {b:.4f}): {100 * (a / b - 1) if b else 0:+.1f}%.{sure}"
        )
        cold = ours.segments.get("cold_1_5")
        pop = runs.get("popular")
        if protocol == "prequential" and cold and pop and "cold_1_5" in pop.segments:
            c, p = cold["hr@10"], pop.segments["cold_1_5"]["hr@10"]
            lines.append(
                f"{protocol}: in a user's first five events streamrec's HR@10 is {c:.4f}, "
                f"{c / p if p else float('inf'):.2f}x most-popular's {p:.4f}."
            )
    return lines


def _markdown(ev: Evaluation, sections: list[Table], plots: list[str]) -> str:
    m = ev.meta
    lines = [
        f"# streamrec evaluation: {ev.dataset}",
        "",
        f"{m['events']:,} events ({m['interactions']:,} item interactions, "
        f"{m['searches']:,} searches) from {m['users']:,} users over {m['items']:,} items. "
        f"Item vectors: {'on (' + str(m.get('encoder_version')) + ')' if m['vectors'] else 'off'}. "
        f"Through Kafka: {_through(m)}.",
        "",
        *[f"- {s}" for s in standing(ev)],
        "",
    ]
    for run, counts in m.get("lists_by_model", {}).items():
        total = sum(counts.values())
        ranker = sum(n for name, n in counts.items() if name.startswith("river"))
        lines += [
            f"{run}: the online ranker ranked {100 * ranker / total:.1f}% of {total:,} lists "
            "(the fixed blend the rest: the ranker ranks only while it measures better).",
            "",
        ]
    if "pipeline_agreement" in m:
        agree = m["pipeline_agreement"]
        lines += [
            f"Pipeline against in-process core: {100 * agree['same_rank']:.2f}% of "
            f"{agree['scored']:,} scored interactions got the same rank.",
            "",
        ]
    for title, header, rows, bold in sections:
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for cells, marks in zip(rows, bold, strict=True):
            shown = [f"**{c}**" if j in marks else c for j, c in enumerate(cells)]
            lines.append("| " + " | ".join(shown) + " |")
        lines.append("")
    lines += ["Segments:", ""]
    lines += [f"- `{k}`: {v}" for k, v in SEGMENT_HELP.items()]
    lines += ["", "## Plots", ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _html(ev: Evaluation, sections: list[Table], plots: list[str]) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>streamrec evaluation: {html.escape(ev.dataset)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin-bottom:1.5em}td,th{padding:3px 9px;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child"
        "{text-align:left}img{max-width:100%}</style>",
        f"<h1>streamrec evaluation: {html.escape(ev.dataset)}</h1>",
        "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in standing(ev)) + "</ul>",
    ]
    for title, header, rows, bold in sections:
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>")
        parts.append("".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        for cells, marks in zip(rows, bold, strict=True):
            tds = (
                f"<td><b>{html.escape(c)}</b></td>" if j in marks else f"<td>{html.escape(c)}</td>"
                for j, c in enumerate(cells)
            )
            parts.append("<tr>" + "".join(tds) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Plots</h2>")
    parts += [f"<p><img src='{p}' alt='{p}'></p>" for p in plots]
    parts.append(f"<pre>{html.escape(serde.dumps(ev.meta).decode())}</pre>")
    return "\n".join(parts) + "\n"


# -- plots ------------------------------------------------------------------------------


def _plots(ev: Evaluation, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or in CI
    import matplotlib.pyplot as plt

    written: list[str] = []
    pre = ev.runs.get("prequential", {})
    if pre:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for name, run in pre.items():
            x, y = _rolling(run, 10)
            ax.plot(x, y, label=name, linewidth=1.4)
        ax.set(xlabel="event in the stream", ylabel="NDCG@10 (rolling mean)")
        ax.set_title(f"{ev.dataset}: prequential NDCG@10 along the stream")
        ax.legend()
        ax.grid(alpha=0.3)
        written.append(_save(fig, out, "ndcg_over_stream.png"))

        segs = [s for s in SEGMENT_COLUMNS if any(s in r.segments for r in pre.values())]
        fig, ax = plt.subplots(figsize=(9, 4.5))
        width = 0.8 / max(1, len(pre))
        for i, (name, run) in enumerate(pre.items()):
            vals = [run.segments.get(s, {}).get("hr@10", 0.0) for s in segs]
            ax.bar(np.arange(len(segs)) + i * width, vals, width, label=name)
        ax.set_xticks(np.arange(len(segs)) + width * (len(pre) - 1) / 2, segs)
        ax.set(ylabel="HR@10", title=f"{ev.dataset}: prequential HR@10 by segment")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        written.append(_save(fig, out, "segments_hr10.png"))

        fig, ax = plt.subplots(figsize=(9, 4.5))
        labels = [f"{lo}" if lo == hi else f"{lo}-{hi}" if hi < 10**9 else f">{lo - 1}"
                  for lo, hi in HISTORY_BINS]  # fmt: skip
        for name, run in pre.items():
            hr = []
            for lo, hi in HISTORY_BINS:
                mask = (run.events_before >= lo) & (run.events_before <= hi)
                hits = (run.rank[mask] > 0) & (run.rank[mask] <= 10)
                hr.append(float(hits.mean()) if mask.any() else np.nan)
            ax.plot(labels, hr, marker="o", label=name)
        ax.set(xlabel="events the user had before", ylabel="HR@10")
        ax.set_title(f"{ev.dataset}: cold start, HR@10 by user history")
        ax.legend()
        ax.grid(alpha=0.3)
        written.append(_save(fig, out, "cold_start_hr10.png"))
    llo = ev.runs.get("leave_last_out", {})
    if llo:
        metrics = ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20")
        fig, ax = plt.subplots(figsize=(9, 4.5))
        width = 0.8 / max(1, len(llo))
        for i, (name, run) in enumerate(llo.items()):
            vals = [run.segments.get("all", {}).get(m, 0.0) for m in metrics]
            ax.bar(np.arange(len(metrics)) + i * width, vals, width, label=name)
        ax.set_xticks(np.arange(len(metrics)) + width * (len(llo) - 1) / 2, metrics)
        ax.set(title=f"{ev.dataset}: leave-last-out, full ranking")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        written.append(_save(fig, out, "leave_last_out.png"))
    return written


def _rolling(run: ModelRun, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@k per scored target, as a moving average over ~1/50 of them."""
    r = run.rank
    gains = np.where((r > 0) & (r <= k), 1.0 / np.log2(np.maximum(r, 1) + 1), 0.0)
    window = max(50, len(r) // 50)
    if len(r) < window:
        return run.index.astype(float), gains
    kernel = np.ones(window) / window
    return run.index[window - 1 :].astype(float), np.convolve(gains, kernel, mode="valid")


def _save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return name


def _through(meta: dict[str, Any]) -> str:
    if not meta["through_kafka"]:
        return "no"
    pipe = meta.get("pipeline", {})
    workers = pipe.get("workers", 1)
    replay = f", replayed at {pipe['rate']:g} events/s" if pipe.get("rate") else ", as a backlog"
    if workers == 1:
        return f"yes (1 worker{replay})"
    shared = "shared" if pipe.get("shared_state", True) else "not shared"
    return (f"yes ({workers} workers on {pipe.get('partitions')} partitions, item state "
            f"{shared}{replay})")  # fmt: skip
