"""The app under test: the same wait behind a `def`, an `async def`, and a blocking `async def`,
and the same three shapes around a real HTTP call to an upstream server.

Environment:
  SLEEP_SECONDS      how long each sleep endpoint sleeps (default 10, the original experiment)
  THREAD_LIMIT       size of anyio's default thread limiter, which bounds how many `def`
                     requests run at once per worker (anyio's default: 40)
  UPSTREAM_URL       what the /*-http endpoints call (benchmark.sh starts that server)
  HTTP_POOL          httpx's max_connections for both clients (httpx's default: 100)
  HTTP_POOL_TIMEOUT  seconds a request may wait for a pooled connection (httpx's default: 5)
  STATS_DIR          if set, each worker writes what it saw to STATS_DIR/worker-<pid>.json,
                     and a snapshot STATS_DIR/worker-<pid>.<name>.json whenever a file
                     STATS_DIR/snapshot-<name> appears (benchmark.sh asks as wrk starts and ends)
"""

import asyncio
import json
import os
import resource
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
import httpx
from fastapi import FastAPI
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
STATS_DIR = os.environ.get("STATS_DIR") or None

BODY = {"slept": SLEEP_SECONDS}
# ru_maxrss is in kilobytes on Linux and in bytes on macOS (getrusage(2) on each).
MAXRSS_BYTES = 1 if sys.platform == "darwin" else 1024


class WorkerStats:
    """What one worker saw, per endpoint: requests received, inside the handler, answered.

    Written to disk by a background thread rather than only at shutdown, because a worker
    whose event loop is blocked never reaches its shutdown code; the same thread answers
    snapshot requests, so a snapshot is taken within SNAPSHOT_POLL_SECONDS even then.
    """

    DUMP_INTERVAL_SECONDS = 0.2
    SNAPSHOT_POLL_SECONDS = 0.02

    def __init__(self, directory: str):
        self.directory = Path(directory)
        self.lock = threading.Lock()
        self.clients: set[tuple[str, int]] = set()
        self.answered_clients: set[tuple[str, int]] = set()
        self.endpoints: dict[str, dict[str, int]] = {}
        self.arrivals: dict[int, float] = {}  # requests not answered yet: id -> arrival time
        self.snapshots_taken: set[str] = set()

    def _counts(self, endpoint: str) -> dict[str, int]:
        return self.endpoints.setdefault(endpoint, {
            "received": 0, "entered": 0, "running": 0, "peak": 0, "peak_waiting": 0,
            "completed": 0, "pool_timeouts": 0, "upstream_errors": 0,
        })

    def arrive(self, endpoint: str, client, key: int) -> None:
        with self.lock:
            if client:
                self.clients.add(tuple(client))
            counts = self._counts(endpoint)
            counts["received"] += 1
            counts["peak_waiting"] = max(counts["peak_waiting"], counts["received"] - counts["entered"])
            self.arrivals[key] = time.monotonic()

    def answer(self, endpoint: str, client, key: int) -> None:
        with self.lock:
            if client:
                self.answered_clients.add(tuple(client))
            self._counts(endpoint)["completed"] += 1
            self.arrivals.pop(key, None)

    def end(self, key: int) -> None:
        """The request is over, answered or not (a handler error, a client gone)."""
        with self.lock:
            self.arrivals.pop(key, None)

    def enter(self, endpoint: str) -> None:
        with self.lock:
            counts = self._counts(endpoint)
            counts["entered"] += 1
            counts["running"] += 1
            counts["peak"] = max(counts["peak"], counts["running"])

    def leave(self, endpoint: str) -> None:
        with self.lock:
            self._counts(endpoint)["running"] -= 1

    def count(self, endpoint: str, what: str) -> None:
        with self.lock:
            self._counts(endpoint)[what] += 1

    def snapshot(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with self.lock:
            oldest = min(self.arrivals.values(), default=None)
            return {
                "pid": os.getpid(),
                "time": time.time(),
                "connections": len(self.clients),
                "connections_answered": len(self.answered_clients),
                "in_flight": len(self.arrivals),
                "oldest_unanswered_s": None if oldest is None else round(time.monotonic() - oldest, 3),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                "peak_rss_bytes": usage.ru_maxrss * MAXRSS_BYTES,
                "thread_limit": anyio_thread_limit,
                "endpoints": {name: {k: v for k, v in c.items() if k != "running"} for name, c in self.endpoints.items()},
            }

    def write(self, name: str) -> None:
        # Named at write time: with gunicorn --preload the app is imported once, in the master.
        path = self.directory / name.format(pid=os.getpid())
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.snapshot(), sort_keys=True) + "\n")
        temporary.replace(path)

    def take_requested_snapshots(self) -> None:
        for request in self.directory.glob("snapshot-*"):
            name = request.name.removeprefix("snapshot-")
            if name not in self.snapshots_taken:
                self.snapshots_taken.add(name)
                self.write(f"worker-{{pid}}.{name}.json")

    def dump_forever(self) -> None:
        next_dump = 0.0
        while True:
            self.take_requested_snapshots()
            if time.monotonic() >= next_dump:  # the first file also tells benchmark.sh this worker is up
                self.write("worker-{pid}.json")
                next_dump = time.monotonic() + self.DUMP_INTERVAL_SECONDS
            time.sleep(self.SNAPSHOT_POLL_SECONDS)


