"""The upstream set's findings: an HTTP call per request, and the HTTP client's pool."""

from dataclasses import dataclass
from typing import Any

from core.calibration import connections_per_worker
from core.model import CLOSE, format_spread

from ..records import CellResult, Group
from ..runs import Run, Runs
from .base import Finding, Missing, Sentence
from .common import (
    DEFAULT_THREAD_LIMIT,
    HTTPX_MAX_CONNECTIONS,
    PLAIN,
    SAME,
    cells_where,
    cpu_s_per_request,
    find,
    in_ms,
    pct,
    plain,
    predicted,
    rows_where,
    spread_of,
)

SNAPSHOT_POLL_S = 0.02  # counters.py's: the two servers' snapshots are this far apart at most, each way
QUEUE_COST = 3  # "costs CPU": a queued request at least this many times a request at a just-full pool


def peak_of(r: CellResult) -> int | None:
    """The upstream's own peak of calls in flight."""
    return r.measured.side.upstream_peak if r.measured.side else None


@dataclass
class HeldTo:
    rows: list[CellResult]
    limit: int
    holds: bool  # every run's upstream peak is what the limit allows each worker of its connections
    shown: list[str]  # the cells where a worker took more, run by run


def held_to(rows: list[CellResult], limit: int) -> HeldTo:
    """The upstream's peak of calls in flight is what the limit allows each worker of the
    connections it took, summed: exact, run by run, or the limit is not what held them."""

    def allowed(r: CellResult) -> int:
        return sum(min(c, limit) for c in spread_of(r))

    holds = bool(rows) and all(spread_of(r) and peak_of(r) == allowed(r) for r in rows)
    cells = sorted({(r.cell.workers, r.measured.connections or 0) for r in rows if max(spread_of(r) or [0]) > limit})
    shown = []
    for workers, connections in cells:
        same_cell = [r for r in rows if (r.cell.workers, r.measured.connections) == (workers, connections)]
        peaks = {peak_of(r) for r in same_cell}
        if all(min(spread_of(r)) >= limit for r in same_cell) and len(peaks) == 1:
            shown.append(f"{workers}w at {connections} connections: {peaks.pop()} in every run")
        else:
            shown.append(
                f"{workers}w at {connections}: "
                + ", ".join(f"{format_spread(spread_of(r))} -> {peak_of(r)}" for r in same_cell)
            )
    return HeldTo(rows, limit, holds, shown)


def pool_limit_cells(runs: Runs) -> HeldTo:
    return held_to(rows_where(runs["upstream"].rows, endpoint="async-http", http_pool=None), HTTPX_MAX_CONNECTIONS)


def pool_limit_check(c: HeldTo) -> bool:
    return c.holds and any(peak_of(r) == HTTPX_MAX_CONNECTIONS * r.cell.workers for r in c.rows)


def pool_limit_sentence(c: HeldTo) -> Sentence:
    return Sentence(
        f"`async def` with an `httpx.AsyncClient` is held to the client's pool: {HTTPX_MAX_CONNECTIONS} calls per "
        "worker.",
        f"In each of the {len(c.rows)} `/async-http` runs the upstream's own peak of calls in flight equals "
        f"min(connections the worker took, {HTTPX_MAX_CONNECTIONS}) summed over the workers. Where a worker took more: "
        + "; ".join(c.shown)
        + ". Requests beyond the pool wait inside the worker for a pooled connection "
        "(see the next finding for what that costs).",
        f"upstream peak = min(connections, {HTTPX_MAX_CONNECTIONS}) per worker in all {len(c.rows)} runs",
    )


POOL_LIMIT = Finding("pool_limit", ("upstream",), pool_limit_cells, pool_limit_check, pool_limit_sentence)


def sync_http_cells(runs: Runs) -> HeldTo:
    return held_to(rows_where(runs["upstream"].rows, endpoint="sync-http"), DEFAULT_THREAD_LIMIT)


def sync_http_sentence(c: HeldTo) -> Sentence:
    return Sentence(
        f"`def` with `httpx.Client` is held to the {DEFAULT_THREAD_LIMIT} threads, not the pool.",
        f"In each of the {len(c.rows)} `/sync-http` runs the upstream's peak equals min(connections the worker took, "
        f"{DEFAULT_THREAD_LIMIT}) summed over the workers, though the pool would allow {HTTPX_MAX_CONNECTIONS}. Where "
        "a worker took more: " + "; ".join(c.shown) + ".",
        f"upstream peak = min(connections, {DEFAULT_THREAD_LIMIT}) per worker in all {len(c.rows)} runs",
    )


