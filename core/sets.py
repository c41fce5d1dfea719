"""SETS: each experiment set is one small function that returns its cells, with its defaults
beside it; --list, --reference and the README's set descriptions read this table. REFERENCE:
the runs the README uses. settings.py turns the knobs into checked values."""

import datetime
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .calibration import calibration_cells
from .cell import Cell
from .endpoints import ANYIO_THREAD_LIMIT
from .knobs import KNOBS, MACHINE_KNOBS, BadInput
from .model import offered_capacity
from .servers import H11_WORKER_CLASS, SERVERS
from .settings import (
    PER_CELL_OVERHEAD_S,
    Settings,
    cell_seconds,
    check_open_files,
    minutes,
    read_settings,
    warmup_for,
    wrapped,
)

__all__ = ["PER_CELL_OVERHEAD_S", "Settings", "cell_seconds", "minutes", "wrapped"]  # for the runner, from here

FAST = {"SLEEP_SECONDS": "1", "DURATION": "10s", "TIMEOUT": "10s"}  # 1 s waits, 10 s cells


@dataclass(frozen=True)
class Set:
    purpose: str  # one line, for --help and the README
    defaults: dict[str, str]  # knobs this set sets unless the environment does
    cells: Callable[[Settings], list[Cell]]
    # httperf at fixed rates, not wrk's connections (SCALE shrinks only the duration; sleep > 0: settings.py)
    open_loop: bool = False
    your_app: bool = False  # it loads APP's PATHS, not app.py's endpoints: no reference run of its own


RAISED_THREAD_LIMITS = (100, 400)  # the threads set's THREAD_LIMIT cells besides the knob's own


def threads_cells(s: Settings) -> list[Cell]:
    cells = []
    for connections in s.connections:
        cells += [
            s.cell(endpoint="sync", connections=connections, thread_limit=limit)
            for limit in (s.base.thread_limit, *RAISED_THREAD_LIMITS)
        ]
        cells.append(s.cell(endpoint="sync", connections=connections, threads=4))
    return cells


def workers_cells(s: Settings) -> list[Cell]:
    """Client-bound first, then where the server is the limit (4000 connections; no sleep)."""
    cells = []
    for worker_class in (s.base.worker_class, "asgi"):
        for w, t in s.configs:
            one = dict(server="gunicorn", worker_class=worker_class, workers=w, threads=t)
            cells += [s.cell(**one, endpoint=e, connections=c) for e in s.endpoints for c in s.connections]
            cells += [
                s.cell(**one, endpoint="async", connections=4000),
                s.cell(**one, endpoint="async", connections=64, sleep=0.0),
            ]
    # uvicorn's pure-Python HTTP parser (h11): one loop takes a wave of 1000 requests in bursts, busy
    # for a good part of each cycle while the CPU averaged over the cell looks idle.
    h11 = dict(server="gunicorn", worker_class=H11_WORKER_CLASS, workers=1, threads=1)
    return cells + [s.cell(**h11, endpoint="async", connections=1000)]


def app_cells(s: Settings) -> list[Cell]:
    """Each of APP's PATHS at each config and number of connections: the first, 1 connection on 1
    worker, gives the time one request takes alone (S), which the diagnosis reads the rest against."""
    return [
        s.cell(
            workers=w, threads=t, endpoint="app", path=r.path, method=r.method, body=r.body, connections=c, sleep=0.0
        )
        for r in s.requests
        for w, t in s.configs
        for c in s.connections
    ]


def server_variants() -> list[tuple[str, str]]:
    """(server, worker class) for every entry of SERVERS, a server's other worker classes after its
    whole family (gunicorn, gunicorn-reuse-port, then gunicorn's asgi worker)."""
    variants = [(name, server.worker_classes[0]) for name, server in SERVERS.items()]
    for name, server in SERVERS.items():
        for worker_class in server.worker_classes[1:]:
            last = max(i for i, (other, _) in enumerate(variants) if other.startswith(name))
            variants.insert(last + 1, (name, worker_class))
    return variants


