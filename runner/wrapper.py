"""What the servers serve for APP=module:attr (`--app`): the user's ASGI app, imported unchanged
from APP_DIR, inside the counters app.py uses (counters.py, beside this file in the run directory),
plus what only an app the runner did not write needs: whether each loaded path's handler and its
dependencies are `def` or `async def` (FastAPI's routes), anyio's thread limiter's occupancy, every
SQLAlchemy pool and every httpx connection pool the app makes, and each path's statuses and errors.
It reads anyio's limiter and FastAPI's routes; SQLAlchemy and httpx only where the app imported
them by its first request. Without STATS_DIR it serves the app bare.

Environment: APP, APP_DIR (default: the working directory), PATHS (the paths the load asks for,
space-separated), THREAD_LIMIT (anyio's default limiter's size), STATS_DIR (as for app.py; hidden
from the app, which may be app.py itself); for --check, CHECK_REQUESTS and CHECK_HEADERS (JSON:
each request's method, path and body file; the headers)."""

import asyncio
import importlib
import inspect
import json
import os
import sys

PATHS = os.environ.get("PATHS", "").split()
THREAD_LIMIT = int(os.environ["THREAD_LIMIT"]) if os.environ.get("THREAD_LIMIT") else None


def import_app():
    sys.path.insert(0, os.path.abspath(os.environ.get("APP_DIR") or "."))
    module, _, attribute = os.environ["APP"].partition(":")
    return getattr(importlib.import_module(module), attribute)


def is_asgi(candidate) -> bool:
    """An ASGI 3 application: an async callable of (scope, receive, send)."""
    call = candidate if inspect.isfunction(candidate) else getattr(candidate, "__call__", None)
    if call is None or not inspect.iscoroutinefunction(call):
        return False
    try:
        parameters = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 3 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def check() -> int:
    """Before any server starts (the runner's check): APP imports and is an ASGI app, and each of
    PATHS answers a GET with a 2xx or 3xx, in this process, through its lifespan. Why not, in one
    line on stderr, exit 2."""
    name = os.environ["APP"]
    try:
        candidate = import_app()
    except AttributeError as error:
        return refuse(f"APP={name}: {error}")
    except BaseException as error:  # whatever the import raised: its last line says why
        where = f" (from APP_DIR; its packages must be in {sys.prefix})" if isinstance(error, ImportError) else ""
        return refuse(f"APP={name} does not import{where}: {type(error).__name__}: {error}")
    if not is_asgi(candidate):
        return refuse(f"APP={name} is not an ASGI app (an async callable of scope, receive, send): {type(candidate)}")
    requests = json.loads(os.environ.get("CHECK_REQUESTS") or "[]") or [{"method": "GET", "path": p} for p in PATHS]
    headers = [tuple(h) for h in json.loads(os.environ.get("CHECK_HEADERS") or "[]")]
    try:
        statuses = asyncio.run(statuses_of(candidate, requests, headers))
    except Exception as error:
        return refuse(f"APP={name}: asking its paths once failed: {type(error).__name__}: {error}")
    wrong = [f"{asked} answered {status}" for asked, status in statuses.items() if not 200 <= status < 400]
    if wrong:
        return refuse(f"APP={name}: " + ", ".join(wrong) + " at 1 connection (PATHS must answer 2xx or 3xx)")
    return 0


def refuse(message: str) -> int:
    print(" ".join(message.split()), file=sys.stderr)
    return 2


