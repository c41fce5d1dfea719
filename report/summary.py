"""One run directory -> one row per cell (measured beside predicted, and what bound it) and one
line per distinct cell over its repetitions; the tables and files made from them."""

import csv
import json
import math
import statistics
import textwrap
from pathlib import Path

from core import cell as cells_tsv
from core.cell import Cell
from core.endpoints import (ASYNC, ENDPOINTS, SQLALCHEMY_MAX_OVERFLOW, SQLALCHEMY_POOL_SIZE,
                              SQLALCHEMY_POOL_TIMEOUT_S)
from core.servers import SERVERS

from . import parse
from core.model import (DEFAULT_THREAD_LIMIT, HTTPX_MAX_CONNECTIONS, HTTPX_POOL_TIMEOUT_S, SYN_RETRY_S,
                    effective_backlog, format_spread, offered_capacity, predict, predict_open_loop, waves)

LARGE_SPREAD = 0.10  # repetitions further apart than this (of the median), edge wave aside, get flagged
CLOSE = 0.03  # a count within 3% of the predicted band is "as predicted"
OPEN_CLOSE = 0.05  # open loop: replies and timeouts within 5% of the offered requests
SATURATED = 0.90  # a CPU this busy (of what it can use) is the limit
# Why a worker goes mid-cell, as the servers log it (gunicorn arbiter.py and workers/, uvicorn server.py
# and supervisors/multiprocess.py).
RESTART_REASONS = {
    "WORKER TIMEOUT": ("WORKER TIMEOUT",),
    "max-requests": ("Autorestarting worker after current request", "Maximum request limit of"),
    # Not "was sent SIGABRT": gunicorn's own kill after a WORKER TIMEOUT, counted above.
    "exited": ("exited with code", "was sent SIGKILL", "was sent SIGTERM", "] died"),
}


def read_cells(run_dir: Path) -> list[Cell]:
    return cells_tsv.read(run_dir / "cells.tsv")


# ---------------------------------------------------------------- what the servers and the client spent


def process_cpu(cell_dir: Path, role: str) -> tuple[float | None, list[int]]:
    """CPU seconds a server's process tree spent between the start and stop samples, and its RSS at stop."""
    start, stop = parse.read_json(cell_dir / "server.start.json"), parse.read_json(cell_dir / "server.stop.json")
    if not start or not stop or role not in stop["roles"]:
        return None, []
    before = {p["pid"]: p["cpu_s"] for p in start["roles"].get(role, [])}
    after = stop["roles"][role]
    return sum(p["cpu_s"] - before.get(p["pid"], 0.0) for p in after), [p["rss_bytes"] for p in after]


def cpu_verdict(row: dict, cpus: int, pinned: bool) -> tuple[bool | None, str]:
    """Was a CPU the limit, measured: the machine nearly all busy, or the server or the load
    generator nearly all of what it can use (a worker runs Python on one core at a time).

    httperf --hog polls without sleeping, so it fills its core whatever the load: its own CPU
    says nothing, and the servers have the other cores.
    """
    window, server = row["window_s"], row["server_cpu_s"]
    if not window or server is None or row["load_cpu_s"] is None:
        return None, "CPU not measured"
    load_name, busy_polling = row["load"], row["load"] == "httperf"
    upstream = row["upstream_cpu_s"] or 0.0
    database = row.get("database_cpu_s") or 0.0
    text = (f"server {100 * server / window / cpus:.0f}%"
            + (f", upstream {100 * upstream / window / cpus:.0f}%" if upstream else "")
            + (f", PostgreSQL {100 * database / window / cpus:.0f}%" if database else "")
            + f", {load_name} {100 * row['load_cpu_s'] / window / cpus:.0f}% of {cpus} cores")
    left_to_servers = cpus - 1 if pinned or busy_polling else cpus
    machine = (server + upstream + database + (0 if busy_polling else row["load_cpu_s"])) / window / (
        left_to_servers if busy_polling else cpus)
    server_cores = min(row["workers"], left_to_servers)
    server_use = server / window / server_cores
    load_cores = 1 if pinned else min(cpus, row["wrk_threads"])
    load_use = 0 if busy_polling else row["load_cpu_s"] / window / load_cores
    if machine >= SATURATED:
        where = "the servers' cores" if busy_polling else "machine"
        return True, f"CPU: {where} {100 * machine:.0f}% busy ({text})"
    if server_use >= SATURATED:
        return True, f"CPU: server {100 * server_use:.0f}% of its {server_cores} core(s) ({text})"
    if load_use >= SATURATED:
        return True, f"CPU: {load_name} {100 * load_use:.0f}% of its {load_cores} core(s) ({text})"
    return False, text