SYNC_HTTP = Finding("sync_http", ("upstream",), sync_http_cells, lambda c: c.holds, sync_http_sentence)


@dataclass
class PoolRaised:
    default: Group  # one worker, the default pool
    raised: Group  # the same with HTTP_POOL raised


def pool_raised_cells(runs: Runs) -> PoolRaised:
    groups = runs["upstream"].groups
    raised = next((g for g in cells_where(groups, endpoint="async-http") if g.cell.http_pool is not None), None)
    if raised is None or raised.predicted_requests is None:
        raise Missing("the HTTP_POOL cell, with a sleep the model predicts")
    return PoolRaised(
        find(groups, workers=1, threads=1, endpoint="async-http", connections=raised.cell.connections, **PLAIN), raised
    )


def pool_raised_check(c: PoolRaised) -> bool:
    if c.raised.requests_ok.low is None or c.default.requests_ok.high is None:
        return False
    return (
        c.raised.upstream_peak.above(c.default.upstream_peak)  # every run, not one run's maximum
        and c.raised.requests_ok.low > (1 + SAME) * c.default.requests_ok.high
    )


def pool_raised_sentence(c: PoolRaised) -> Sentence:
    default, raised = c.default, c.raised
    return Sentence(
        "Raising the pool moves the ceiling.",
        f"One worker, {raised.connections} connections: {default.cell.label()} `/async-http` "
        f"{default.requests_ok.text()} answered (upstream peak {default.upstream_peak.text()}), {raised.cell.label()} "
        f"{raised.requests_ok.text()} (peak {raised.upstream_peak.text()}); server CPU "
        f"{pct(default.server_cpu_share)} and {pct(raised.server_cpu_share)} of the machine ({raised.bound_by}).",
        f"{default.requests_ok.text()} -> {raised.requests_ok.text()} answered, "
        f"{(raised.requests_ok.median or 0) / (raised.predicted_requests or 1):.2f} of the {raised.predicted_requests} "
        f"predicted, held by {', '.join(sorted({b.value for b in raised.bounds}))}",
    )


POOL_RAISED = Finding("pool_raised", ("upstream",), pool_raised_cells, pool_raised_check, pool_raised_sentence)


@dataclass
class PoolQueue:
    run: Run
    full: Group  # one worker with the pool just full
    queued: list[Group]  # every worker with at least a pool's worth queued behind its pool
    full_runs: list[float]  # ms of server CPU per answered request, run by run
    queued_runs: list[list[float]]
    plain: list[float | None]  # the same cells' `/async` (no client) in the concurrency run, ms


def ms_per_request(rows: list[CellResult]) -> list[float]:
    return [
        1000 * (r.measured.server_cpu_s or 0) / r.measured.requests_ok
        for r in rows
        if r.measured.server_cpu_s is not None and r.measured.requests_ok
    ]


def pool_queue_cells(runs: Runs) -> PoolQueue:
    run, sweep = runs["upstream"], runs["concurrency"]
    cells = cells_where(run.groups, endpoint="async-http", http_pool=None, sniffio=False)
    full = next((g for g in cells if g.cell.workers == 1 and g.connections == HTTPX_MAX_CONNECTIONS), None)
    queued = [g for g in cells if (g.connections or 0) >= 2 * HTTPX_MAX_CONNECTIONS * g.cell.workers]
    if full is None or not queued:
        raise Missing("/async-http at exactly the pool, and above twice the pool per worker")

    def plain(g: Group) -> float | None:
        cost = cpu_s_per_request(
            rows_where(
                sweep.rows,
                workers=g.cell.workers,
                threads=g.cell.threads,
                endpoint="async",
                connections=g.cell.connections,
                **PLAIN,
            )
        )
        return None if cost is None else 1000 * cost

    return PoolQueue(
        run,
        full,
        queued,
        ms_per_request(full.rows),
        [ms_per_request(g.rows) for g in queued],
        [plain(g) for g in queued],
    )