async def statuses_of(asgi_app, requests: list[dict], headers: list) -> dict[str, int]:
    """Each request's status (asked once, with HEADERS), inside the app's lifespan (where it has one)
    as a server runs it, by what was asked: '/a', or 'POST /b'."""
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    started = asyncio.Event()
    failure: list[str] = []

    async def send(message):
        if message["type"] == "lifespan.startup.failed":
            failure.append(message.get("message", ""))
        if message["type"].startswith("lifespan.startup"):
            started.set()

    async def lifespan():
        try:
            await asgi_app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, queue.get, send)
        except Exception:
            if failure:  # (the app re-raises what it reported as lifespan.startup.failed)
                return
            if not started.is_set():  # an app without a lifespan: served without one, as uvicorn does
                started.set()
                return
            raise

    running = asyncio.create_task(lifespan())
    await queue.put({"type": "lifespan.startup"})
    await asyncio.wait([running, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
    if failure:
        raise RuntimeError(f"its lifespan's start-up failed: {failure[0]}")
    transport = httpx.ASGITransport(app=asgi_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        statuses = {}
        for r in requests:
            body = open(r["body"], "rb").read() if r.get("body") else None
            answer = await client.request(r["method"], r["path"], content=body, headers=headers)
            statuses[r["path"] if r["method"] == "GET" else f"{r['method']} {r['path']}"] = answer.status_code
    await queue.put({"type": "lifespan.shutdown"})
    await asyncio.wait([running], timeout=10)
    return statuses


def kind(call) -> str:
    """How FastAPI runs CALL: awaited on the loop, or in anyio's thread pool (a plain or generator `def`)."""
    if inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        return "async def"
    dunder = getattr(call, "__call__", None)  # a class instance used as a dependency
    if not inspect.isfunction(call) and dunder is not None and inspect.iscoroutinefunction(dunder):
        return "async def"
    return "def"


def route_of(scope) -> dict | None:
    """After the app has served SCOPE: the route that matched it, as Starlette and FastAPI leave it in
    the scope: its template, and for FastAPI its handler and each dependency, by name and kind (a
    `def` dependency takes a thread as a `def` handler does); None when no route says."""
    context = (scope.get("fastapi") or {}).get("effective_route_context")  # an included router's route
    route = scope.get("route")
    template = getattr(context, "path", None) or getattr(route, "path_format", None) or getattr(route, "path", None)
    dependant = getattr(context, "dependant", None) or getattr(route, "dependant", None)
    if dependant is None or dependant.call is None:
        endpoint = scope.get("endpoint")
        handler = {"name": getattr(endpoint, "__name__", repr(endpoint)), "kind": kind(endpoint)} if endpoint else None
        return {"route": template, "handler": handler, "dependencies": []} if template or handler else None
    dependencies, stack = [], list(dependant.dependencies)
    while stack:
        d = stack.pop(0)
        if d.call is not None:
            dependencies.append({"name": getattr(d.call, "__name__", type(d.call).__name__), "kind": kind(d.call)})
        stack.extend(d.dependencies)
    return {
        "route": template,
        "handler": {"name": dependant.call.__name__, "kind": kind(dependant.call)},
        "dependencies": dependencies,
    }


class Served:
    """Outermost ASGI middleware: starts the worker's counters on the app's first call (the lifespan
    where the server sends one, else the first request), counts each loaded path's statuses and the
    errors that escape the app, and watches the pools of whatever the app has imported by then."""

    def __init__(self, inner, stats):
        self.inner, self.stats, self.started = inner, stats, False
        self.limiter = None
        self.extras = stats.extras
        self.extras.update(
            {
                "app": os.environ["APP"],
                "routes": {},  # each path's, from its first request's scope
                "statuses": {},
                "errors": {},
                "thread_limiter": None,
                "http_pools": {},
            }
        )

    def start(self) -> None:
        import anyio.to_thread

        self.started = True
        self.limiter = anyio.to_thread.current_default_thread_limiter()
        if THREAD_LIMIT is not None:
            self.limiter.total_tokens = THREAD_LIMIT
        self.extras["thread_limiter"] = {"size": self.limiter.total_tokens, "borrowed": 0, "peak_borrowed": 0}
        self.stats.loop.on_wake.append(self.sample_threads)  # at the loop clock's pace (counters.py)
        watch_sqlalchemy_pools(self.stats)
        watch_httpcore_pools(self.stats)
        self.stats.start(self.limiter.total_tokens)

    def sample_threads(self) -> None:
        """Under the stats lock, on the loop: the threads borrowed now (sampled, so a peak is at least this)."""
        limiter = self.extras["thread_limiter"]
        limiter["size"] = self.limiter.total_tokens  # as the app's own lifespan may have set it
        limiter["borrowed"] = self.limiter.borrowed_tokens
        limiter["peak_borrowed"] = max(limiter["peak_borrowed"], limiter["borrowed"])

    async def __call__(self, scope, receive, send):
        if not self.started:
            self.start()
        if scope["type"] == "lifespan":
            return await self.lifespan(scope, receive, send)
        if scope["type"] != "http" or scope["path"] not in PATHS:
            return await self.inner(scope, receive, send)
        path, stats = scope["path"], self.stats

        async def send_noting_status(message):
            if message["type"] == "http.response.start":
                with stats.lock:
                    counts = self.extras["statuses"].setdefault(path, {})
                    counts[str(message["status"])] = counts.get(str(message["status"]), 0) + 1
            await send(message)

        try:
            await self.inner(scope, receive, send_noting_status)
        except Exception as error:
            with stats.lock:
                counts = self.extras["errors"].setdefault(path, {})
                name = f"{type(error).__module__}.{type(error).__qualname__}"
                counts[name] = counts.get(name, 0) + 1
            raise
        finally:
            if path not in self.extras["routes"] and (route := route_of(scope)) is not None:
                with stats.lock:
                    self.extras["routes"][path] = route

    async def lifespan(self, scope, receive, send):
        async def send_and_stop(message):
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self.stats.loop.stop()
                self.stats.write("worker-{pid}.json")
            await send(message)

        # An app without a lifespan raises here, and the server goes on without one (uvicorn's "auto").
        await self.inner(scope, receive, send_and_stop)


def watch_sqlalchemy_pools(stats) -> None:
    """Every SQLAlchemy pool, through the Pool class's events: each pool's size, overflow and timeout
    read from the pool itself, its connections checked out (at most) and its overflow (at most)."""
    if "sqlalchemy" not in sys.modules:
        return
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    names: dict[int, str] = {}

    def counts_of(pool) -> dict:
        if id(pool) not in names:
            names[id(pool)] = f"pool-{len(names) + 1}"
            # A QueuePool bounds its connections (size + max_overflow, -1: no bound); others do not.
            queue = callable(getattr(pool, "size", None)) and callable(getattr(pool, "overflow", None))
            stats.pools[names[id(pool)]] = {
                "kind": type(pool).__name__,
                "size": pool.size() if queue else None,
                "max_overflow": getattr(pool, "_max_overflow", None) if queue else None,
                "timeout_s": pool.timeout() if queue else None,
                "checked_out": 0,
                "peak_checked_out": 0,
                "peak_overflow": 0,
            }
        return stats.pools[names[id(pool)]]

    def checkout(dbapi_connection, record, proxy):
        pool = proxy._pool
        with stats.lock:
            counts = counts_of(pool)
            record.info["benchmark_pool"] = names[id(pool)]  # for its checkin, which has no proxy
            counts["checked_out"] += 1
            counts["peak_checked_out"] = max(counts["peak_checked_out"], counts["checked_out"])
            if counts["size"] is not None:
                counts["peak_overflow"] = max(counts["peak_overflow"], pool.overflow())

    def checkin(dbapi_connection, record):
        with stats.lock:
            name = record.info.get("benchmark_pool")
            if name in stats.pools:
                stats.pools[name]["checked_out"] -= 1

    event.listen(Pool, "checkout", checkout)
    event.listen(Pool, "checkin", checkin)


def watch_httpcore_pools(stats) -> None:
    """Every httpx client's connection pool (httpcore's), through its request method: requests in it
    now and at most, and its max_connections (more in it than that: the rest queue for a connection)."""
    if "httpcore" not in sys.modules:
        return
    import httpcore

    pools = stats.extras["http_pools"]

    def counts_of(pool) -> dict:
        name = getattr(pool, "_benchmark_name", None)
        if name is None:
            name = pool._benchmark_name = f"http-{len(pools) + 1}"
            pools[name] = {"max_connections": pool._max_connections, "in_pool": 0, "peak_in_pool": 0}
        return pools[name]

    def enter(pool) -> None:
        with stats.lock:
            counts = counts_of(pool)
            counts["in_pool"] += 1
            counts["peak_in_pool"] = max(counts["peak_in_pool"], counts["in_pool"])

    def leave(pool) -> None:
        with stats.lock:
            counts_of(pool)["in_pool"] -= 1

    async_request = httpcore.AsyncConnectionPool.handle_async_request
    sync_request = httpcore.ConnectionPool.handle_request

    async def handle_async_request(self, request):
        enter(self)
        try:
            return await async_request(self, request)
        finally:
            leave(self)

    def handle_request(self, request):
        enter(self)
        try:
            return sync_request(self, request)
        finally:
            leave(self)

    httpcore.AsyncConnectionPool.handle_async_request = handle_async_request  # type: ignore[method-assign]
    httpcore.ConnectionPool.handle_request = handle_request  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.exit(check())
STATS_DIR = os.environ.pop("STATS_DIR", "")  # the counters are the wrapper's, not the app's (app.py has its own)
if STATS_DIR:  # the runner's counters, imported before APP_DIR goes on the path
    import counters
user_app = app = import_app()
if STATS_DIR:
    _stats = counters.WorkerStats(STATS_DIR)
    _stats.counted_paths.update(PATHS)
    app = Served(counters.Track(user_app, _stats), _stats)
