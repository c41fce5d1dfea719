"""The db set's findings: a real PostgreSQL behind SQLAlchemy's pool."""

from dataclasses import dataclass
from typing import Any

from core.bound import Bound
from core.model import CLOSE

from ..judge import within
from ..read import RunFacts
from ..records import CellResult, DatabaseSide, Group
from ..runs import Run, Runs
from .base import Finding, Missing, Sentence
from .common import DB_POOL, DEFAULT_THREAD_LIMIT, PLAIN, cells_where, find, predicted, rows_where

ONE: dict[str, Any] = dict(workers=1, threads=1, **PLAIN)  # one worker, the pool as SQLAlchemy sizes it
QUEUED = 2  # "held to the pool": cells with at least this many pools' worth of connections per worker
FILLS_THE_POOL = 5  # a worker with this many connections beyond its pool's must have all of it checked out
ANSWERED_AT_LEAST = 0.9  # past max_connections: at least this share of what the connections allow


def db_cells(run: Run, **where: Any) -> list[Group]:
    cells = cells_where(run.groups, **where)
    if not cells:
        raise Missing(f"db cells with {where}")
    return cells


def database(r: CellResult) -> DatabaseSide:
    """The pools' and PostgreSQL's counts of a run (a db cell run without counters has none)."""
    if r.measured.database is None:
        raise Missing(f"the pools' counters of {r.cell.name} (STATS=0)")
    return r.measured.database


@dataclass
class DefPool:
    held: list[Group]  # one worker, `def`, more connections than the pool
    raised: Group  # the pool raised to the threads


def db_def_pool_cells(runs: Runs) -> DefPool:
    run = runs["db"]
    held = [g for g in db_cells(run, endpoint="sync-db", **ONE) if (g.connections or 0) > DB_POOL]
    return DefPool(
        held, find(run.groups, workers=1, endpoint="sync-db", db_pool_size=DEFAULT_THREAD_LIMIT, db_max_overflow=0)
    )


def db_def_pool_check(c: DefPool) -> bool:
    return (
        all(
            g.ok
            and all(b is Bound.DB_POOL for b in g.bounds)
            and g.db_pool_peak_max == DB_POOL
            and g.peak_in_handler_max == min(g.connections or 0, DEFAULT_THREAD_LIMIT)
            for g in c.held
        )
        and c.raised.ok
        and all(b is Bound.THREADS for b in c.raised.bounds)
        and c.raised.db_pool_peak_max == DEFAULT_THREAD_LIMIT
    )


def db_def_pool_sentence(c: DefPool) -> Sentence:
    held, raised = c.held, c.raised
    return Sentence(
        f"`def` is held to SQLAlchemy's pool ({DB_POOL} connections per worker), not to the {DEFAULT_THREAD_LIMIT} "
        "threads.",
        f"One worker, `/sync-db` (`SELECT pg_sleep({held[0].cell.sleep:g})` through a session from a yield "
        f"dependency): "
        + "; ".join(
            f"{g.connections} connections {g.requests.text()} requests (predicted {predicted(g)}), up to "
            f"{g.peak_in_handler_max} inside the handler and {g.db_pool_peak_max} holding a connection"
            for g in held
        )
        + f". The other threads wait in the pool. With the pool raised to {DEFAULT_THREAD_LIMIT} + 0 at "
        f"{raised.connections} connections: {raised.requests.text()} (predicted {predicted(raised)}), "
        f"{raised.db_pool_peak_max} connections at once: the threads are the limit again.",
        f"{held[-1].requests.text()} requests, {held[-1].db_pool_peak_max} connections per worker; pool "
        f"{DEFAULT_THREAD_LIMIT} + 0: {raised.requests.text()}",
    )


DB_DEF_POOL = Finding("db_def_pool", ("db",), db_def_pool_cells, db_def_pool_check, db_def_pool_sentence)


@dataclass
class AsyncPool:
    held: list[Group]  # 1 and 4 workers, `async def`, at least twice a pool's worth per worker
    per_worker: list[tuple[int, int | None]]  # (connections a worker took, connections it held), every run


