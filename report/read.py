"""A cell's raw files, read once into Measured: the load generator's report, its own usage, the
servers' process samples, the workers' counters, the server's log. Nothing here predicts."""

import statistics
from pathlib import Path
from typing import Any

from core import files
from core.calibration import calibration_cell
from core.cell import Cell
from core.endpoints import ASYNC, ENDPOINTS
from core.model import SYN_RETRY_S, client_connections, effective_backlog
from core.servers import SERVERS

from . import parse
from .records import DatabaseSide, LoopSide, Measured, ServerSide

# Why a worker goes mid-cell, as the servers log it (gunicorn arbiter.py and workers/, uvicorn server.py
# and supervisors/multiprocess.py).
RESTART_REASONS = {
    "WORKER TIMEOUT": ("WORKER TIMEOUT",),
    "max-requests": ("Autorestarting worker after current request", "Maximum request limit of"),
    # Not "was sent SIGABRT": gunicorn's own kill after a WORKER TIMEOUT, counted above.
    "exited": ("exited with code", "was sent SIGKILL", "was sent SIGTERM", "] died"),
}
Snapshot = dict[str, Any]  # one worker's counters as counters.py writes them (JSON)


class RunFacts:
    """What every cell of a run shares: run.json's machine and database."""

    def __init__(self, run_dir: Path):
        document = parse.read_json(run_dir / files.RUN_JSON) or {}
        environment = document.get("environment", {})
        self.cpus = int(environment.get("cpu_count") or 1)
        self.somaxconn: int | None = environment.get("somaxconn")
        facts = document.get("database")
        # Connections PostgreSQL gives the app's ordinary role: max_connections - superuser_reserved_connections.
        self.database_available: int | None = (
            facts["max_connections"] - facts["superuser_reserved_connections"] if facts else None
        )
        self.run_dir = run_dir
        self.costs: dict[str, float | None] = {}

    def calibration_name(self, cell: Cell) -> str | None:
        calibration = calibration_cell(cell)
        return calibration.name if calibration else None

    def calibrated_cost(self, cell: Cell) -> float | None:
        """The CPU per request the run's calibration of CELL measured, from its raw files (None: the run
        has none, as runs from before the calibration pass)."""
        calibration = calibration_cell(cell)
        if calibration is None or not files.cell_files(self.run_dir, calibration.name, calibrating=True).path.is_dir():
            return None
        if calibration.name not in self.costs:
            self.costs[calibration.name] = read_calibration(self.run_dir, calibration)["cpu_per_request_s"]
        return self.costs[calibration.name]


def read_calibration(run_dir: Path, calibration: Cell) -> dict[str, Any]:
    """A calibration's figures, from its raw files: what was answered, the server's CPU, the cost."""
    m = read_cell(run_dir / files.CALIBRATION, calibration, RunFacts(run_dir))
    return {
        "requests": m.answered,
        "server_cpu_s": m.server_cpu_s,
        "cpu_per_request_s": m.server_cpu_per_request_s,
    }


def load_output(run_dir: Path, cell: Cell) -> Path:
    return files.cell_files(run_dir, cell.name).load_output("httperf" if cell.open_loop else "wrk")


