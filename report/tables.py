"""What the groups look like on a page and in a terminal: the markdown table, the terminal's
compact table, the line the runner prints as a cell ends."""

import statistics
import textwrap
from collections.abc import Callable

from core.bound import Bound
from core.model import format_spread
from core.settings import TERMINAL_WIDTH, wrapped

from .records import CellResult, Group, LoopSide, Range


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.0f} us"


def format_percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def predicted_text(g: Group, spread_seen: bool = True) -> str:
    if g.cell.open_loop:
        text = f"{g.predicted_replies} replies, {g.predicted_timeouts} timeouts"
        if spread_seen and any(e != g.predicted_replies for e in g.expected_replies if e is not None):
            text += f"; with the spread seen: {', '.join(str(e) for e in g.expected_replies)} replies"
        return text
    if g.predicted_requests is None:
        return "-"
    text = str(g.predicted_requests) + (f" (+≤{g.predicted_edge} edge)" if g.predicted_edge else "")
    if g.predicted_errors or g.predicted_errors_edge:
        text += (
            f"; {g.predicted_errors}" + (f" (+≤{g.predicted_errors_edge})" if g.predicted_errors_edge else "") + " 503"
        )
    if g.predicted_errors_uncounted:
        text += "; some 503 (refused)"
    if spread_seen and any(e != g.predicted_requests for e in g.expected_requests if e is not None):
        text += f"; with the spread seen: {', '.join(str(e) for e in g.expected_requests)}"
    lows = [(low, e) for low, e in zip(g.expected_low, g.expected_requests) if low is not None and e is not None]
    if spread_seen and any(low < e for low, e in lows):
        why = (
            "if every cycle stretches by one wave's CPU"
            if any(r.verdict.burst_low is not None and r.verdict.burst_low == r.verdict.expected_low for r in g.rows)
            else "with the late starts seen"
        )
        text += f"; down to {', '.join(str(low) for low, _ in lows)} {why}"
    costs = sorted({c for r in g.rows if (c := r.verdict.calibrated_cpu_per_request_s) is not None})
    if costs:
        text += f"; CPU {'/'.join(format_seconds(c) for c in costs)} per request (calibrated)"
    return text


def verdict(g: Group) -> str:
    if g.measured_over_predicted is None and not g.cell.open_loop:
        return "-"
    mark = "✓" if g.ok else f"✗ ({g.as_predicted}/{g.runs} as predicted)"
    ratio = "" if g.measured_over_predicted is None else f"{g.measured_over_predicted:.2f} "
    return ratio + mark + (" ⚠ spread" if g.large_spread else "")


def bound_text(g: Group) -> str:
    extra = (
        f"; {g.worker_timeouts}x WORKER TIMEOUT" if g.worker_timeouts and Bound.WORKER_KILLED not in g.bounds else ""
    )
    if g.workers_restarted and Bound.RESTARTED not in g.bounds:
        extra += (
            f"; {g.workers_restarted} worker restart(s) mid-cell"
            + (f" in {g.runs} runs" if g.runs > 1 else "")
            + (f" ({g.restart_reasons})" if g.restart_reasons else "")
        )
    return g.bound_by + extra


def loop_text(loop: LoopSide) -> str:
    """'loop woke up to 0.52 s late (p99 ≤200 ms), 3.10 s late in all; stuck ≥100 ms: 2.70 s in f (a.py:9) < ...'."""
    text = (
        f"loop woke up to {format_seconds(loop.worst)} late (p99 ≤{format_seconds(max(loop.late_p99_s))}), "
        f"{format_seconds(sum(loop.late_total_s))} late in all"
    )
    if loop.stuck_s:
        where, seconds = next(iter(loop.stuck_s.items()))  # the most first
        text += f"; stuck ≥{format_seconds(loop.stuck_after_s)}: {format_seconds(seconds)} in {where}"
    return text


def cpu_per_request_text(g: Group) -> str:
    return f"{format_seconds(g.server_cpu_per_request_s.median)} / {format_seconds(g.load_cpu_per_request_s.median)}"


def loop_late_text(g: Group) -> str:
    if g.loop_late_max_s.high is None:
        return "-"
    return f"{format_seconds(g.loop_late_max_s.high)} ({format_seconds(g.loop_late_p99_s.high)})"


def spreads_text(g: Group) -> str:
    return ", ".join(format_spread(s) for s in g.connections_per_worker if s) or "-"


def in_flight_text(g: Group) -> str:
    text = g.in_flight_at_stop.text()
    if g.in_flight_at_stop.median and g.oldest_unanswered_s.high:
        text += f" (oldest, most: {format_seconds(g.oldest_unanswered_s.high)})"
    return text


