"""A cell's verdict: the model's prediction from the limits alone, then fed with what the workers
reported, then the measured count against that band, then what bound the cell."""

from typing import Any

from core.bound import Bound
from core.cell import Cell
from core.endpoints import (
    ENDPOINTS,
    HTTPX_MAX_CONNECTIONS,
    HTTPX_POOL_TIMEOUT_S,
    SQLALCHEMY_MAX_OVERFLOW,
    SQLALCHEMY_POOL_SIZE,
    SQLALCHEMY_POOL_TIMEOUT_S,
)
from core.model import (
    CLOSE,
    CPU_CLOSE,
    DB_POOL,
    DEFAULT_THREAD_LIMIT,
    SYN_RETRY_S,
    Prediction,
    offered_capacity,
    predict,
    predict_open_loop,
    waves,
    worker_limit,
)

from .cpu import cpu_verdict
from .read import RunFacts
from .records import Measured, Verdict
from .tables import loop_text

OPEN_CLOSE = 0.05  # open loop: replies and timeouts within 5% of the offered requests


def within(measured: float, low: float, high: float, tolerance: float) -> bool:
    return (1 - tolerance) * low <= measured <= (1 + tolerance) * high


def db_pool(cell: Cell) -> int:
    """Connections one of the cell's SQLAlchemy engines opens at most: pool_size + max_overflow."""
    return (SQLALCHEMY_POOL_SIZE if cell.db_pool_size is None else cell.db_pool_size) + (
        SQLALCHEMY_MAX_OVERFLOW if cell.db_max_overflow is None else cell.db_max_overflow
    )


def judge(cell: Cell, m: Measured, facts: RunFacts) -> Verdict:
    cpu_bound, cpu = cpu_verdict(cell, m, facts.cpus)
    if cell.open_loop:
        return open_loop(cell, m, cpu_bound, cpu)
    return closed_loop(cell, m, facts, cpu_bound, cpu)


# ---------------------------------------------------------------- closed loop (wrk), step by step


def model_inputs(cell: Cell, m: Measured, facts: RunFacts) -> dict[str, Any]:
    """predict()'s arguments for the cell, with an even spread and every connection starting at once."""
    inputs: dict[str, Any] = dict(
        endpoint=cell.endpoint,
        workers=cell.workers,
        connections=cell.connections,
        sleep=cell.sleep,
        duration=float(cell.duration),
        thread_limit=cell.thread_limit or DEFAULT_THREAD_LIMIT,
        wrk_threads=cell.wrk_threads,
        http_pool=cell.http_pool or HTTPX_MAX_CONNECTIONS,
        pool_timeout=HTTPX_POOL_TIMEOUT_S if cell.pool_timeout is None else cell.pool_timeout,
        server=cell.server,
        backlog=m.listen_backlog,
    )
    if ENDPOINTS[cell.endpoint].queries_database:
        inputs.update(
            db_pool=db_pool(cell),
            db_available=facts.database_available,
            db_pool_timeout=SQLALCHEMY_POOL_TIMEOUT_S if cell.db_pool_timeout is None else cell.db_pool_timeout,
        )
    cost = facts.calibrated_cost(cell)
    if cost is not None:
        inputs.update(cpu_per_request_s=cost, cores=cores_for_the_servers(cell, m, facts))
    return inputs


def cores_for_the_servers(cell: Cell, m: Measured, facts: RunFacts) -> float:
    """The machine's cores less what the rest measured over the cell (the load generator, the upstream,
    PostgreSQL); pinned, the cores the servers were given (all but CPU 0) less the upstream's, which
    is pinned with them (PostgreSQL is not pinned: it may as well run on CPU 0)."""
    window = m.window_s or float(cell.duration)
    if cell.pin:
        return max(facts.cpus - 1 - (m.upstream_cpu_s or 0.0) / window, 0.1)
    others = sum(x or 0.0 for x in (m.upstream_cpu_s, m.database_cpu_s, m.load_cpu_s)) / window
    return max(facts.cpus - others, 0.1)


