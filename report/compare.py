"""Did a flag change anything? Two runs, cell by cell (python -m report compare RUN_A RUN_B).

Cells are paired by their configuration: workers, threads, endpoint and load, and every field a
knob sets except those whose values the two runs do not share at all, which are the tweak under
test (GUNICORN_CMD_ARGS, THREAD_LIMIT, the server...). A pair differs when B - A is beyond what
the repetitions of A and B already vary by, and beyond the model's band (the edge wave and the ✓
tolerance) for a predicted cell, or 10% for a cell only the CPU limits. Exit status: 1 when a pair
differs, else 0; 2 when the runs cannot be compared.
"""

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import files
from core.cell import Cell
from core.knobs import KNOBS, MACHINE_KNOBS
from core.model import CLOSE
from core.settings import TERMINAL_WIDTH

from . import parse, summary
from .group import group
from .judge import OPEN_CLOSE
from .records import CellResult
from .tables import format_seconds

ALWAYS_PAIRED_BY = ["workers", "threads", "endpoint", "path", "connections", "rate"]  # the configuration and its load
# What a knob sets: paired by too, unless the two runs share no value of it (then it is the tweak under test).
KNOB_FIELDS = [
    "server",
    "worker_class",
    "thread_limit",
    "http_pool",
    "pool_timeout",
    "sleep",
    "wrk_threads",
    "duration",
    "timeout",
    "db_pool_size",
    "db_max_overflow",
    "db_pool_timeout",
    "server_args",
]
CPU_ONLY_BAND = 0.10  # a cell with no prediction (sleep 0): differences within 10% are noise on a shared machine


class NotComparable(Exception):
    pass


def load(run_dir: Path) -> tuple[dict[str, Any], list[CellResult]]:
    document = parse.read_json(run_dir / files.RUN_JSON)
    if not document:
        raise NotComparable(f"{run_dir} has no run.json: not a run directory")
    rows, _ = summary.summarise_run(run_dir)
    return document, rows


def tweak(a: list[Cell], b: list[Cell]) -> list[str]:
    """The fields whose values in A and in B have nothing in common."""
    return [f for f in KNOB_FIELDS if not {getattr(c, f) for c in a} & {getattr(c, f) for c in b}]


