"""The overhead set's findings: what the thread hop costs `def` when nothing sleeps, and what the
event loop's clock costs the counters."""

import statistics
from dataclasses import dataclass
from typing import Any

from ..records import Group, Range
from ..runs import Run, Runs
from .base import Finding, Sentence
from .common import find, rows_where


@dataclass
class ThreadHop:
    run: Run
    d: Group  # `def`
    a: Group  # `async def`
    cost_us: dict[str, list[float]]  # server CPU per answered request, per run, by endpoint


def thread_hop_cells(runs: Runs) -> ThreadHop:
    run = runs["overhead"]
    cost = {
        e: [
            1e6 * (r.measured.server_cpu_s or 0) / r.measured.requests_ok
            for r in rows_where(run.rows, endpoint=e, stats=False)
            if r.measured.requests_ok and r.measured.server_cpu_s is not None
        ]
        for e in ("sync", "async")
    }
    bare = dict(stats=False)  # the app without the counters
    return ThreadHop(run, find(run.groups, endpoint="sync", **bare), find(run.groups, endpoint="async", **bare), cost)


def thread_hop_check(c: ThreadHop) -> bool:
    # The direction in every run, not just the medians: every `def` run slower and dearer than every `async def` one.
    cost = c.cost_us
    return (
        len(cost["sync"]) == c.d.runs
        and len(cost["async"]) == c.a.runs
        and min(cost["sync"]) > max(cost["async"])
        and c.a.requests_per_sec.above(c.d.requests_per_sec)
        and c.d.cpu_bound == c.d.runs
    )


def thread_hop_sentence(c: ThreadHop) -> Sentence:
    d, a, run = c.d, c.a, c.run
    us = {e: f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})" if v else "-" for e, v in c.cost_us.items()}
    pinned = all(r.cell.pin for r in run.rows)
    first_bound = next(iter(d.bound_by_runs), "")  # what bound its first run
    return Sentence(
        f"The thread hop has a price at a {d.cell.sleep:g} s sleep: `def` answered fewer and cost more CPU per "
        "request than `async def`, in every run.",
        f"Sleep {d.cell.sleep:g}, {d.cell.workers} worker(s), {d.connections} connections"
        + (", wrk and the server pinned to cores of their own" if pinned else "")
        + f", on {run.here()}: `def` "
        f"{d.requests_per_sec.text()} req/s, `async def` {a.requests_per_sec.text()}; server CPU per answered "
        f"request {us['sync']} us for `def`, {us['async']} us for `async def` (`def` in every run: "
        f"{first_bound}). Every `def` run was below every `async def` "
        "run and dearer per request: that direction is what the check holds. The magnitudes, and so the ratio, are "
        "this machine's on the day of the run: on another CPU they differ.",
        f"`def` {d.requests_per_sec.text()} vs `async def` {a.requests_per_sec.text()} req/s here "
        f"({run.environment['cpu_count']} cores)",
    )


THREAD_HOP = Finding("thread_hop", ("overhead",), thread_hop_cells, thread_hop_check, thread_hop_sentence)


@dataclass
class ClockCost:
    run: Run
    pairs: list[tuple[Group, Group]]  # (the counters without the clock, with it), `def` then `async def`


def clock_cost_cells(runs: Runs) -> ClockCost:
    run = runs["overhead"]
    return ClockCost(
        run,
        [
            (
                find(run.groups, endpoint=e, stats=True, loop_clock=False),
                find(run.groups, endpoint=e, stats=True, loop_clock=True),
            )
            for e in ("sync", "async")
        ],
    )


def spread(r: Range) -> float:
    """How far apart a cell's runs were, as a share of their median."""
    return ((r.high or 0) - (r.low or 0)) / (r.median or 1)


def change(without: Range, clock: Range) -> float:
    return (clock.median or 0) / (without.median or 1) - 1


def clock_cost_check(c: ClockCost) -> bool:
    # Neither every run with the clock below every run without it, nor the medians further apart than the runs.
    return all(
        not without.requests_per_sec.above(clock.requests_per_sec)
        and abs(change(without.requests_per_sec, clock.requests_per_sec))
        <= max(spread(without.requests_per_sec), spread(clock.requests_per_sec))
        for without, clock in c.pairs
    )


def clock_cost_sentence(c: ClockCost) -> Sentence:
    d = c.pairs[0][1]
    most = max(max(spread(w.requests_per_sec), spread(k.requests_per_sec)) for w, k in c.pairs)

    def us(r: Range) -> str:
        return f"{1e6 * (r.median or 0):.0f}"

    return Sentence(
        "The event loop's clock costs less than the runs vary by, with nothing sleeping.",
        f"Sleep {d.cell.sleep:g}, {d.cell.workers} worker(s), {d.connections} connections, the counters on, on "
        f"{c.run.here()}: "
        + "; ".join(
            f"`/{clock.cell.endpoint}` {without.requests_per_sec.text()} req/s without the clock, "
            f"{clock.requests_per_sec.text()} with it "
            f"({change(without.requests_per_sec, clock.requests_per_sec):+.1%}), server CPU per answer "
            f"{us(without.server_cpu_per_request_s)} vs {us(clock.server_cpu_per_request_s)} us"
            for without, clock in c.pairs
        )
        + f". The runs of one cell were up to {most:.0%} apart: a cost smaller than that is all this set can show. "
        "The clock's probe and its watchdog thread wake on a timer whatever the load; with nothing sleeping, where "
        "every CPU second goes to requests, their cost shows most.",
        ", ".join(
            f"`/{clock.cell.endpoint}` {change(without.requests_per_sec, clock.requests_per_sec):+.1%}"
            for without, clock in c.pairs
        )
        + f" req/s with the clock; runs up to {most:.0%} apart",
    )


LOOP_CLOCK_COST = Finding("loop_clock_cost", ("overhead",), clock_cost_cells, clock_cost_check, clock_cost_sentence)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [THREAD_HOP, LOOP_CLOCK_COST]