def server_side(cell_dir: Path, endpoint: str) -> dict:
    """The workers' own counters over the measured window (start and stop snapshots)."""
    stop = parse.worker_snapshots(cell_dir / "stats", "stop")
    if not stop:
        return {}
    start = {s["pid"]: s for s in parse.worker_snapshots(cell_dir / "stats", "start")}
    unsnapped = exited_workers(cell_dir, stop)  # gone, or too slow to answer the stop snapshot: their last file
    alive = alive_at_stop(cell_dir)
    exited = [s for s in unsnapped if s["pid"] not in alive]
    at_stop = stop  # what was in flight is what the workers still there held
    stop = stop + unsnapped

    def window(worker: dict, *path: str) -> float:
        """A counter's growth over the measured window: at the stop snapshot less at the start one
        (a warm-up's requests and connections came before it)."""
        def at(snapshot: dict) -> float:
            for key in path[:-1]:
                snapshot = snapshot.get(key, {})
            return snapshot.get(path[-1], 0)
        return at(worker) - at(start.get(worker["pid"], {}))

    def delta(worker: dict, key: str) -> int:
        return window(worker, "endpoints", endpoint, key)

    def new(worker: dict, key: str) -> int:
        return window(worker, key)

    by_connections = sorted(stop, key=lambda s: new(s, "connections"), reverse=True)
    upstream = parse.worker_snapshots(cell_dir / "upstream-stats", "stop")
    return {
        "workers_reporting": len(stop),
        "workers_exited": len(exited),
        "connections_per_worker": [new(s, "connections") for s in by_connections],
        "peak_in_handler_per_worker": [s["endpoints"].get(endpoint, {}).get("peak", 0) for s in by_connections],
        "connections_answered": sum(new(s, "connections_answered") for s in stop),
        "received": sum(delta(s, "received") for s in stop),
        "server_completed": sum(delta(s, "completed") for s in stop),
        "pool_timeouts": sum(delta(s, "pool_timeouts") for s in stop),
        "in_flight_at_stop": sum(s["in_flight"] for s in at_stop),
        "oldest_unanswered_s": max((s["oldest_unanswered_s"] or 0 for s in at_stop), default=None),
        "peak_waiting": max(s["endpoints"].get(endpoint, {}).get("peak_waiting", 0) for s in at_stop),
        "thread_limit_seen": sorted({s["thread_limit"] for s in stop}),
        "connection_starts": connection_starts(stop),
        "worker_cpu_s": round(sum(s["cpu_s"] - start.get(s["pid"], {}).get("cpu_s", 0) for s in stop), 3),
        "rss_mib_per_worker": [round(s["peak_rss_bytes"] / 2**20, 1) for s in by_connections],
        "upstream_peak": max((s["endpoints"].get("async", {}).get("peak", 0) for s in upstream), default=None),
        "upstream_completed": sum(s["endpoints"].get("async", {}).get("completed", 0) for s in upstream) if upstream else None,
        **(database_side(cell_dir, endpoint, stop, by_connections, window)
           if ENDPOINTS[endpoint].queries_database else {}),
    }


def connection_starts(snapshots: list[dict]) -> dict[int, int]:
    """New connections by the whole second after the load began in which each sent its first request."""
    starts: dict[int, int] = {}
    for snapshot in snapshots:
        for second, count in snapshot.get("connection_starts", {}).items():
            starts[int(second)] = starts.get(int(second), 0) + count
    return dict(sorted(starts.items()))


def exited_workers(cell_dir: Path, stop: list[dict]) -> list[dict]:
    """Workers that served in the measured window but wrote no stop snapshot, mostly because they
    were gone by then (max-requests, a WORKER TIMEOUT, a crash): their last file, written at
    shutdown or every 0.2 s, stands in for it. Those gone before the window are left out."""
    began = (parse.read_json(cell_dir / "server.start.json") or {}).get("time")
    if began is None:
        return []
    stopped = {s["pid"] for s in stop}
    return [s for s in parse.worker_snapshots(cell_dir / "stats", "") if s["pid"] not in stopped and s["time"] > began]


def alive_at_stop(cell_dir: Path) -> set[int]:
    """The server's processes in the stop sample."""
    return {p["pid"] for p in ((parse.read_json(cell_dir / "server.stop.json") or {}).get("roles", {}).get("server", []))}


def restarts(log_text: str, server: str, workers: int, exited: int) -> tuple[int, str]:
    """Workers started beyond the first WORKERS (from the server's log, or the workers that exited
    in the window where the log does not show start-ups), and why they went, as the log says."""
    started_up = SERVERS[server].ready_workers(log_text) if server in SERVERS else 0
    count = max(started_up - workers, exited, 0)
    reasons = {why: sum(log_text.count(line) for line in lines) for why, lines in RESTART_REASONS.items()}
    return count, ", ".join(f"{n}x {why}" for why, n in reasons.items() if n)


def database_side(cell_dir: Path, endpoint: str, stop: list, by_connections: list, window) -> dict:
    """What the workers' SQLAlchemy pools and PostgreSQL itself saw of a database cell."""
    engine = "async" if ENDPOINTS[endpoint].kind == ASYNC else "sync"

    samples = {name: (parse.read_json(cell_dir / f"server.{name}.json") or {}).get("database", {})
               for name in ("start", "stop")}
    return {
        "db_pool_peak_per_worker": [s.get("pools", {}).get(engine, {}).get("peak_checked_out") for s in by_connections],
        "db_overflow_peak_per_worker": [s.get("pools", {}).get(engine, {}).get("peak_overflow") for s in by_connections],
        "db_refused": sum(window(s, "endpoints", endpoint, "db_refused") for s in stop),
        # Connections the pools opened in the measured window, and the seconds that took in all.
        "db_connects": sum(window(s, "pools", engine, "connects") for s in stop),
        "db_connect_s": round(sum(window(s, "pools", engine, "connect_s") for s in stop), 3),
        "db_errors": sum(window(s, "endpoints", endpoint, "db_errors") for s in stop),
        **{f"db_{what}_{name}": sample.get(what) for name, sample in samples.items() for what in ("backends", "active")},
    }


