"""The README's findings, one module per set (findings/<set>.py), each a Finding of three parts:
which cells it reads, the check those cells must pass, and the sentence it prints with their
figures. A finding whose check fails is printed with what was measured and "not reproduced in
this run". No measured figure is typed here: everything comes from the committed runs, the
model's constants, or ORIGINAL (the published figures of the experiment this project re-runs).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from core.sets import REFERENCE

from ..runs import Runs

NOT_REPRODUCED = "not reproduced in this run"
Cells = TypeVar("Cells")


@dataclass(frozen=True)
class Sentence:
    title: str  # what the data should show, in bold
    evidence: str  # the figures it rests on, printed whether it holds or not
    key: str  # its key figure, for the README's one line


@dataclass
class Claim:
    title: str
    holds: bool
    evidence: str
    sets: tuple[str, ...]
    key: str
    finding: str  # the finding's name: its anchor on its page

    @property
    def page(self) -> str:
        return self.sets[0]

    def markdown(self) -> str:
        if self.holds:
            return f"- **{self.title}** {self.evidence}"
        return f"- **{self.title}** ✗ {NOT_REPRODUCED}: {self.evidence}"


class Missing(Exception):
    """A finding's run, or a cell it needs, is not among the committed runs."""


@dataclass(frozen=True)
class Finding(Generic[Cells]):
    name: str
    sets: tuple[str, ...]  # the committed runs it reads; its page is the first one's
    cells: Callable[[Runs], Cells]  # which cells (Missing if they are not there)
    check: Callable[[Cells], bool]
    sentence: Callable[[Cells], Sentence]

    def evaluate(self, runs: Runs) -> Claim:
        chosen = self.cells(runs)
        said = self.sentence(chosen)
        return Claim(said.title, self.check(chosen), said.evidence, self.sets, said.key, self.name)


def evaluate(runs: Runs, findings: "list[Finding] | None" = None) -> list[Claim | str]:
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


from . import concurrency, db, openloop, overhead, seed, servers, threads, upstream, worker_killed, workers  # noqa: E402

# In the order the README lists them.
FINDINGS: list[Finding] = [
    seed.CLIENT_BOUND_ASYNC, seed.ONE_WORKER_DEF, seed.THREADS_FLAG, threads.THREAD_LIMITER_KNOB, seed.SPREAD_CAPS_DEF,
    concurrency.ASYNC_WINS, concurrency.WORKERS_FOR_ASYNC, concurrency.WORKERS_FOR_DEF, concurrency.BLOCKING_ASYNC,
    worker_killed.WORKER_KILLED, overhead.THREAD_HOP, workers.WORKER_CLASS, servers.REUSE_PORT, servers.WHICH_SERVER,
    upstream.POOL_LIMIT, upstream.POOL_QUEUE_COSTS_CPU, upstream.SYNC_HTTP, upstream.POOL_RAISED,
    upstream.UPSTREAM_AGREES, openloop.OPEN_LOOP, openloop.OPEN_LOOP_SPREAD,
    db.DB_DEF_POOL, db.DB_ASYNC_POOL, db.DB_POOL_TIMEOUT, db.DB_MAX_CONNECTIONS, db.DB_BLOCKING,
    db.DB_YIELD_DEPENDENCY,
]
