"""The seed set's findings: why the original experiment saw what it saw."""

from dataclasses import dataclass
from typing import Any

from core.bound import Bound
from core.model import format_spread

from ..records import CellResult, Group
from ..runs import Run, Runs
from ..tables import format_seconds
from .base import Finding, Missing, Sentence
from .common import DEFAULT_THREAD_LIMIT, ORIGINAL, PLAIN, find, pct, plain, predicted, rows_where, run_spread


@dataclass
class OneAndFour:
    one: Group  # 1 worker x 1 thread
    four: Group  # 4 workers x 4 threads


def client_bound_cells(runs: Runs) -> OneAndFour:
    seed = runs["seed"].groups
    return OneAndFour(find(seed, **plain(1, 1, endpoint="async")), find(seed, **plain(4, 4, endpoint="async")))


def client_bound_check(c: OneAndFour) -> bool:
    return (
        c.one.ok
        and c.four.ok
        and c.one.peak_in_handler_max == c.one.connections
        and all(b is Bound.CLIENT for g in (c.one, c.four) for b in g.bounds)
    )


def client_bound_sentence(c: OneAndFour) -> Sentence:
    one, four = c.one, c.four
    original = ORIGINAL[(1, 1, "async")][0]
    return Sentence(
        "The original `/async` numbers were flat because the client was the limit, not the server.",
        f"{one.connections} connections that each wait {one.cell.sleep:g} s complete at most "
        f"{one.connections} requests per wave: predicted {predicted(one)} in {one.cell.duration:g} s "
        f"(the original published {original}). We measured {one.requests.text()} with 1 worker and "
        f"{four.requests.text()} with 4 x 4; the single worker had up to {one.peak_in_handler_max} requests "
        f"sleeping at once, every connection the client had, at {pct(one.server_cpu_share)} of the CPU. "
        f"More workers cannot speed up a server that is waiting for its client.",
        f"1 worker and 4 x 4 alike: {one.requests.text()} and {four.requests.text()} requests, predicted "
        f"{predicted(one)}",
    )


CLIENT_BOUND_ASYNC = Finding(
    "client_bound_async", ("seed",), client_bound_cells, client_bound_check, client_bound_sentence
)


@dataclass
class OneCell:
    run: Run
    g: Group


def one_worker_def_cells(runs: Runs) -> OneCell:
    seed = runs["seed"]
    return OneCell(seed, find(seed.groups, **plain(1, 1, endpoint="sync")))


def one_worker_def_check(c: OneCell) -> bool:
    return c.g.ok and c.g.peak_in_handler_max == DEFAULT_THREAD_LIMIT and all(b is Bound.THREADS for b in c.g.bounds)


def one_worker_def_sentence(c: OneCell) -> Sentence:
    g, original = c.g, ORIGINAL[(1, 1, "sync")]
    return Sentence(
        f"1 worker with `def` is held to anyio's {DEFAULT_THREAD_LIMIT} threads.",
        f"FastAPI runs a `def` endpoint in anyio's thread pool, at most {DEFAULT_THREAD_LIMIT} at once per "
        f"worker: {DEFAULT_THREAD_LIMIT} / {g.cell.sleep:g} s = {DEFAULT_THREAD_LIMIT / g.cell.sleep:g} req/s, "
        f"predicted {predicted(g)} requests (the original published {original[0]}, {original[1]} req/s). We "
        f"measured {g.requests.text()} ({g.requests_per_sec.median:.2f} req/s); the server never had more "
        f"than {g.peak_in_handler_max} requests inside the handler, and when wrk stopped "
        f"{g.in_flight_at_stop.text()} were in it or waiting for a thread (peak waiting "
        f"{g.peak_waiting_max}). The waiting is why latency averages {format_seconds(g.latency_avg_s.median)} "
        f"and {g.timeouts.median:g} responses (median) took longer than wrk's {c.run.timeout_s:g} s timeout.",
        f"{g.requests.text()} requests, {g.peak_in_handler_max} at most inside the handler",
    )


ONE_WORKER_DEF = Finding(
    "one_worker_def", ("seed",), one_worker_def_cells, one_worker_def_check, one_worker_def_sentence
)


@dataclass
class ThreadsFlag:
    s1: Group  # the seed's 1 worker, --threads 1 and 4
    s4: Group
    t1: Group  # the threads set's, at its connection count
    t4: Group


def threads_flag_cells(runs: Runs) -> ThreadsFlag:
    seed, threads = runs["seed"].groups, runs["threads"].groups
    one = dict(workers=1, endpoint="sync", **PLAIN)
    return ThreadsFlag(
        find(seed, threads=1, **one),
        find(seed, threads=4, **one),
        find(threads, threads=1, **one),
        find(threads, threads=4, **one),
    )