def pool_queue_check(c: PoolQueue) -> bool:
    # The title: every queued run at least 3x every full-pool run's CPU per answered request. The evidence's
    # "where a 1-worker cell had a CPU as its limit in every run, every run answered fewer than the model":
    # checked on those cells only; the others are the open questions.
    return (
        len(c.full_runs) == c.full.runs
        and all(
            len(costs) == g.runs and min(costs) >= QUEUE_COST * max(c.full_runs)
            for g, costs in zip(c.queued, c.queued_runs)
        )
        and all(
            (g.requests_ok.high or 0) < (1 - CLOSE) * (g.predicted_requests or 0)
            for g in c.queued
            if g.cell.workers == 1 and g.cpu_bound == g.runs
        )
    )


def pool_queue_sentence(c: PoolQueue) -> Sentence:
    full, cpus = c.full, c.run.environment["cpu_count"]

    def cost(g: Group) -> float:
        return 1000 * (cpu_s_per_request(g.rows) or 0)

    return Sentence(
        f"Requests queued on httpx's pool cost the worker CPU: with two pools' worth of connections per worker or "
        f"more, at least {QUEUE_COST}x as much per answered request as at a just-full pool, in every run.",
        f"Server CPU per answered `/async-http` request ({full.cell.sleep:g} s upstream calls), on {c.run.here()}: "
        f"{cost(full):.1f} ms with the pool just full (1 worker, {full.connections} connections, "
        f"{full.requests_ok.text()} answered, "
        + ("as predicted" if full.ok else full.bound_by)
        + "). With a queue behind the pool: "
        + "; ".join(
            f"{g.cell.workers}w at {g.connections} connections {cost(g):.1f} ms"
            + (f" (`/async` without the client: {plain:.2f} ms)" if plain else "")
            + f": {g.requests_ok.text()} answered and {g.non_2xx.text()} 503 (wrk's count) where the limits alone give "
            f"{predicted(g)}; server CPU {pct(g.server_cpu_share)} of the machine, "
            f"{pct((g.server_cpu_share or 0) * cpus / min(g.cell.workers, cpus))} of what its workers can use: "
            f"{g.bound_by}"
            for g, plain in zip(c.queued, c.plain)
        )
        + ". Every time a request joins or leaves the pool, httpcore walks the whole queue (see "
        "[how the pool works](#how-the-pool-works)). Where a 1-worker cell had a CPU as its limit in every run (the "
        "summary's CPU verdict), every run answered fewer than the model: the extra CPU is why; where no CPU was "
        "measured saturated (marked unexplained), the shortfall, and the 503s that differ from the model's, are "
        "open questions.",
        f"{cost(full):.1f} ms CPU per answered request at a full pool, {min(cost(g) for g in c.queued):.1f}-"
        f"{max(cost(g) for g in c.queued):.1f} ms with a queue ({cpus} cores here)",
    )


POOL_QUEUE_COSTS_CPU = Finding(
    "pool_queue_costs_cpu", ("upstream", "concurrency"), pool_queue_cells, pool_queue_check, pool_queue_sentence
)


@dataclass
class Agreement:
    checked: int  # runs with both servers' counters
    worst: int  # the largest gap beyond the requests in flight
    most_slack: int  # the largest gap allowed: the requests in flight, and the snapshots' lag


def upstream_agrees_cells(runs: Runs) -> Agreement:
    checked, worst, most_slack = 0, 0, 0.0
    for r in runs["upstream"].rows:
        side = r.measured.side
        if side is None or side.upstream_completed is None or side.server_completed is None or not r.measured.window_s:
            continue
        calls = side.server_completed - (side.pool_timeouts or 0)
        slack = (side.in_flight_at_stop or 0) + 2 * SNAPSHOT_POLL_S * calls / r.measured.window_s
        worst = max(worst, round(abs(side.upstream_completed - calls) - slack))
        most_slack = max(most_slack, slack)
        checked += 1
    return Agreement(checked, worst, round(most_slack))


def upstream_agrees_sentence(c: Agreement) -> Sentence:
    return Sentence(
        "The upstream's counters and the front server's agree.",
        f"In {c.checked} runs the calls the upstream answered equal the front's answered requests minus its 503s, "
        f"within the requests still in flight when wrk stopped and what the two servers' snapshots, up to "
        f"{1000 * SNAPSHOT_POLL_S:.0f} ms apart, let through (at most {c.most_slack} in one run); the largest gap "
        f"beyond that: {c.worst}.",
        f"{c.checked} runs, largest gap {c.worst} beyond an allowance of up to {c.most_slack}",
    )