def db_async_pool_cells(runs: Runs) -> AsyncPool:
    run = runs["db"]
    plain = [g for g in db_cells(run, endpoint="async-db", threads=1, **PLAIN) if g.cell.workers in (1, 4)]
    held = [g for g in plain if (g.connections or 0) >= QUEUED * DB_POOL * g.cell.workers]
    rows = [r for r in rows_where(run.rows, endpoint="async-db", threads=1, **PLAIN) if r.cell.workers in (1, 4)]
    per_worker = [
        (n, p) for r in rows for n, p in zip(r.measured.connections_per_worker or [], database(r).pool_peak_per_worker)
    ]
    return AsyncPool(held, per_worker)


def db_async_pool_check(c: AsyncPool) -> bool:
    # Per worker and run: never more connections than the pool, and the whole pool wherever the worker
    # took a pool's worth of connections and more.
    return (
        bool(c.held)
        and all(g.ok for g in c.held)
        and all((p or 0) <= DB_POOL for _, p in c.per_worker)
        and all(p == DB_POOL for n, p in c.per_worker if n > DB_POOL + FILLS_THE_POOL)
    )


def db_async_pool_sentence(c: AsyncPool) -> Sentence:
    return Sentence(
        f"`async def` is held to the pool too: {DB_POOL} queries per worker at once, whatever the connections.",
        "`/async-db` (an `AsyncSession` on asyncpg): "
        + "; ".join(
            f"{g.cell.workers}w at {g.connections} connections {g.requests.text()} (predicted {predicted(g)}, "
            f"at most {g.db_pool_peak_max} connections per worker)"
            for g in c.held
        )
        + f". In every run of 1 and 4 workers, no worker held more than {DB_POOL} connections, and every worker "
        f"that took more than {DB_POOL + FILLS_THE_POOL} client connections held exactly {DB_POOL}.",
        ", ".join(f"{g.cell.workers}w at {g.connections}: {g.requests.text()}" for g in c.held),
    )


DB_ASYNC_POOL = Finding("db_async_pool", ("db",), db_async_pool_cells, db_async_pool_check, db_async_pool_sentence)


@dataclass
class PoolTimeout:
    short: dict[str, Group]  # the short DB_POOL_TIMEOUT cells, by endpoint
    plain: dict[str, Group]  # the same with the default timeout
    rows: list[CellResult]  # every run of the short ones


def db_pool_timeout_cells(runs: Runs) -> PoolTimeout:
    run = runs["db"]
    short = {g.cell.endpoint: g for g in run.groups if g.cell.db_pool_timeout is not None}
    if set(short) != {"sync-db", "async-db"}:
        raise Missing("the short DB_POOL_TIMEOUT cells of /sync-db and /async-db")
    plain = {e: find(run.groups, endpoint=e, connections=g.cell.connections, **ONE) for e, g in short.items()}
    return PoolTimeout(short, plain, [r for r in run.rows if r.cell.db_pool_timeout is not None])


def db_pool_timeout_check(c: PoolTimeout) -> bool:
    def answered_as_predicted(r: CellResult) -> bool:
        expected = r.verdict.expected_requests or 0
        return within(r.measured.requests_ok or 0, expected, expected + (r.verdict.expected_edge or 0), CLOSE)

    def each_503_a_pool_timeout(r: CellResult) -> bool:
        side, non_2xx = r.measured.side, r.measured.non_2xx or 0
        # The app may count a timeout more than wrk for each request still in flight when wrk stopped.
        return (
            side is not None
            and non_2xx > 0
            and non_2xx <= side.pool_timeouts <= non_2xx + side.in_flight_at_stop
            and database(r).refused == 0
        )

    return (
        all(answered_as_predicted(r) for r in c.rows)
        and all(each_503_a_pool_timeout(r) for r in c.rows)
        and all(p.ok and p.non_2xx.high == 0 for p in c.plain.values())
    )


