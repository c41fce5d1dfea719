"""One run: a fresh server per cell, the load generator against it, every raw file kept.

A run directory holds run.json (the command, the knobs, the machine, the code), cells.tsv (one
Cell per line) and a directory per cell: the load generator's output and command (wrk.txt,
wrk.cmd, wrk.usage.json), the server's (server.log, server.cmd), the servers' process samples
(server.start.json, server.stop.json), the workers' own counters (stats/) and, under PROFILE=1,
py-spy's flame graph of one more run of each cell that came out CPU-bound or unexplained, taken
after the measured runs (profiles/<cell>/profile.svg).
"""

import os
import shlex
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from core import cell as cells_tsv
from core import files
from core.calibration import calibration_cells
from core.cell import Cell
from core.servers import SERVERS, Where
from core.sets import PER_CELL_OVERHEAD_S, Settings, cell_seconds, minutes, run_seconds

from . import record, yours
from .backends import BACKENDS
from .process import Failed, Lock, Output, answers, spawn, started, tail, taskset

ROOT = Path(__file__).resolve().parent.parent
APP_SETTINGS = {
    "SLEEP_SECONDS",
    "THREAD_LIMIT",
    "HTTP_POOL",
    "HTTP_POOL_TIMEOUT",
    "UPSTREAM_URL",
    "STATS_DIR",
    "DATABASE_URL",
    "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW",
    "DB_POOL_TIMEOUT",
    "PYTHONPATH",  # only a SNIFFIO=1 cell's: where its pinned sniffio is
    "LOOP_CLOCK",
    "APP",
    "APP_DIR",
    "PATHS",
}
WRAPPER_SETTINGS = {
    "STATS_DIR",
    "LOOP_CLOCK",
    "THREAD_LIMIT",
    "APP",
    "APP_DIR",
    "PATHS",
}  # what runner/wrapper.py reads
READY_TIMEOUT_S = 60
# Your app is asked for a path it does not load (any answer, a 404 say, means it serves): its counters
# and its routes see only what the load sends.
READINESS_PROBE = "/fastapi-benchmark-readiness-probe"
# py-spy samples without pausing the servers (--nonblocking), at a rate that keeps its own CPU small.
PROFILE_RATE_HZ = 50