def threads_flag_check(c: ThreadsFlag) -> bool:
    # "Nothing": within what the repetitions and the edge wave already vary by, not a 10% allowance.
    def close(a: Group, b: Group) -> bool:
        assert a.requests.median is not None and b.requests.median is not None
        return abs(a.requests.median - b.requests.median) <= max(run_spread(a), run_spread(b))

    return (
        close(c.s1, c.s4)
        and close(c.t1, c.t4)
        and c.s1.peak_in_handler_max == c.s4.peak_in_handler_max == c.t4.peak_in_handler_max
    )


def threads_flag_sentence(c: ThreadsFlag) -> Sentence:
    s1, s4, t1, t4 = c.s1, c.s4, c.t1, c.t4
    return Sentence(
        "`--threads` does nothing for an ASGI worker.",
        f"gunicorn's `threads` setting only affects its gthread worker. 1x1 vs 1x4 `/sync`: {s1.requests.text()} vs "
        f"{s4.requests.text()} requests; at {t1.connections} connections {t1.requests_per_sec.median:.1f} vs "
        f"{t4.requests_per_sec.median:.1f} req/s; the peak inside the handler is {s1.peak_in_handler_max} "
        f"without and {t4.peak_in_handler_max} with `--threads 4`.",
        f"one worker with `--threads 1` or `4`, `/sync`, {s1.cell.sleep:g} s sleep: {s1.requests.text()} vs "
        f"{s4.requests.text()} requests in {s1.cell.duration:g} s",
    )


THREADS_FLAG = Finding(
    "threads_flag", ("seed", "threads"), threads_flag_cells, threads_flag_check, threads_flag_sentence
)


@dataclass
class SpreadCapsDef:
    rows: list[CellResult]  # every 4-worker /sync run of the seed


def spread_caps_def_cells(runs: Runs) -> SpreadCapsDef:
    rows = rows_where(runs["seed"].rows, workers=4, endpoint="sync", **PLAIN)  # with --threads 1 and 4
    if not rows:
        raise Missing("4-worker /sync cells in the seed run")
    return SpreadCapsDef(rows)


def spread_caps_def_check(c: SpreadCapsDef) -> bool:
    # Run by run and worker by worker: never more inside the handler than its own threads or its own connections.
    return all(
        r.verdict.as_predicted
        and r.measured.side
        and len(r.measured.side.connections_per_worker) == r.cell.workers
        and r.measured.side.peak_in_handler_per_worker
        == [min(n, DEFAULT_THREAD_LIMIT) for n in r.measured.side.connections_per_worker]
        for r in c.rows
    )


def spread_caps_def_sentence(c: SpreadCapsDef) -> Sentence:
    spreads = [
        (r, r.measured.connections_per_worker or [], r.measured.peak_in_handler_per_worker or []) for r in c.rows
    ]
    lopsided = [r for r, spread, _ in spreads if max(spread) > DEFAULT_THREAD_LIMIT]
    listing = "; ".join(
        f"{format_spread(spread)} -> {r.measured.requests} (peaks {format_spread(peaks)})"
        for r, spread, peaks in spreads
    )
    return Sentence(
        f"With 4 workers, each worker runs `def` on its own {DEFAULT_THREAD_LIMIT} threads: what it answers follows "
        "the connections it took.",
        f"Connections per worker -> requests (and the most each worker had inside the handler), in every 4-worker "
        f"`/sync` run: {listing}. In every run each worker's peak was min(its connections, {DEFAULT_THREAD_LIMIT}), "
        f"and each run matched the model fed with its spread; {len(lopsided)} of {len(c.rows)} runs had a worker "
        f"above {DEFAULT_THREAD_LIMIT}. At a {c.rows[0].cell.sleep:g} s sleep the wave that ends as wrk stops can "
        "hide the difference in the count: the peaks show it.",
        f"each worker's peak min(its connections, {DEFAULT_THREAD_LIMIT}) in all {len(c.rows)} runs, "
        f"{len(lopsided)} with a worker above {DEFAULT_THREAD_LIMIT}",
    )


SPREAD_CAPS_DEF = Finding(
    "spread_caps_def", ("seed",), spread_caps_def_cells, spread_caps_def_check, spread_caps_def_sentence
)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [CLIENT_BOUND_ASYNC, ONE_WORKER_DEF, THREADS_FLAG, SPREAD_CAPS_DEF]