def db_pool_timeout_sentence(c: PoolTimeout) -> Sentence:
    a, d = c.short["async-db"], c.short["sync-db"]
    sync_rows = [r for r in c.rows if r.cell.endpoint == "sync-db"]
    more = sum((r.measured.non_2xx or 0) > (r.verdict.expected_errors or 0) for r in sync_rows)
    return Sentence(
        "The pool timeout turns waiting into errors: each 503 a pool timeout, where the default 30 s gave none.",
        f"`DB_POOL_TIMEOUT={a.cell.db_pool_timeout:g}` against a {a.cell.sleep:g} s query, one worker, "
        f"{a.connections} connections: `/async-db` {a.requests_ok.text()} answered and {a.non_2xx.text()} 503 (wrk's "
        f"count) naming the pool timeout, where a first-come, first-served queue gives {predicted(a)}; `/sync-db` "
        f"{d.requests_ok.text()} answered as predicted, and {d.non_2xx.text()} 503 where that queue gives "
        f"{d.predicted_errors}: more in {more} of {len(sync_rows)} runs, so whether `def` loses more than a fair "
        "queue is not settled by these runs. With the default 30 s, none: "
        f"{c.plain['async-db'].requests_ok.text()} and {c.plain['sync-db'].requests_ok.text()} answered. The app "
        "counted each 503 as a pool timeout.",
        f"`/async-db` {a.non_2xx.text()} 503 (wrk's non-2xx count) against {a.predicted_errors}, `/sync-db` "
        f"{d.non_2xx.text()} against {d.predicted_errors} predicted; ✓ in {a.as_predicted}/{a.runs} and "
        f"{d.as_predicted}/{d.runs} runs",
    )


DB_POOL_TIMEOUT = Finding(
    "db_pool_timeout", ("db",), db_pool_timeout_cells, db_pool_timeout_check, db_pool_timeout_sentence
)


@dataclass
class MaxConnections:
    run: Run
    g: Group  # the cell whose pools ask PostgreSQL for more than it allows
    available: int  # connections PostgreSQL gives the app's role
    fits: list[Group]  # fewer workers at as many connections
    share: list[float]  # each run's answers, of what the available connections allow


def db_max_connections_cells(runs: Runs) -> MaxConnections:
    run = runs["db"]
    over = [g for g in run.groups if g.predicted_errors_uncounted]
    if not over:
        raise Missing("a cell whose pools ask PostgreSQL for more connections than it allows")
    if len(over) != 1:
        raise Missing(f"one cell whose pools ask for more connections than PostgreSQL allows, found {len(over)}")
    (g,) = over
    available = RunFacts(run.run_dir).database_available
    if available is None or not g.predicted_requests:
        raise Missing("PostgreSQL's connection limits in run.json")
    fits = [
        f
        for f in cells_where(run.groups, endpoint=g.cell.endpoint, connections=g.cell.connections)
        if f.cell.workers < g.cell.workers
    ]
    return MaxConnections(
        run, g, available, fits, [(r.measured.requests_ok or 0) / g.predicted_requests for r in g.rows]
    )


def db_max_connections_check(c: MaxConnections) -> bool:
    return (
        bool(c.fits)
        and all(f.db_refused.high == 0 for f in c.fits)
        and all(
            database(r).refused > 0 and c.available - 1 <= (database(r).backends_stop or 0) <= c.available
            for r in c.g.rows
        )
        and all(ANSWERED_AT_LEAST <= x <= 1 + CLOSE for x in c.share)
    )


def db_max_connections_sentence(c: MaxConnections) -> Sentence:
    g, available, share = c.g, c.available, c.share
    facts = c.run.document["database"]
    return Sentence(
        "Workers × pool must stay below PostgreSQL's `max_connections`.",
        f"PostgreSQL {facts['postgres_version']} allows {facts['max_connections']} connections, "
        f"{facts['superuser_reserved_connections']} of them for superusers: {available} for the app's role. "
        f"{g.cell.workers} workers x {DB_POOL} = {g.cell.workers * DB_POOL} wanted at {g.connections} connections: "
        f"{g.db_refused.text()} requests refused (the app's count of \"remaining connection slots are "
        "reserved\", each a 503), "
        f"{g.db_backends_stop.text()} of the role's connections open at the stop by PostgreSQL's own count, and "
        f"{g.requests_ok.text()} answered: {min(share):.0%}-{max(share):.0%} of the {g.predicted_requests} that "
        f"{available} connections allow in the run (a likely reason for the rest, not measured here: a slot is also "
        f"held by each attempt PostgreSQL refuses and each connection being opened or closed). With "
        + ", ".join(f"{f.cell.workers} workers" for f in c.fits)
        + " ("
        + ", ".join(f"{f.cell.workers * DB_POOL}" for f in c.fits)
        + " wanted) none was refused.",
        f"{g.cell.workers} x {DB_POOL} > {available}: {g.db_refused.text()} refused, "
        f"{min(share):.0%}-{max(share):.0%} of what {available} connections allow answered",
    )


