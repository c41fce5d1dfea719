"""What several findings share: choosing cells by their Cell's fields, and a few ways to say a figure."""

import statistics
from collections.abc import Iterable
from typing import Any

from core.cell import Cell
from core.endpoints import HTTPX_MAX_CONNECTIONS
from core.model import DB_POOL, DEFAULT_THREAD_LIMIT
from core.servers import DEFAULT_WORKER_CLASS

from ..records import CellResult, Group, Range
from ..tables import format_percent, predicted_text
from .base import Missing

SAME = 0.10  # two figures this close (of the larger) are "the same" where a run-to-run spread is unknown

# The original experiment's published figures: requests in 1 min, req/s, latency avg, timeouts, by
# (workers, threads, endpoint). github.com/ajndkr/fastapi-concurrency-tests, README (one run per
# cell, hardware not stated).
ORIGINAL = {
    (1, 1, "sync"): (200, 3.33, "18.04 s", 50),
    (1, 1, "async"): (500, 8.33, "10.01 s", 0),
    (1, 4, "sync"): (200, 3.33, "17.80 s", 53),
    (1, 4, "async"): (500, 8.33, "10.00 s", 0),
    (4, 1, "sync"): (500, 8.33, "10.00 s", 0),
    (4, 1, "async"): (500, 8.33, "10.00 s", 0),
    (4, 4, "sync"): (500, 8.33, "10.01 s", 0),
    (4, 4, "async"): (500, 8.33, "10.00 s", 0),
}
# A cell with no knob set beyond its configuration: what "1w x 1t" names in the tables (gunicorn,
# its default worker class, no flag added by hand, every library's own limits).
PLAIN: dict[str, Any] = dict(
    server="gunicorn",
    worker_class=DEFAULT_WORKER_CLASS,
    server_args="",
    thread_limit=None,
    http_pool=None,
    db_pool_size=None,
    db_max_overflow=None,
    db_pool_timeout=None,
    sniffio=False,
    loop_clock=True,
)


def plain(workers: int, threads: int = 1, **where: Any) -> dict[str, Any]:
    """The fields of the cell the tables call "Nw x Tt", and WHERE's."""
    return {**PLAIN, "workers": workers, "threads": threads, **where}


def matches(cell: Cell, where: dict[str, Any]) -> bool:
    return all(getattr(cell, name) == value for name, value in where.items())


def cells_where(groups: Iterable[Group], **where: Any) -> list[Group]:
    return [g for g in groups if matches(g.cell, where)]


def find(groups: Iterable[Group], **where: Any) -> Group:
    """The one group whose cell has these fields."""
    found = cells_where(groups, **where)
    if len(found) != 1:
        raise Missing(f"one cell with {where}, found {len(found)}")
    return found[0]


def rows_where(rows: Iterable[CellResult], **where: Any) -> list[CellResult]:
    return [r for r in rows if matches(r.cell, where)]


def run_spread(g: Group) -> float:
    return (g.requests.high or 0) - (g.requests.low or 0) + (g.predicted_edge or 0)


def predicted(g: Group) -> str:
    return predicted_text(g, spread_seen=False)


def pct(share: float | None) -> str:
    return format_percent(share)


def in_ms(seconds: Range, digits: int = 2) -> str:
    """A Range of seconds as milliseconds: '0.52 (0.50-0.55)'."""
    return Range(*(None if v is None else 1000 * v for v in (seconds.median, seconds.low, seconds.high))).text(digits)


def cpu_s_per_request(rows: Iterable[CellResult]) -> float | None:
    """Median over the runs of the server's CPU seconds per answered (2xx) request."""
    values = [
        r.measured.server_cpu_s / r.measured.requests_ok
        for r in rows
        if r.measured.server_cpu_s is not None and r.measured.requests_ok
    ]
    return statistics.median(values) if values else None


def same(a: float, b: float, spread: float = 0.0) -> bool:
    return abs(a - b) <= max(SAME * max(abs(a), abs(b)), spread)


def span(values: list[float]) -> str:
    low, high = round(min(values)), round(max(values))
    return f"{low}" if low == high else f"{low}–{high}"


def spread_of(row: CellResult) -> list[int]:
    """The connections each worker took (busiest first): [] without counters."""
    return row.measured.connections_per_worker or []


__all__ = ["DB_POOL", "DEFAULT_THREAD_LIMIT", "HTTPX_MAX_CONNECTIONS", "ORIGINAL", "PLAIN", "SAME"]
