"""The workers set's finding: UvicornWorker against gunicorn's own `asgi` worker."""

from dataclasses import dataclass
from typing import Any

from core.bound import Bound
from core.servers import DEFAULT_WORKER_CLASS

from ..records import Group
from ..runs import Run, Runs
from .base import Finding, Sentence
from .common import cells_where, find

OTHER_CLASS = "asgi"  # gunicorn's own ASGI worker, beside the default


@dataclass
class WorkerClass:
    run: Run
    most: int | None  # the set's largest connection count with a sleep
    heavy: list[tuple[Group, Group]]  # (UvicornWorker, asgi) at that count and with no sleep
    modest: list[tuple[Group, Group]]  # the rest
    uvicorn_more: list[tuple[Group, Group]]  # heavy pairs where every UvicornWorker run is above every asgi run
    asgi_more: list[tuple[Group, Group]]  # and the reverse


def worker_class_cells(runs: Runs) -> WorkerClass:
    run = runs["workers"]
    pairs = [
        (
            g,
            find(
                run.groups,
                worker_class=OTHER_CLASS,
                workers=g.cell.workers,
                threads=g.cell.threads,
                endpoint=g.cell.endpoint,
                connections=g.cell.connections,
                sleep=g.cell.sleep,
            ),
        )
        for g in cells_where(run.groups, worker_class=DEFAULT_WORKER_CLASS)
    ]
    # Named by their parameters: the set's largest connection count and its no-sleep cells are the heavy ones.
    most = max((u.connections or 0 for u, _ in pairs if u.cell.sleep > 0), default=None)
    heavy = [(u, n) for u, n in pairs if u.cell.sleep == 0 or u.connections == most]
    modest = [(u, n) for u, n in pairs if (u, n) not in heavy]
    # "Differ": every run of one above every run of the other; anything less is within what runs vary by.
    return WorkerClass(
        run,
        most,
        heavy,
        modest,
        [(u, n) for u, n in heavy if u.requests.above(n.requests)],
        [(u, n) for u, n in heavy if n.requests.above(u.requests)],
    )


def worker_class_check(c: WorkerClass) -> bool:
    return bool(c.modest) and bool(c.heavy) and all(u.ok and n.ok for u, n in c.modest) and not c.asgi_more


def worker_class_sentence(c: WorkerClass) -> Sentence:
    def cell(u: Group) -> str:
        return f"{u.cell.label()} `/{u.cell.endpoint}`, {u.connections} connections, sleep {u.cell.sleep:g} s"

    return Sentence(
        f"Worker class: the same where the model explains both; at {c.most} connections and with no sleep, "
        "UvicornWorker answered more than gunicorn's `asgi` worker wherever the two differ beyond their runs.",
        "Each cell as the model predicts with both classes: "
        + "; ".join(f"{cell(u)}: {u.requests.text()} vs {n.requests.text()} ({u.bound_by})" for u, n in c.modest)
        + f". At the set's heavy cells, UvicornWorker vs `asgi`, on {c.run.here()}: "
        + "; ".join(
            f"{cell(u)}: {u.requests_per_sec.text()} vs {n.requests_per_sec.text()} req/s (UvicornWorker: "
            f"{u.bound_by}; `asgi`: {n.bound_by})"
            for u, n in c.heavy
        )
        + f". Every UvicornWorker run above every `asgi` run in {len(c.uvicorn_more)} of {len(c.heavy)} of them, every "
        f"`asgi` run above every UvicornWorker run in {len(c.asgi_more)}; the rest overlap."
        + (
            " Where a cell is marked unexplained, no CPU was measured saturated: see the open questions below."
            if any(r.verdict.bound is Bound.UNEXPLAINED for r in c.run.rows)
            else ""
        ),
        f"UvicornWorker above `asgi` in every run in {len(c.uvicorn_more)} of {len(c.heavy)} heavy cells, the "
        f"reverse in {len(c.asgi_more)}",
    )


WORKER_CLASS = Finding("worker_class", ("workers",), worker_class_cells, worker_class_check, worker_class_sentence)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [WORKER_CLASS]
