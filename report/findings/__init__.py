"""The README's findings, one module per set (findings/<set>.py), each a Finding of three parts:
which cells it reads, the check those cells must pass, and the sentence it prints with their
figures. A finding whose check fails is printed with what was measured and "not reproduced in
this run". No measured figure is typed here: everything comes from the committed runs, the
model's constants, or ORIGINAL (the published figures of the experiment this project re-runs).
"""

from typing import Any

from core.sets import REFERENCE

from ..runs import Runs
from . import concurrency, db, openloop, overhead, seed, servers, threads, upstream, worker_killed, workers
from .base import NOT_REPRODUCED, Claim, Finding, Missing, Sentence

__all__ = [
    "NOT_REPRODUCED",
    "Claim",
    "Finding",
    "Missing",
    "Sentence",
    "FINDINGS",
    "evaluate",
    "concurrency",
    "db",
    "openloop",
    "overhead",
    "seed",
    "servers",
    "threads",
    "upstream",
    "worker_killed",
    "workers",
]


def evaluate(runs: Runs, findings: "list[Finding[Any]] | None" = None) -> list[Claim | str]:
    """Each finding as a Claim, or a line saying which committed run or cell it still needs."""
    out: list[Claim | str] = []
    for finding in findings or FINDINGS:
        try:
            out.append(finding.evaluate(runs))
        except KeyError as missing:
            if missing.args[0] in runs or missing.args[0] not in [entry.name for entry in REFERENCE]:
                raise  # a mistyped key is a bug, not a run still to take
            out.append(f"- *{finding.name.replace('_', ' ')}*: needs the `{missing.args[0]}` reference run.")
        except Missing as missing:
            out.append(f"- *{finding.name.replace('_', ' ')}*: {missing} in the committed runs.")
    return out


# In the order the README lists them.
FINDINGS: list[Finding[Any]] = [
    seed.CLIENT_BOUND_ASYNC,
    seed.ONE_WORKER_DEF,
    seed.THREADS_FLAG,
    threads.THREAD_LIMITER_KNOB,
    seed.SPREAD_CAPS_DEF,
    concurrency.ASYNC_WINS,
    concurrency.WORKERS_FOR_ASYNC,
    concurrency.WORKERS_FOR_DEF,
    concurrency.BLOCKING_ASYNC,
    worker_killed.WORKER_KILLED,
    overhead.THREAD_HOP,
    workers.WORKER_CLASS,
    servers.REUSE_PORT,
    servers.WHICH_SERVER,
    upstream.POOL_LIMIT,
    upstream.POOL_QUEUE_COSTS_CPU,
    upstream.SYNC_HTTP,
    upstream.POOL_RAISED,
    upstream.UPSTREAM_AGREES,
    openloop.OPEN_LOOP,
    openloop.OPEN_LOOP_SPREAD,
    db.DB_DEF_POOL,
    db.DB_ASYNC_POOL,
    db.DB_POOL_TIMEOUT,
    db.DB_MAX_CONNECTIONS,
    db.DB_BLOCKING,
    db.DB_YIELD_DEPENDENCY,
]
