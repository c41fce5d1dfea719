"""The repetitions of one cell, as one Group: each figure a Range over the runs, each verdict counted."""

import re
import statistics
from dataclasses import replace

from core.cell import Cell

from .records import CellResult, Group, Range

LARGE_SPREAD = 0.10  # repetitions further apart than this (of the median), edge wave aside, get flagged


def group_key(row: CellResult) -> Cell:
    """The cell without its repetition's name and round: what its repetitions share."""
    return replace(row.cell, name="", round=1)


def by_cell(rows: list[CellResult]) -> list[list[CellResult]]:
    """The rows of each distinct cell, in the order the cells first ran."""
    groups: dict[Cell, list[CellResult]] = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    return list(groups.values())


NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def merged_bound_by(texts: list[str]) -> str:
    """What bound each run, each kind once: runs whose reasons differ only in their figures are one
    reason with the figures listed run by run, '{941, 58, 344} handshakes dropped (3/3)'."""
    if len(texts) == 1:
        return texts[0]
    kinds: dict[tuple[str, ...], list[list[str]]] = {}
    for text in texts:
        parts = NUMBER.split(text)
        kinds.setdefault(tuple(parts[0::2]), []).append(parts[1::2])
    merged = []
    for words, figures in kinds.items():
        shown = [c[0] if len(set(c)) == 1 else "{" + ", ".join(c) + "}" for c in zip(*figures, strict=True)]
        text = "".join(w + f for w, f in zip(words, [*shown, ""], strict=True))
        merged.append(f"{text} ({len(figures)}/{len(texts)})")
    return "; ".join(merged)


def summarise_groups(rows: list[CellResult], cpus: int) -> list[Group]:
    """One Group per distinct cell, over its repetitions."""
    return [group(runs, cpus) for runs in by_cell(rows)]