def closed_loop(cell: Cell, m: Measured, facts: RunFacts, cpu_bound: bool | None, cpu: str) -> Verdict:
    inputs = model_inputs(cell, m, facts)
    predicted = predict(**inputs)
    v = Verdict(cpu_bound, cpu, predicted.bound, predicted.bound_by)
    if "cpu_per_request_s" in inputs:  # which calibration the prediction used, so a reader can redo it
        v.calibration, v.calibrated_cpu_per_request_s = facts.calibration_name(cell), inputs["cpu_per_request_s"]
    spread, cost = m.connections_per_worker, m.server_cpu_per_request_s
    if spread and cost is not None:
        limit = worker_limit(
            cell.endpoint,
            cell.workers,
            inputs["thread_limit"],
            inputs["http_pool"],
            cell.server,
            inputs.get("db_pool", DB_POOL),
        )
        v.wave_busy_s = min(spread[0], limit.per_worker) * cost
    v.predicted_requests, v.predicted_edge = predicted.requests, predicted.edge
    v.predicted_errors, v.predicted_errors_edge = predicted.errors, predicted.errors_edge
    # What wrk should print: the predicted count over the duration (not the steady N/S rate,
    # since wrk drops the wave still in flight when it stops).
    v.predicted_requests_per_sec = None if predicted.requests is None else predicted.requests / cell.duration
    expect(v, predicted)
    v.predicted_errors_uncounted = predicted.errors_uncounted
    late = fed_with_what_was_measured(v, inputs, m)
    postgres_full = postgres_measured_full(v, cell, m, facts)
    v.measured_over_predicted = round((m.requests_ok or 0) / predicted.requests, 3) if predicted.requests else None
    if v.expected_requests is None:  # sleep 0 and no calibration: only a CPU can be the limit
        if cpu_bound:
            v.bound, v.bound_by = Bound.CPU, cpu
        elif cell.path:  # your app's path: the diagnosis reads its limits from the counters
            v.bound, v.bound_by = Bound.YOUR_APP, f"see the diagnosis ({cpu})"
        else:
            v.bound, v.bound_by = Bound.UNEXPLAINED, f"unexplained: no CPU saturated ({cpu}){loop_figures(m)}"
        return v
    v.predicted_late_requests = predicted.late_requests
    check_against_the_band(v, m, late)
    below = m.requests_ok is not None and v.expected_low is not None and m.requests_ok < (1 - CLOSE) * v.expected_low
    if below and not v.as_predicted:  # within CPU_CLOSE of a CPU ceiling is as predicted: nothing to explain
        explain_the_shortfall(v, m, postgres_full)
    if v.overflowed:
        dropped = "?" if m.listen_overflows is None else m.listen_overflows
        v.bound_by += (
            f"; accept queue overflowed: {dropped} handshakes dropped, "
            f"{m.connections_started_late or 0} connections started ≥{SYN_RETRY_S:g} s late "
            f"(backlog {m.listen_backlog:g})"
        )
    return v


def expect(v: Verdict, p: Prediction) -> None:
    """The band the cell is judged by: the prediction (until a better-fed one replaces it)."""
    v.bound, v.bound_by = p.bound, p.bound_by
    v.expected_requests, v.expected_edge = p.requests, p.edge
    v.expected_errors, v.expected_errors_edge = p.errors, p.errors_edge
    v.expected_errors_uncounted = p.errors_uncounted
    v.burst_low = p.burst_low


def fed_with_what_was_measured(v: Verdict, inputs: dict[str, Any], m: Measured) -> int | None:
    """The same model, fed with when the connections were seen to start and how they landed on the
    workers (when every worker reported and every connection reached the app: an overloaded worker
    may not have started a request from each of its connections yet). Returns the count the late
    starts allow."""
    side = m.side
    if side and side.connection_starts:
        inputs["connection_starts"] = side.connection_starts
    late = predict(**inputs).late_requests
    spread = side.connections_per_worker if side else None
    if spread and len(spread) == inputs["workers"] and m.connections is not None and sum(spread) >= m.connections:
        observed = predict(**inputs, connections_per_worker=spread)
        expect(v, observed)
        late = observed.late_requests
    return late


def postgres_measured_full(v: Verdict, cell: Cell, m: Measured, facts: RunFacts) -> bool:
    """Every connection PostgreSQL allows was taken, as its own count shows: then a slot is also held a
    moment by each attempt it refuses and by connections being opened or closed, so the model is fed
    with the queries PostgreSQL itself ran at the stop."""
    db = m.database
    available = facts.database_available
    if not (
        v.expected_errors_uncounted
        and db
        and db.active_stop is not None
        and available is not None
        and db.backends_stop is not None
        and db.backends_stop >= available - 1
    ):
        return False
    v.bound = Bound.POSTGRES
    v.bound_by = (
        f"PostgreSQL: all {available} connections taken ({db.backends_stop} open, "
        f"{db.active_stop} querying at the stop)"
    )
    complete, _ = waves(cell.sleep, float(cell.duration))
    if v.expected_requests is not None and db.active_stop * complete < v.expected_requests:
        v.expected_requests = db.active_stop * complete
        v.expected_edge = db.active_stop if v.expected_edge else 0
    return True


