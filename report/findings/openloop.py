"""The openloop set's findings: what users see at a fixed arrival rate, below and above capacity."""

from dataclasses import dataclass
from typing import Any

from core.model import format_spread

from ..records import CellResult, Group
from ..runs import Run, Runs
from ..tables import format_seconds
from .base import Finding, Missing, Sentence
from .common import DEFAULT_THREAD_LIMIT, cells_where, plain, rows_where, span, spread_of

ANSWERED = 0.99  # "answered them all" in the open loop: this share of the offered requests, in every run
LATENCY_SLACK = 0.10  # "no slower": a median latency within this share above the sleep


@dataclass
class OpenLoop:
    run: Run
    sync: list[Group]  # one worker, `def`, by rate
    asyncs: list[Group]  # `async def`, by workers and rate
    over: list[Group]  # the `def` cells offered more than capacity
    async_rows: list[CellResult]


def open_loop_cells(runs: Runs) -> OpenLoop:
    run = runs["openloop"]
    sync = sorted(cells_where(run.groups, **plain(1, endpoint="sync")), key=lambda g: g.cell.rate or 0)
    asyncs = sorted(cells_where(run.groups, endpoint="async"), key=lambda g: (g.cell.workers, g.cell.rate or 0))
    if not sync or not asyncs:
        raise Missing("openloop /sync and /async cells")
    return OpenLoop(
        run, sync, asyncs, [g for g in sync if (g.offered_fraction or 0) > 1], rows_where(run.rows, endpoint="async")
    )


def open_loop_check(c: OpenLoop) -> bool:
    # Slower: every run's median latency above the sleep by more than `async def` may be; timing out: in
    # every run wherever the model predicts timeouts; `async def`: each run on its own offered requests.
    def answered(r: CellResult) -> bool:
        m = r.measured
        return (
            (m.replies or 0) >= ANSWERED * (m.offered or 0)
            and m.latency_median_s is not None
            and m.latency_median_s <= (1 + LATENCY_SLACK) * r.cell.sleep
        )

    return (
        all(g.ok for g in c.sync)
        and bool(c.over)
        and bool(c.async_rows)
        and all((g.latency_median_s.low or 0) > (1 + LATENCY_SLACK) * g.cell.sleep for g in c.over)
        and all((g.client_timeouts.low or 0) > 0 for g in c.over if g.predicted_timeouts)
        and all(answered(r) for r in c.async_rows)
    )


def open_loop_sentence(c: OpenLoop) -> Sentence:
    sync, last = c.sync, c.sync[-1]
    return Sentence(
        f"Above its capacity, `def` gets slower, then times out, as the model predicts; `async def` answered "
        f"{ANSWERED:.0%} or more at every rate, its median latency within {LATENCY_SLACK:.0%} of the sleep.",
        f"One worker, {sync[0].cell.sleep:g} s sleep, capacity {sync[0].capacity_per_s:g} req/s "
        f"({DEFAULT_THREAD_LIMIT} threads / sleep), httperf offering a new connection at a fixed rate with a "
        f"{c.run.timeout_s:g} s timeout. `/sync`: "
        + "; ".join(
            f"{g.cell.rate:g}/s: {g.replies.text()} of {g.offered.median:g} answered, {g.client_timeouts.text()} "
            f"timed out (predicted {g.predicted_timeouts}), median {format_seconds(g.latency_median_s.median)}"
            for g in sync
        )
        + ". `/async` answered "
        + ", ".join(f"{g.replies.median:g}/{g.offered.median:g}" for g in c.asyncs)
        + f" at every rate and worker count, median latency at most "
        f"{format_seconds(max(g.latency_median_s.high or 0 for g in c.asyncs))}.",
        f"`/sync` offered {last.cell.rate:g}/s: {last.client_timeouts.text()} of {last.offered.median:g} timed out",
    )


OPEN_LOOP = Finding("open_loop", ("openloop",), open_loop_cells, open_loop_check, open_loop_sentence)


@dataclass
class OpenLoopSpread:
    run: Run
    rows: list[CellResult]  # several workers, `def`, below capacity
    per_worker: float  # what one worker's threads take per second


