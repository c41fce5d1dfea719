"""The app under test: the same wait behind a `def`, an `async def`, and a blocking `async def`,
the same three shapes around a real HTTP call to an upstream server and a real query, and a fixed
amount of pure-Python work behind a `def` and an `async def` (no wait at all: only a CPU limits).

Environment:
  SLEEP_SECONDS      how long each sleep endpoint sleeps (default 10, the original experiment)
  THREAD_LIMIT       size of anyio's default thread limiter, which bounds how many `def`
                     requests run at once per worker (anyio's default: 40)
  UPSTREAM_URL       what the /*-http endpoints call (the runner starts that server)
  HTTP_POOL          httpx's max_connections for both clients (httpx's default: 100)
  HTTP_POOL_TIMEOUT  seconds a request may wait for a pooled connection (httpx's default: 5)
  DATABASE_URL       postgresql://user:password@host:port/db the /*-db endpoints query (the runner
                     starts that PostgreSQL)
  DB_POOL_SIZE, DB_MAX_OVERFLOW, DB_POOL_TIMEOUT
                     SQLAlchemy's pool for both engines (SQLAlchemy's defaults: 5, 10, 30 s)
  STATS_DIR          if set, each worker counts what it saw into STATS_DIR (counters.py)
"""

import asyncio
import os
import sys
import time
from contextlib import asynccontextmanager

import anyio.to_thread
import httpx
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse


def _number_from_env(name: str, default: str, kind: type, minimum: float) -> float | None:
    raw = os.environ.get(name, default)
    if raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value != value or value < minimum or value == float("inf"):
        print(f"app.py: {name} must be a {kind.__name__} >= {minimum}, got {raw!r}", file=sys.stderr)
        # gunicorn's WORKER_BOOT_ERROR: the master stops instead of respawning the worker forever.
        raise SystemExit(3)
    return value


SLEEP_SECONDS = _number_from_env("SLEEP_SECONDS", "10", float, 0)
THREAD_LIMIT = _number_from_env("THREAD_LIMIT", "", int, 1)
HTTP_POOL = _number_from_env("HTTP_POOL", "", int, 1)
HTTP_POOL_TIMEOUT = _number_from_env("HTTP_POOL_TIMEOUT", "", float, 0)
UPSTREAM_URL = os.environ.get("UPSTREAM_URL") or None
DATABASE_URL = os.environ.get("DATABASE_URL") or None
DB_POOL_SIZE = _number_from_env("DB_POOL_SIZE", "", int, 1)
DB_MAX_OVERFLOW = _number_from_env("DB_MAX_OVERFLOW", "", int, 0)
DB_POOL_TIMEOUT = _number_from_env("DB_POOL_TIMEOUT", "", float, 0)
STATS_DIR = os.environ.get("STATS_DIR") or None

BODY = {"slept": SLEEP_SECONDS}
app = FastAPI()
clients: dict[str, httpx.Client | httpx.AsyncClient] = {}  # made per worker by lifespan() below
engines: dict = {}  # the same: one sync (psycopg) and one async (asyncpg) SQLAlchemy engine per worker

if STATS_DIR:  # the server-side counters, only when the runner asks for them
    import counters

    worker_stats = counters.WorkerStats(STATS_DIR)
    stats: counters.WorkerStats | None = worker_stats
    counted = worker_stats.counted
else:  # the plain runs measure the bare handlers
    stats = None

    def counted(endpoint: str):
        return lambda handler: handler


# ---------------------------------------------------------------- the endpoints


@app.get("/sync")
@counted("sync")
def sync_sleep():
    # FastAPI runs a `def` endpoint in anyio's thread pool, so the event loop stays free.
    time.sleep(SLEEP_SECONDS)
    return BODY


@app.get("/async")
@counted("async")
async def async_sleep():
    await asyncio.sleep(SLEEP_SECONDS)
    return BODY


@app.get("/async-blocking")
@counted("async-blocking")
async def async_blocking_sleep():
    # The classic mistake: a blocking call inside `async def` stalls the worker's event loop.
    time.sleep(SLEEP_SECONDS)
    return BODY


# Pure-Python work a request does in /sync-cpu and /async-cpu: the same every time, whatever the knobs.
CPU_WORK_ITERATIONS = 20_000


def cpu_work() -> int:
    return sum(i * i for i in range(CPU_WORK_ITERATIONS))


@app.get("/sync-cpu")
@counted("sync-cpu")
def sync_cpu():
    # On one of anyio's threads, but holding the GIL: the worker's threads take turns.
    return {"work": cpu_work()}


@app.get("/async-cpu")
@counted("async-cpu")
async def async_cpu():
    # On the event loop itself: nothing else of this worker runs meanwhile.
    return {"work": cpu_work()}


@app.get("/sync-http")
@counted("sync-http")
def sync_http():
    return {"upstream": clients["sync"].get(UPSTREAM_URL).status_code}


@app.get("/async-http")
@counted("async-http")
async def async_http():
    return {"upstream": (await clients["async"].get(UPSTREAM_URL)).status_code}


