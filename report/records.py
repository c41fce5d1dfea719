"""The report's typed records: a cell's measured figures (Measured), its verdict against the model
(Verdict), both with the cell (CellResult), and a group of repetitions (Group, its figures Ranges).

Dicts exist only at the JSON and CSV boundary: as_dict() gives summary.json's and summary.csv's
rows and groups, key for key and in the order those files have always had.
"""

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.bound import Bound
from core.cell import Cell
from core.endpoints import ENDPOINTS

JsonDict = dict[str, object]


@dataclass(frozen=True)
class Range:
    """A figure over the repetitions of a cell: median, lowest, highest (all None: never measured)."""

    median: float | None = None
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> "Range":
        known = [v for v in values if v is not None]
        return cls(statistics.median(known), min(known), max(known)) if known else cls()

    def text(self, digits: int = 0) -> str:
        """'205 (202-214)', or '205' when every run gave the same."""
        if self.median is None:
            return "-"
        text = f"{self.median:.{digits}f}"
        return text if self.low == self.high else f"{text} ({self.low:.{digits}f}-{self.high:.{digits}f})"

    def above(self, other: "Range") -> bool:
        """Every run of this one above every run of OTHER: how a finding says "more" or "differ"."""
        return self.low is not None and other.high is not None and self.low > other.high


@dataclass
class DatabaseSide:
    """What the workers' SQLAlchemy pools and PostgreSQL itself saw of a database cell."""

    pool_peak_per_worker: list[int | None]
    overflow_peak_per_worker: list[int | None]
    refused: int
    connects: int  # connections the pools opened in the measured window
    connect_s: float  # and the seconds that took in all
    errors: int
    backends_start: int | None
    active_start: int | None
    backends_stop: int | None
    active_stop: int | None


@dataclass
class ServerSide:
    """The workers' own counters over the measured window (start and stop snapshots)."""

    workers_exited: int
    connections_per_worker: list[int]  # busiest first
    peak_in_handler_per_worker: list[int]
    connections_answered: int
    received: int
    server_completed: int
    pool_timeouts: int
    in_flight_at_stop: int
    oldest_unanswered_s: float | None
    peak_waiting: int
    thread_limit_seen: list[int | None]
    connection_starts: dict[int, int]
    worker_cpu_s: float
    rss_mib_per_worker: list[float]
    upstream_peak: int | None
    upstream_completed: int | None
    database: DatabaseSide | None


@dataclass
class Measured:
    """Everything a cell's raw files say, read once; nothing here comes from the model."""

    load: str  # the load generator: wrk or httperf
    window_s: float | None
    load_cpu_s: float | None
    load_maxrss_mib: float | None
    server_cpu_s: float | None
    upstream_cpu_s: float | None
    database_cpu_s: float | None
    server_rss_mib: float | None
    worker_timeouts: int
    side: ServerSide | None  # None: the cell ran without counters (STATS=0)
    connections_started_late: int
    listen_backlog: float
    listen_overflows: int | None
    workers_restarted: int
    restart_reasons: str
    max_share: float | None
    spread_index: float | None
    # The load generator's figures (closed loop: wrk; open loop: httperf)
    connections: int | None  # what wrk really opens: threads x (connections // threads)
    requests: int  # answered, wrk's count (open loop: 2xx replies)
    errors: int
    latency_avg_s: float | None
    latency_max_s: float | None
    requests_ok: int | None = None
    requests_per_sec: float | None = None
    timeouts: int | None = None
    non_2xx: int | None = None
    never_answered: int | None = None  # connections the server saw and never answered
    offered: int | None = None
    replies: int | None = None
    client_timeouts: int | None = None
    latency_median_s: float | None = None
    concurrent_max: int | None = None

    @property
    def connections_per_worker(self) -> list[int] | None:
        return self.side.connections_per_worker if self.side else None

    @property
    def peak_in_handler_per_worker(self) -> list[int] | None:
        return self.side.peak_in_handler_per_worker if self.side else None

    @property
    def database(self) -> DatabaseSide | None:
        return self.side.database if self.side else None