def knobs_that_differ(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    pa, pb = a["parameters"], b["parameters"]
    return [
        f"{name}: {pa.get(name.lower(), '-')!r} -> {pb.get(name.lower(), '-')!r}"
        for name in KNOBS
        if name not in MACHINE_KNOBS and pa.get(name.lower()) != pb.get(name.lower())
    ]


@dataclass
class Side:
    """One side's repetitions of a cell: answered, latency, errors, and the model's band."""

    row: CellResult  # the first repetition
    answered: float
    low: float
    high: float
    latency: float
    errors: float
    runs: int
    band: float | None
    verdict: str  # as the runs judged themselves: ✓, ✗ (k/n as predicted) or - (no prediction)
    bound_by: str  # and what bound them

    @property
    def judged(self) -> bool:
        return self.verdict != "-"

    @property
    def ok(self) -> bool:
        return self.verdict == "✓"


def figures(rows: list[CellResult]) -> Side:
    """Median, min, max over a side's repetitions of a cell: answered, latency, errors."""
    first = rows[0]
    open_loop = first.cell.open_loop
    answered = [(r.measured.replies if open_loop else r.measured.requests_ok) or 0 for r in rows]
    latency = [r.measured.latency_median_s if open_loop else r.measured.latency_avg_s for r in rows]
    # wrk's count includes non-2xx
    errors = [r.measured.errors + ((r.measured.client_timeouts or 0) if open_loop else 0) for r in rows]
    predicted = first.verdict.predicted_replies if open_loop else first.verdict.predicted_requests
    band = (
        None
        if predicted is None
        else (OPEN_CLOSE if open_loop else CLOSE) * predicted + (first.verdict.predicted_edge or 0)
    )
    g = group(rows, cpus=1)  # the verdicts only: the CPU shares are not read here
    judged = [r.verdict.as_predicted for r in rows if r.verdict.as_predicted is not None]
    verdict = "-" if not judged else "✓" if g.ok else f"✗ ({g.as_predicted}/{g.runs} as predicted)"
    return Side(
        first,
        statistics.median(answered),
        min(answered),
        max(answered),
        statistics.median([x for x in latency if x is not None] or [0]),
        statistics.median(errors),
        len(rows),
        band,
        verdict,
        g.bound_by,
    )


def judge(a: Side, b: Side) -> tuple[bool, str]:
    """Beyond what the repetitions of A and B vary by (both repeated), else beyond the model's band
    (edge wave and tolerance), else, for a cell no model predicts, beyond 10%."""
    if a.runs > 1 and b.runs > 1:
        edge = max(a.row.verdict.predicted_edge or 0, b.row.verdict.predicted_edge or 0)
        limit, why = max(a.high - a.low, b.high - b.low, edge), "repetitions"
    elif a.band is not None or b.band is not None:
        limit, why = max(band for band in (a.band, b.band) if band is not None), "model's band"
    else:
        limit, why = CPU_ONLY_BAND * max(a.answered, b.answered), "10%, no prediction"
    beyond = abs(b.answered - a.answered) > limit
    said = ("beyond " if beyond else "within ") + f"±{limit:.0f} ({why})"
    # The runs judged themselves against their model: the verdict agrees with them, or says why not.
    if a.judged and b.judged and a.ok != b.ok:
        worse, better = ("B", "A") if a.ok else ("A", "B")
        return True, (
            f"{said}; and they differ: {worse} is not what its model predicts, {better} is"
            if beyond
            else f"differ: {worse} is not what its model predicts, {better} is (the count is {said})"
        )
    if beyond and a.ok and b.ok:
        same_prediction = a.row.verdict.expected_requests == b.row.verdict.expected_requests and (
            a.row.verdict.expected_replies == b.row.verdict.expected_replies
        )
        said += (
            "; both are what their model predicts, within their bands: see what bound each"
            if same_prediction
            else "; both are what their model predicts: the model, fed with each, accounts for the difference"
        )
    return beyond, said


@dataclass
class Pair:
    a: Side
    b: Side
    beyond: bool  # the two differ: in their counts beyond the spread, or in their own verdicts
    threshold: str  # why, as the line says it


def compare(run_a: Path, run_b: Path) -> tuple[list[str], list[Pair], list[str]]:
    """The header lines, the pairs, and the cells on one side only."""
    doc_a, rows_a = load(run_a)
    doc_b, rows_b = load(run_b)
    scale_a, scale_b = doc_a["parameters"].get("scale"), doc_b["parameters"].get("scale")
    if scale_a != scale_b:
        raise NotComparable(
            f"{run_a.name} ran at SCALE={scale_a} and {run_b.name} at SCALE={scale_b}: sleep, "
            "duration and timeout differ, so their counts do not compare; compare runs of one scale"
        )
    left_out = tweak([r.cell for r in rows_a], [r.cell for r in rows_b])
    key_fields = ALWAYS_PAIRED_BY + [f for f in KNOB_FIELDS if f not in left_out]

    def by_key(rows: list[CellResult]) -> dict[tuple[object, ...], list[CellResult]]:
        grouped: dict[tuple[object, ...], list[CellResult]] = {}
        for row in rows:
            grouped.setdefault(tuple(getattr(row.cell, f) for f in key_fields), []).append(row)
        return grouped

    side_a, side_b = by_key(rows_a), by_key(rows_b)
    pairs = []
    for key in side_a:
        if key in side_b:
            a, b = figures(side_a[key]), figures(side_b[key])
            pairs.append(Pair(a, b, *judge(a, b)))
    only = [
        f"only in {name}: {rows[0].cell.label()} {rows[0].cell.url_path} {load_text(rows[0])}"
        for name, mine, other in (("A", side_a, side_b), ("B", side_b, side_a))
        for key, rows in mine.items()
        if key not in other
    ]
    header = [f"A: {run_a}", f"B: {run_b}"]
    differ = knobs_that_differ(doc_a, doc_b)
    header.append("knobs that differ: " + ("; ".join(differ) if differ else "none"))
    if left_out:
        header.append("paired across: " + ", ".join(left_out))
    return header, pairs, only


def load_text(row: CellResult) -> str:
    return f"c={row.measured.connections}" if not row.cell.open_loop else f"{row.cell.rate:g}/s"


def number(x: float) -> str:
    return f"{x:g}"


def spread(side: Side) -> str:
    return number(side.answered) + (f" ({number(side.low)}-{number(side.high)})" if side.low != side.high else "")


def pair_fields(p: Pair) -> dict[str, str]:
    """A pair's columns (the markdown table's header is their names)."""
    a, b = p.a, p.b
    return {
        "config": a.row.cell.label(),
        "endpoint": a.row.cell.url_path,
        "load": load_text(a.row),
        "answered A": spread(a),
        "answered B": spread(b),
        "B-A": f"{b.answered - a.answered:+g}",
        "latency A/B": f"{format_seconds(a.latency)} / {format_seconds(b.latency)}",
        "latency B-A": ("+" if b.latency >= a.latency else "-") + format_seconds(abs(b.latency - a.latency)),
        "errors A/B": f"{number(a.errors)} / {number(b.errors)}",
        "errors B-A": f"{b.errors - a.errors:+g}",
        "verdict": p.threshold,
        "A: verdict, bound by": f"{a.verdict} {a.bound_by}",
        "B: verdict, bound by": f"{b.verdict} {b.bound_by}",
    }


def text(header: list[str], pairs: list[Pair], only: list[str], width: int = TERMINAL_WIDTH) -> str:
    """Each pair in lines of WIDTH: the answered counts and whether they differ, latency and errors,
    then each side's own verdict with what bound it (continued on indented lines, never cut)."""
    import textwrap

    out = [line for h in header for line in textwrap.wrap(h, width, subsequent_indent="    ")]
    for p in pairs:
        f = pair_fields(p)
        first = (
            f"{f['config']} {f['endpoint']} {f['load']}: answered {f['answered A']} -> {f['answered B']} "
            f"({f['B-A']}), {f['verdict']}"
        )
        out += textwrap.wrap(first, width, subsequent_indent="    ")
        out += textwrap.wrap(
            f"    latency {f['latency A/B']} ({f['latency B-A']}), errors {f['errors A/B']} ({f['errors B-A']})",
            width,
            subsequent_indent="    ",
        )
        for side in ("A", "B"):
            out += textwrap.wrap(f"    {side}: {f[f'{side}: verdict, bound by']}", width, subsequent_indent="        ")
    out += only
    out.append(
        f"{sum(p.beyond for p in pairs)} of {len(pairs)} paired cells differ (beyond the spread, or in "
        "their own verdicts)"
    )
    return "\n".join(out) + "\n"


def markdown(header: list[str], pairs: list[Pair], only: list[str]) -> str:
    rows = [pair_fields(p) for p in pairs]
    names = list(rows[0]) if rows else ["config"]
    lines = [*(f"- {h}" for h in header), "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(r[n] for n in names) + " |" for r in rows]
    return "\n".join(lines + ([""] + [f"- {o}" for o in only] if only else [])) + "\n"


def main(run_a: Path, run_b: Path, out: Path | None = None) -> int:
    try:
        header, pairs, only = compare(run_a, run_b)
    except NotComparable as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    print(text(header, pairs, only), end="")
    if out:
        out.write_text(markdown(header, pairs, only))
    return 1 if any(p.beyond for p in pairs) else 0