stats = WorkerStats(STATS_DIR) if STATS_DIR else None
anyio_thread_limit = None
clients: dict[str, httpx.Client | httpx.AsyncClient] = {}


def http_limits_and_timeout() -> tuple[httpx.Limits, httpx.Timeout]:
    pool = HTTP_POOL or 100  # httpx's defaults: Limits(max_connections=100, max_keepalive_connections=20)
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=min(20, pool))
    # httpx's 5 s default, but never shorter than the upstream's sleep, so only the pool can time out.
    timeout = httpx.Timeout(max(5.0, SLEEP_SECONDS + 5), pool=5.0 if HTTP_POOL_TIMEOUT is None else HTTP_POOL_TIMEOUT)
    return limits, timeout


@asynccontextmanager
async def lifespan(app):
    global anyio_thread_limit
    limiter = anyio.to_thread.current_default_thread_limiter()
    if THREAD_LIMIT is not None:
        limiter.total_tokens = THREAD_LIMIT
    anyio_thread_limit = limiter.total_tokens
    if UPSTREAM_URL:  # one client of each kind per worker, made once: httpx's documented way
        limits, timeout = http_limits_and_timeout()
        clients["sync"] = httpx.Client(limits=limits, timeout=timeout)
        clients["async"] = httpx.AsyncClient(limits=limits, timeout=timeout)
    if stats:
        threading.Thread(target=stats.dump_forever, daemon=True).start()
    yield
    if clients:
        clients.pop("sync").close()
        await clients.pop("async").aclose()
    if stats:
        stats.write("worker-{pid}.json")


app = FastAPI(lifespan=lifespan)


def counted(endpoint: str):
    """Count requests inside the handler itself (after any wait for a thread), only with STATS_DIR.

    Without STATS_DIR the handler is returned untouched, so the plain runs measure the bare app.
    """

    def decorate(handler):
        if stats is None:
            return handler
        if asyncio.iscoroutinefunction(handler):

            async def counted_async():
                stats.enter(endpoint)
                try:
                    return await handler()
                finally:
                    stats.leave(endpoint)

            return counted_async

        def counted_sync():
            stats.enter(endpoint)
            try:
                return handler()
            finally:
                stats.leave(endpoint)

        return counted_sync

    return decorate


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


def upstream_failed(endpoint: str, error: httpx.HTTPError) -> JSONResponse:
    """A pool timeout is the limit under study: answer 503 naming it, instead of a bare 500."""
    if isinstance(error, httpx.PoolTimeout):
        if stats:
            stats.count(endpoint, "pool_timeouts")
        waited = clients["sync"].timeout.pool
        return JSONResponse({"error": f"httpx.PoolTimeout: no pooled connection within {waited:g} s"}, status_code=503)
    if stats:
        stats.count(endpoint, "upstream_errors")
    return JSONResponse({"error": f"upstream call failed: {type(error).__name__}"}, status_code=502)


@app.get("/sync-http")
@counted("sync-http")
def sync_http():
    try:
        return {"upstream": clients["sync"].get(UPSTREAM_URL).status_code}
    except httpx.HTTPError as error:
        return upstream_failed("sync-http", error)


@app.get("/async-http")
@counted("async-http")
async def async_http():
    try:
        return {"upstream": (await clients["async"].get(UPSTREAM_URL)).status_code}
    except httpx.HTTPError as error:
        return upstream_failed("async-http", error)


@app.get("/async-http-blocking")
@counted("async-http-blocking")
async def async_http_blocking():
    # The same mistake with a real client: the sync httpx.Client inside `async def` holds the loop.
    try:
        return {"upstream": clients["sync"].get(UPSTREAM_URL).status_code}
    except httpx.HTTPError as error:
        return upstream_failed("async-http-blocking", error)


ENDPOINTS = {"/sync", "/async", "/async-blocking", "/sync-http", "/async-http", "/async-http-blocking"}


class Track:
    """Plain ASGI middleware (no BaseHTTPMiddleware task hop): notes each request's arrival,
    before any wait for a thread, and its answer, with the connection that sent it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        # Only the benchmarked paths: benchmark.sh's readiness probe is not one of wrk's connections.
        if scope["type"] != "http" or scope["path"] not in ENDPOINTS:
            return await self.app(scope, receive, send)
        endpoint, client, key = scope["path"][1:], scope.get("client"), id(scope)
        stats.arrive(endpoint, client, key)

        async def send_and_note(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                stats.answer(endpoint, client, key)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            stats.end(key)


if stats:
    app.add_middleware(Track)