def read_cell(run_dir: Path, cell: Cell, facts: RunFacts) -> Measured:
    where = files.cell_files(run_dir, cell.name)
    raw = load_output(run_dir, cell)
    log = where.server_log()
    log_text = log.read_text(errors="replace") if log.exists() else ""
    # Up to the stop snapshot where the run recorded it: the workers the runner stops are not restarts.
    stopped_at = ((parse.read_json(where.processes(files.STOP)) or {}).get("log_bytes") or {}).get("server")
    if stopped_at is not None:
        log_text = log.read_bytes()[:stopped_at].decode(errors="replace")
    usage = parse.read_json(where.usage(raw.stem)) or {}
    server_cpu_s, server_rss = process_cpu(where, "server")
    side = server_side(where, cell)
    spread = side.connections_per_worker if side else None
    starts = side.connection_starts if side else {}
    restarted, reasons = restarts(log_text, cell.server, cell.workers, side.workers_exited if side else 0)
    measured = Measured(
        load=raw.stem,
        window_s=usage.get("wall_s"),
        load_cpu_s=usage.get("cpu_s"),
        load_maxrss_mib=round(usage["maxrss_bytes"] / 2**20, 1) if usage.get("maxrss_bytes") else None,
        server_cpu_s=server_cpu_s,
        upstream_cpu_s=process_cpu(where, "upstream")[0],
        database_cpu_s=process_cpu(where, "database")[0] if ENDPOINTS[cell.endpoint].queries_database else None,
        server_rss_mib=round(sum(server_rss) / 2**20, 1) if server_rss else None,
        worker_timeouts=log_text.count(RESTART_REASONS["WORKER TIMEOUT"][0]),
        side=side,
        # Those whose first request came a SYN retry or more after the load began.
        connections_started_late=sum(n for second, n in (starts or {}).items() if second >= SYN_RETRY_S),
        listen_backlog=effective_backlog(cell, facts.somaxconn),
        listen_overflows=listen_overflows(where),
        workers_restarted=restarted,
        restart_reasons=reasons,
        max_share=round(max(spread) / sum(spread), 3) if spread and sum(spread) else None,
        spread_index=round(max(spread) / statistics.mean(spread), 2) if spread and sum(spread) else None,
        connections=None,
        requests=0,
        errors=0,
        latency_avg_s=None,
        latency_max_s=None,
    )
    if cell.open_loop:
        httperf = parse.load_httperf(raw)
        answered = bool(httperf["replies"])
        measured.offered, measured.replies = httperf["connections"], httperf["status_2xx"]
        measured.requests, measured.client_timeouts = httperf["status_2xx"], httperf["client_timeouts"]
        measured.errors = (
            httperf["errors_total"] - httperf["client_timeouts"] + httperf["status_4xx"] + httperf["status_5xx"]
        )
        measured.latency_median_s = httperf["latency_median_s"] if answered else None
        measured.latency_avg_s = httperf["latency_avg_s"] if answered else None
        measured.latency_max_s = httperf["latency_max_s"] if answered else None
        measured.concurrent_max = httperf["concurrent_max"]
        return measured
    wrk = parse.load_wrk(raw)
    assert cell.connections is not None  # a closed loop
    client = client_connections(cell.connections, cell.wrk_threads)
    measured.connections, measured.requests = client, wrk["requests"]
    measured.requests_ok, measured.requests_per_sec = wrk["requests"] - wrk["non_2xx_3xx"], wrk["requests_per_sec"]
    measured.latency_avg_s, measured.latency_max_s = wrk["latency_avg_s"], wrk["latency_max_s"]
    measured.timeouts, measured.errors, measured.non_2xx = wrk["timeouts"], parse.wrk_errors(wrk), wrk["non_2xx_3xx"]
    # Seen connections that never got an answer: wrk's latency and timeouts leave them out.
    if side:
        measured.never_answered = max(0, max(sum(side.connections_per_worker), client) - side.connections_answered)
    return measured


# ---------------------------------------------------------------- what the servers spent


def process_cpu(where: files.CellFiles, role: str) -> tuple[float | None, list[int]]:
    """CPU seconds a server's process tree spent between the start and stop samples, and its RSS at stop."""
    start, stop = (parse.read_json(where.processes(name)) for name in (files.START, files.STOP))
    if not start or not stop or role not in stop["roles"]:
        return None, []
    before = {p["pid"]: p["cpu_s"] for p in start["roles"].get(role, [])}
    after = stop["roles"][role]
    return sum(p["cpu_s"] - before.get(p["pid"], 0.0) for p in after), [p["rss_bytes"] for p in after]


def listen_overflows(where: files.CellFiles) -> int | None:
    """Handshakes the kernel dropped over the cell because a listen queue was full (Linux only)."""
    start, stop = (
        ((parse.read_json(where.processes(name)) or {}).get("listen_queue") or {}) for name in (files.START, files.STOP)
    )
    if "ListenOverflows" not in start or "ListenOverflows" not in stop:
        return None
    return int(stop["ListenOverflows"] - start["ListenOverflows"])


