"""The overhead set's finding: what the thread hop costs `def` when nothing sleeps."""

import statistics
from dataclasses import dataclass
from typing import Any

from ..records import Group
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

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [THREAD_HOP]