DB_MAX_CONNECTIONS = Finding(
    "db_max_connections", ("db",), db_max_connections_cells, db_max_connections_check, db_max_connections_sentence
)


def db_blocking_cells(runs: Runs) -> list[Group]:
    return db_cells(runs["db"], endpoint="async-db-blocking")


def db_blocking_sentence(cells: list[Group]) -> Sentence:
    top = max(cells, key=lambda g: (g.cell.workers, g.connections or 0))
    return Sentence(
        "A sync session inside `async def` serves one query per worker at a time.",
        f"`/async-db-blocking` calls the sync session from an `async def`, so the event loop waits in the driver: "
        f"in all {len(cells)} cells one request at a time per worker (one connection checked out), e.g. "
        f"{top.cell.workers} workers at {top.connections} connections {top.requests.text()} requests "
        f"(predicted {predicted(top)}), where `/async-db` gives {DB_POOL} per worker.",
        f"{top.requests.text()} requests with {top.cell.workers} workers at {top.connections} connections",
    )


DB_BLOCKING = Finding(
    "db_blocking",
    ("db",),
    db_blocking_cells,
    lambda cells: all(g.ok and g.peak_in_handler_max == 1 and g.db_pool_peak_max == 1 for g in cells),
    db_blocking_sentence,
)


@dataclass
class YieldDependency:
    g: Group  # one worker, `def`, at the most connections
    fewer: list[Group]  # the same at fewer connections, still more than the pool
    fastapi: str  # its version in the run


def db_yield_dependency_cells(runs: Runs) -> YieldDependency:
    run = runs["db"]
    cells = db_cells(run, endpoint="sync-db", **ONE)
    g = max(cells, key=lambda c: c.connections or 0)
    return YieldDependency(
        g,
        [c for c in cells if DB_POOL < (c.connections or 0) < (g.connections or 0)],
        run.environment["packages"]["fastapi"],
    )


def db_yield_dependency_check(c: YieldDependency) -> bool:
    return (
        c.g.ok
        and all(b is Bound.DB_POOL for b in c.g.bounds)
        and c.g.db_pool_peak_max == DB_POOL
        and bool(c.fewer)
        and all(f.requests.median == c.g.requests.median for f in c.fewer)
    )


def db_yield_dependency_sentence(c: YieldDependency) -> Sentence:
    g = c.g
    return Sentence(
        f"fastapi/fastapi#3205's shape no longer stalls with FastAPI {c.fastapi}.",
        f"A `def` endpoint whose session comes from a sync `yield` dependency, one worker, {g.connections} "
        f"connections against {DEFAULT_THREAD_LIMIT} threads and a pool of {DB_POOL}: {g.requests.text()} requests "
        f"(predicted {predicted(g)}), {g.db_pool_peak_max} connections at most, the same count as at "
        + ", ".join(str(f.connections) for f in c.fewer)
        + " connections. Why, from FastAPI's source (not measured "
        "here): the dependency's teardown, which closes the session and so returns its connection, runs under a "
        "limiter of its own (`contextmanager_in_threadpool` in `fastapi/concurrency.py`), not on one of the "
        "threads that the requests waiting for a connection hold.",
        f"{g.requests.text()} requests at {g.connections} connections",
    )


DB_YIELD_DEPENDENCY = Finding(
    "db_yield_dependency", ("db",), db_yield_dependency_cells, db_yield_dependency_check, db_yield_dependency_sentence
)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [
    DB_DEF_POOL,
    DB_ASYNC_POOL,
    DB_POOL_TIMEOUT,
    DB_MAX_CONNECTIONS,
    DB_BLOCKING,
    DB_YIELD_DEPENDENCY,
]