@dataclass
class Verdict:
    """The cell against the model: what it predicted, what bound the cell, whether it matched."""

    cpu_bound: bool | None
    cpu: str  # the CPU figures, as the tables print them
    bound: Bound
    bound_by: str  # the bound with its figures, as the tables print it
    as_predicted: bool | None = None  # None: nothing to check against (sleep 0)
    # Closed loop: the model with an even spread (predicted_*), and fed with what was measured (expected_*)
    predicted_requests: int | None = None
    predicted_edge: int | None = None
    predicted_errors: int | None = None
    predicted_errors_edge: int | None = None
    predicted_requests_per_sec: float | None = None
    expected_requests: int | None = None
    expected_edge: int | None = None
    expected_errors: int | None = None
    expected_errors_edge: int | None = None
    predicted_errors_uncounted: bool = False  # database cells: PostgreSQL refuses some
    expected_errors_uncounted: bool = False
    measured_over_predicted: float | None = None
    predicted_late_requests: int | None = None
    expected_low: int | None = None  # the band's lower end: the late starts seen (None: sleep 0)
    overflowed: bool = False  # the accept queue overflowed
    # Open loop
    offered_fraction: float | None = None
    predicted_replies: int | None = None
    predicted_timeouts: int | None = None
    predicted_latency_median_s: float | None = None
    capacity_per_s: float | None = None
    expected_replies: int | None = None
    expected_timeouts: int | None = None


@dataclass
class CellResult:
    """One run of one cell: the cell, what was measured, the verdict."""

    cell: Cell
    measured: Measured
    verdict: Verdict

    @property
    def queries_database(self) -> bool:
        return ENDPOINTS[self.cell.endpoint].queries_database

    def as_dict(self) -> JsonDict:
        """summary.json's and summary.csv's row."""
        c, m, v, side = self.cell, self.measured, self.verdict, self.measured.side
        row: JsonDict = {
            "cell": c.name, "round": c.round, "config": c.label(), "server": c.server, "workers": c.workers,
            "threads": c.threads, "worker_class": c.worker_class, "thread_limit": c.text("thread_limit"),
            "http_pool": c.text("http_pool"), "endpoint": c.endpoint, "sleep_s": c.sleep,
            "duration_s": float(c.duration), "load": m.load, "wrk_threads": c.wrk_threads,
            "warmup_s": float(c.warmup), "pinned": c.pin, "worker_timeouts": m.worker_timeouts,
            "threads_ignored": c.threads > 1, "window_s": m.window_s, "load_cpu_s": m.load_cpu_s,
            "load_maxrss_mib": m.load_maxrss_mib, "server_cpu_s": m.server_cpu_s, "upstream_cpu_s": m.upstream_cpu_s,
        }
        if self.queries_database:
            row["database_cpu_s"] = m.database_cpu_s
        row["server_rss_mib"] = m.server_rss_mib
        for name in SIDE_FIELDS:
            row[name] = getattr(side, name) if side else None
        row.update(connections_started_late=m.connections_started_late, listen_backlog=m.listen_backlog,
                   listen_overflows=m.listen_overflows)
        if side and side.database:
            d = side.database
            row.update(db_pool_peak_per_worker=d.pool_peak_per_worker, db_overflow_peak_per_worker=d.overflow_peak_per_worker,
                       db_refused=d.refused, db_connects=d.connects, db_connect_s=d.connect_s, db_errors=d.errors,
                       db_backends_start=d.backends_start, db_active_start=d.active_start,
                       db_backends_stop=d.backends_stop, db_active_stop=d.active_stop)
        row.update(workers_restarted=m.workers_restarted, restart_reasons=m.restart_reasons, max_share=m.max_share,
                   spread_index=m.spread_index, cpu_bound=v.cpu_bound, cpu=v.cpu, connections=m.connections,
                   rate=c.rate)
        if c.open_loop:
            row.update(offered=m.offered, replies=m.replies, requests=m.requests, client_timeouts=m.client_timeouts,
                       errors=m.errors, latency_median_s=m.latency_median_s, latency_avg_s=m.latency_avg_s,
                       latency_max_s=m.latency_max_s, concurrent_max=m.concurrent_max,
                       predicted_replies=v.predicted_replies, predicted_timeouts=v.predicted_timeouts,
                       predicted_latency_median_s=v.predicted_latency_median_s, capacity_per_s=v.capacity_per_s,
                       expected_replies=v.expected_replies, expected_timeouts=v.expected_timeouts,
                       bound_by=v.bound_by, never_answered=m.never_answered, offered_fraction=v.offered_fraction,
                       as_predicted=v.as_predicted)
            return row
        row.update(offered_fraction=v.offered_fraction, requests=m.requests, requests_ok=m.requests_ok,
                   requests_per_sec=m.requests_per_sec, latency_avg_s=m.latency_avg_s, latency_max_s=m.latency_max_s,
                   timeouts=m.timeouts, errors=m.errors, non_2xx=m.non_2xx, predicted_requests=v.predicted_requests,
                   predicted_edge=v.predicted_edge, predicted_errors=v.predicted_errors,
                   predicted_errors_edge=v.predicted_errors_edge,
                   predicted_requests_per_sec=v.predicted_requests_per_sec, bound_by=v.bound_by,
                   expected_requests=v.expected_requests, expected_edge=v.expected_edge,
                   expected_errors=v.expected_errors, expected_errors_edge=v.expected_errors_edge)
        if self.queries_database:
            row.update(predicted_errors_uncounted=v.predicted_errors_uncounted,
                       expected_errors_uncounted=v.expected_errors_uncounted)
        row.update(never_answered=m.never_answered, measured_over_predicted=v.measured_over_predicted)
        if v.expected_requests is not None:
            row.update(predicted_late_requests=v.predicted_late_requests, expected_low=v.expected_low)
        row["as_predicted"] = v.as_predicted
        return row