def db_pool(cell: Cell) -> int:
    """Connections one of the cell's SQLAlchemy engines opens at most: pool_size + max_overflow."""
    return ((SQLALCHEMY_POOL_SIZE if cell.db_pool_size is None else cell.db_pool_size)
            + (SQLALCHEMY_MAX_OVERFLOW if cell.db_max_overflow is None else cell.db_max_overflow))


def database_available(run_dir: Path) -> int | None:
    """Connections PostgreSQL gives the app's ordinary role: max_connections - superuser_reserved_connections."""
    facts = (parse.read_json(run_dir / "run.json") or {}).get("database")
    return facts["max_connections"] - facts["superuser_reserved_connections"] if facts else None


def listen_overflows(cell_dir: Path) -> int | None:
    """Handshakes the kernel dropped over the cell because a listen queue was full (Linux only)."""
    start, stop = (((parse.read_json(cell_dir / f"server.{name}.json") or {}).get("listen_queue") or {})
                   for name in ("start", "stop"))
    if "ListenOverflows" not in start or "ListenOverflows" not in stop:
        return None
    return stop["ListenOverflows"] - start["ListenOverflows"]


def within(measured: float, low: float, high: float, tolerance: float) -> bool:
    return (1 - tolerance) * low <= measured <= (1 + tolerance) * high


# ---------------------------------------------------------------- one cell


def summarise_cell(run_dir: Path, cell: Cell, cpus: int) -> dict | None:
    cell_dir = run_dir / cell.name
    open_loop = cell.open_loop
    raw = cell_dir / ("httperf.txt" if open_loop else "wrk.txt")
    if not raw.exists():
        return None
    endpoint, workers = cell.endpoint, cell.workers
    thread_limit = cell.thread_limit or DEFAULT_THREAD_LIMIT
    http_pool = cell.http_pool or HTTPX_MAX_CONNECTIONS
    sleep, duration = cell.sleep, float(cell.duration)
    log = cell_dir / ("server.log" if (cell_dir / "server.log").exists() else "gunicorn.log")
    log_text = log.read_text(errors="replace") if log.exists() else ""
    usage = parse.read_json(cell_dir / f"{raw.stem}.usage.json") or {}
    row = {
        "cell": cell.name, "round": cell.round, "config": cell.label(), "server": cell.server,
        "workers": workers, "threads": cell.threads, "worker_class": cell.worker_class,
        "thread_limit": cell.text("thread_limit"), "http_pool": cell.text("http_pool"), "endpoint": endpoint,
        "sleep_s": sleep, "duration_s": duration, "load": raw.stem, "wrk_threads": cell.wrk_threads,
        "warmup_s": float(cell.warmup), "pinned": cell.pin,
        "worker_timeouts": log_text.count(RESTART_REASONS["WORKER TIMEOUT"][0]),
        "threads_ignored": cell.threads > 1,  # no server here runs gunicorn's gthread worker
        "window_s": usage.get("wall_s"), "load_cpu_s": usage.get("cpu_s"),
        "load_maxrss_mib": round(usage["maxrss_bytes"] / 2**20, 1) if usage.get("maxrss_bytes") else None,
    }
    row["server_cpu_s"], server_rss = process_cpu(cell_dir, "server")
    row["upstream_cpu_s"], _ = process_cpu(cell_dir, "upstream")
    if ENDPOINTS[endpoint].queries_database:
        row["database_cpu_s"], _ = process_cpu(cell_dir, "database")
    row["server_rss_mib"] = round(sum(server_rss) / 2**20, 1) if server_rss else None
    side = server_side(cell_dir, endpoint)
    row.update({key: side.get(key) for key in (
        "connections_per_worker", "peak_in_handler_per_worker", "connections_answered", "received",
        "server_completed", "pool_timeouts", "in_flight_at_stop", "oldest_unanswered_s", "peak_waiting",
        "thread_limit_seen", "worker_cpu_s", "rss_mib_per_worker", "upstream_peak", "upstream_completed",
        "connection_starts")})
    # Those whose first request came a SYN retry or more after the load began.
    row["connections_started_late"] = sum(n for second, n in (row["connection_starts"] or {}).items()
                                          if second >= SYN_RETRY_S)
    row["listen_backlog"] = effective_backlog(cell, (parse.read_json(run_dir / "run.json") or {})
                                              .get("environment", {}).get("somaxconn"))
    row["listen_overflows"] = listen_overflows(cell_dir)
    row.update({key: value for key, value in side.items() if key.startswith("db_")})
    row["workers_restarted"], row["restart_reasons"] = restarts(log_text, cell.server, workers,
                                                                side.get("workers_exited", 0))
    spread = row["connections_per_worker"]
    row["max_share"] = round(max(spread) / sum(spread), 3) if spread and sum(spread) else None
    row["spread_index"] = round(max(spread) / statistics.mean(spread), 2) if spread and sum(spread) else None
    cpu_bound, cpu_text = cpu_verdict(row, cpus, row["pinned"])
    row["cpu_bound"], row["cpu"] = cpu_bound, cpu_text
    if open_loop:
        _open_loop(row, cell, cell_dir, thread_limit)
    else:
        _closed_loop(row, cell, cell_dir, side, thread_limit, http_pool)
    return row


