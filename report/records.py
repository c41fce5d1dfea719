"""The report's typed records: a cell's measured figures (Measured), its verdict against the model
(Verdict), both with the cell (CellResult), and a group of repetitions (Group, its figures Ranges).

Dicts exist only at the JSON and CSV boundary (export.py).
"""

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.bound import Bound
from core.cell import Cell
from core.endpoints import ENDPOINTS


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
class LoopSide:
    """The workers' event-loop clocks over the window (counters.py LoopClock): how late a probe that
    sleeps 20 ms woke, and where the loop was while it was stuck."""

    late_max_s: list[float]  # per worker, as ServerSide orders them (busiest first)
    late_p99_s: list[float]  # per worker: the bucket bound 99% of its wake-ups came within
    late_total_s: list[float]  # per worker: all its lateness added up
    stuck_s: dict[str, float]  # seconds stuck (no wake-up for counters' STUCK_S) by innermost frames, all workers
    stuck_after_s: float  # that threshold

    @property
    def worst(self) -> float:
        return max(self.late_max_s, default=0.0)


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
    loop: LoopSide | None = None  # None: counters from before the loop's clock


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
    def answered(self) -> int:
        if self.offered is not None:
            return self.replies or 0
        return self.requests_ok if self.requests_ok is not None else self.requests

    @property
    def server_cpu_per_request_s(self) -> float | None:
        """The server's CPU (all its processes) over the window per answered request."""
        return self.server_cpu_s / self.answered if self.server_cpu_s is not None and self.answered else None

    @property
    def load_cpu_per_request_s(self) -> float | None:
        return self.load_cpu_s / self.answered if self.load_cpu_s is not None and self.answered else None

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
    expected_low: int | None = None  # the band's lower end: late starts, one wave's CPU (None: no band)
    overflowed: bool = False  # the accept queue overflowed
    # The calibration (core/calibration.py) whose CPU per request the prediction used, and that cost
    calibration: str | None = None
    calibrated_cpu_per_request_s: float | None = None
    burst_low: int | None = None  # the band's lower end if every cycle stretches by one wave's CPU
    # Evidence beside it: how long one wave of the busiest worker (its connections, at most what its
    # limit lets in at once) keeps its loop busy at the cell's own CPU per request.
    wave_busy_s: float | None = None
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
    server_cpu_per_request_s: Range
    load_cpu_per_request_s: Range
    wave_busy_s: Range  # one wave of the busiest worker times the cell's CPU per request (Verdict's)
    loop_late_max_s: Range  # each run's latest wake-up over its workers
    loop_late_p99_s: Range  # each run's highest 99th percentile over its workers
    loop_stuck_s: dict[str, float]  # seconds stuck by innermost frames, over the runs

    @property
    def queries_database(self) -> bool:
        return ENDPOINTS[self.cell.endpoint].queries_database

    @property
    def ok(self) -> bool:
        """Every repetition matched the model's band."""
        return self.as_predicted == self.runs
