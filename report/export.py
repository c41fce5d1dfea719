"""The JSON and CSV boundary: the typed records as the rows and groups of summary.json and
summary.csv, key for key and in the order those files have always had. The only place in report/
where a figure is looked up by its name."""

import math
from typing import Any

from .records import CellResult, Group, Range

JsonDict = dict[str, Any]

# The server-side counters (ServerSide) and the database's (DatabaseSide, as db_NAME).
SIDE = set(
    """connections_per_worker peak_in_handler_per_worker connections_answered received server_completed
    pool_timeouts in_flight_at_stop oldest_unanswered_s peak_waiting thread_limit_seen worker_cpu_s
    rss_mib_per_worker upstream_peak upstream_completed connection_starts""".split()
)
# The loop clocks' (LoopSide, as loop_NAME).
LOOP = {"loop_late_max_s", "loop_late_p99_s", "loop_late_total_s", "loop_stuck_s"}
ROW_END = """server_cpu_per_request_s load_cpu_per_request_s wave_busy_s loop_late_max_s loop_late_p99_s
    loop_late_total_s loop_stuck_s calibration calibrated_cpu_per_request_s burst_low""".split()
ROW_START = """cell round config server workers threads worker_class thread_limit http_pool endpoint sleep_s
    duration_s load wrk_threads warmup_s pinned worker_timeouts threads_ignored window_s load_cpu_s load_maxrss_mib
    server_cpu_s upstream_cpu_s database_cpu_s server_rss_mib connections_per_worker peak_in_handler_per_worker
    connections_answered received server_completed pool_timeouts in_flight_at_stop oldest_unanswered_s peak_waiting
    thread_limit_seen worker_cpu_s rss_mib_per_worker upstream_peak upstream_completed connection_starts
    connections_started_late listen_backlog listen_overflows db_pool_peak_per_worker db_overflow_peak_per_worker
    db_refused db_connects db_connect_s db_errors db_backends_start db_active_start db_backends_stop db_active_stop
    workers_restarted restart_reasons max_share spread_index cpu_bound cpu connections rate""".split()
CLOSED_ROW = (
    ROW_START
    + """offered_fraction requests requests_ok requests_per_sec latency_avg_s latency_max_s
    timeouts errors non_2xx predicted_requests predicted_edge predicted_errors predicted_errors_edge
    predicted_requests_per_sec bound_by expected_requests expected_edge expected_errors expected_errors_edge
    predicted_errors_uncounted expected_errors_uncounted never_answered measured_over_predicted
    predicted_late_requests expected_low as_predicted""".split()
    + ROW_END
)
OPEN_ROW = (
    ROW_START
    + """offered replies requests client_timeouts errors latency_median_s latency_avg_s latency_max_s
    concurrent_max predicted_replies predicted_timeouts predicted_latency_median_s capacity_per_s expected_replies
    expected_timeouts bound_by never_answered offered_fraction as_predicted""".split()
    + ROW_END
)
GROUP = """config endpoint connections rate workers sleep_s duration_s server load predicted_requests predicted_edge
    predicted_errors predicted_errors_edge predicted_requests_per_sec predicted_replies predicted_timeouts
    predicted_latency_median_s capacity_per_s offered_fraction threads_ignored runs requests requests_ok
    requests_per_sec latency_avg_s latency_median_s timeouts client_timeouts offered replies non_2xx server_cpu_s
    load_cpu_s window_s in_flight_at_stop oldest_unanswered_s never_answered received pool_timeouts server_rss_mib
    max_share spread_index upstream_peak bound_by bound_by_runs large_spread measured_over_predicted as_predicted
    cpu_bound connections_per_worker peak_in_handler_per_worker rss_mib_per_worker server_completed
    expected_requests expected_replies expected_low peak_in_handler_max peak_waiting_max errors_max worker_timeouts
    workers_restarted restart_reasons thread_limit_seen db_refused db_errors db_active_start db_active_stop
    db_backends_stop db_pool_peak_max predicted_errors_uncounted rss_mib_per_worker_median server_cpu_share
    load_cpu_share server_cpu_per_request_s load_cpu_per_request_s wave_busy_s loop_late_max_s loop_late_p99_s
    loop_stuck_s""".split()
GROUP_DATABASE = {
    "db_refused",
    "db_errors",
    "db_active_start",
    "db_active_stop",
    "db_backends_stop",
    "db_pool_peak_max",
    "predicted_errors_uncounted",
}


def row_dict(row: CellResult) -> JsonDict:
    """summary.json's and summary.csv's row."""
    c, m, v = row.cell, row.measured, row.verdict
    side, database = m.side, m.database
    identity = {
        "cell": c.name,
        "round": c.round,
        "config": c.label(),
        "server": c.server,
        "workers": c.workers,
        "threads": c.threads,
        "worker_class": c.worker_class,
        "thread_limit": c.text("thread_limit"),
        "http_pool": c.text("http_pool"),
        "endpoint": c.endpoint,
        "sleep_s": c.sleep,
        "duration_s": float(c.duration),
        "wrk_threads": c.wrk_threads,
        "warmup_s": float(c.warmup),
        "pinned": c.pin,
        "threads_ignored": c.threads > 1,
        "rate": c.rate,
    }
    left_out = set()  # keys the file has only for some cells
    if not row.queries_database:
        left_out |= {"database_cpu_s", "predicted_errors_uncounted", "expected_errors_uncounted"}
    if v.expected_requests is None:  # sleep 0: no band
        left_out |= {"predicted_late_requests", "expected_low"}

    def value(name: str) -> Any:
        if name in identity:
            return identity[name]
        if name in SIDE:
            return getattr(side, name) if side else None
        if name in LOOP:
            return getattr(side.loop, name.removeprefix("loop_")) if side and side.loop else None
        if name.startswith("db_"):
            return getattr(database, name.removeprefix("db_"))
        return getattr(m, name) if hasattr(m, name) else getattr(v, name)

    names = OPEN_ROW if c.open_loop else CLOSED_ROW
    return {
        name: value(name)
        for name in names
        if name not in left_out and not (name.startswith("db_") and database is None)
    }


def group_dict(group: Group) -> JsonDict:
    """summary.json's group (an infinite figure as null)."""
    c = group.cell
    identity = {
        "config": c.label(),
        "endpoint": c.endpoint,
        "rate": c.rate,
        "workers": c.workers,
        "sleep_s": c.sleep,
        "duration_s": float(c.duration),
        "server": c.server,
        "load": group.rows[0].measured.load,
        "threads_ignored": c.threads > 1,
    }
    out: JsonDict = {}
    for name in GROUP:
        if name in GROUP_DATABASE and not group.rows[0].measured.database:
            continue  # database cells only: the other runs' summaries stay as they were
        value = identity[name] if name in identity else getattr(group, name)
        if isinstance(value, Range):
            out.update({f"{name}_median": value.median, f"{name}_min": value.low, f"{name}_max": value.high})
        else:
            out[name] = value
    return {k: None if isinstance(v, float) and math.isinf(v) else v for k, v in out.items()}
