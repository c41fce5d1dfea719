"""The worker-killed run's finding: gunicorn's heartbeat against a loop that blocks again and again."""

from dataclasses import dataclass
from typing import Any

from core.servers import GUNICORN_TIMEOUT_S, flag

from ..records import Group
from ..runs import Run, Runs
from .base import Finding, Sentence


@dataclass
class Killed:
    run: Run
    g: Group  # its one cell
    timeout: str  # gunicorn's --timeout in that run, as it read it


def worker_killed_cells(runs: Runs) -> Killed:
    run = runs["worker-killed"]
    (g,) = run.groups
    return Killed(run, g, f"{flag(run.parameters['gunicorn_cmd_args'], '--timeout', GUNICORN_TIMEOUT_S):g}")


def worker_killed_check(c: Killed) -> bool:
    return (
        c.g.cell.sleep < float(c.timeout)
        and bool(c.run.rows)
        and all(r.measured.worker_timeouts > 0 and r.measured.errors > 0 for r in c.run.rows)
    )  # in every run


def worker_killed_sentence(c: Killed) -> Sentence:
    run, g = c.run, c.g
    return Sentence(
        "gunicorn kills a worker whose loop blocks again and again, even when no single block outlasts `--timeout`.",
        f"In [`{run.run_dir.name}`]({run.run_dir.name}/) (`GUNICORN_CMD_ARGS={run.parameters['gunicorn_cmd_args']}`, "
        f"{g.connections} connections, `/async-blocking` sleeping {g.cell.sleep:g} s per request) gunicorn logged "
        f"{g.worker_timeouts} `WORKER TIMEOUT` over {g.runs} runs and wrk saw up to {g.errors_max} errors; "
        f"each request blocks the loop for the {g.cell.sleep:g} s it was set to sleep (as configured, not measured), "
        f"less than the {c.timeout} s timeout. Why: see "
        f"[the heartbeat](#why-a-blocked-worker-is-killed).",
        f"{g.worker_timeouts} WORKER TIMEOUT in {g.runs} runs, each request set to block {g.cell.sleep:g} s of "
        f"{c.timeout} s",
    )


WORKER_KILLED = Finding(
    "worker_killed", ("worker-killed",), worker_killed_cells, worker_killed_check, worker_killed_sentence
)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [WORKER_KILLED]
