"""What each cell should give, from the limits alone: the client, the limit per worker, the
connection spread, and (for the open loop) the arrival rate. No measured figure comes in here
except the spread the workers reported, when a caller passes it."""

import heapq
import math
import statistics
from collections import deque
from dataclasses import dataclass

from .bound import Bound
from .cell import Cell
from .endpoints import (
    ANYIO_THREAD_LIMIT,
    BLOCKING,
    DEF,
    ENDPOINTS,
    HTTPX_MAX_CONNECTIONS,
    HTTPX_POOL_TIMEOUT_S,
    SQLALCHEMY_MAX_OVERFLOW,
    SQLALCHEMY_POOL_SIZE,
    SQLALCHEMY_POOL_TIMEOUT_S,
)
from .servers import SERVERS

DEFAULT_THREAD_LIMIT = ANYIO_THREAD_LIMIT  # the limit wherever THREAD_LIMIT is not set

DB_POOL = SQLALCHEMY_POOL_SIZE + SQLALCHEMY_MAX_OVERFLOW  # connections one SQLAlchemy engine opens at most

# wrk's threads look at the stop flag only every RECORD_INTERVAL_MS = 100 ms (src/wrk.c, record_rate),
# so a run lasts up to 0.1 s past -d and a wave ending right at the duration may be partly counted.
WRK_STOP_GRANULARITY_S = 0.1
# In the simulations a request takes its sleep plus this: a real one always ends a little after
# its sleep, which decides the ties (a slot freed at 5.000 s vs a wait that expires at 5.000 s).
SERVICE_OVERHEAD_S = 1e-3
# A handshake dropped because the listen queue was full is retried by the client after its initial
# retransmission timeout: 1 s on Linux (TCP_TIMEOUT_INIT, RFC 6298).
SYN_RETRY_S = 1.0
CLOSE = 0.03  # a count within 3% of the predicted band is "as predicted"
# A count predicted from the CPU: the calibrated cost is measured on one worker in a short pass, and
# what the other processes on the machine take varies: within 15% is "as predicted".
CPU_CLOSE = 0.15


def effective_backlog(cell: Cell, somaxconn: int | None) -> float:
    """Connections the kernel holds for the server before it accepts them: each listening socket's
    backlog, capped at somaxconn, summed over the sockets."""
    sockets, backlog = SERVERS[cell.server].listen(cell) if cell.server in SERVERS else (1, math.inf)
    return sockets * (min(backlog, somaxconn) if somaxconn else backlog)


@dataclass
class Limit:
    per_worker: float  # requests one worker runs at once (math.inf: only its connections)
    name: str  # what the summary's "bound by" says when this is the limit
    bound: Bound = Bound.CONNECTIONS


def worker_limit(
    endpoint: str,
    workers: int,
    thread_limit: int = DEFAULT_THREAD_LIMIT,
    http_pool: int = HTTPX_MAX_CONNECTIONS,
    server: str = "gunicorn",
    db_pool: int = DB_POOL,
) -> Limit:
    """The most requests one worker can hold at once for this endpoint, and why."""
    limits = [Limit(*limit) for limit in ENDPOINTS[endpoint].limits(thread_limit, http_pool, db_pool)]
    own = SERVERS[server].own_limit(workers) if server in SERVERS else None
    if own:
        limits.append(Limit(*own))
    return min(limits, key=lambda limit: limit.per_worker, default=Limit(math.inf, "connections", Bound.CONNECTIONS))


def offered_capacity(
    endpoint: str, workers: int, sleep: float, thread_limit: int = DEFAULT_THREAD_LIMIT, server: str = "gunicorn"
) -> float:
    """What the openloop set offers its rates as fractions of: the `def` endpoint's capacity, the same
    for /sync and /async so the two compare, and a blocked loop's own (one per sleep per worker)."""
    like = endpoint if ENDPOINTS[endpoint].kind == BLOCKING else "sync"
    return worker_limit(like, workers, thread_limit, server=server).per_worker * workers / sleep


def format_spread(connections_per_worker: list[int]) -> str:
    return "/".join(map(str, connections_per_worker))