UPSTREAM_AGREES = Finding(
    "upstream_agrees",
    ("upstream",),
    upstream_agrees_cells,
    lambda c: c.checked > 0 and c.worst <= 0,
    upstream_agrees_sentence,
)


@dataclass
class Sniffio:
    run: Run
    pairs: list[tuple[Group, Group]]  # (as a fresh install has it: no sniffio, sniffio importable), by workers
    calibrated: list[tuple[Group, float, float]]  # where both calibrations answered: ms without, ms with


def calibrated_ms(g: Group) -> float | None:
    cost = g.rows[0].verdict.calibrated_cpu_per_request_s
    return None if cost is None else 1000 * cost


def sniffio_cells(runs: Runs) -> Sniffio:
    run = runs["upstream"]
    with_it = cells_where(run.groups, endpoint="async-http", http_pool=None, sniffio=True)
    if not with_it:
        raise Missing("/async-http with sniffio importable")
    pairs = [
        (
            find(
                run.groups,
                **plain(g.cell.workers, g.cell.threads, endpoint=g.cell.endpoint, connections=g.cell.connections),
            ),
            g,
        )
        for g in with_it
    ]
    calibrated = [
        (without, a, b)
        for without, with_it in pairs
        if (a := calibrated_ms(without)) is not None and (b := calibrated_ms(with_it)) is not None
    ]
    return Sniffio(run, pairs, calibrated)


def sniffio_check(c: Sniffio) -> bool:
    # The calibrations: no sleep, the loop saturated, so each CPU second is the requests'. The cells'
    # figures are evidence: with a long queue behind the pool, its scan outweighs the import.
    return bool(c.calibrated) and all(without >= (1 + SAME) * with_it for _, without, with_it in c.calibrated)


def less(without: float | None, with_it: float | None) -> str:
    return f"{100 * (1 - (with_it or 0) / (without or 1)):.0f}%"


def sniffio_sentence(c: Sniffio) -> Sentence:
    first = c.pairs[0][0]
    return Sentence(
        "Without sniffio, as fresh installs have it since anyio 4.11, a pooled `/async-http` request costs more CPU.",
        f"Calibrated on {c.run.here()} (one worker, no sleep, 2 s), ms of server CPU per answered `/async-http` "
        "request without sniffio vs with it: "
        + "; ".join(
            f"{connections_per_worker(g.cell)} connections (as {g.cell.workers} worker(s) at {g.connections} have "
            f"each): {without:.2f} vs {with_it:.2f} ({less(without, with_it)} less)"
            for g, without, with_it in c.calibrated
        )
        + f". In the cells themselves ({first.connections} connections, {first.cell.sleep:g} s upstream calls): "
        + "; ".join(
            f"{without.cell.workers} worker(s) {in_ms(without.server_cpu_per_request_s)} vs "
            f"{in_ms(with_it.server_cpu_per_request_s)} ms, {without.requests_ok.text()} vs "
            f"{with_it.requests_ok.text()} answered"
            for without, with_it in c.pairs
        )
        + ": with that many requests queued behind the pool, httpcore's walks of the queue outweigh the import, "
        "and the runs overlap. httpcore 1.0.9 asks sniffio which async library runs on every pooled request; "
        "without sniffio the failed import is retried each time, since Python does not cache a failed import "
        "(encode/httpcore discussion #1102). `SNIFFIO=1` puts the pinned sniffio on the servers' path.",
        "; ".join(
            f"calibrated at {connections_per_worker(g.cell)} connections: {without:.2f} vs {with_it:.2f} ms, "
            f"{less(without, with_it)} less with sniffio"
            for g, without, with_it in c.calibrated
        ),
    )


SNIFFIO_COST = Finding("sniffio_cost", ("upstream",), sniffio_cells, sniffio_check, sniffio_sentence)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [POOL_LIMIT, POOL_QUEUE_COSTS_CPU, SNIFFIO_COST, SYNC_HTTP, POOL_RAISED, UPSTREAM_AGREES]