def busiest(r: CellResult) -> float:
    """The arrival rate the busiest worker was offered, by the share of connections it took."""
    spread = spread_of(r)
    return (r.cell.rate or 0) * max(spread) / sum(spread)


def open_loop_spread_cells(runs: Runs) -> OpenLoopSpread:
    run = runs["openloop"]
    rows = [
        r
        for r in rows_where(run.rows, endpoint="sync")
        if r.cell.workers > 1 and (r.verdict.offered_fraction or 0) < 1 and spread_of(r)
    ]
    if not rows:
        raise Missing("multi-worker openloop /sync runs below capacity")
    return OpenLoopSpread(run, rows, DEFAULT_THREAD_LIMIT / rows[0].cell.sleep)


def open_loop_spread_check(c: OpenLoopSpread) -> bool:
    # The explanation, run by run: timeouts below capacity exactly where the busiest worker was
    # offered more than its own 40 threads take, none that the even model foresaw, and the count
    # nearer the model fed with the real shares than the even model's zero.
    def explained(r: CellResult) -> bool:
        timeouts, v = r.measured.client_timeouts or 0, r.verdict
        return (
            bool(timeouts) == (busiest(r) > c.per_worker)
            and v.predicted_timeouts == 0
            and abs(timeouts - (v.expected_timeouts or 0)) < timeouts - (v.predicted_timeouts or 0)
        )

    return any(r.measured.client_timeouts for r in c.rows) and all(
        explained(r) for r in c.rows if r.measured.client_timeouts or busiest(r) > c.per_worker
    )


def cores_left(run: Run) -> str:
    """The cores pinning left the servers: all but the load generator's one."""
    cores = run.environment["cpu_count"] - 1
    return "one core" if cores == 1 else f"{cores} cores"


def by_rate(rows: list[CellResult]) -> list[tuple[float, list[CellResult]]]:
    rates = sorted({r.cell.rate or 0 for r in rows})
    return [(rate, [r for r in rows if r.cell.rate == rate]) for rate in rates]


def open_loop_spread_sentence(c: OpenLoopSpread) -> Sentence:
    rows, workers = c.rows, c.rows[0].cell.workers
    return Sentence(
        "With several workers, `def` can fall over below its capacity: new connections do not spread evenly.",
        f"{workers} workers of {DEFAULT_THREAD_LIMIT} threads take {c.per_worker * workers:g} "
        f"req/s if the arrivals spread evenly, {c.per_worker:g} each. "
        + ". ".join(
            f"Offered {rate:g}/s ({same_rate[0].verdict.offered_fraction:.0%}), the workers took "
            + ", ".join(format_spread(spread_of(r)) for r in same_rate)
            + f", so the busiest was offered {span([busiest(r) for r in same_rate])}/s; "
            + ", ".join(str(r.measured.client_timeouts) for r in same_rate)
            + f" of {same_rate[0].measured.offered} timed out (the model fed with those shares: "
            + ", ".join(str(r.verdict.expected_timeouts) for r in same_rate)
            + f"; spread evenly: {same_rate[0].verdict.predicted_timeouts})"
            for rate, same_rate in by_rate(rows)
        )
        + ". Every httperf request is a new connection, and each worker accepts what it wins of them"
        + (
            f"; httperf was pinned to a core of its own and all {workers} workers shared the other "
            f"{c.run.environment['cpu_count'] - 1}: the spread was measured under that pinning only"
            if all(r.cell.pin for r in rows)
            else ""
        )
        + ".",
        "timeouts below capacity in "
        + ", ".join(str(r.measured.client_timeouts) for r in rows if r.measured.client_timeouts)
        + " requests (the model with that spread: "
        + ", ".join(str(r.verdict.expected_timeouts) for r in rows if r.measured.client_timeouts)
        + (f"; {workers} workers on {cores_left(c.run)})" if all(r.cell.pin for r in rows) else ")"),
    )


OPEN_LOOP_SPREAD = Finding(
    "open_loop_spread", ("openloop",), open_loop_spread_cells, open_loop_spread_check, open_loop_spread_sentence
)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [OPEN_LOOP, OPEN_LOOP_SPREAD]