def _closed_loop(row: dict, cell: Cell, cell_dir: Path, side: dict, thread_limit: int, http_pool: int) -> None:
    wrk = parse.load_wrk(cell_dir / "wrk.txt")
    pool_timeout = HTTPX_POOL_TIMEOUT_S if cell.pool_timeout is None else cell.pool_timeout
    model = dict(endpoint=row["endpoint"], workers=row["workers"], connections=cell.connections,
                 sleep=row["sleep_s"], duration=row["duration_s"], thread_limit=thread_limit,
                 wrk_threads=row["wrk_threads"], http_pool=http_pool, pool_timeout=pool_timeout, server=row["server"],
                 backlog=row["listen_backlog"])
    database = ENDPOINTS[row["endpoint"]].queries_database
    if database:
        model.update(db_pool=db_pool(cell), db_available=database_available(cell_dir.parent),
                     db_pool_timeout=SQLALCHEMY_POOL_TIMEOUT_S if cell.db_pool_timeout is None else cell.db_pool_timeout)
    predicted = predict(**model)
    answered_ok = wrk["requests"] - wrk["non_2xx_3xx"]
    row.update({
        "connections": predicted.client_connections, "rate": None, "offered_fraction": None,
        "requests": wrk["requests"], "requests_ok": answered_ok, "requests_per_sec": wrk["requests_per_sec"],
        "latency_avg_s": wrk["latency_avg_s"], "latency_max_s": wrk["latency_max_s"],
        "timeouts": wrk["timeouts"], "errors": parse.wrk_errors(wrk), "non_2xx": wrk["non_2xx_3xx"],
        "predicted_requests": predicted.requests, "predicted_edge": predicted.edge,
        "predicted_errors": predicted.errors, "predicted_errors_edge": predicted.errors_edge,
        # What wrk should print: the predicted count over the duration (not the steady N/S rate,
        # since wrk drops the wave still in flight when it stops).
        "predicted_requests_per_sec": (predicted.requests / row["duration_s"] if predicted.requests is not None else None),
        "bound_by": predicted.bound_by,
        "expected_requests": predicted.requests, "expected_edge": predicted.edge,
        "expected_errors": predicted.errors, "expected_errors_edge": predicted.errors_edge,
    })
    if database:
        row["predicted_errors_uncounted"] = row["expected_errors_uncounted"] = predicted.errors_uncounted
    spread = row["connections_per_worker"]
    # Seen connections that never got an answer: wrk's latency and timeouts leave them out.
    if side:
        seen = max(sum(spread), predicted.client_connections)
        row["never_answered"] = max(0, seen - row["connections_answered"])
    else:
        row["never_answered"] = None
    # The same model, fed with how the connections really landed on the workers, when every
    # worker reported and every connection reached the app (an overloaded worker may not have
    # started a request from each of its connections yet).
    if row["connection_starts"]:  # when they were seen to start, late or not
        model["connection_starts"] = row["connection_starts"]
    late = predict(**model).late_requests
    if spread and len(spread) == row["workers"] and sum(spread) >= predicted.client_connections:
        observed = predict(**model, connections_per_worker=spread)
        row["bound_by"] = observed.bound_by
        row["expected_requests"], row["expected_edge"] = observed.requests, observed.edge
        row["expected_errors"], row["expected_errors_edge"] = observed.errors, observed.errors_edge
        late = observed.late_requests
        if database:
            row["expected_errors_uncounted"] = observed.errors_uncounted
    active, available = row.get("db_active_stop"), database_available(cell_dir.parent)
    measured_limit = (row.get("expected_errors_uncounted") and active is not None
                      and row["db_backends_stop"] >= available - 1)
    if measured_limit:
        # Every connection PostgreSQL allows was taken, as its own count shows; a slot is also held a moment
        # by each attempt it refuses and by connections being opened or closed: the same model, fed with the
        # queries PostgreSQL itself ran at the stop.
        row["bound_by"] = (f"PostgreSQL: all {available} connections taken ({row['db_backends_stop']} open, "
                           f"{active} querying at the stop)")
        complete, _ = waves(row["sleep_s"], row["duration_s"])
        if active * complete < row["expected_requests"]:
            row["expected_requests"] = active * complete
            row["expected_edge"] = active if row["expected_edge"] else 0
    expected = row["expected_requests"]
    row["measured_over_predicted"] = round(answered_ok / predicted.requests, 3) if predicted.requests else None
    if expected is None:  # sleep 0: only a CPU can be the limit
        row["as_predicted"] = None
        row["bound_by"] = row["cpu"] if row["cpu_bound"] else f"unexplained: no CPU saturated ({row['cpu']})"
        return
    # The accept queue overflowed: the kernel counted dropped handshakes (Linux), or, where it keeps no
    # such count, more connections than the backlog holds and some started a SYN retry late (alone that
    # proves nothing: a blocked event loop reads a new connection's first request late too). The
    # model's band then reaches down to the late starts seen.
    row["predicted_late_requests"] = predicted.late_requests
    overflowed = (bool(row["listen_overflows"]) if row["listen_overflows"] is not None
                  else bool(row["connections_started_late"]) and predicted.late_requests is not None)
    low = expected
    if overflowed and late is not None:
        low = min(expected, late)
    row["expected_low"] = low
    ok = within(answered_ok, low, expected + row["expected_edge"], CLOSE)
    if row.get("expected_errors_uncounted"):  # refused connections: some 503s, in no number the model gives
        ok = ok and row["non_2xx"] > 0
    elif row["expected_errors"] or row["non_2xx"]:
        ok = ok and within(row["non_2xx"], row["expected_errors"], row["expected_errors"] + row["expected_errors_edge"], CLOSE)
    row["as_predicted"] = ok
    if answered_ok < (1 - CLOSE) * low:
        if row["worker_timeouts"]:
            row["bound_by"] = f"worker killed ({row['worker_timeouts']}x WORKER TIMEOUT)"
        elif row["workers_restarted"]:
            row["bound_by"] = (f"{row['workers_restarted']} worker(s) restarted mid-cell "
                               f"({row['restart_reasons'] or 'no reason in the log'}): the model keeps its workers")
        elif row["cpu_bound"]:
            row["bound_by"] = row["cpu"]
        elif row.get("db_connects") and not measured_limit:
            # Not in the model: each new connection costs a TCP connect, SCRAM authentication and a backend.
            row["bound_by"] = (f"below the prediction, no CPU saturated; the pools opened {row['db_connects']} "
                               f"connections in the window, {row['db_connect_s']:.2f} s in all ({row['cpu']})")
        elif not measured_limit:
            row["bound_by"] = f"unexplained: below the prediction, no CPU saturated ({row['cpu']})"
    if overflowed:
        dropped = "?" if row["listen_overflows"] is None else row["listen_overflows"]
        row["bound_by"] += (f"; accept queue overflowed: {dropped} handshakes dropped, "
                            f"{row['connections_started_late'] or 0} connections started ≥{SYN_RETRY_S:g} s late "
                            f"(backlog {row['listen_backlog']:g})")