def servers_cells(s: Settings) -> list[Cell]:
    """Every server and worker class at the seed's load (1 s sleep, 100 connections), then sleep 0."""
    cells = []
    for w, t in s.configs:
        for name, worker_class in server_variants():
            one = dict(server=name, worker_class=worker_class, workers=w, threads=1 if worker_class == "-" else t)
            for endpoint in ("sync", "async"):
                cells += [
                    s.cell(**one, endpoint=endpoint, connections=100),
                    s.cell(**one, endpoint=endpoint, connections=256, sleep=0.0),
                ]
    return cells


def overhead_cells(s: Settings) -> list[Cell]:
    """The bare app, then with the counters, with and without the event loop's clock: what each costs."""
    counted = [
        s.cell(endpoint=e, connections=s.connections[0], stats=True, loop_clock=clock)
        for clock in (False, True)
        for e in s.endpoints
    ]
    return s.grid() + counted


def upstream_cells(s: Settings) -> list[Cell]:
    # The pool is the ceiling for /async-http: raise it and the ceiling moves.
    return s.grid() + [
        s.cell(workers=1, threads=1, http_pool=400, endpoint="async-http", connections=s.connections[-1]),
        # sniffio importable, as before anyio 4.11: httpcore no longer retries a failed import per pooled
        # request. Beside the grid's same cells, where a queue waits behind the pool.
        *(
            s.cell(workers=w, threads=1, endpoint="async-http", connections=s.connections[-1], sniffio=True)
            for w in (1, 4)
        ),
    ]


def db_cells(s: Settings) -> list[Cell]:
    one = dict(workers=1, threads=1)
    return s.grid() + [
        # The pool raised to 40 + 0: the ceiling of `def` moves to the threads.
        s.cell(**one, endpoint="sync-db", connections=100, db_pool_size=40, db_max_overflow=0),
        # 8 workers x (5 + 10) = 120 connections, more than PostgreSQL's 100 - 3 for an ordinary role.
        s.cell(workers=8, threads=1, endpoint="async-db", connections=400),
        # A short pool timeout (between the first and second wave's wait): waiting turns into errors.
        *(
            s.cell(**one, endpoint=e, connections=100, db_pool_timeout=float(f"{1.5 * s.base.sleep:g}"))
            for e in ("sync-db", "async-db")
        ),
        # fastapi/fastapi#3205's shape: `def` with a sync yield dependency, far more connections than threads.
        s.cell(**one, endpoint="sync-db", connections=1000),
    ]


def openloop_cells(s: Settings) -> list[Cell]:
    b = s.base
    return [
        s.cell(
            workers=w,
            threads=t,
            endpoint=e,
            connections=None,
            rate=float(
                f"{fraction * offered_capacity(e, w, b.sleep, b.thread_limit or ANYIO_THREAD_LIMIT, b.server):g}"
            ),
        )
        for w, t in s.configs
        for e in s.endpoints
        for fraction in s.rates
    ]