@app.get("/async-http-blocking")
@counted("async-http-blocking")
async def async_http_blocking():
    # The same mistake with a real client: the sync httpx.Client inside `async def` holds the loop.
    return {"upstream": clients["sync"].get(UPSTREAM_URL).status_code}


def failed(request, kind: str, message: str, status: int) -> JSONResponse:
    """A limit under study (a pool timeout, a refused connection) answers a 503 naming it, not a bare 500,
    counted by kind for the endpoint that met it."""
    if stats:
        stats.count(request.url.path.removeprefix("/"), kind)
    return JSONResponse({"error": message}, status_code=status)


@app.exception_handler(httpx.HTTPError)
async def upstream_failed(request, error: httpx.HTTPError) -> JSONResponse:
    if isinstance(error, httpx.PoolTimeout):
        waited = clients["sync"].timeout.pool
        return failed(request, "pool_timeouts", f"httpx.PoolTimeout: no pooled connection within {waited:g} s", 503)
    return failed(request, "upstream_errors", f"upstream call failed: {type(error).__name__}", 502)


if DATABASE_URL:  # the database stack only where a cell queries it: it adds to every worker's memory
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError
    from sqlalchemy.exc import TimeoutError as PoolTimeout
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.orm import Session

    SLEEP_QUERY = text("SELECT pg_sleep(:seconds)")

    def get_db():
        # A session per request from a yield dependency, as FastAPI's SQL tutorial shows.
        with Session(engines["sync"]) as session:
            yield session

    @app.get("/sync-db")
    @counted("sync-db")
    def sync_db(session: Session = Depends(get_db)):
        session.execute(SLEEP_QUERY, {"seconds": SLEEP_SECONDS})
        return BODY

    @app.get("/async-db")
    @counted("async-db")
    async def async_db():
        async with AsyncSession(engines["async"]) as session:
            await session.execute(SLEEP_QUERY, {"seconds": SLEEP_SECONDS})
        return BODY

    @app.get("/async-db-blocking")
    @counted("async-db-blocking")
    async def async_db_blocking():
        # The mistake people make when they "just add async": the sync session inside `async def`.
        with Session(engines["sync"]) as session:
            session.execute(SLEEP_QUERY, {"seconds": SLEEP_SECONDS})
        return BODY

    @app.exception_handler(SQLAlchemyError)
    async def database_failed(request, error: SQLAlchemyError) -> JSONResponse:
        if isinstance(error, PoolTimeout):  # "QueuePool limit of size 5 overflow 10 reached, connection timed out"
            return failed(request, "pool_timeouts", str(error).split(" (Background")[0], 503)
        if isinstance(error, DBAPIError) and ("too many clients" in str(error) or "connection slots" in str(error)):
            return failed(request, "db_refused", f"database refused the connection: {str(error.orig).strip()}", 503)
        return failed(request, "db_errors", f"database call failed: {type(error).__name__}", 502)


# ---------------------------------------------------------------- per worker: limits, clients, counters


def http_limits_and_timeout() -> tuple[httpx.Limits, httpx.Timeout]:
    pool = int(HTTP_POOL or 100)  # httpx's defaults: Limits(max_connections=100, max_keepalive_connections=20)
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=min(20, pool))
    # httpx's 5 s default, but never shorter than the upstream's sleep, so only the pool can time out.
    timeout = httpx.Timeout(
        max(5.0, (SLEEP_SECONDS or 0) + 5), pool=5.0 if HTTP_POOL_TIMEOUT is None else HTTP_POOL_TIMEOUT
    )
    return limits, timeout


@asynccontextmanager
async def lifespan(app):
    limiter = anyio.to_thread.current_default_thread_limiter()
    if THREAD_LIMIT is not None:
        limiter.total_tokens = THREAD_LIMIT
    if UPSTREAM_URL:  # one client of each kind per worker, made once: httpx's documented way
        limits, timeout = http_limits_and_timeout()
        clients["sync"] = httpx.Client(limits=limits, timeout=timeout)
        clients["async"] = httpx.AsyncClient(limits=limits, timeout=timeout)
    if DATABASE_URL:  # engines per worker, after the fork: a pool is never shared across processes
        pool = {
            name: value
            for name, value in [
                ("pool_size", DB_POOL_SIZE),
                ("max_overflow", DB_MAX_OVERFLOW),
                ("pool_timeout", DB_POOL_TIMEOUT),
            ]
            if value is not None
        }
        engines["sync"] = create_engine(DATABASE_URL.replace("postgresql:", "postgresql+psycopg:", 1), **pool)
        engines["async"] = create_async_engine(DATABASE_URL.replace("postgresql:", "postgresql+asyncpg:", 1), **pool)
        if stats:
            for name, engine in engines.items():
                stats.watch_pool(name, engine)
    if stats:
        stats.start(limiter.total_tokens)
    yield
    if clients:
        clients.pop("sync").close()
        await clients.pop("async").aclose()
    if engines:
        engines.pop("sync").dispose()
        await engines.pop("async").dispose()
    if stats:
        stats.loop.stop()
        stats.write("worker-{pid}.json")


app.router.lifespan_context = lifespan
if stats:
    app.add_middleware(counters.Track, stats=stats)