def even_spread(connections: int, workers: int) -> list[int]:
    return [connections // workers + (1 if i < connections % workers else 0) for i in range(workers)]


def client_connections(connections: int, wrk_threads: int) -> int:
    """What wrk really opens: each of its threads takes connections // threads (src/wrk.c)."""
    return wrk_threads * (connections // wrk_threads)


@dataclass
class Prediction:
    requests: int | None  # complete answers in the run; None when only the CPU limits (sleep 0)
    edge: int  # up to this many more: the next wave ends within wrk's stop granularity
    concurrency: int  # requests in the server at once
    bound_by: str
    client_connections: int  # what wrk really opens: threads x (connections // threads)
    bound: Bound = Bound.CONNECTIONS
    errors: int = 0  # answers that are errors by design (503 for a pool timeout)
    errors_edge: int = 0
    # Errors there must be, in a number the model does not give: connections PostgreSQL refuses are
    # answered at once and asked for again, as fast as the CPU allows.
    errors_uncounted: bool = False
    # More connections than the listen backlog holds: what they give if each starts when it was seen to
    # (to the whole second), or else all but the backlog's worth one SYN retry late.
    late_requests: int | None = None
    # With a calibrated CPU per request: what the count comes down to if every cycle stretches by the
    # time one wave keeps the busiest worker's loop busy (None: within the band anyway, or no cost).
    burst_low: int | None = None


def waves(sleep: float, duration: float) -> tuple[int, bool]:
    """Closed-loop waves of `sleep` that end inside `duration`, and whether the next ends at the stop."""
    complete = math.ceil(round(duration / sleep, 9)) - 1
    return complete, (complete + 1) * sleep - duration < WRK_STOP_GRANULARITY_S


def predict(
    endpoint: str,
    workers: int,
    connections: int,
    sleep: float,
    duration: float,
    thread_limit: int = DEFAULT_THREAD_LIMIT,
    wrk_threads: int = 4,
    connections_per_worker: list[int] | None = None,
    http_pool: int = HTTPX_MAX_CONNECTIONS,
    pool_timeout: float = HTTPX_POOL_TIMEOUT_S,
    server: str = "gunicorn",
    db_pool: int = DB_POOL,
    db_pool_timeout: float = SQLALCHEMY_POOL_TIMEOUT_S,
    db_available: int | None = None,
    backlog: float = math.inf,
    connection_starts: dict[int, int] | None = None,
    cpu_per_request_s: float | None = None,
    cores: float | None = None,
) -> Prediction:
    """Little's law for a closed loop: concurrency N, each request S seconds, N/S req/s.

    wrk keeps one request in flight per connection and drops those unfinished at the end,
    so it counts N x (number of S-long waves that end strictly inside the duration).
    """
    client = client_connections(connections, wrk_threads)
    spread = connections_per_worker if connections_per_worker is not None else even_spread(client, workers)
    kind = ENDPOINTS[endpoint]
    limit = worker_limit(endpoint, workers, thread_limit, http_pool, server, db_pool)
    server_concurrency = int(sum(min(c, limit.per_worker) for c in spread))
    even = sum(min(c, limit.per_worker) for c in even_spread(client, workers))
    concurrency = min(client, server_concurrency)
    # Every worker's pool opens connections up to its own limit; PostgreSQL refuses those past
    # max_connections - superuser_reserved_connections, whichever worker asks.
    refused = kind.queries_database and db_available is not None and concurrency > db_available
    if refused:
        assert db_available is not None
        concurrency = db_available
        bound_by, bound = f"PostgreSQL: {db_available} connections for the app's role", Bound.POSTGRES
    elif server_concurrency < min(client, even):
        bound_by, bound = "connection spread " + format_spread(spread), Bound.SPREAD
    elif client <= server_concurrency:
        bound_by, bound = f"client: {client} connections", Bound.CLIENT
    else:
        bound_by, bound = limit.name, limit.bound
    ceiling = cpu_ceiling(spread, cpu_per_request_s, cores)
    if sleep <= 0 or not kind.waits:
        if ceiling is None:
            return Prediction(None, 0, concurrency, "CPU (no sleep)", client, Bound.CPU)
        return Prediction(int(ceiling[0] * duration), 0, concurrency, ceiling[1], client, Bound.CPU)
    complete, at_edge = waves(sleep, duration)
    prediction = Prediction(
        concurrency * complete,
        concurrency if at_edge else 0,
        concurrency,
        bound_by,
        client,
        bound,
        errors_uncounted=refused,
    )
    by_the_waves = concurrency * complete
    if ceiling is not None and ceiling[0] * duration < by_the_waves * (1 - CPU_CLOSE):
        prediction.requests, prediction.edge = int(ceiling[0] * duration), 0
        prediction.bound_by, prediction.bound = ceiling[1], Bound.CPU
    elif cpu_per_request_s:
        # One wave: what the busiest worker's loop handles one request after another before the next
        # cycle can begin. Where stretching every cycle by it takes the count below the band, say so.
        wave = int(min(max(spread, default=0), limit.per_worker))
        stretch = wave * cpu_per_request_s
        low = concurrency * waves(sleep + stretch, duration)[0]
        if low < by_the_waves * (1 - CLOSE):
            prediction.burst_low = low
            prediction.bound_by += (
                f"; one wave costs the busiest worker's loop {stretch:.2f} s ({wave} x "
                f"{cpu_per_request_s * 1e3:.3g} ms): down to {low} if every cycle stretches by it"
            )
    if client > backlog + 1:
        # Linux queues backlog + 1 (the queue is full when it holds more than the backlog). Connections
        # past it start late: as measured (the whole second after the load began in which each sent its
        # first request), or else all but the queue's worth one SYN retry late. The first `concurrency`
        # to start are served; the rest would only queue behind them.
        at_once = int(min(client, backlog + 1))
        seen: dict[float, int] = {0: at_once, SYN_RETRY_S: client - at_once}
        if connection_starts:
            seen = {float(second): count for second, count in connection_starts.items()}
        starts = sorted(seen.items())
        slots, late = concurrency, 0
        for second, count in starts:
            served = min(count, slots)
            slots -= served
            late += served * waves(sleep, duration - second)[0] if duration > second else 0
        prediction.late_requests = late
    pool, pool_timeout = (http_pool, pool_timeout) if kind.calls_upstream else (db_pool, db_pool_timeout)
    pool = min(pool, thread_limit) if kind.kind == DEF else pool
    if not refused and limit.bound in (Bound.HTTP_POOL, Bound.DB_POOL):
        # Requests wait for a pooled connection, first come first served, and give up after
        # pool_timeout; a `def` endpoint holds at most thread_limit of them at a time.
        for c in spread:
            waiting = kind.pool_waiters(c, thread_limit)
            if waiting > pool:
                errors, errors_edge = simulate_pool(waiting, pool, sleep, pool_timeout, duration)
                prediction.errors += errors
                prediction.errors_edge += errors_edge
    return prediction


def cpu_ceiling(spread: list[int], cpu_per_request_s: float | None, cores: float | None) -> tuple[float, str] | None:
    """What the CPU allows, in req/s, and the summary's words for it: the cores the busy workers can
    use (one each at most) over the calibrated CPU per request."""
    if not cpu_per_request_s:
        return None
    busy = sum(1 for c in spread if c) or 1
    usable = min(busy, cores) if cores else busy
    rate = usable / cpu_per_request_s
    return rate, f"CPU: {usable:.2g} core(s) / {cpu_per_request_s * 1e3:.3g} ms per request = {rate:.0f} req/s"


def simulate_pool(connections: int, slots: int, service: float, timeout: float, duration: float) -> tuple[int, int]:
    """A closed loop of `connections` over a FIFO pool of `slots`, where a wait longer than `timeout`
    ends in an immediate error answer and the connection asks again: the errors answered before
    the duration ends, and how many more land within wrk's stop granularity."""
    service += SERVICE_OVERHEAD_S
    queue: deque[tuple[float, int]] = deque((0.0, i) for i in range(connections))  # (asked at, id)
    events: list[tuple[float, int, int]] = []  # (time, 0 = a slot frees / 1 = a wait expires, id)
    cancelled: set[int] = set()
    next_id, free, error_times = connections, slots, []

    def ask(at: float) -> None:
        nonlocal next_id
        queue.append((at, next_id))
        heapq.heappush(events, (at + timeout, 1, next_id))
        next_id += 1

    for asked, request in queue:
        heapq.heappush(events, (asked + timeout, 1, request))

    def assign(now: float) -> None:
        nonlocal free
        while free and queue:
            _, request = queue.popleft()
            if request in cancelled:
                continue
            cancelled.add(request)  # started: its expiry no longer counts
            free -= 1
            heapq.heappush(events, (now + service, 0, request))

    assign(0.0)
    end = duration + WRK_STOP_GRANULARITY_S
    while events and events[0][0] <= end:
        now, kind, request = heapq.heappop(events)
        if kind == 0:
            free += 1
            ask(now)
        elif request not in cancelled:
            cancelled.add(request)
            error_times.append(now)
            ask(now)
        assign(now)
    inside = sum(t < duration - WRK_STOP_GRANULARITY_S for t in error_times)
    return inside, len(error_times) - inside


# ---------------------------------------------------------------- open loop (httperf)


@dataclass
class OpenPrediction:
    offered: int  # requests httperf starts: rate x duration, one connection each
    replies: int  # answered within the client's timeout
    timeouts: int
    latency_median_s: float | None  # of the replies
    latency_max_s: float | None
    capacity_per_s: float  # what the server can answer per second (math.inf: no limit but the CPU)
    bound_by: str
    bound: Bound


def predict_open_loop(
    endpoint: str,
    workers: int,
    rate: float,
    sleep: float,
    timeout: float,
    duration: float,
    thread_limit: int = DEFAULT_THREAD_LIMIT,
    server: str = "gunicorn",
    connections_per_worker: list[int] | None = None,
) -> OpenPrediction:
    """Arrivals at a fixed rate, shared over the workers evenly (or as the workers reported
    taking the connections), each served first come first served by `limit` slots per worker
    for `sleep` seconds. A request the client gave up on is still served (the server does not
    know), so above capacity the queue and the wait grow without bound and, once the wait
    passes the timeout, nothing is answered in time."""
    limit = worker_limit(endpoint, workers, thread_limit, server=server)
    offered = int(rate * duration + 0.5)
    capacity = limit.per_worker * workers / sleep
    spread = connections_per_worker or [1] * workers
    shares = [c / sum(spread) for c in spread]
    free_at: list[list[float]] = [[] for _ in spread]  # per worker: when each busy slot frees
    credit = [0.0] * len(spread)
    latencies = []
    for k in range(offered):
        # Smooth weighted round-robin: each worker gets its share of the arrivals, evenly spaced.
        credit = [c + share for c, share in zip(credit, shares)]
        worker = max(range(len(credit)), key=credit.__getitem__)
        credit[worker] -= 1
        arrival, slots = k / rate, free_at[worker]
        start = arrival if len(slots) < limit.per_worker else max(arrival, heapq.heappop(slots))
        heapq.heappush(slots, start + sleep + SERVICE_OVERHEAD_S)
        latencies.append(start + sleep + SERVICE_OVERHEAD_S - arrival)
    answered = [latency for latency in latencies if latency <= timeout]
    even = connections_per_worker is None or max(spread) * workers <= sum(spread) * 1.0001
    if not even and any(rate * c / sum(spread) > limit.per_worker / sleep for c in spread) and rate <= capacity:
        bound_by, bound = "connection spread " + format_spread(spread), Bound.SPREAD
    elif rate <= capacity:
        bound_by = "below capacity" if math.isfinite(capacity) else "no limit below the CPU"
        bound = Bound.BELOW_CAPACITY if math.isfinite(capacity) else Bound.CONNECTIONS
    else:
        bound_by, bound = f"{limit.name} = {capacity:g} req/s", limit.bound
    return OpenPrediction(
        offered,
        len(answered),
        offered - len(answered),
        statistics.median(answered) if answered else None,
        max(answered, default=None),
        capacity,
        bound_by,
        bound,
    )
