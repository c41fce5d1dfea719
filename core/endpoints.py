"""ENDPOINTS: every path app.py serves for the benchmark, what kind of handler it is, what it
waits on, and the most requests one worker can hold in it at once (what the model reads).
app.py keeps the handlers themselves; this table says what each one is."""

from dataclasses import dataclass

from .bound import Bound

DEF, ASYNC, BLOCKING, APP_PATH = "def", "async def", "blocking async def", "a path of APP"
ANYIO_THREAD_LIMIT = 40  # anyio's default CapacityLimiter for to_thread.run_sync, per event loop
HTTPX_MAX_CONNECTIONS = 100  # httpx/_config.py: DEFAULT_LIMITS = Limits(max_connections=100, ...)
HTTPX_POOL_TIMEOUT_S = 5.0  # httpx/_config.py: DEFAULT_TIMEOUT_CONFIG = Timeout(timeout=5.0)
# SQLAlchemy's QueuePool (create_engine and create_async_engine alike): pool_size, max_overflow, pool_timeout.
SQLALCHEMY_POOL_SIZE, SQLALCHEMY_MAX_OVERFLOW, SQLALCHEMY_POOL_TIMEOUT_S = 5, 10, 30.0


@dataclass(frozen=True)
class Endpoint:
    kind: str  # DEF runs in anyio's thread pool; ASYNC awaits; BLOCKING blocks the event loop
    # "sleep" (SLEEP_SECONDS), "upstream" (an HTTP call to a second server), "database"
    # (SELECT pg_sleep(SLEEP_SECONDS) through SQLAlchemy) or "cpu" (a fixed amount of pure-Python
    # work and no wait: only a CPU limits it, as with no sleep)
    waits_on: str

    @property
    def waits(self) -> bool:
        """Its requests wait on something (a sleep, a call, a query): the model has a wave to count."""
        return self.waits_on not in ("cpu", "app")

    @property
    def calls_upstream(self) -> bool:
        return self.waits_on == "upstream"

    @property
    def queries_database(self) -> bool:
        return self.waits_on == "database"

    def limits(self, thread_limit: int, http_pool: int, db_pool: int) -> list[tuple[float, str, Bound]]:
        """Every per-worker limit of this endpoint: (requests at once, what the summary calls it, which)."""
        found: list[tuple[float, str, Bound]] = []
        if self.kind == DEF:
            found.append((thread_limit, f"thread limiter: {thread_limit}/worker", Bound.THREADS))
        if self.calls_upstream and self.kind != BLOCKING:
            found.append((http_pool, f"HTTP client pool: {http_pool}/worker", Bound.HTTP_POOL))
        if self.queries_database and self.kind != BLOCKING:
            found.append((db_pool, f"database pool: {db_pool}/worker", Bound.DB_POOL))
        if self.kind == BLOCKING:  # the event loop is stuck in the call: one request at a time
            found.append((1, "blocked event loop: 1/worker", Bound.BLOCKED_LOOP))
        return found

    def pool_waiters(self, connections: int, thread_limit: int) -> int:
        """Requests of one worker that can wait for its pool (the HTTP client's, the database's) at once."""
        return min(connections, thread_limit) if self.kind == DEF else connections


ENDPOINTS = {
    "sync": Endpoint(DEF, "sleep"),
    "async": Endpoint(ASYNC, "sleep"),
    "async-blocking": Endpoint(BLOCKING, "sleep"),
    "sync-http": Endpoint(DEF, "upstream"),
    "async-http": Endpoint(ASYNC, "upstream"),
    "async-http-blocking": Endpoint(BLOCKING, "upstream"),
    "sync-db": Endpoint(DEF, "database"),
    "async-db": Endpoint(ASYNC, "database"),
    "async-db-blocking": Endpoint(BLOCKING, "database"),
    "sync-cpu": Endpoint(DEF, "cpu"),
    "async-cpu": Endpoint(ASYNC, "cpu"),
    # A path of your own app (APP, the app set): what it is and waits on, the diagnosis finds out.
    "app": Endpoint(APP_PATH, "app"),
}