SIDE_FIELDS = ["connections_per_worker", "peak_in_handler_per_worker", "connections_answered", "received",
               "server_completed", "pool_timeouts", "in_flight_at_stop", "oldest_unanswered_s", "peak_waiting",
               "thread_limit_seen", "worker_cpu_s", "rss_mib_per_worker", "upstream_peak", "upstream_completed",
               "connection_starts"]


@dataclass
class Group:
    """One distinct cell over its repetitions: each figure a Range, each verdict counted."""

    cell: Cell  # the first repetition's
    rows: list[CellResult] = field(repr=False)
    runs: int
    connections: int | None  # as wrk opened them
    # The model, as the first repetition's verdict has it
    predicted_requests: int | None
    predicted_edge: int | None
    predicted_errors: int | None
    predicted_errors_edge: int | None
    predicted_requests_per_sec: float | None
    predicted_replies: int | None
    predicted_timeouts: int | None
    predicted_latency_median_s: float | None
    capacity_per_s: float | None
    offered_fraction: float | None
    predicted_errors_uncounted: bool
    # Medians, lowest and highest over the repetitions
    requests: Range
    requests_ok: Range
    requests_per_sec: Range
    latency_avg_s: Range
    latency_median_s: Range
    timeouts: Range
    client_timeouts: Range
    offered: Range
    replies: Range
    non_2xx: Range
    server_cpu_s: Range
    load_cpu_s: Range
    window_s: Range
    in_flight_at_stop: Range
    oldest_unanswered_s: Range
    never_answered: Range
    received: Range
    pool_timeouts: Range
    server_rss_mib: Range
    max_share: Range
    spread_index: Range
    upstream_peak: Range
    db_refused: Range
    db_errors: Range
    db_active_start: Range
    db_active_stop: Range
    db_backends_stop: Range
    # Verdicts
    bound_by: str  # each distinct bound with how many runs had it
    bound_by_runs: dict[str, int]
    bounds: list[Bound]  # each run's
    large_spread: bool
    measured_over_predicted: float | None
    as_predicted: int  # runs as predicted
    cpu_bound: int  # runs with a CPU saturated
    # Per run
    connections_per_worker: list[list[int] | None]
    peak_in_handler_per_worker: list[list[int] | None]
    rss_mib_per_worker: list[list[float] | None]
    server_completed: list[int | None]
    expected_requests: list[int | None]
    expected_replies: list[int | None]
    expected_low: list[int | None]
    # Over the runs
    peak_in_handler_max: int | None
    peak_waiting_max: int | None
    errors_max: int
    worker_timeouts: int
    workers_restarted: int
    restart_reasons: str
    thread_limit_seen: list[int | None]
    db_pool_peak_max: int | None
    rss_mib_per_worker_median: float | None
    server_cpu_share: float | None
    load_cpu_share: float | None

    @property
    def queries_database(self) -> bool:
        return ENDPOINTS[self.cell.endpoint].queries_database

    @property
    def ok(self) -> bool:
        """Every repetition matched the model's band."""
        return self.as_predicted == self.runs

    def as_dict(self) -> JsonDict:
        """summary.json's group (an infinite figure as null)."""
        c = self.cell
        group: JsonDict = {
            "config": c.label(), "endpoint": c.endpoint, "connections": self.connections, "rate": c.rate,
            "workers": c.workers, "sleep_s": c.sleep, "duration_s": float(c.duration), "server": c.server,
            "load": self.rows[0].measured.load, "predicted_requests": self.predicted_requests,
            "predicted_edge": self.predicted_edge, "predicted_errors": self.predicted_errors,
            "predicted_errors_edge": self.predicted_errors_edge,
            "predicted_requests_per_sec": self.predicted_requests_per_sec, "predicted_replies": self.predicted_replies,
            "predicted_timeouts": self.predicted_timeouts, "predicted_latency_median_s": self.predicted_latency_median_s,
            "capacity_per_s": self.capacity_per_s, "offered_fraction": self.offered_fraction,
            "threads_ignored": c.threads > 1, "runs": self.runs,
        }
        for name in RANGE_FIELDS:
            group.update(_flat(name, getattr(self, name)))
        group.update(
            bound_by=self.bound_by, bound_by_runs=self.bound_by_runs, large_spread=self.large_spread,
            measured_over_predicted=self.measured_over_predicted, as_predicted=self.as_predicted,
            cpu_bound=self.cpu_bound, connections_per_worker=self.connections_per_worker,
            peak_in_handler_per_worker=self.peak_in_handler_per_worker, rss_mib_per_worker=self.rss_mib_per_worker,
            server_completed=self.server_completed, expected_requests=self.expected_requests,
            expected_replies=self.expected_replies, expected_low=self.expected_low,
            peak_in_handler_max=self.peak_in_handler_max, peak_waiting_max=self.peak_waiting_max,
            errors_max=self.errors_max, worker_timeouts=self.worker_timeouts, workers_restarted=self.workers_restarted,
            restart_reasons=self.restart_reasons, thread_limit_seen=self.thread_limit_seen)
        if self.rows[0].measured.database:  # database cells only: the other runs' summaries stay as they were
            for name in DB_RANGE_FIELDS:
                group.update(_flat(name, getattr(self, name)))
            group.update(db_pool_peak_max=self.db_pool_peak_max,
                         predicted_errors_uncounted=self.predicted_errors_uncounted)
        group.update(rss_mib_per_worker_median=self.rss_mib_per_worker_median,
                     server_cpu_share=self.server_cpu_share, load_cpu_share=self.load_cpu_share)
        return {k: None if isinstance(v, float) and math.isinf(v) else v for k, v in group.items()}


RANGE_FIELDS = ["requests", "requests_ok", "requests_per_sec", "latency_avg_s", "latency_median_s", "timeouts",
                "client_timeouts", "offered", "replies", "non_2xx", "server_cpu_s", "load_cpu_s", "window_s",
                "in_flight_at_stop", "oldest_unanswered_s", "never_answered", "received", "pool_timeouts",
                "server_rss_mib", "max_share", "spread_index", "upstream_peak"]
DB_RANGE_FIELDS = ["db_refused", "db_errors", "db_active_start", "db_active_stop", "db_backends_stop"]


def _flat(name: str, value: Range) -> JsonDict:
    return {f"{name}_median": value.median, f"{name}_min": value.low, f"{name}_max": value.high}
