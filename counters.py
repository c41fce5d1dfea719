"""The server-side counters app.py uses when STATS_DIR is set (the runner sets it): what each
worker saw, per endpoint, written to STATS_DIR/worker-<pid>.json, and a snapshot
STATS_DIR/worker-<pid>.<name>.json whenever a file STATS_DIR/snapshot-<name> appears (the runner
asks as the load generator starts and ends). Without STATS_DIR app.py never imports this."""

import asyncio
import functools
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

# How late the loop's probe woke, in buckets up to these bounds (seconds): a window's histogram is the
# stop snapshot's less the start's, so its 99th percentile needs no sample kept.
LATE_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, float("inf"))

# ru_maxrss is in kilobytes on Linux and in bytes on macOS (getrusage(2) on each).
MAXRSS_BYTES = 1 if sys.platform == "darwin" else 1024
# The names core/files.py gives these files (this file is served from a run directory, where core/
# cannot be imported; tests/test_layers.py checks that the two agree).
WORKER_FILE = "worker-{pid}.json"
WORKER_SNAPSHOT_FILE = "worker-{pid}.{name}.json"
SNAPSHOT_REQUEST = "snapshot-{name}"


class LoopClock:
    """The event loop's own clock: a task that sleeps PROBE_INTERVAL_S and notes how late it woke
    (a busy or blocked loop wakes it late, an idle one on time, unless the whole process is starved
    of CPU), and a watchdog thread that, once the probe is STUCK_S late, reads the loop thread's
    stack every WATCH_S and counts it by its innermost frames (so stuck seconds count the time past
    that threshold). Not a profiler: the cheap signal that tells a blocked or overloaded loop from an
    idle one, and names what holds it."""

    PROBE_INTERVAL_S = 0.02
    STUCK_S = 0.1  # a loop this long without a wake-up is stuck, not merely busy
    WATCH_S = 0.05
    STACK_FRAMES = 3  # innermost frames that name a stuck stack
    MOST_STACKS = 20  # distinct stacks kept; the rest are counted under "other"

    def __init__(self, lock: threading.Lock):
        self.lock = lock
        self.wakes = 0
        self.late_total_s = 0.0
        self.late_max_s = 0.0  # since the start snapshot (or the worker's start)
        self.late_buckets = [0] * len(LATE_BUCKETS_S)
        self.stuck_samples: dict[str, int] = {}  # innermost frames -> watchdog samples while stuck
        self.heartbeat = time.monotonic()
        self.loop_thread = threading.get_ident()
        self.task: asyncio.Task | None = None
        self.stopped = threading.Event()
        self.on_wake: list = []  # callables the probe runs on the loop at each wake-up (samplers)

    def start(self) -> None:
        """From the event loop's thread (the worker's lifespan)."""
        self.loop_thread = threading.get_ident()
        self.heartbeat = time.monotonic()
        self.task = asyncio.get_running_loop().create_task(self.probe())
        threading.Thread(target=self.watch, daemon=True).start()

    async def probe(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.PROBE_INTERVAL_S)
            now = time.monotonic()
            late = max(0.0, now - asked - self.PROBE_INTERVAL_S)
            with self.lock:
                self.heartbeat = now
                self.wakes += 1
                self.late_total_s += late
                self.late_max_s = max(self.late_max_s, late)
                self.late_buckets[next(i for i, bound in enumerate(LATE_BUCKETS_S) if late <= bound)] += 1
                for sample in self.on_wake:
                    sample()

    def watch(self) -> None:
        while not self.stopped.wait(self.WATCH_S):
            if time.monotonic() - self.heartbeat < self.STUCK_S + self.PROBE_INTERVAL_S:
                continue
            frame = sys._current_frames().get(self.loop_thread)
            names: list[str] = []
            while frame is not None and len(names) < self.STACK_FRAMES:
                code = frame.f_code
                names.append(f"{code.co_name} ({Path(code.co_filename).name}:{frame.f_lineno})")
                frame = frame.f_back
            key = " < ".join(names) or "(no Python frame)"
            with self.lock:
                if key not in self.stuck_samples and len(self.stuck_samples) >= self.MOST_STACKS:
                    key = "other"
                self.stuck_samples[key] = self.stuck_samples.get(key, 0) + 1

    def stop(self) -> None:
        """At shutdown: no probe, so no heartbeat, and a shutting-down loop is not a stuck one."""
        self.stopped.set()
        if self.task:
            self.task.cancel()

    def begin_window(self) -> None:
        with self.lock:
            self.late_max_s = 0.0

    def snapshot(self) -> dict:
        """Under the caller's lock. A probe still waiting counts as late as it is now: a loop blocked
        through the snapshot is late by that much, though the probe has not woken to say so."""
        pending = 0.0 if self.stopped.is_set() else max(0.0, time.monotonic() - self.heartbeat - self.PROBE_INTERVAL_S)
        return {
            "probe_interval_s": self.PROBE_INTERVAL_S,
            "wakes": self.wakes,
            "late_total_s": round(self.late_total_s + pending, 6),
            "late_max_s": round(max(self.late_max_s, pending), 6),
            "late_buckets": list(self.late_buckets),
            "late_bucket_bounds_s": list(LATE_BUCKETS_S[:-1]),  # the last bucket: anything later
            "stuck_s": self.STUCK_S,
            "watch_s": self.WATCH_S,
            "stuck_samples": dict(self.stuck_samples),
        }


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
        self.counted_paths: set[str] = set()  # the endpoints wrapped by counted()
        self.thread_limit: int | None = None  # anyio's, as the worker's lifespan found it
        self.pools: dict[str, dict[str, float]] = {}  # SQLAlchemy's: connections checked out now, and peaks
        # New connections by the whole second after the "start" snapshot in which each sent its first
        # request: the load generator opens all of its connections at once, so one that comes a second
        # or more late waited in the kernel (a full accept queue drops the handshake; the client retries).
        self.window_began: float | None = None
        self.connection_starts: dict[int, int] = {}
        self.loop = LoopClock(self.lock)
        self.extras: dict = {}  # what a wrapper adds to each snapshot (runner/wrapper.py's, for --app)

    def _counts(self, endpoint: str) -> dict[str, int]:
        return self.endpoints.setdefault(
            endpoint,
            {
                "received": 0,
                "entered": 0,
                "running": 0,
                "peak": 0,
                "peak_waiting": 0,
                "completed": 0,
                "pool_timeouts": 0,
                "upstream_errors": 0,
                "db_refused": 0,
                "db_errors": 0,
            },
        )

    def arrive(self, endpoint: str, client, key: int) -> None:
        with self.lock:
            if client and tuple(client) not in self.clients:
                self.clients.add(tuple(client))
                if self.window_began is not None:
                    second = int(time.monotonic() - self.window_began)
                    self.connection_starts[second] = self.connection_starts.get(second, 0) + 1
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
                "thread_limit": self.thread_limit,
                "endpoints": {
                    name: {k: v for k, v in c.items() if k != "running"} for name, c in self.endpoints.items()
                },
                "pools": {name: dict(p) for name, p in self.pools.items()},
                "connection_starts": {str(k): v for k, v in sorted(self.connection_starts.items())},
                **({"loop": self.loop.snapshot()} if self.loop.task else {}),  # LOOP_CLOCK=0: none
                **json.loads(json.dumps(self.extras)),  # a copy, taken under the lock
            }

    def write(self, name: str) -> None:
        # Named at write time: with gunicorn --preload the app is imported once, in the master.
        path = self.directory / name.format(pid=os.getpid())
        # One temporary file per thread: the dump thread and the lifespan's last write may overlap.
        temporary = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
        temporary.write_text(json.dumps(self.snapshot(), sort_keys=True) + "\n")
        temporary.replace(path)

    def take_requested_snapshots(self) -> None:
        prefix = SNAPSHOT_REQUEST.format(name="")
        for request in self.directory.glob(prefix + "*"):
            name = request.name.removeprefix(prefix)
            if name not in self.snapshots_taken:
                self.snapshots_taken.add(name)
                self.write(WORKER_SNAPSHOT_FILE.replace("{name}", name))
                if name == "start":  # when the runner asked: a worker born later counts from then too
                    asked = time.time() - request.stat().st_mtime
                    with self.lock:
                        self.window_began = time.monotonic() - max(asked, 0.0)
                    self.loop.begin_window()

    def dump_forever(self) -> None:
        next_dump = 0.0
        while True:
            self.take_requested_snapshots()
            if time.monotonic() >= next_dump:  # the first file also tells the runner this worker is up
                self.write(WORKER_FILE)
                next_dump = time.monotonic() + self.DUMP_INTERVAL_SECONDS
            time.sleep(self.SNAPSHOT_POLL_SECONDS)

    def start(self, thread_limit: int) -> None:
        """From the worker's lifespan, on its event loop: its own thread, writing until the worker
        ends, and the loop's clock."""
        self.thread_limit = thread_limit
        if os.environ.get("LOOP_CLOCK") != "0":  # LOOP_CLOCK=0: what the overhead set measures it against
            self.loop.start()
        threading.Thread(target=self.dump_forever, daemon=True).start()

    def watch_pool(self, name: str, engine) -> None:
        """A SQLAlchemy engine's pool: connections checked out, at most, its overflow (those beyond
        pool_size) at most, from the pool's own checkout and checkin events; and the connections it
        opened, with the seconds that took (from the dialect's do_connect to the pool's connect)."""
        from sqlalchemy import event

        engine = getattr(engine, "sync_engine", engine)  # an AsyncEngine's events are its sync engine's
        pool = engine.pool
        counts: dict[str, float] = {
            "checked_out": 0,
            "peak_checked_out": 0,
            "peak_overflow": 0,
            "connects": 0,
            "connect_s": 0.0,
        }
        self.pools[name] = counts

        def connecting(dialect, record, *_):
            record.info["connecting_since"] = time.monotonic()

        def connected(dbapi_connection, record):
            with self.lock:
                counts["connects"] += 1
                counts["connect_s"] = round(
                    counts["connect_s"] + time.monotonic() - record.info.pop("connecting_since", time.monotonic()), 6
                )

        def checkout(*_):
            with self.lock:
                counts["checked_out"] += 1
                counts["peak_checked_out"] = max(counts["peak_checked_out"], counts["checked_out"])
                counts["peak_overflow"] = max(counts["peak_overflow"], pool.overflow())

        def checkin(*_):
            with self.lock:
                counts["checked_out"] -= 1

        event.listen(pool, "checkout", checkout)
        event.listen(pool, "checkin", checkin)
        event.listen(engine, "do_connect", connecting)
        event.listen(pool, "connect", connected)

    def counted(self, endpoint: str):
        """Count requests inside the handler itself, after any wait for a thread."""
        self.counted_paths.add(f"/{endpoint}")

        def decorate(handler):
            # functools.wraps: FastAPI reads the handler's parameters (a dependency) through it.
            if asyncio.iscoroutinefunction(handler):

                @functools.wraps(handler)
                async def counted_async(*args, **kwargs):
                    self.enter(endpoint)
                    try:
                        return await handler(*args, **kwargs)
                    finally:
                        self.leave(endpoint)

                return counted_async

            @functools.wraps(handler)
            def counted_sync(*args, **kwargs):
                self.enter(endpoint)
                try:
                    return handler(*args, **kwargs)
                finally:
                    self.leave(endpoint)

            return counted_sync

        return decorate


class Track:
    """Plain ASGI middleware (no BaseHTTPMiddleware task hop): notes each request's arrival,
    before any wait for a thread, and its answer, with the connection that sent it."""

    def __init__(self, app, stats: WorkerStats):
        self.app, self.stats = app, stats

    async def __call__(self, scope, receive, send):
        # Only the benchmarked paths: the runner's readiness probe is not one of the load's connections.
        if scope["type"] != "http" or scope["path"] not in self.stats.counted_paths:
            return await self.app(scope, receive, send)
        stats = self.stats
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