def _open_loop(row: dict, cell: Cell, cell_dir: Path, thread_limit: int) -> None:
    httperf = parse.load_httperf(cell_dir / "httperf.txt")
    rate, timeout = cell.rate, float(cell.timeout)
    model = dict(endpoint=row["endpoint"], workers=row["workers"], rate=rate, sleep=row["sleep_s"], timeout=timeout,
                 duration=row["duration_s"], thread_limit=thread_limit, server=row["server"])
    predicted = predict_open_loop(**model)
    spread = row["connections_per_worker"]
    # Each request is a new connection, and the workers still race to accept them: feed the
    # model the share each worker really took.
    observed = (predict_open_loop(**model, connections_per_worker=spread)
                if spread and len(spread) == row["workers"] and sum(spread) else predicted)
    row.update({
        "connections": None, "rate": rate, "offered": httperf["connections"], "replies": httperf["status_2xx"],
        "requests": httperf["status_2xx"], "client_timeouts": httperf["client_timeouts"],
        "errors": httperf["errors_total"] - httperf["client_timeouts"]
        + httperf["status_4xx"] + httperf["status_5xx"],
        "latency_median_s": httperf["latency_median_s"] if httperf["replies"] else None,
        "latency_avg_s": httperf["latency_avg_s"] if httperf["replies"] else None,
        "latency_max_s": httperf["latency_max_s"] if httperf["replies"] else None,
        "concurrent_max": httperf["concurrent_max"],
        "predicted_replies": predicted.replies, "predicted_timeouts": predicted.timeouts,
        "predicted_latency_median_s": predicted.latency_median_s, "capacity_per_s": predicted.capacity_per_s,
        "expected_replies": observed.replies, "expected_timeouts": observed.timeouts,
        "bound_by": observed.bound_by, "never_answered": None,
        "offered_fraction": round(rate / offered_capacity(row["endpoint"], row["workers"], row["sleep_s"],
                                                          thread_limit, row["server"]), 3),
    })
    slack = max(OPEN_CLOSE * predicted.offered, 2)
    row["as_predicted"] = (abs(row["replies"] - observed.replies) <= slack
                           and abs(row["client_timeouts"] - observed.timeouts) <= slack and not row["errors"])
    if row["replies"] < observed.replies - slack and not row["errors"]:
        row["bound_by"] = row["cpu"] if row["cpu_bound"] else f"unexplained: fewer replies, no CPU saturated ({row['cpu']})"


# ---------------------------------------------------------------- repetitions


def group_key(row: dict) -> tuple:
    return (row["config"], row["endpoint"], row["connections"], row["rate"], row["sleep_s"], row["duration_s"])


def _stats(runs: list[dict], key: str) -> tuple:
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


MEDIAN_FIELDS = [
    "requests", "requests_ok", "requests_per_sec", "latency_avg_s", "latency_median_s", "timeouts",
    "client_timeouts", "offered", "replies", "non_2xx", "server_cpu_s", "load_cpu_s", "window_s",
    "in_flight_at_stop", "oldest_unanswered_s", "never_answered", "received", "pool_timeouts",
    "server_rss_mib", "max_share", "spread_index", "upstream_peak",
]
DB_MEDIAN_FIELDS = ["db_refused", "db_errors", "pool_timeouts", "db_active_start", "db_active_stop",
                    "db_backends_stop"]
FIRST_FIELDS = [
    "config", "endpoint", "connections", "rate", "workers", "sleep_s", "duration_s", "server", "load",
    "predicted_requests", "predicted_edge", "predicted_errors", "predicted_errors_edge",
    "predicted_requests_per_sec", "predicted_replies", "predicted_timeouts", "predicted_latency_median_s",
    "capacity_per_s", "offered_fraction", "threads_ignored",
]


