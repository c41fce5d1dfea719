"""Every file in a run directory, named once: the runner writes them, report/ reads them.

    results/<UTC time>-<set>[-quick][-label]/
        run.json  cells.tsv  [INCOMPLETE]  [code.diff]  [postgres.log  postgres-initdb.log]
        [diagnosis.md  setup.log  wrapper.py]   (a run of your app: --app)
        summary.{md,json,csv}  plot.png
        <cell>/  wrk.txt | httperf.txt, <load>.cmd, <load>.usage.json, [warmup.*], [request.lua]
                 server.cmd  server.log  server.{start,stop}.json  [upstream.cmd  upstream.log]
                 stats/  [upstream-stats/]   (the workers' counters: counters.py writes them)
        profiles/<cell>/  the same, plus profile.svg  (PROFILE=1, out of cells.tsv)
        calibration/<calibration>/  the same, for each calibration (core/calibration.py, out of cells.tsv)

counters.py is served from the run directory, where core/ cannot be imported: it spells its
own three names, and tests/test_layers.py checks that they are these.
"""

from dataclasses import dataclass
from pathlib import Path

RUN_JSON = "run.json"
CELLS_TSV = "cells.tsv"
INCOMPLETE = "INCOMPLETE"
CODE_DIFF = "code.diff"
SUMMARY_MD, SUMMARY_JSON, SUMMARY_CSV, PLOT = "summary.md", "summary.json", "summary.csv", "plot.png"
DIAGNOSIS_MD = "diagnosis.md"  # a run of your app (the app set): where each path stops, and why
SETUP_LOG = "setup.log"  # APP_SETUP's output
REQUEST_LUA = "request.lua"  # what wrk sends for a path of your app with a method or a body
POSTGRES_LOG, POSTGRES_INITDB_LOG = "postgres.log", "postgres-initdb.log"
PROFILES = "profiles"
CALIBRATION = "calibration"
PROFILE_SVG, PROFILE_LOG = "profile.svg", "profile.log"  # py-spy's flame graph, and what it said

# The workers' counters (counters.py): each worker's last dump, its snapshot NAME, and the marker
# file that asks every worker for snapshot NAME.
WORKER_FILE = "worker-{pid}.json"
WORKER_SNAPSHOT_FILE = "worker-{pid}.{name}.json"
SNAPSHOT_REQUEST = "snapshot-{name}"
START, STOP = "start", "stop"  # the snapshots taken as the load begins and ends


@dataclass(frozen=True)
class CellFiles:
    """One cell's directory."""

    path: Path

    def load_output(self, load: str) -> Path:
        """What the load generator printed: wrk.txt, httperf.txt, warmup.txt."""
        return self.path / f"{load}.txt"

    def command(self, what: str) -> Path:
        """The command that replays a process: server.cmd, upstream.cmd, wrk.cmd."""
        return self.path / f"{what}.cmd"

    def log(self, what: str) -> Path:
        return self.path / f"{what}.log"

    def usage(self, load: str) -> Path:
        """The load generator's own CPU, memory and wall time."""
        return self.path / f"{load}.usage.json"

    def server_log(self) -> Path:
        """The server's log (gunicorn.log in runs from before every server had one)."""
        return self.log("server") if self.log("server").exists() else self.log("gunicorn")

    def processes(self, name: str) -> Path:
        """Every server process's CPU and memory at snapshot NAME (start, stop)."""
        return self.path / f"server.{name}.json"

    def stats(self, role: str = "server") -> Path:
        """The workers' counters of a role: server (stats/) or upstream (upstream-stats/)."""
        return self.path / ("stats" if role == "server" else f"{role}-stats")

    def profile(self) -> Path:
        return self.path / PROFILE_SVG

    def profile_log(self) -> Path:
        return self.path / PROFILE_LOG


def worker_files(stats_dir: Path, name: str) -> list[Path]:
    """Each worker's file of snapshot NAME ("" = its last dump, which it writes from the start)."""
    pattern = WORKER_SNAPSHOT_FILE.format(pid="*", name=name) if name else WORKER_FILE.format(pid="*")
    return sorted(p for p in stats_dir.glob(pattern) if name or p.name.count(".") == 1)


def snapshot_request(stats_dir: Path, name: str) -> Path:
    return stats_dir / SNAPSHOT_REQUEST.format(name=name)


def cell_files(run_dir: Path, cell_name: str, profiling: bool = False, calibrating: bool = False) -> CellFiles:
    under = PROFILES if profiling else CALIBRATION if calibrating else ""
    return CellFiles(run_dir / under / cell_name)