SETS = {
    "seed": Set("the original experiment, as it was run: CONFIGS x ENDPOINTS at CONNECTIONS", {}, Settings.grid),
    "concurrency": Set(
        "how far each endpoint goes with more connections, 1 and 4 workers",
        {
            **FAST,
            "CONNECTIONS": "10 40 100 400 1000 4000",
            "CONFIGS": "1x1 4x1",
            "ENDPOINTS": "sync async async-blocking",
        },
        Settings.grid,
    ),
    "threads": Set(
        "anyio's thread limit (THREAD_LIMIT, 100, 400) against gunicorn's `--threads`",
        {**FAST, "CONNECTIONS": "1000"},
        threads_cells,
    ),
    "workers": Set(
        "UvicornWorker against gunicorn's `asgi` worker, client-bound and server-bound; uvicorn's h11 worker in bursts",
        {**FAST, "CONFIGS": "1x1 4x1"},
        workers_cells,
    ),
    # No sleep: only the CPU limits. The bare app (STATS=0), then with the counters with and without the
    # loop clock (overhead_cells): what each costs, pinned.
    "overhead": Set(
        "no sleep, one worker: the CPU cost of the thread hop (def vs async def), the counters and the loop clock",
        {**FAST, "SLEEP_SECONDS": "0", "CONNECTIONS": "64", "CONFIGS": "1x1", "STATS": "0", "PIN": "1"},
        overhead_cells,
    ),
    # 3 runs by default: the spread varies from run to run, and that is the point.
    "servers": Set(
        "the connection spread under every server and worker class in core/servers.py, 4 workers",
        {**FAST, "CONFIGS": "4x1", "REPEAT": "3"},
        servers_cells,
    ),
    "upstream": Set(
        "a real HTTP call per request to a second server, the HTTP client's pool, and sniffio importable or not",
        {
            **FAST,
            "CONNECTIONS": "10 40 100 400 1000",
            "CONFIGS": "1x1 4x1",
            "ENDPOINTS": "sync-http async-http async-http-blocking",
        },
        upstream_cells,
    ),
    "db": Set(
        "a real PostgreSQL behind SQLAlchemy's pool: def, async def and a sync session in async def",
        {
            **FAST,
            "CONNECTIONS": "10 40 100 400",
            "CONFIGS": "1x1 4x1",
            "ENDPOINTS": "sync-db async-db async-db-blocking",
        },
        db_cells,
    ),
    "app": Set(
        "your own ASGI app (APP or --app): each of its PATHS at 1 to 400 connections, and the limit that binds",
        {
            "CONFIGS": "1x1 4x1",
            "CONNECTIONS": "1 10 40 100 400",
            "WRK_THREADS": "1",
            "DURATION": "10s",
            "TIMEOUT": "10s",
        },
        app_cells,
        your_app=True,
    ),
    # httperf spins on a core of its own: pinned, it leaves the other to the server.
    "openloop": Set(
        "a fixed arrival rate (httperf) at RATES x capacity: what users see above capacity",
        {
            **FAST,
            "DURATION": "20s",
            "TIMEOUT": "3s",
            "CONFIGS": "1x1 4x1",
            "ENDPOINTS": "sync async async-blocking",
            "PIN": "1",
        },
        openloop_cells,
        open_loop=True,
    ),
}


@dataclass(frozen=True)
class Reference:
    """One run the README uses, taken with `KNOBS ./benchmark.sh ARGS`, one at a time, 3 runs a cell."""

    set: str
    label: str = "reference"
    knobs: dict[str, str] = field(default_factory=dict)
    purpose: str = ""  # a run of its own's, for its page (a set's run has its set's)

    @property
    def name(self) -> str:
        """Its page, and its key among the committed runs: the set, or the label of a run of its own."""
        return self.set if self.label == "reference" else self.label

    @property
    def args(self) -> list[str]:
        # A run of its own is the seed set's with knobs of its own: its command names no set.
        return [*(["--set", self.set] if self.label == "reference" else []), "--repeat", "3", "--label", self.label]

    @property
    def directories(self) -> str:
        """The glob of its run directories under results/."""
        return f"*-{self.set}-{self.label}"

    @property
    def words(self) -> list[str]:
        return [*(f"{k}={shlex.quote(v)}" for k, v in self.knobs.items()), "./benchmark.sh", *self.args]

    def command(self) -> str:
        return " ".join(self.words)


# Every set's reference run profiles each CPU-bound or unexplained cell once more, after the measured runs.
PROFILED = {"PROFILE": "1"}
SAMPLE_APP = dict(APP="shop:app", APP_DIR="tests/sample_app", APP_DB="1", CONNECTIONS="1 10 100", DURATION="5s")
SAMPLE_APP["PATHS"] = "/health /catalogue /orders/1/receipt /me /orders/1"
REFERENCE = [Reference(name, knobs=PROFILED) for name, s in SETS.items() if not s.your_app] + [
    Reference("app", "sample", SAMPLE_APP, "--app on a sample app (tests/sample_app/shop.py): what limits each path"),
    Reference(
        "seed",
        "worker-killed",
        {
            **PROFILED,
            "GUNICORN_CMD_ARGS": "--timeout=10",
            "SLEEP_SECONDS": "2",
            "DURATION": "40s",
            "TIMEOUT": "10s",
            "CONFIGS": "1x1",
            "ENDPOINTS": "async-blocking",
            "CONNECTIONS": "20",
        },
        "gunicorn's heartbeat against an `async def` that blocks its loop again and again",
    ),
]


# ---------------------------------------------------------------- the knobs, checked