def summarise_groups(rows: list[dict], cpus: int) -> list[dict]:
    """One line per distinct cell, over its repetitions: median with min and max."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    summary = []
    for runs in groups.values():
        group = {key: runs[0].get(key) for key in FIRST_FIELDS}
        group["runs"] = len(runs)
        for key in MEDIAN_FIELDS:
            group[f"{key}_median"], group[f"{key}_min"], group[f"{key}_max"] = _stats(runs, key)
        bounds: dict[str, int] = {}
        for r in runs:
            bounds[r["bound_by"]] = bounds.get(r["bound_by"], 0) + 1
        group["bound_by"] = "; ".join(f"{b} ({n}/{len(runs)})" if len(runs) > 1 else b for b, n in bounds.items())
        group["bound_by_runs"] = bounds
        median = group["requests_median"]
        # Spread beyond what the edge wave alone explains (it may or may not land in a run).
        group["large_spread"] = (group["requests_max"] - group["requests_min"] - (group["predicted_edge"] or 0)
                                 > LARGE_SPREAD * median) if median else False
        predicted = group["predicted_requests"] if group["rate"] is None else group["predicted_replies"]
        measured = group["requests_ok_median"] if group["rate"] is None else group["replies_median"]
        group["measured_over_predicted"] = round(measured / predicted, 3) if predicted else None
        group["as_predicted"] = sum(bool(r["as_predicted"]) for r in runs)
        group["cpu_bound"] = sum(bool(r["cpu_bound"]) for r in runs)
        for key in ("connections_per_worker", "peak_in_handler_per_worker", "rss_mib_per_worker",
                    "server_completed", "expected_requests", "expected_replies", "expected_low"):
            group[key] = [r.get(key) for r in runs]
        group["peak_in_handler_max"] = max((max(p) for p in group["peak_in_handler_per_worker"] if p), default=None)
        group["peak_waiting_max"] = max((r["peak_waiting"] for r in runs if r["peak_waiting"] is not None), default=None)
        group["errors_max"] = max(r["errors"] for r in runs)
        group["worker_timeouts"] = sum(r["worker_timeouts"] for r in runs)
        group["workers_restarted"] = sum(r["workers_restarted"] for r in runs)
        group["restart_reasons"] = "; ".join(sorted({r["restart_reasons"] for r in runs if r["restart_reasons"]}))
        group["thread_limit_seen"] = sorted({t for r in runs for t in (r["thread_limit_seen"] or [])})
        if "db_refused" in runs[0]:  # database cells only: the other runs' summaries stay as they were
            for key in DB_MEDIAN_FIELDS:
                group[f"{key}_median"], group[f"{key}_min"], group[f"{key}_max"] = _stats(runs, key)
            group["db_pool_peak_max"] = max((p for r in runs for p in r["db_pool_peak_per_worker"] if p is not None),
                                            default=None)
            group["predicted_errors_uncounted"] = runs[0]["predicted_errors_uncounted"]
        rss = [x for r in runs for x in (r["rss_mib_per_worker"] or [])]
        group["rss_mib_per_worker_median"] = statistics.median(rss) if rss else None
        cpus_window = [(r["server_cpu_s"], r["load_cpu_s"], r["window_s"]) for r in runs
                       if None not in (r["server_cpu_s"], r["load_cpu_s"], r["window_s"])]
        group["server_cpu_share"] = (statistics.median(s / w / cpus for s, _, w in cpus_window) if cpus_window else None)
        group["load_cpu_share"] = (statistics.median(l / w / cpus for _, l, w in cpus_window) if cpus_window else None)
        summary.append(group)
    return summary


# ---------------------------------------------------------------- tables


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.0f} us"


def format_range(median, low, high, digits=0) -> str:
    if median is None:
        return "-"
    text = f"{median:.{digits}f}"
    return text if low == high else f"{text} ({low:.{digits}f}-{high:.{digits}f})"


def format_percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def predicted_text(g: dict, spread_seen: bool = True) -> str:
    if g["rate"] is not None:
        text = f"{g['predicted_replies']} replies, {g['predicted_timeouts']} timeouts"
        if spread_seen and any(e != g["predicted_replies"] for e in g["expected_replies"] if e is not None):
            text += f"; with the spread seen: {', '.join(str(e) for e in g['expected_replies'])} replies"
        return text
    if g["predicted_requests"] is None:
        return "-"
    text = str(g["predicted_requests"]) + (f" (+≤{g['predicted_edge']} edge)" if g["predicted_edge"] else "")
    if g["predicted_errors"] or g["predicted_errors_edge"]:
        text += f"; {g['predicted_errors']}" + (f" (+≤{g['predicted_errors_edge']})" if g["predicted_errors_edge"] else "") + " 503"
    if g.get("predicted_errors_uncounted"):
        text += "; some 503 (refused)"
    if spread_seen and any(e != g["predicted_requests"] for e in g["expected_requests"] if e is not None):
        text += f"; with the spread seen: {', '.join(str(e) for e in g['expected_requests'])}"
    lows = [(low, e) for low, e in zip(g["expected_low"], g["expected_requests"]) if low is not None]
    if spread_seen and any(low < e for low, e in lows):
        text += f"; down to {', '.join(str(low) for low, _ in lows)} with the late starts seen"
    return text


def verdict(g: dict) -> str:
    if g["measured_over_predicted"] is None and g["rate"] is None:
        return "-"
    mark = "✓" if g["as_predicted"] == g["runs"] else f"✗ ({g['as_predicted']}/{g['runs']} as predicted)"
    ratio = "" if g["measured_over_predicted"] is None else f"{g['measured_over_predicted']:.2f} "
    return ratio + mark + (" ⚠ spread" if g["large_spread"] else "")


def bound_text(g: dict) -> str:
    extra = f"; {g['worker_timeouts']}x WORKER TIMEOUT" if g["worker_timeouts"] and "killed" not in g["bound_by"] else ""
    if g["workers_restarted"] and "restarted" not in g["bound_by"]:
        extra += (f"; {g['workers_restarted']} worker restart(s) mid-cell"
                  + (f" in {g['runs']} runs" if g["runs"] > 1 else "")
                  + (f" ({g['restart_reasons']})" if g["restart_reasons"] else ""))
    return g["bound_by"] + extra


def spreads_text(g: dict) -> str:
    return ", ".join(format_spread(s) for s in g["connections_per_worker"] if s) or "-"


def in_flight_text(g: dict) -> str:
    text = format_range(g["in_flight_at_stop_median"], g["in_flight_at_stop_min"], g["in_flight_at_stop_max"])
    if g["in_flight_at_stop_median"] and g["oldest_unanswered_s_max"]:
        text += f" (oldest {format_seconds(g['oldest_unanswered_s_max'])})"
    return text


def latency_text(g: dict) -> str:
    text = format_seconds(g["latency_avg_s_median"])
    if g["never_answered_median"]:
        text += " †"  # wrk's latency covers only the connections that were answered
    return text


def closed_loop_columns(groups: list[dict]) -> list[tuple[str, callable]]:
    columns = [
        ("config", lambda g: g["config"]), ("endpoint", lambda g: f"/{g['endpoint']}"),
        ("conns", lambda g: str(g["connections"])),
        ("requests", lambda g: format_range(g["requests_median"], g["requests_min"], g["requests_max"])),
        ("req/s", lambda g: format_range(g["requests_per_sec_median"], g["requests_per_sec_min"], g["requests_per_sec_max"], 2)),
        ("latency avg", latency_text), ("timeouts", lambda g: f"{g['timeouts_median']:g}"),
        ("errors", lambda g: str(g["errors_max"])),
        ("predicted", predicted_text), ("measured / predicted", verdict), ("bound by", bound_text),
        ("CPU server / client", lambda g: f"{format_percent(g['server_cpu_share'])} / {format_percent(g['load_cpu_share'])}"),
        ("RSS per worker", lambda g: "-" if g["rss_mib_per_worker_median"] is None else f"{g['rss_mib_per_worker_median']:.0f} MiB"),
        ("in flight at stop", in_flight_text),
        ("never answered", lambda g: format_range(g["never_answered_median"], g["never_answered_min"], g["never_answered_max"])),
        ("peak waiting", lambda g: "-" if g["peak_waiting_max"] is None else str(g["peak_waiting_max"])),
        ("peak in handler", lambda g: "-" if g["peak_in_handler_max"] is None else str(g["peak_in_handler_max"])),
        ("conns per worker", spreads_text),
        ("busiest worker", lambda g: "-" if g["max_share_median"] is None or g["workers"] == 1
         else format_percent(g["max_share_max"])),
    ]
    if any("db_refused_median" in g for g in groups):
        columns.insert(8, ("503 pool timeout / refused", lambda g: "-" if "db_refused_median" not in g else
                           f"{format_range(g['pool_timeouts_median'], g['pool_timeouts_min'], g['pool_timeouts_max'])} / "
                           f"{format_range(g['db_refused_median'], g['db_refused_min'], g['db_refused_max'])}"))
        columns.append(("pool peak per worker", lambda g: str(g.get("db_pool_peak_max", "-"))))
        columns.append(("PostgreSQL active at stop", lambda g: "-" if "db_active_stop_median" not in g else
                        format_range(g["db_active_stop_median"], g["db_active_stop_min"], g["db_active_stop_max"])))
    if any(g["upstream_peak_median"] is not None for g in groups):
        columns.insert(8, ("503 pool timeouts", lambda g: format_range(g["non_2xx_median"], g["non_2xx_min"], g["non_2xx_max"])))
        columns.append(("upstream peak", lambda g: format_range(g["upstream_peak_median"], g["upstream_peak_min"], g["upstream_peak_max"])))
    return columns


OPEN_LOOP_COLUMNS = [
    ("config", lambda g: g["config"]), ("endpoint", lambda g: f"/{g['endpoint']}"),
    ("offered rate", lambda g: f"{g['rate']:g}/s"), ("offered", lambda g: f"{g['offered_median']:g}"),
    ("replies", lambda g: format_range(g["replies_median"], g["replies_min"], g["replies_max"])),
    ("timeouts", lambda g: format_range(g["client_timeouts_median"], g["client_timeouts_min"], g["client_timeouts_max"])),
    ("latency median", lambda g: format_seconds(g["latency_median_s_median"])),
    ("errors", lambda g: str(g["errors_max"])),
    ("predicted", predicted_text),
    ("predicted median", lambda g: format_seconds(g["predicted_latency_median_s"])),
    ("measured / predicted", verdict), ("bound by", bound_text),
    ("CPU server / client", lambda g: f"{format_percent(g['server_cpu_share'])} / {format_percent(g['load_cpu_share'])}"),
]


def markdown_table(groups: list[dict]) -> str:
    parts = []
    for kind in ("closed", "open"):
        chosen = [g for g in groups if (g["rate"] is None) == (kind == "closed")]
        if not chosen:
            continue
        columns = closed_loop_columns(chosen) if kind == "closed" else OPEN_LOOP_COLUMNS
        lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell(g) for _, cell in columns) + " |" for g in chosen]
        parts.append("\n".join(lines) + "\n")
    notes = []
    if any(g.get("never_answered_median") for g in groups):
        notes.append("† some connections were never answered: wrk's latency covers only those that were.")
    if any(g["threads_ignored"] for g in groups):
        notes.append("T > 1: gunicorn's `--threads` only affects its gthread worker; the ASGI workers here ignore it.")
    return "\n".join(parts) + ("\n" + "\n".join(notes) + "\n" if notes else "")


COMPACT_WIDTH = 100


def compact_predicted(g: dict) -> str:
    """The prediction in a few characters: 500+≤100 (an edge wave may add up to 100), or 495* (the
    model fed with the connection spread the workers reported)."""
    expected = [e for e in g["expected_requests" if g["rate"] is None else "expected_replies"] if e is not None]
    even = g["predicted_requests"] if g["rate"] is None else g["predicted_replies"]
    if even is None:
        return "-"
    if expected and statistics.median(expected) != even:
        return f"{statistics.median(expected):g}*"
    return str(even) + (f"+≤{g['predicted_edge']}" if g["rate"] is None and g["predicted_edge"] else "")


def compact_table(groups: list[dict]) -> str:
    """The terminal's table: what each cell gave against its prediction, in 100 columns."""
    rows = [("config", "endpoint", "load", "answered", "predicted", "ok", "bound by")]
    for g in groups:
        load = f"c={g['connections']}" if g["rate"] is None else f"{g['rate']:g}/s"
        answered = f"{g['requests_median']:g}" if g["rate"] is None else f"{g['replies_median']:g}/{g['offered_median']:g}"
        predicted = compact_predicted(g)
        ok = "-" if g["measured_over_predicted"] is None and g["rate"] is None else (
            "✓" if g["as_predicted"] == g["runs"] else "✗")
        rows.append((g["config"], "/" + g["endpoint"], load, answered, predicted, ok, g["bound_by"]))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = []
    for r in rows:
        line = "  ".join(r[i].ljust(widths[i]) for i in range(6)) + "  "
        room = COMPACT_WIDTH - len(line)
        lines.append(line + (r[6] if len(r[6]) <= room else r[6][: max(room - 1, 0)] + "…"))
    if any(r[4].endswith("*") for r in rows):
        lines.append("* predicted with the connection spread the workers reported (median over runs)")
    problems = [g for g in groups if g["as_predicted"] != g["runs"] and g["measured_over_predicted"] is not None
                or g["errors_max"]]
    for g in problems:
        why = f"{g['errors_max']} errors; " if g["errors_max"] else ""
        lines += textwrap.wrap(f"✗ {g['config']} /{g['endpoint']}: {why}{g['bound_by']}", COMPACT_WIDTH,
                               subsequent_indent="    ")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- files