class Run:
    def __init__(
        self,
        s: Settings,
        cells: list[Cell],
        run_dir: Path,
        lock: Lock,
        out: Output,
        tools: dict[str, str],
        running: dict[str, Any] | None = None,
    ):
        self.s, self.cells, self.run_dir, self.lock, self.out, self.tools = s, cells, run_dir, lock, out, tools
        self.running = running or {}  # what each backend started for the run (BACKENDS), by name
        self.serving: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}  # the cell's servers, by role
        database = self.running.get("database")
        # Left out of every recorded command: the database's password (random, its cluster gone once the
        # run ends) and what APP_SETUP printed for HEADERS (a token), each as its name.
        self.secrets = {database.password: "PASSWORD"} if database else {}
        self.venv_bin = str(Path(sys.executable).parent)
        self.left_s = 0.0
        self.overhead_seen, self.overhead = 0.0, float(PER_CELL_OVERHEAD_S)
        self.profiling = s.profile  # until py-spy cannot attach: said once, then the run goes on without
        self.to_profile: dict[Cell, Cell] = {}  # each cell to profile, by itself -> its first run that needs it
        self.your_env = yours.environment(s, database) if s.requests else {}  # APP_ENV, APP_DB's address
        self.headers: list[tuple[str, str]] = []  # HEADERS, filled once APP_SETUP has run

    def cpus(self, role: str) -> str | None:
        """taskset's CPU list under PIN=1: the load generator on CPU 0, the servers on the others."""
        if not self.s.base.pin:
            return None
        return "0" if role == "load" else f"1-{(os.cpu_count() or 2) - 1}"

    # ------------------------------------------------------------ servers

    def app_env(self, cell: Cell, stats_dir: Path | None, backends: dict[str, str]) -> dict[str, str]:
        # Your app's own settings first: the runner's below win over an APP_ENV that names one of them.
        settings = dict(self.your_env) if cell.path else {"SLEEP_SECONDS": f"{cell.sleep:g}"}
        if cell.thread_limit is not None:
            settings["THREAD_LIMIT"] = str(cell.thread_limit)
        if not cell.path:
            if cell.http_pool is not None:
                settings["HTTP_POOL"] = str(cell.http_pool)
            if cell.pool_timeout is not None:
                settings["HTTP_POOL_TIMEOUT"] = f"{cell.pool_timeout:g}"
        if stats_dir:
            settings["STATS_DIR"] = str(stats_dir)
            if not cell.loop_clock:
                settings["LOOP_CLOCK"] = "0"
        if cell.sniffio:
            settings["PYTHONPATH"] = str(record.sniffio_directory())
        if cell.path:  # your app: what runner/wrapper.py imports, the paths it counts, what the app reads
            settings.update(APP=self.s.text["APP"], APP_DIR=os.path.abspath(self.s.text["APP_DIR"]))
            settings["PATHS"] = " ".join(r.path for r in self.s.requests)
        settings.update(backends)
        if self.s.server_args:
            settings["GUNICORN_CMD_ARGS"] = self.s.server_args
        return settings

    def hide(self, text: str) -> str:
        for secret, name in self.secrets.items():
            text = text.replace(secret, name)
        return text

    def serve(self, stack: ExitStack, what: str, cell: Cell, port: int, settings: dict, cell_dir: Path):
        """Start a server for CELL in the stack, record the command that replays it, wait until every worker serves."""
        server = SERVERS[cell.server]
        yours = bool(cell.path) and what == "server"  # your app, inside runner/wrapper.py
        where = Where(self.venv_bin, str(self.run_dir), self.s.host, port, "wrapper:app" if yours else "app:app")
        command = server.command(cell, where)
        cpus = self.cpus("server")
        shown = {k: self.hide(v) for k, v in settings.items()}
        # Your app keeps the environment it was given (its own DATABASE_URL, say): only what the wrapper reads goes.
        stripped = (WRAPPER_SETTINGS if yours else APP_SETTINGS) | {"GUNICORN_CMD_ARGS"}
        unset = [f"-u{name}" for name in sorted(stripped) if name not in settings]
        replay = ["env", *unset, *(f"{k}={v}" for k, v in shown.items()), *taskset(cpus), *command]
        files.CellFiles(cell_dir).command(what).write_text(shlex.join(replay) + "\n")
        env = {k: v for k, v in os.environ.items() if k not in stripped}
        log = files.CellFiles(cell_dir).log(what)
        process = stack.enter_context(started(command, log, {**env, **settings}, self.lock, cpus))
        self.serving[what] = (process, log)
        self.wait_until_ready(
            process,
            log,
            Path(settings["STATS_DIR"]) if "STATS_DIR" in settings else None,
            cell.workers,
            server,
            cell.server if what == "server" else what,
            port,
            READINESS_PROBE if yours else "/openapi.json",
            any_status=yours,
        )
        return process

    def check_still_serving(self, cell: Cell) -> None:
        """A server (the front one, the upstream) that exited in the cell: the run cannot go on as the
        model assumes. A worker its master restarted is not this: the summary counts its restart."""
        for what, (process, log) in self.serving.items():
            if process.poll() is not None:
                raise Failed(
                    f"the {what} exited during {cell.name} (exit {process.returncode}); last lines of "
                    f"{log}:\n{tail(log)}"
                )

    def wait_until_ready(
        self,
        process,
        log: Path,
        stats_dir: Path | None,
        workers: int,
        server,
        what: str,
        port: int,
        path: str,
        any_status: bool = False,
    ) -> None:
        """The app answers (your app's path: with any status, its headers and method are wrk's), and
        every worker is up: its counters file, else its start-up line in the log (or, when a raised log
        level hides those lines, 5 s of answers)."""
        url = f"http://{self.s.host}:{port}{path}"
        deadline, answering_since = time.monotonic() + READY_TIMEOUT_S, None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise Failed(f"{what} exited during start-up; last lines of {log}:\n{tail(log)}")
            if answering_since is None and answers(url, any_status):
                answering_since = time.monotonic()
            if answering_since is not None:
                if stats_dir:
                    up = len(files.worker_files(stats_dir, "")) >= workers
                else:
                    up = (
                        server.ready_workers(log.read_text(errors="replace")) >= workers
                        or time.monotonic() - answering_since > 5
                    )
                if up:
                    return
            time.sleep(0.1)
        raise Failed(f"{what} did not answer {url} within {READY_TIMEOUT_S} s; last lines of {log}:\n{tail(log)}")

    # ------------------------------------------------------------ the load generator

    def load(self, cell_dir: Path, name: str, command: list[str], seconds: float) -> None:
        """Run the load generator in a session of its own (wrk catches SIGINT and would let the run go
        on: the runner gets the Ctrl-C and stops it), with its own CPU and memory from os.wait4."""
        where = files.CellFiles(cell_dir)
        where.command(name).write_text(shlex.join(map(self.hide, command)) + "\n")
        cpus = self.cpus("load")
        done = threading.Event()
        if self.out.countdown:
            threading.Thread(target=self.count_down, args=(name, seconds, done), daemon=True).start()
        started_at, began = time.time(), time.perf_counter()
        processes: list[subprocess.Popen] = []
        try:
            process = spawn(command, where.load_output(name), processes, lock=self.lock, cpus=cpus)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            done.set()
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    process.wait()
                self.lock.remove_group(process.pid)
        wall = time.perf_counter() - began
        affinity = (
            [int(c) for c in cpus.split(",")]
            if cpus
            else (sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None)
        )
        shown = [self.hide(word) for word in command]
        code = record.write_usage(where.usage(name), shown, started_at, wall, status, usage, affinity)
        if code != 0:
            raise Failed(f"{name} failed (exit {code}):\n" + where.load_output(name).read_text(errors="replace"))

    def count_down(self, name: str, seconds: float, done: threading.Event) -> None:
        end = time.monotonic() + seconds
        while not done.is_set():
            left = max(0, round(end - time.monotonic()))
            sys.stdout.write(
                f"\r\033[K      {name}: {left}s left in this cell, about {minutes(left + self.left_s)} left in the run"
            )
            sys.stdout.flush()
            done.wait(1)
        sys.stdout.write("\r\033[K")
        sys.stdout.flush()

    def load_command(self, cell: Cell, duration: int, cell_dir: Path) -> list[str]:
        if cell.rate is not None:  # the open loop
            return [
                self.tools["httperf"],
                "--hog",
                "--server",
                self.s.host,
                "--port",
                str(self.s.port),
                "--uri",
                cell.url_path,
                "--rate",
                f"{cell.rate:g}",
                "--num-conns",
                str(int(cell.rate * duration + 0.5)),
                "--timeout",
                str(cell.timeout),
            ]
        return [
            self.tools["wrk"],
            f"-t{cell.wrk_threads}",
            f"-c{cell.connections}",
            f"-d{duration}s",
            "--timeout",
            f"{cell.timeout}s",
            *(["--latency"] if self.s.latency else []),
            *(yours.wrk_request(cell, self.headers, cell_dir) if cell.path else []),
            f"http://{self.s.host}:{self.s.port}{cell.url_path}",
        ]

        # ------------------------------------------------------------ one cell

    def run_cell(self, index: int, total: int, cell: Cell, profiling: bool = False, calibrating: bool = False) -> None:
        """One cell on a fresh server; with PROFILING, one more run of a measured cell, under py-spy,
        into profiles/ and out of cells.tsv: the profiler's CPU stays out of every figure; with
        CALIBRATING, a calibration (core/calibration.py) into calibration/, out of cells.tsv too."""
        began = time.monotonic()
        where = files.cell_files(self.run_dir, cell.name, profiling, calibrating)
        cell_dir = where.path
        cell_dir.mkdir(parents=True)
        if not profiling and not calibrating:
            cells_tsv.append(self.run_dir / files.CELLS_TSV, cell)
        load = f"c={cell.connections}" if not cell.open_loop else f"rate={cell.rate:g}/s"
        step = "profile" if profiling else "calibration" if calibrating else f"{index}/{total}"
        self.out.note(f"[{step}] {cell.describe()}  {cell.url_path}  {load}  sleep={cell.sleep:g}s  {cell.duration}s")
        stats = where.stats("server") if cell.stats else None
        self.serving = {}
        with ExitStack() as stack:
            # Last, once every server has stopped: the requests for snapshots are no one's raw data.
            stack.callback(record.remove_snapshot_requests, [where.stats(role) for role in ("server", *BACKENDS)])
            roles, handed = {}, {}
            for name, backend in BACKENDS.items():
                if backend.serves(cell):
                    roles[name], settings = backend.for_cell(self.running.get(name), self, stack, cell, cell_dir)
                    handed.update(settings)
            # PostgreSQL's own count of the app's connections goes into each snapshot.
            database = self.running.get("database") if "database" in roles else None
            if stats:
                stats.mkdir()
            roles["server"] = self.serve(
                stack, "server", cell, self.s.port, self.app_env(cell, stats, handed), cell_dir
            ).pid
            if cell.warmup:  # unmeasured: connect storm and first-request costs stay out of the cell
                self.load(cell_dir, "warmup", self.load_command(cell, cell.warmup, cell_dir), cell.warmup)
                if cell.path and stats:  # your app's: how long its requests take is what it measures
                    record.wait_drained(stats, time.time(), cell.timeout)
                else:  # The warm-up's last requests finish before the measured window (at no sleep, at once).
                    time.sleep(cell.sleep + 1 if cell.sleep else 0.5)
            record.snapshot(cell_dir, files.START, cell.workers, cell.stats, roles, database)
            profiler = (
                record.start_profile(stack, cell_dir, roles["server"], cell.duration, self.lock, PROFILE_RATE_HZ)
                if profiling
                else None
            )
            self.load(
                cell_dir,
                "httperf" if cell.open_loop else "wrk",
                self.load_command(cell, cell.duration, cell_dir),
                cell.duration,
            )
            record.snapshot(cell_dir, files.STOP, cell.workers, cell.stats, roles, database)
            self.check_still_serving(cell)
            if profiler:
                self.profiling = record.profile_written(profiler, where.profile(), self.profiling)
        if profiling:
            svg = where.profile()
            print(f"[profile] {cell.name}: {svg.relative_to(self.run_dir) if svg.exists() else 'none'}", flush=True)
            return
        from core.bound import Bound
        from report import summary, tables
        from report.read import RunFacts, read_calibration

        if calibrating:
            figures = read_calibration(self.run_dir, cell)
            record.add_calibration(self.run_dir, cell.name, figures)
            cost = figures["cpu_per_request_s"]
            cpu = f"{tables.format_seconds(cost)} of CPU per request" if cost else "no CPU figure"
            print(f"[calibration] {cell.name}: {cpu} ({figures['requests']} requests)", flush=True)
            return

        prefix, facts = f"[{index}/{total}] ", RunFacts(self.run_dir)
        row = summary.summarise_cell(self.run_dir, cell, facts)
        if row is None:
            raise Failed(f"{cell.name}: the load generator wrote no report")
        print(prefix + summary.brief_of(row, facts.cpus, tables.TERMINAL_WIDTH - len(prefix)), flush=True)
        # A cell the model does not account for gets a profile, once, after the measured runs.
        if self.s.profile and (row.verdict.cpu_bound or row.verdict.bound is Bound.UNEXPLAINED):
            self.to_profile.setdefault(replace(cell, round=1, name=""), cell)
        self.overhead_seen += time.monotonic() - began - cell.duration - cell.warmup

    def run(self) -> None:
        if self.s.requests:
            self.headers, printed = yours.prepare(self.s, self.run_dir, self.your_env, self.lock)
            self.secrets.update({value: f"${name}" for name, value in printed.items() if len(value) >= 8})
        total = len(self.cells) * self.s.repeat
        digits = max(2, len(str(total)))
        self.left_s = run_seconds(self.s, self.cells)
        if any(cell.sniffio for cell in self.cells):
            record.sniffio_directory()  # installed now, before any server: not in a cell's time
        for calibration in calibration_cells(self.cells):  # before the cells: what the model's CPU terms read
            self.left_s -= cell_seconds(calibration, self.overhead)
            self.run_cell(0, 0, calibration, calibrating=True)
        index = 0
        for round_number in range(1, self.s.repeat + 1):
            for cell in self.cells:
                index += 1
                cell = replace(cell, round=round_number)
                cell = replace(cell, name=cell.directory_name(index, digits, self.s.base.sleep, self.s.repeat > 1))
                self.left_s -= cell_seconds(cell, self.overhead)
                self.run_cell(index, total, cell)
                # The estimate for the cells left, with the start/stop time measured so far.
                self.overhead = self.overhead_seen / index
        for cell in self.to_profile.values():
            if self.profiling:
                self.run_cell(0, 0, cell, profiling=True)
