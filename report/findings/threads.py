"""The threads set's finding: anyio's thread limiter is the knob that moves `def`."""

from dataclasses import dataclass
from typing import Any

from core.sets import RAISED_THREAD_LIMITS

from ..records import Group
from ..runs import Runs
from .base import Finding, Sentence
from .common import DEFAULT_THREAD_LIMIT, find, plain, predicted


@dataclass
class Limits:
    limits: list[int]
    cells: list[Group]  # one worker, /sync, at each limit


def thread_limiter_cells(runs: Runs) -> Limits:
    threads = runs["threads"].groups
    return Limits(
        [DEFAULT_THREAD_LIMIT, *RAISED_THREAD_LIMITS],
        [find(threads, **plain(1, 1, endpoint="sync", thread_limit=limit)) for limit in (None, *RAISED_THREAD_LIMITS)],
    )


def thread_limiter_check(c: Limits) -> bool:
    # Each as the model predicts with the peak at its limit, and every run of a higher limit above every run of a lower.
    return all(g.ok and g.peak_in_handler_max == limit for g, limit in zip(c.cells, c.limits)) and all(
        high.requests.above(low.requests) for low, high in zip(c.cells, c.cells[1:])
    )


def thread_limiter_sentence(c: Limits) -> Sentence:
    base, limits = c.cells[0], " / ".join(map(str, c.limits))
    return Sentence(
        "Raising anyio's thread limiter raises the ceiling for `def`.",
        f"With `THREAD_LIMIT` {limits} (one worker, {base.connections} connections, "
        f"{base.cell.sleep:g} s sleep): {' / '.join(g.requests.text() for g in c.cells)} requests, every run of a "
        f"higher limit above every run of a lower; peaks {' / '.join(str(g.peak_in_handler_max) for g in c.cells)} "
        f"inside the handler, each cell as the model predicts ({' / '.join(predicted(g) for g in c.cells)}).",
        f"THREAD_LIMIT {limits}: {' / '.join(format(g.requests_per_sec.median, '.1f') for g in c.cells)} req/s",
    )


THREAD_LIMITER_KNOB = Finding(
    "thread_limiter_knob", ("threads",), thread_limiter_cells, thread_limiter_check, thread_limiter_sentence
)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [THREAD_LIMITER_KNOB]