def restarts(log_text: str, server: str, workers: int, exited: int) -> tuple[int, str]:
    """Workers started beyond the first WORKERS (from the server's log, or the workers that exited
    in the window where the log does not show start-ups), and why they went, as the log says."""
    started_up = SERVERS[server].ready_workers(log_text) if server in SERVERS else 0
    # A max-requests restart may log both of its lines: each restart once. The ways to exit are events apart.
    reasons = {
        why: (max if why == "max-requests" else sum)(log_text.count(line) for line in lines)
        for why, lines in RESTART_REASONS.items()
    }
    # A worker still draining at the stop has logged why it goes, though no new one has started yet
    # ("exited" is left out: in a run that did not record where its stop began, the stop logs it).
    count = max(started_up - workers, exited, reasons["max-requests"] + reasons["WORKER TIMEOUT"], 0)
    return count, ", ".join(f"{n}x {why}" for why, n in reasons.items() if n)


# ---------------------------------------------------------------- the workers' own counters


class Window:
    """Each worker's counters over the measured window: at its stop snapshot (or its last file, for a
    worker gone before the stop) less at its start snapshot (a warm-up came before it)."""

    def __init__(self, where: files.CellFiles, stop: list[Snapshot]):
        self.start = {s["pid"]: s for s in parse.worker_snapshots(where.stats(), files.START)}
        gone = exited_workers(where, stop)
        alive = alive_at_stop(where)
        self.exited = [s for s in gone if s["pid"] not in alive]
        self.at_stop = stop  # what was in flight is what the workers still there held
        self.stop = stop + gone

    def growth(self, worker: Snapshot, *path: str) -> Any:
        """A count (or seconds) as the counters hold it."""

        def at(snapshot: Snapshot) -> Any:
            for key in path[:-1]:
                snapshot = snapshot.get(key, {})
            return snapshot.get(path[-1], 0)

        return at(worker) - at(self.start.get(worker["pid"], {}))

    def total(self, *path: str) -> Any:
        return sum(self.growth(s, *path) for s in self.stop)


def server_side(where: files.CellFiles, cell: Cell) -> ServerSide | None:
    endpoint = cell.counted_as
    stop = parse.worker_snapshots(where.stats(), files.STOP)
    if not stop:
        return None
    window = Window(where, stop)
    by_connections = sorted(window.stop, key=lambda s: window.growth(s, "connections"), reverse=True)
    upstream = parse.worker_snapshots(where.stats("upstream"), files.STOP)
    return ServerSide(
        workers_exited=len(window.exited),
        connections_per_worker=[window.growth(s, "connections") for s in by_connections],
        peak_in_handler_per_worker=[s["endpoints"].get(endpoint, {}).get("peak", 0) for s in by_connections],
        connections_answered=window.total("connections_answered"),
        received=window.total("endpoints", endpoint, "received"),
        server_completed=window.total("endpoints", endpoint, "completed"),
        pool_timeouts=window.total("endpoints", endpoint, "pool_timeouts"),
        in_flight_at_stop=sum(s["in_flight"] for s in window.at_stop),
        oldest_unanswered_s=max((s["oldest_unanswered_s"] or 0 for s in window.at_stop), default=None),
        peak_waiting=max(s["endpoints"].get(endpoint, {}).get("peak_waiting", 0) for s in window.at_stop),
        thread_limit_seen=sorted({s["thread_limit"] for s in window.stop}),
        connection_starts=connection_starts(window.stop),
        worker_cpu_s=round(sum(s["cpu_s"] - window.start.get(s["pid"], {}).get("cpu_s", 0) for s in window.stop), 3),
        rss_mib_per_worker=[round(s["peak_rss_bytes"] / 2**20, 1) for s in by_connections],
        upstream_peak=max((s["endpoints"].get("async", {}).get("peak", 0) for s in upstream), default=None),
        upstream_completed=(
            sum(s["endpoints"].get("async", {}).get("completed", 0) for s in upstream) if upstream else None
        ),
        database=database_side(where, endpoint, window, by_connections)
        if ENDPOINTS[cell.endpoint].queries_database
        else None,
        loop=loop_side(window, by_connections),
    )


