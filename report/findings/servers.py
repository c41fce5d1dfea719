"""The servers set's findings: the connection spread under each server, and which server, at load."""

from dataclasses import dataclass
from typing import Any

from core.bound import Bound
from core.model import format_spread
from core.servers import DEFAULT_WORKER_CLASS

from ..records import CellResult, Group
from ..runs import Run, Runs
from .base import Finding, Missing, Sentence
from .common import DEFAULT_THREAD_LIMIT, PLAIN, cells_where, spread_of


@dataclass
class ReusePort:
    run: Run
    fixed: list[CellResult]  # gunicorn --reuse-port, `def`, with a sleep
    plain: list[CellResult]  # plain gunicorn beside it
    most: int  # the most connections one worker took with --reuse-port
    over: list[CellResult]  # plain runs with a worker above its threads' worth


def reuse_port_cells(runs: Runs) -> ReusePort:
    run = runs["servers"]
    sleeping = [r for r in run.rows if r.cell.endpoint == "sync" and r.cell.sleep > 0]
    fixed = [r for r in sleeping if r.cell.server == "gunicorn-reuse-port"]
    plain = [
        r
        for r in sleeping
        if r.cell.server == "gunicorn"
        and r.cell.worker_class == DEFAULT_WORKER_CLASS
        and r.cell.threads == 1
        and not r.cell.server_args
        and all(getattr(r.cell, name) == value for name, value in PLAIN.items())
    ]
    if not fixed or not plain:
        raise Missing("gunicorn and gunicorn --reuse-port /sync cells")
    return ReusePort(
        run,
        fixed,
        plain,
        max(max(spread_of(r)) for r in fixed),
        [r for r in plain if max(spread_of(r)) > DEFAULT_THREAD_LIMIT],
    )


def reuse_port_check(c: ReusePort) -> bool:
    # What it did, in every run; what plain gunicorn did is a count, whatever it comes to (a spread is a draw).
    return c.most <= DEFAULT_THREAD_LIMIT and all(
        r.verdict.as_predicted
        and r.verdict.bound is Bound.CLIENT
        and r.verdict.expected_requests == r.verdict.predicted_requests
        for r in c.fixed
    )


def reuse_port_sentence(c: ReusePort) -> Sentence:
    def show(rows: list[CellResult]) -> str:
        return "; ".join(f"{format_spread(spread_of(r))} -> {r.measured.requests}" for r in rows)

    first = c.fixed[0]
    return Sentence(
        f"At {first.measured.connections} connections, `--reuse-port` kept every worker within its "
        f"{DEFAULT_THREAD_LIMIT} threads' worth in every run; without it, a worker took more in {len(c.over)} of "
        f"{len(c.plain)} runs.",
        f"With it every gunicorn worker has a listening socket of its own and the kernel spreads new connections "
        f"over them. {first.cell.workers} workers, `/sync`, {first.measured.connections} connections: with "
        f"`--reuse-port` {show(c.fixed)} (most on one worker: {c.most}, every run bound by the client); without, "
        f"{show(c.plain)}. {len(c.fixed)} and {len(c.plain)} runs: a spread is a draw each run, so these counts say "
        f"what happened here, not how often it happens. gunicorn {c.run.environment['packages']['gunicorn']} here.",
        f"busiest worker at most {c.most} with it; above "
        f"{DEFAULT_THREAD_LIMIT} in {len(c.over)} of {len(c.plain)} runs without",
    )


REUSE_PORT = Finding("reuse_port", ("servers",), reuse_port_cells, reuse_port_check, reuse_port_sentence)


@dataclass
class WhichServer:
    run: Run
    client_bound: list[Group]  # every cell with a sleep
    idle: list[Group]  # every cell without
    busy: list[Group]  # `async def` without a sleep, most answered first
    apart: list[tuple[Group, Group]]  # pairs where every run of the first is above every run of the second


def which_server_cells(runs: Runs) -> WhichServer:
    run = runs["servers"]
    client_bound = [g for g in run.groups if g.cell.sleep > 0]
    idle = cells_where(run.groups, sleep=0.0)
    busy = [g for g in idle if g.cell.endpoint == "async"]
    if not busy or not client_bound:
        raise Missing("servers cells")
    busy.sort(key=lambda g: -(g.requests_per_sec.median or 0))
    # "Differ": every run of one above every run of the other; anything less is within what runs vary by.
    apart = [(a, b) for i, a in enumerate(busy) for b in busy[i + 1 :] if a.requests_per_sec.above(b.requests_per_sec)]
    return WhichServer(run, client_bound, idle, busy, apart)


def which_server_check(c: WhichServer) -> bool:
    return all(g.ok for g in c.client_bound) and all(g.cpu_bound == g.runs for g in c.idle)


def which_server_sentence(c: WhichServer) -> Sentence:
    run, busy = c.run, c.busy
    pinned = "pinned" if all(r.cell.pin for r in run.rows if r.cell.sleep == 0) else "unpinned, sharing the cores"
    beats = {a.cell.label(): [b.cell.label() for x, b in c.apart if x is a] for a, _ in c.apart}
    tops = list(beats)
    differ = (
        "; ".join(f"{a} above {', '.join(bs)}" for a, bs in beats.items())
        if c.apart
        else "no pair: every range overlaps another"
    )
    return Sentence(
        "Which server: at the seed's load, each gave what its connection spread allows; at no sleep, a CPU was "
        "the limit for each.",
        f"At {c.client_bound[0].connections} connections every run of every server matched the model fed with "
        f"the spread its workers reported ({sum(g.as_predicted for g in c.client_bound)} of "
        f"{sum(g.runs for g in c.client_bound)} runs). At sleep 0, every run of every server had a CPU saturated "
        f"(the summary's CPU verdict); `/async` at {busy[0].connections} connections on {run.here()} (wrk "
        f"{pinned}): "
        + ", ".join(f"{g.cell.label()} {g.requests_per_sec.text()}" for g in busy)
        + f" req/s. Every run of one above every run of the other: {differ}. RSS of the whole server: "
        + ", ".join(
            f"{g.cell.label()} {g.server_rss_mib.median:.0f} MiB" for g in busy if g.server_rss_mib.median is not None
        )
        + ".",
        f"sleep 0: {tops[0]} above every other server in every run"
        if len(tops) == 1 and len(beats[tops[0]]) == len(busy) - 1
        else f"sleep 0: {len(c.apart)} of {len(busy) * (len(busy) - 1) // 2} pairs apart in every run, the most "
        f"{busy[0].cell.label()} {busy[0].requests_per_sec.text()} req/s",
    )


WHICH_SERVER = Finding("which_server", ("servers",), which_server_cells, which_server_check, which_server_sentence)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [REUSE_PORT, WHICH_SERVER]