def latency_text(g: Group) -> str:
    text = format_seconds(g.latency_avg_s.median)
    if g.never_answered.median:
        text += " †"  # wrk's latency covers only the connections that were answered
    return text


def optional(value: float | None, text: Callable[[float], str] = str) -> str:
    return "-" if value is None else text(value)


Column = tuple[str, Callable[[Group], str]]


def closed_loop_columns(groups: list[Group]) -> list[Column]:
    columns: list[Column] = [
        ("config", lambda g: g.cell.label()),
        ("endpoint", lambda g: g.cell.url_path),
        ("conns", lambda g: str(g.connections)),
        ("requests", lambda g: g.requests.text()),
        ("req/s", lambda g: g.requests_per_sec.text(2)),
        ("latency avg", latency_text),
        ("timeouts", lambda g: f"{g.timeouts.median:g}"),
        ("errors (most)", lambda g: str(g.errors_max)),
        ("predicted", predicted_text),
        ("measured / predicted", verdict),
        ("bound by", bound_text),
        ("CPU server / client", lambda g: f"{format_percent(g.server_cpu_share)} / {format_percent(g.load_cpu_share)}"),
        ("CPU per request server / client", cpu_per_request_text),
        ("one wave's CPU, busiest worker", lambda g: format_seconds(g.wave_busy_s.median)),  # judge.py's
        ("loop late, most (p99)", loop_late_text),
        ("RSS per worker", lambda g: optional(g.rss_mib_per_worker_median, lambda x: f"{x:.0f} MiB")),
        ("in flight at stop", in_flight_text),
        ("never answered", lambda g: g.never_answered.text()),
        ("peak waiting (most)", lambda g: optional(g.peak_waiting_max)),
        ("peak in handler (most)", lambda g: optional(g.peak_in_handler_max)),
        ("conns per worker", spreads_text),
        (
            "busiest worker (most)",
            lambda g: "-" if g.max_share.median is None or g.cell.workers == 1 else format_percent(g.max_share.high),
        ),
    ]
    if any(g.rows[0].measured.database for g in groups):
        columns.insert(
            8,
            (
                "503 pool timeout / refused",
                lambda g: (
                    "-" if not g.rows[0].measured.database else f"{g.pool_timeouts.text()} / {g.db_refused.text()}"
                ),
            ),
        )
        columns.append(
            ("pool peak per worker (most)", lambda g: str(g.db_pool_peak_max if g.rows[0].measured.database else "-"))
        )
        columns.append(
            ("PostgreSQL active at stop", lambda g: "-" if not g.rows[0].measured.database else g.db_active_stop.text())
        )
    if any(g.upstream_peak.median is not None for g in groups):
        columns.insert(8, ("503 pool timeouts", lambda g: g.non_2xx.text()))
        columns.append(("upstream peak", lambda g: g.upstream_peak.text()))
    return columns


OPEN_LOOP_COLUMNS: list[Column] = [
    ("config", lambda g: g.cell.label()),
    ("endpoint", lambda g: g.cell.url_path),
    ("offered rate", lambda g: f"{g.cell.rate:g}/s"),
    ("offered", lambda g: f"{g.offered.median:g}"),
    ("replies", lambda g: g.replies.text()),
    ("timeouts", lambda g: g.client_timeouts.text()),
    ("latency median", lambda g: format_seconds(g.latency_median_s.median)),
    ("errors (most)", lambda g: str(g.errors_max)),
    ("predicted", predicted_text),
    ("predicted median", lambda g: format_seconds(g.predicted_latency_median_s)),
    ("measured / predicted", verdict),
    ("bound by", bound_text),
    ("CPU server / client", lambda g: f"{format_percent(g.server_cpu_share)} / {format_percent(g.load_cpu_share)}"),
    ("CPU per request server / client", lambda g: cpu_per_request_text(g)),
    ("loop late, most (p99)", lambda g: loop_late_text(g)),
]


def markdown_table(groups: list[Group]) -> str:
    parts = []
    for open_loop in (False, True):
        chosen = [g for g in groups if g.cell.open_loop == open_loop]
        if not chosen:
            continue
        columns = OPEN_LOOP_COLUMNS if open_loop else closed_loop_columns(chosen)
        lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell(g) for _, cell in columns) + " |" for g in chosen]
        parts.append("\n".join(lines) + "\n")
    notes = []
    if any(g.never_answered.median for g in groups):
        notes.append("† some connections were never answered: wrk's latency covers only those that were.")
    stuck = [g for g in groups if g.loop_stuck_s]
    if stuck:
        side = stuck[0].rows[0].measured.side
        after = format_seconds(side.loop.stuck_after_s) if side and side.loop else "a while"
        notes.append(
            f"Where an event loop was stuck (its clock's probe {after} or more late), by stack, over the runs:"
        )
        notes += [
            f"- {g.cell.label()} {g.cell.url_path} c={g.connections}: "
            + "; ".join(f"{format_seconds(seconds)} in {where}" for where, seconds in list(g.loop_stuck_s.items())[:3])
            for g in stuck
        ]
    if any(g.cell.threads > 1 for g in groups):
        notes.append("T > 1: gunicorn's `--threads` only affects its gthread worker; the ASGI workers here ignore it.")
    return "\n".join(parts) + ("\n" + "\n".join(notes) + "\n" if notes else "")