def group(runs: list[CellResult], cpus: int) -> Group:
    first, measured, verdicts = runs[0], [r.measured for r in runs], [r.verdict for r in runs]
    sides = [m.side for m in measured]
    databases = [m.database for m in measured]
    bounds: dict[str, int] = {}
    for v in verdicts:
        bounds[v.bound_by] = bounds.get(v.bound_by, 0) + 1
    requests = Range.of(m.requests for m in measured)
    open_loop = first.cell.open_loop
    predicted = first.verdict.predicted_replies if open_loop else first.verdict.predicted_requests
    answered = Range.of(m.replies for m in measured) if open_loop else Range.of(m.requests_ok for m in measured)
    peaks = [s.peak_in_handler_per_worker if s else None for s in sides]
    rss = [x for s in sides for x in (s.rss_mib_per_worker if s else [])]
    windows = [
        (m.server_cpu_s, m.load_cpu_s, m.window_s)
        for m in measured
        if m.server_cpu_s is not None and m.load_cpu_s is not None and m.window_s is not None
    ]

    def share(which: int) -> float | None:
        """Median over the runs of what the server (0) or the load generator (1) used of the machine."""
        return statistics.median(float(w[which] or 0) / float(w[2] or 1) / cpus for w in windows) if windows else None

    loops = [s.loop for s in sides if s and s.loop and s.loop.late_max_s]
    stuck: dict[str, float] = {}
    for loop in loops:
        for where, seconds in loop.stuck_s.items():
            stuck[where] = round(stuck.get(where, 0.0) + seconds, 3)
    stuck = dict(sorted(stuck.items(), key=lambda item: -item[1]))
    v0 = first.verdict
    return Group(
        cell=first.cell,
        rows=runs,
        runs=len(runs),
        connections=first.measured.connections,
        predicted_requests=v0.predicted_requests,
        predicted_edge=v0.predicted_edge,
        predicted_errors=v0.predicted_errors,
        predicted_errors_edge=v0.predicted_errors_edge,
        predicted_requests_per_sec=v0.predicted_requests_per_sec,
        predicted_replies=v0.predicted_replies,
        predicted_timeouts=v0.predicted_timeouts,
        predicted_latency_median_s=v0.predicted_latency_median_s,
        capacity_per_s=v0.capacity_per_s,
        offered_fraction=v0.offered_fraction,
        predicted_errors_uncounted=v0.predicted_errors_uncounted,
        requests=requests,
        requests_ok=Range.of(m.requests_ok for m in measured),
        requests_per_sec=Range.of(m.requests_per_sec for m in measured),
        latency_avg_s=Range.of(m.latency_avg_s for m in measured),
        latency_median_s=Range.of(m.latency_median_s for m in measured),
        timeouts=Range.of(m.timeouts for m in measured),
        client_timeouts=Range.of(m.client_timeouts for m in measured),
        offered=Range.of(m.offered for m in measured),
        replies=Range.of(m.replies for m in measured),
        non_2xx=Range.of(m.non_2xx for m in measured),
        server_cpu_s=Range.of(m.server_cpu_s for m in measured),
        load_cpu_s=Range.of(m.load_cpu_s for m in measured),
        window_s=Range.of(m.window_s for m in measured),
        in_flight_at_stop=Range.of(s.in_flight_at_stop if s else None for s in sides),
        oldest_unanswered_s=Range.of(s.oldest_unanswered_s if s else None for s in sides),
        never_answered=Range.of(m.never_answered for m in measured),
        received=Range.of(s.received if s else None for s in sides),
        pool_timeouts=Range.of(s.pool_timeouts if s else None for s in sides),
        server_rss_mib=Range.of(m.server_rss_mib for m in measured),
        max_share=Range.of(m.max_share for m in measured),
        spread_index=Range.of(m.spread_index for m in measured),
        upstream_peak=Range.of(s.upstream_peak if s else None for s in sides),
        db_refused=Range.of(d.refused if d else None for d in databases),
        db_errors=Range.of(d.errors if d else None for d in databases),
        db_active_start=Range.of(d.active_start if d else None for d in databases),
        db_active_stop=Range.of(d.active_stop if d else None for d in databases),
        db_backends_stop=Range.of(d.backends_stop if d else None for d in databases),
        bound_by=merged_bound_by([v.bound_by for v in verdicts]),
        bound_by_runs=bounds,
        bounds=[v.bound for v in verdicts],
        # Spread beyond what the edge wave alone explains (it may or may not land in a run).
        large_spread=(
            requests.high - requests.low - (v0.predicted_edge or 0) > LARGE_SPREAD * requests.median
            if requests.median and requests.high is not None and requests.low is not None
            else False
        ),
        measured_over_predicted=(
            round(answered.median / predicted, 3) if predicted and answered.median is not None else None
        ),
        as_predicted=sum(bool(v.as_predicted) for v in verdicts),
        cpu_bound=sum(bool(v.cpu_bound) for v in verdicts),
        connections_per_worker=[s.connections_per_worker if s else None for s in sides],
        peak_in_handler_per_worker=peaks,
        rss_mib_per_worker=[s.rss_mib_per_worker if s else None for s in sides],
        server_completed=[s.server_completed if s else None for s in sides],
        expected_requests=[v.expected_requests for v in verdicts],
        expected_replies=[v.expected_replies for v in verdicts],
        expected_low=[v.expected_low for v in verdicts],
        peak_in_handler_max=max((max(p) for p in peaks if p), default=None),
        peak_waiting_max=max((s.peak_waiting for s in sides if s), default=None),
        errors_max=max(m.errors for m in measured),
        worker_timeouts=sum(m.worker_timeouts for m in measured),
        workers_restarted=sum(m.workers_restarted for m in measured),
        restart_reasons="; ".join(sorted({m.restart_reasons for m in measured if m.restart_reasons})),
        thread_limit_seen=sorted({t for s in sides if s for t in s.thread_limit_seen}),  # type: ignore[type-var]
        db_pool_peak_max=max(
            (p for d in databases if d for p in d.pool_peak_per_worker if p is not None), default=None
        ),
        rss_mib_per_worker_median=statistics.median(rss) if rss else None,
        server_cpu_share=share(0),
        load_cpu_share=share(1),
        server_cpu_per_request_s=Range.of(m.server_cpu_per_request_s for m in measured),
        load_cpu_per_request_s=Range.of(m.load_cpu_per_request_s for m in measured),
        wave_busy_s=Range.of(v.wave_busy_s for v in verdicts),
        loop_late_max_s=Range.of(max(loop.late_max_s) for loop in loops),
        loop_late_p99_s=Range.of(max(loop.late_p99_s) for loop in loops),
        loop_stuck_s=stuck,
    )