def loop_side(window: Window, by_connections: list[Snapshot]) -> LoopSide | None:
    """The loop clocks' window: lateness added up and its histogram are the stop's less the start's;
    the most is the stop's own (counters.py resets it at the start snapshot)."""
    if not by_connections or "loop" not in by_connections[0]:
        return None
    p99s: list[float] = []
    stuck: dict[str, float] = {}
    for worker in by_connections:
        start = window.start.get(worker["pid"], {}).get("loop", {})
        loop = worker["loop"]
        before_buckets = start.get("late_buckets") or [0] * len(loop["late_buckets"])
        buckets = [n - before_buckets[i] for i, n in enumerate(loop["late_buckets"])]
        p99s.append(percentile_bound(buckets, loop["late_bucket_bounds_s"], 0.99, loop["late_max_s"]))
        before = start.get("stuck_samples", {})
        for where, samples in worker["loop"]["stuck_samples"].items():
            seconds = (samples - before.get(where, 0)) * worker["loop"]["watch_s"]
            if seconds > 0:
                stuck[where] = round(stuck.get(where, 0.0) + seconds, 3)
    first = by_connections[0]["loop"]
    return LoopSide(
        late_max_s=[w["loop"]["late_max_s"] for w in by_connections],
        late_p99_s=p99s,
        late_total_s=[round(window.growth(w, "loop", "late_total_s"), 6) for w in by_connections],
        stuck_s=dict(sorted(stuck.items(), key=lambda item: -item[1])),
        stuck_after_s=first["stuck_s"],
    )


def percentile_bound(buckets: list[int], bounds: list[float], fraction: float, most: float) -> float:
    """The bucket bound under which FRACTION of the wake-ups came (the most seen, if that is lower;
    the last bucket has no bound)."""
    total, seen = sum(buckets), 0
    for bound, count in zip([*bounds, most], buckets, strict=True):
        seen += count
        if total and seen >= fraction * total:
            return min(bound, most)
    return most


def connection_starts(snapshots: list[Snapshot]) -> dict[int, int]:
    """New connections by the whole second after the load began in which each sent its first request."""
    starts: dict[int, int] = {}
    for snapshot in snapshots:
        for second, count in snapshot.get("connection_starts", {}).items():
            starts[int(second)] = starts.get(int(second), 0) + count
    return dict(sorted(starts.items()))


def exited_workers(where: files.CellFiles, stop: list[Snapshot]) -> list[Snapshot]:
    """Workers that served in the measured window but wrote no stop snapshot, mostly because they
    were gone by then (max-requests, a WORKER TIMEOUT, a crash): their last file, written at
    shutdown or every 0.2 s, stands in for it. Those gone before the window are left out."""
    began = (parse.read_json(where.processes(files.START)) or {}).get("time")
    if began is None:
        return []
    stopped = {s["pid"] for s in stop}
    return [s for s in parse.worker_snapshots(where.stats(), "") if s["pid"] not in stopped and s["time"] > began]


def alive_at_stop(where: files.CellFiles) -> set[int]:
    """The server's processes in the stop sample."""
    sample = parse.read_json(where.processes(files.STOP)) or {}
    return {p["pid"] for p in sample.get("roles", {}).get("server", [])}


def database_side(
    where: files.CellFiles, endpoint: str, window: Window, by_connections: list[Snapshot]
) -> DatabaseSide:
    engine = "async" if ENDPOINTS[endpoint].kind == ASYNC else "sync"
    samples = {
        name: (parse.read_json(where.processes(name)) or {}).get("database", {}) for name in (files.START, files.STOP)
    }
    return DatabaseSide(
        pool_peak_per_worker=[s.get("pools", {}).get(engine, {}).get("peak_checked_out") for s in by_connections],
        overflow_peak_per_worker=[s.get("pools", {}).get(engine, {}).get("peak_overflow") for s in by_connections],
        refused=window.total("endpoints", endpoint, "db_refused"),
        connects=window.total("pools", engine, "connects"),
        connect_s=round(window.total("pools", engine, "connect_s"), 3),
        errors=window.total("endpoints", endpoint, "db_errors"),
        backends_start=samples[files.START].get("backends"),
        active_start=samples[files.START].get("active"),
        backends_stop=samples[files.STOP].get("backends"),
        active_stop=samples[files.STOP].get("active"),
    )