def compact_predicted(g: Group) -> str:
    """The prediction in a few characters: 500+≤100 (an edge wave may add up to 100), or 495* (the
    model fed with the connection spread the workers reported)."""
    expected = [e for e in (g.expected_replies if g.cell.open_loop else g.expected_requests) if e is not None]
    even = g.predicted_replies if g.cell.open_loop else g.predicted_requests
    if even is None:
        return "-"
    if expected and statistics.median(expected) != even:
        return f"{statistics.median(expected):g}*"
    return str(even) + (f"+≤{g.predicted_edge}" if not g.cell.open_loop and g.predicted_edge else "")


def answered_text(g: Group) -> str:
    return f"{g.requests.median:g}" if not g.cell.open_loop else f"{g.replies.median:g}/{g.offered.median:g}"


def continued(head: str, text: str, width: int = TERMINAL_WIDTH) -> list[str]:
    """HEAD, then TEXT from where HEAD ends, in lines of WIDTH: what does not fit goes on indented
    lines below, never dropped (only a word longer than a line is split)."""
    return textwrap.wrap(head + text, width, subsequent_indent="    ")


CONFIG_COLUMN_MAX = 30  # wider, and the config column would leave the rest of a row too little room


def compact_table(groups: list[Group]) -> str:
    """The terminal's table: what each cell gave against its prediction, in 100 columns."""
    rows = [("config", "endpoint", "load", "answered", "predicted", "ok", "bound by")]
    for g in groups:
        load = f"c={g.connections}" if not g.cell.open_loop else f"{g.cell.rate:g}/s"
        ok = "-" if g.measured_over_predicted is None and not g.cell.open_loop else ("✓" if g.ok else "✗")
        rows.append((g.cell.label(), g.cell.url_path, load, answered_text(g), compact_predicted(g), ok, g.bound_by))
    # Many knobs make a long config: each config then heads its rows instead of being a column.
    headed = max(len(r[0]) for r in rows) > CONFIG_COLUMN_MAX
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines: list[str] = []
    for number, r in enumerate(rows):
        if headed and number and r[0] != rows[number - 1][0]:
            lines += wrapped(r[0])
        columns = "  ".join(r[i].ljust(widths[i]) for i in range(1 if headed else 0, 6))
        lines += continued(("  " if headed else "") + columns + "  ", r[6])
    if any(r[4].endswith("*") for r in rows):
        lines.append("* predicted with the connection spread the workers reported (median over runs)")
    problems = [g for g in groups if not g.ok and g.measured_over_predicted is not None or g.errors_max]
    for g in problems:
        why = f"{g.errors_max} errors; " if g.errors_max else ""
        lines += textwrap.wrap(
            f"✗ {g.cell.label()} {g.cell.url_path}: {why}{g.bound_by}", TERMINAL_WIDTH, subsequent_indent="    "
        )
    return "\n".join(lines) + "\n"


def brief_line(row: CellResult, group: Group, width: int = TERMINAL_WIDTH) -> str:
    """The line the runner prints when a cell ends, in WIDTH columns: the detail is in summary.md."""
    m, v = row.measured, row.verdict
    if not row.cell.open_loop:
        figures = f"{m.requests} requests  {m.requests_per_sec:.2f} req/s  avg {format_seconds(m.latency_avg_s)}"
        trouble = {"timeouts": m.timeouts, "errors": m.errors}
    else:
        figures = f"{m.replies}/{m.offered} replied  median {format_seconds(m.latency_median_s)}"
        trouble = {"timeouts": m.client_timeouts, "errors": m.errors}
    figures += "".join(f"  {n} {what}" for what, n in trouble.items() if n)
    mark = "" if v.as_predicted is None else ("✓ " if v.as_predicted else "✗ ")
    return "\n".join(
        continued(f"{row.cell.name}: {figures}  {mark}predicted {compact_predicted(group)}  ", v.bound_by, width)
    )


def ranges(*values: Range) -> str:
    return " / ".join(r.text() for r in values)
