"""BACKENDS: what an endpoint waits on besides its own sleep, one entry each, like SERVERS: the HTTP
upstream the /*-http endpoints call and the PostgreSQL the /*-db endpoints query.

Each entry says which endpoints need it (their `waits_on` in core/endpoints.py), the port knob it
listens on, what benchmark.sh must install for it, what it starts once per run, and what it does
for each cell: start afresh or reset, and the settings it hands the app. --needs, the port checks,
run.json and each cell read this table; adding a backend (Redis, say) is one entry here, its
endpoints in core/endpoints.py and app.py, and its port knob in core/knobs.py.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

from core import files
from core.cell import Cell
from core.servers import UPSTREAM_SERVER
from core.sets import Settings

from .process import Failed, Lock

if TYPE_CHECKING:
    from .run import Run


@dataclass(frozen=True)
class Backend:
    waits_on: str  # the endpoints' `waits_on` that need it
    port_knob: str  # the knob that moves its port (core/knobs.py, with its offset from PORT)
    host: Callable[[Settings], str]  # where it listens
    packages: tuple[str, ...]  # the app's clients for it, recorded with their versions in run.json
    tools: tuple[str, ...]  # what benchmark.sh installs for it when it is missing (apt-get's name)
    # What benchmark.sh must install before the run (its package names), given whether the runner is
    # only asked (--needs) or is about to run: a missing tool is then one line and exit 2.
    missing: Callable[[bool], list[str]]
    # Started once per run, stopped on every way out: yields what the cells share (None: nothing).
    start: Callable[[Settings, Path, Lock], ContextManager[Any]]
    # For each cell that needs it, in the cell's stack: (the pid whose process tree is sampled as this
    # role, the settings it hands the app).
    for_cell: Callable[[Any, "Run", ExitStack, Cell, Path], tuple[int, dict[str, str]]]

    def serves(self, cell: Cell) -> bool:
        return cell.waits_on == self.waits_on


# ---------------------------------------------------------------- the upstream: the same app's /async


def upstream_for_cell(_: None, run: "Run", stack: ExitStack, cell: Cell, cell_dir: Path) -> tuple[int, dict[str, str]]:
    """A fresh uvicorn with one worker per cell, sleeping as the cell does."""
    stats = files.CellFiles(cell_dir).stats("upstream") if cell.stats else None
    if stats:
        stats.mkdir()
    upstream = Cell(server=UPSTREAM_SERVER, worker_class="-", workers=1, sleep=cell.sleep)
    settings = {"SLEEP_SECONDS": f"{cell.sleep:g}", **({"STATS_DIR": str(stats)} if stats else {})}
    port = run.s.ports[BACKENDS["upstream"].port_knob]
    pid = run.serve(stack, "upstream", upstream, port, settings, cell_dir).pid
    return pid, {"UPSTREAM_URL": f"http://{run.s.host}:{port}/async"}


# ---------------------------------------------------------------- PostgreSQL: one throwaway cluster a run


def postgres_missing(asked_only: bool) -> list[str]:
    """Its tools while benchmark.sh is still to install them; a PG_BINDIR without initdb, or
    PostgreSQL still missing when the run starts, is one line and exit 2."""
    from .database import find_bindir

    given = os.environ.get("PG_BINDIR")
    if find_bindir(given):
        return []
    if given:
        raise Failed(f"initdb and postgres not found: PG_BINDIR={given}")
    if not asked_only:
        raise Failed(
            "PostgreSQL's initdb and postgres are not installed; install them with: sudo apt-get install "
            "-y postgresql (Debian/Ubuntu) or brew install postgresql@17 (macOS)"
        )
    return list(BACKENDS["database"].tools)


@contextmanager
def postgres_cluster(s: Settings, run_dir: Path, lock: Lock) -> Iterator[Any]:
    from .database import cluster, find_bindir

    bindir = find_bindir(os.environ.get("PG_BINDIR"))
    assert bindir is not None  # postgres_missing said so before the run began
    with cluster(bindir, s.ports[BACKENDS["database"].port_knob], run_dir, lock) as database:
        yield database


def postgres_for_cell(
    database: Any, run: "Run", stack: ExitStack, cell: Cell, cell_dir: Path
) -> tuple[int, dict[str, str]]:
    """The cluster the run started, with every backend of the last cell ended: this cell gets every
    connection. The app's pool settings are the cell's."""
    database.end_backends()
    if cell.path:  # your app: the address in each form apps read it
        return database.pid, database.environment()
    settings = {"DATABASE_URL": database.url}
    for name in ("db_pool_size", "db_max_overflow", "db_pool_timeout"):
        if getattr(cell, name) is not None:
            settings[name.upper()] = cell.text(name)
    return database.pid, settings


BACKENDS = {
    "upstream": Backend(
        waits_on="upstream",
        port_knob="UPSTREAM_PORT",
        host=lambda s: s.host,
        packages=("httpx", "httpcore"),
        tools=(),
        missing=lambda asked_only: [],
        start=lambda s, run_dir, lock: nullcontext(),
        for_cell=upstream_for_cell,
    ),
    # PostgreSQL listens on 127.0.0.1 whatever HOST says: only the app connects to it.
    "database": Backend(
        waits_on="database",
        port_knob="DB_PORT",
        host=lambda s: "127.0.0.1",
        packages=("sqlalchemy", "psycopg", "asyncpg", "greenlet"),
        tools=("postgresql",),
        missing=postgres_missing,
        start=postgres_cluster,
        for_cell=postgres_for_cell,
    ),
}


def needed(cells: list[Cell]) -> dict[str, Backend]:
    """The backends some of these cells wait on, by their role's name."""
    return {name: backend for name, backend in BACKENDS.items() if any(backend.serves(c) for c in cells)}
