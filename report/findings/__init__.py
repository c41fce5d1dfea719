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


# Set by set, in the order of the per-set pages; each module lists its own (a new finding is one
# entry there, and a flip test in tests/test_claims.py).
FINDINGS: list[Finding[Any]] = [
    f
    for module in (seed, threads, concurrency, worker_killed, overhead, workers, servers, upstream, openloop, db)
    for f in module.FINDINGS
]