def machine_cpus(run_dir: Path) -> int:
    run = parse.read_json(run_dir / "run.json") or {}
    return int(run.get("environment", {}).get("cpu_count") or 1)


def summarise_run(run_dir: Path) -> tuple[list[dict], list[dict]]:
    cpus = machine_cpus(run_dir)
    rows = [row for cell in read_cells(run_dir) if (row := summarise_cell(run_dir, cell, cpus))]
    if not rows:
        raise SystemExit(f"report: {run_dir}: no cell has a wrk.txt or httperf.txt yet")
    return rows, summarise_groups(rows, cpus)


def _plain(value):
    return None if isinstance(value, float) and math.isinf(value) else value


def write_summary(run_dir: Path) -> list[dict]:
    from .plot import plot

    rows, groups = summarise_run(run_dir)
    with open(run_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    document = {"cells": rows, "groups": [{k: _plain(v) for k, v in g.items()} for g in groups]}
    (run_dir / "summary.json").write_text(json.dumps(document, indent=2) + "\n")
    title = run_dir.name + (" (INCOMPLETE)" if (run_dir / "INCOMPLETE").exists() else "")
    (run_dir / "summary.md").write_text(f"# {title}\n\n{markdown_table(groups)}")
    plot(run_dir, groups)
    return groups


def brief(run_dir: Path, cell_name: str, width: int = COMPACT_WIDTH) -> str:
    """The line the runner prints when a cell ends, in WIDTH columns: the detail is in summary.md."""
    (cell,) = [c for c in read_cells(run_dir) if c.name == cell_name]
    return brief_line(summarise_cell(run_dir, cell, machine_cpus(run_dir)), machine_cpus(run_dir), width)


def brief_line(row: dict, cpus: int, width: int = COMPACT_WIDTH) -> str:
    """brief() for a cell already summarised."""
    cell_name = row["cell"]
    (g,) = summarise_groups([row], cpus)
    if row["rate"] is None:
        figures = (f"{row['requests']} requests  {row['requests_per_sec']:.2f} req/s  "
                   f"avg {format_seconds(row['latency_avg_s'])}")
        trouble = {"timeouts": row["timeouts"], "errors": row["errors"]}
    else:
        figures = f"{row['replies']}/{row['offered']} replied  median {format_seconds(row['latency_median_s'])}"
        trouble = {"timeouts": row["client_timeouts"], "errors": row["errors"]}
    figures += "".join(f"  {n} {what}" for what, n in trouble.items() if n)
    mark = "" if row["as_predicted"] is None else ("✓ " if row["as_predicted"] else "✗ ")
    line = f"{cell_name}: {figures}  {mark}predicted {compact_predicted(g)}  "
    room = width - len(line)
    bound = row["bound_by"] if len(row["bound_by"]) <= room else row["bound_by"][: max(room - 1, 0)] + "…"
    return (line + bound)[:width]
