"""The app under test: the same sleep behind a `def`, an `async def`, and a blocking `async def`.

Environment:
  SLEEP_SECONDS  how long each endpoint sleeps (default 10, the original experiment)
  THREAD_LIMIT   size of anyio's default thread limiter, which bounds how many `def`
                 requests run at once per worker (anyio's default: 40)
  STATS_DIR      if set, each worker writes what it saw to STATS_DIR/worker-<pid>.json
"""

import asyncio
import json
import os
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI


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
STATS_DIR = os.environ.get("STATS_DIR") or None

BODY = {"slept": SLEEP_SECONDS}


class WorkerStats:
    """What one worker saw: client connections and, per endpoint, requests inside the handler.

    Written to disk by a background thread rather than only at shutdown, because a worker
    whose event loop is blocked never reaches its shutdown code before gunicorn kills it.
    """

    DUMP_INTERVAL_SECONDS = 0.2

    def __init__(self, directory: str):
        self.directory = Path(directory)
        self.lock = threading.Lock()
        self.clients: set[tuple[str, int]] = set()
        self.endpoints: dict[str, dict[str, int]] = {}

    def saw_client(self, client) -> None:
        if client:
            with self.lock:
                self.clients.add(tuple(client))

    def enter(self, endpoint: str) -> None:
        with self.lock:
            counts = self.endpoints.setdefault(endpoint, {"running": 0, "peak": 0, "completed": 0})
            counts["running"] += 1
            counts["peak"] = max(counts["peak"], counts["running"])

    def leave(self, endpoint: str) -> None:
        with self.lock:
            counts = self.endpoints[endpoint]
            counts["running"] -= 1
            counts["completed"] += 1

    def dump(self) -> None:
        with self.lock:
            snapshot = {
                "pid": os.getpid(),
                "connections": len(self.clients),
                "thread_limit": anyio_thread_limit,
                "endpoints": {
                    name: {"peak": c["peak"], "completed": c["completed"]}
                    for name, c in self.endpoints.items()
                },
            }
        # Named at write time: with gunicorn --preload the app is imported once, in the master.
        path = self.directory / f"worker-{os.getpid()}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(snapshot, sort_keys=True) + "\n")
        temporary.replace(path)

    def dump_forever(self) -> None:
        while True:
            self.dump()  # the first file also tells benchmark.sh that this worker is up
            time.sleep(self.DUMP_INTERVAL_SECONDS)


stats = WorkerStats(STATS_DIR) if STATS_DIR else None
anyio_thread_limit = None


@asynccontextmanager
async def lifespan(app):
    global anyio_thread_limit
    limiter = anyio.to_thread.current_default_thread_limiter()
    if THREAD_LIMIT is not None:
        limiter.total_tokens = THREAD_LIMIT
    anyio_thread_limit = limiter.total_tokens
    if stats:
        threading.Thread(target=stats.dump_forever, daemon=True).start()
    yield
    if stats:
        stats.dump()


app = FastAPI(lifespan=lifespan)


COUNTED_PATHS = {"/sync", "/async", "/async-blocking"}


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


class RecordClient:
    """Plain ASGI middleware (no BaseHTTPMiddleware task hop): notes which connection sent each request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        # Only the benchmarked paths: benchmark.sh's readiness probe is not one of wrk's connections.
        if scope["type"] == "http" and scope["path"] in COUNTED_PATHS:
            stats.saw_client(scope.get("client"))
        await self.app(scope, receive, send)


if stats:
    app.add_middleware(RecordClient)