def check_against_the_band(v: Verdict, m: Measured, late: int | None) -> None:
    """As predicted: the answers within the band (down to what the late starts allow, if the accept
    queue overflowed), and the 503s as the model gives them."""
    # The kernel counted dropped handshakes (Linux), or, where it keeps no such count, more connections
    # than the backlog holds and some started a SYN retry late (alone that proves nothing: a blocked
    # event loop reads a new connection's first request late too).
    v.overflowed = (
        bool(m.listen_overflows)
        if m.listen_overflows is not None
        else bool(m.connections_started_late) and v.predicted_late_requests is not None
    )
    expected, edge = v.expected_requests or 0, v.expected_edge or 0
    low = min(expected, late) if v.overflowed and late is not None else expected
    if v.burst_low is not None:
        low = min(low, v.burst_low)
    v.expected_low = low
    answered, non_2xx = m.requests_ok or 0, m.non_2xx or 0
    ok = within(answered, low, expected + edge, CPU_CLOSE if v.bound is Bound.CPU else CLOSE)
    if v.expected_errors_uncounted:  # refused connections: some 503s, in no number the model gives
        ok = ok and non_2xx > 0
    elif v.expected_errors or non_2xx:
        errors = v.expected_errors or 0
        ok = ok and within(non_2xx, errors, errors + (v.expected_errors_edge or 0), CLOSE)
    v.as_predicted = ok


def explain_the_shortfall(v: Verdict, m: Measured, postgres_full: bool) -> None:
    """Fewer than the band: what was measured instead of the model's limit, else "unexplained"."""
    db = m.database
    if m.worker_timeouts:
        v.bound, v.bound_by = Bound.WORKER_KILLED, f"worker killed ({m.worker_timeouts}x WORKER TIMEOUT)"
    elif m.workers_restarted:
        v.bound = Bound.RESTARTED
        v.bound_by = (
            f"{m.workers_restarted} worker(s) restarted mid-cell "
            f"({m.restart_reasons or 'no reason in the log'}): the model keeps its workers"
        )
    elif v.cpu_bound:
        v.bound, v.bound_by = Bound.CPU, v.cpu
    elif db and db.connects and not postgres_full:
        # Not in the model: each new connection costs a TCP connect, SCRAM authentication and a backend.
        v.bound = Bound.NEW_DB_CONNECTIONS
        v.bound_by = (
            f"below the prediction, no CPU saturated; the pools opened {db.connects} "
            f"connections in the window, {db.connect_s:.2f} s in all ({v.cpu})"
        )
    elif not postgres_full:
        v.bound, v.bound_by = Bound.UNEXPLAINED, f"unexplained: below the prediction, no CPU saturated ({v.cpu})"
        v.bound_by += loop_figures(m)


def loop_figures(m: Measured) -> str:
    """What an open question comes with: the event loops' own clocks, where the counters had them."""
    if m.side and m.side.loop:
        return f"; {loop_text(m.side.loop)}"
    return "; no loop clock"  # STATS=0, LOOP_CLOCK=0, or a run from before it


# ---------------------------------------------------------------- open loop (httperf)


def open_loop(cell: Cell, m: Measured, cpu_bound: bool | None, cpu: str) -> Verdict:
    assert cell.rate is not None  # an open loop
    thread_limit = cell.thread_limit or DEFAULT_THREAD_LIMIT
    inputs: dict[str, Any] = dict(
        endpoint=cell.endpoint,
        workers=cell.workers,
        rate=cell.rate,
        sleep=cell.sleep,
        timeout=float(cell.timeout),
        duration=float(cell.duration),
        thread_limit=thread_limit,
        server=cell.server,
    )
    predicted = predict_open_loop(**inputs)
    spread = m.connections_per_worker
    # Each request is a new connection, and the workers still race to accept them: feed the
    # model the share each worker really took.
    observed = (
        predict_open_loop(**inputs, connections_per_worker=spread)
        if spread and len(spread) == cell.workers and sum(spread)
        else predicted
    )
    v = Verdict(
        cpu_bound,
        cpu,
        observed.bound,
        observed.bound_by,
        predicted_replies=predicted.replies,
        predicted_timeouts=predicted.timeouts,
        predicted_latency_median_s=predicted.latency_median_s,
        capacity_per_s=predicted.capacity_per_s,
        expected_replies=observed.replies,
        expected_timeouts=observed.timeouts,
        offered_fraction=round(
            cell.rate / offered_capacity(cell.endpoint, cell.workers, cell.sleep, thread_limit, cell.server), 3
        ),
    )
    slack = max(OPEN_CLOSE * predicted.offered, 2)
    replies, timeouts = m.replies or 0, m.client_timeouts or 0
    v.as_predicted = (
        abs(replies - observed.replies) <= slack and abs(timeouts - observed.timeouts) <= slack and not m.errors
    )
    if replies < observed.replies - slack and not m.errors:
        v.bound, v.bound_by = (
            (Bound.CPU, cpu)
            if cpu_bound
            else (Bound.UNEXPLAINED, f"unexplained: fewer replies, no CPU saturated ({cpu}){loop_figures(m)}")
        )
    return v