def knob_texts(
    set_name: str, environ: Mapping[str, str], scale: str | None = None, repeat: str | None = None
) -> dict[str, str]:
    """Each knob's text: the environment's, else the set's default, else the seed's."""
    if set_name not in SETS:
        raise BadInput(f"unknown set '{set_name}' ({' '.join(SETS)})")
    text = {name: environ.get(name, SETS[set_name].defaults.get(name, knob.default)) for name, knob in KNOBS.items()}
    if scale is not None:
        text["SCALE"] = scale
    if repeat is not None:
        text["REPEAT"] = repeat
    port = int("".join(c for c in text["PORT"] if c.isdigit()) or 0)
    for name, knob in KNOBS.items():
        if knob.port_after is not None and name not in environ:
            text[name] = str(port + knob.port_after)
    return text


def settings(
    set_name: str, environ: Mapping[str, str] = os.environ, scale: str | None = None, repeat: str | None = None
) -> Settings:
    """The knobs of a run of SET_NAME, checked (BadInput on the first that is wrong)."""
    texts = knob_texts(set_name, environ, scale, repeat)  # (an unknown set's name is refused here)
    return read_settings(set_name, texts, SETS[set_name].open_loop, SETS[set_name].your_app)


def cells(s: Settings) -> list[Cell]:
    """The set's cells for one round, each checked, with what the knobs add to every cell."""
    made = []
    reuse_port = "--reuse-port" in shlex.split(s.server_args)
    for cell in SETS[s.set].cells(s):
        extra: dict[str, Any] = {}
        if cell.server.startswith("gunicorn") and s.server_args:
            extra["server_args"] = s.server_args  # what reaches gunicorn is shown wherever the cell is
            if reuse_port:
                extra["server"] = "gunicorn-reuse-port"
        cell = replace(cell, warmup=warmup_for(cell, s), **extra)
        check_cell(cell)
        made.append(cell)
    return made


def check_cell(cell: Cell) -> None:
    if cell.connections is not None:
        check_open_files(cell.connections)
    elif cell.rate is not None and cell.rate * cell.timeout >= 1000:
        raise BadInput(
            f"rate {cell.rate:g}/s x timeout {cell.timeout}s keeps about {cell.rate * cell.timeout:g} "
            "connections open; httperf's select() allows about 1000: lower RATES or TIMEOUT"
        )


# ---------------------------------------------------------------- the plan


def changed_knobs(set_name: str, texts: dict[str, str]) -> dict[str, str]:
    """The knobs in TEXTS that differ from SET_NAME's defaults (SCALE and REPEAT aside: --quick and
    --repeat say those): shown wherever the run is, and with the arguments they replay it."""
    defaults = knob_texts(set_name, {})
    return {
        name: texts[name]
        for name in KNOBS
        if name not in MACHINE_KNOBS | {"SCALE", "REPEAT"} and name in texts and texts[name] != defaults[name]
    }


def run_seconds(s: Settings, cells: list[Cell]) -> float:
    """A run's time: each repetition of its cells, and the calibrations before them."""
    return sum(cell_seconds(c) for c in cells) * s.repeat + sum(cell_seconds(c) for c in calibration_cells(cells))


def plan_line(s: Settings, cells: list[Cell]) -> str:
    """What the run will do and when it ends, on its first line; the load generator's flags and the
    knobs that differ from the set's defaults below it, indented, in lines of TERMINAL_WIDTH."""
    seconds = run_seconds(s, cells)
    calibrations = len(calibration_cells(cells))
    end = (datetime.datetime.now() + datetime.timedelta(seconds=seconds)).strftime("%H:%M")
    b = s.base
    load = (
        f"httperf --hog, {b.duration}s per rate, --timeout {b.timeout}s"
        if SETS[s.set].open_loop
        else f"wrk -t{b.wrk_threads} -d{b.duration}s --timeout {b.timeout}s"
    )
    changed = " ".join(f"{k}={shlex.quote(v)}" for k, v in changed_knobs(s.set, s.text).items())
    counted = f"{len(cells)} cells x {s.repeat} run(s)" + (f" + {calibrations} calibrations" if calibrations else "")
    first = f"set {s.set}: {counted}; about {minutes(seconds)} (ends ~{end})"
    return "\n".join([first, *wrapped(f"  {load}" + (f"; knobs: {changed}" if changed else ""))])
