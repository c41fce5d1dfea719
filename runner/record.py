"""What the runner records while it runs: run.json (the exact command, every knob, the machine,
the code), the load generator's own CPU, and samples of the servers' processes."""

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from core import files
from core.servers import SERVERS

from .backends import BACKENDS
from .process import Failed

ROOT = Path(__file__).resolve().parent.parent
# The app's own stack, its clients for each backend (runner/backends.py), every server's
# (core/servers.py), then what the runner measures with.
PACKAGES = list(
    dict.fromkeys(
        [
            "fastapi",
            "starlette",
            "anyio",
            *(p for backend in BACKENDS.values() for p in backend.packages),
            *(p for server in SERVERS.values() for p in server.packages),
            "psutil",
        ]
    )
)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the machine


def _command_output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _sysctl(name: str) -> str:
    return _command_output(["sysctl", "-n", name])


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # Linux
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return _sysctl("machdep.cpu.brand_string") or platform.processor()  # macOS


def somaxconn() -> int | None:
    """The cap on every listen() backlog (Linux net.core.somaxconn, macOS kern.ipc.somaxconn)."""
    linux = Path("/proc/sys/net/core/somaxconn")
    text = linux.read_text().strip() if linux.exists() else _sysctl("kern.ipc.somaxconn")
    return int(text) if text.isdigit() else None


def listen_queue_counters() -> dict[str, int] | None:
    """The kernel's count of handshakes dropped because a listen queue was full, since boot (Linux
    /proc/net/netstat TcpExt ListenOverflows and ListenDrops; None elsewhere). For the whole machine:
    nothing else here listens under load, so the growth over a cell is the cell's."""
    netstat = Path("/proc/net/netstat")
    if not netstat.exists():
        return None
    lines = [line.split() for line in netstat.read_text().splitlines() if line.startswith("TcpExt:")]
    if len(lines) != 2:
        return None
    values = dict(zip(lines[0][1:], lines[1][1:]))
    return {name: int(values[name]) for name in ("ListenOverflows", "ListenDrops") if name in values}


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(wrk: str, httperf: str) -> dict:
    return {
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "wrk": _command_output([wrk, "-v"]).split(" Copyright")[0] if wrk else None,
        "httperf": httperf_version(httperf) if httperf else None,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "somaxconn": somaxconn(),
    }


def httperf_version(httperf: str) -> str | None:
    """`httperf --version` prints a warning, then "httperf: httperf-0.9.0 compiled ...", then a sample report."""
    match = re.search(r"httperf-[0-9][^ ]*", _command_output([httperf, "--version"]))
    return match.group(0) if match else None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_state(run_dir: Path) -> dict:
    """The commit, and the uncommitted changes as code.diff beside run.json when there are any."""
    git = ["git", "-C", str(ROOT)]
    dirty = bool(_command_output([*git, "status", "--porcelain", "--untracked-files=no"]))
    if dirty:
        (run_dir / files.CODE_DIFF).write_text(_command_output([*git, "diff", "HEAD"]) + "\n")
    return {
        "git_commit": _command_output([*git, "rev-parse", "HEAD"]),
        "git_describe": _command_output([*git, "describe", "--always", "--dirty"]),
        "git_dirty": dirty,
        "code_diff": files.CODE_DIFF if dirty else None,
    }


def describe(
    run_dir: Path,
    argv: list[str],
    parameters: dict,
    knobs_given: dict,
    wrk: str,
    httperf: str,
    app_files: dict,
    database: dict | None = None,
) -> dict:
    """run.json: the exact command line, the knobs it was given, every parameter, the machine, the code."""
    document = {
        "argv": argv,
        "knobs_given": knobs_given,  # the environment's knobs: with argv, the command that replays the run
        "parameters": parameters,
        "started": now(),
        "ended": None,
        "status": "running",
        "environment": environment(wrk, httperf),
        "code": {**code_state(run_dir), "app_sha256": app_files},
    }
    if database:  # the PostgreSQL the run started: its version and its connection limits
        document["database"] = database
    (run_dir / files.RUN_JSON).write_text(json.dumps(document, indent=2) + "\n")
    return document


def finish(run_dir: Path, status: str) -> None:
    path = run_dir / files.RUN_JSON
    document = json.loads(path.read_text())
    document["ended"], document["status"] = now(), status
    path.write_text(json.dumps(document, indent=2) + "\n")


def add_calibration(run_dir: Path, name: str, figures: dict) -> None:
    """One calibration's figures into run.json's "calibration", by its name (core/calibration.py)."""
    path = run_dir / files.RUN_JSON
    document = json.loads(path.read_text())
    document.setdefault("calibration", {})[name] = figures
    path.write_text(json.dumps(document, indent=2) + "\n")


# ---------------------------------------------------------------- the load generator's own usage


def write_usage(
    path: Path, command: list[str], started_at: float, wall_s: float, status: int, usage, cpus: list[int] | None
) -> int:
    """The load generator's CPU seconds, peak memory and wall time (os.wait4's rusage); its exit code."""
    code = os.waitstatus_to_exitcode(status)
    path.write_text(
        json.dumps(
            {
                "command": command,
                "started": started_at,
                "wall_s": round(wall_s, 3),
                "user_s": round(usage.ru_utime, 3),
                "system_s": round(usage.ru_stime, 3),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                # ru_maxrss: kilobytes on Linux, bytes on macOS
                "maxrss_bytes": usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024),
                "exit": code,
                "cpus": cpus,  # the CPUs it could run on (taskset under PIN=1)
            },
            indent=2,
        )
        + "\n"
    )
    return code if code >= 0 else 128 - code


# ---------------------------------------------------------------- the servers' processes


def process_tree(pid: int) -> list[dict]:
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    sampled = []
    for process in processes:
        try:
            with process.oneshot():
                cpu = process.cpu_times()
                sampled.append(
                    {
                        "pid": process.pid,
                        "ppid": process.ppid(),
                        "name": process.name(),
                        "cpu_s": round(cpu.user + cpu.system, 3),
                        "rss_bytes": process.memory_info().rss,
                        "cpus": process.cpu_affinity() if hasattr(process, "cpu_affinity") else None,
                    }
                )
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return sampled


def snapshot(cell_dir: Path, name: str, workers: int, stats: bool, roles: dict[str, int], database=None) -> None:
    """Ask every worker for a snapshot of its counters, sample every server process now, then wait
    for the workers' snapshots (they poll every 20 ms)."""
    cell = files.CellFiles(cell_dir)
    stats_dirs = {
        cell.stats(role): 1 if role == "upstream" else workers for role in ("server", "upstream") if role in roles
    }
    if stats:
        for stats_dir in stats_dirs:
            files.snapshot_request(stats_dir, name).touch()
    document = {
        "time": time.time(),
        "roles": {role: process_tree(pid) for role, pid in roles.items()},
        # How far each server's log had come: what the runner's own stop makes it log comes after.
        "log_bytes": {role: log.stat().st_size for role in roles if (log := cell.log(role)).exists()},
        "listen_queue": listen_queue_counters(),
    }
    if database:
        document["database"] = database.backends()
    cell.processes(name).write_text(json.dumps(document, indent=2) + "\n")
    if not stats:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if all(len(files.worker_files(d, name)) >= n for d, n in stats_dirs.items()):
            return
        time.sleep(0.01)
    print(f"benchmark.sh: warning: not every worker wrote its '{name}' snapshot within 5 s", file=sys.stderr)


# ---------------------------------------------------------------- the app a run serves

APP_FILES = ["app.py", "counters.py"]  # what a run serves: a copy taken at its start
WRAPPER = ROOT / "runner" / "wrapper.py"  # what serves your app (APP), inside the same counters
SNIFFIO_REQUIREMENTS = ROOT / "requirements-sniffio.txt"  # what a run serves: a copy taken at its start


def copy_app(run_dir: Path, yours: bool = False) -> dict[str, str]:
    """The run serves this copy, so an edit to app.py while it runs changes nothing; its hashes go to run.json.
    YOURS: the app set's run also serves runner/wrapper.py, which imports your app (kept: see below)."""
    hashes = {}
    for source in [ROOT / name for name in APP_FILES] + ([WRAPPER] if yours else []):
        shutil.copy2(source, run_dir / source.name)
        hashes[source.name] = sha256(run_dir / source.name)
    return hashes


def sniffio_directory() -> Path:
    """A pinned sniffio in a directory of its own beside the venv's packages, which SNIFFIO=1 cells put
    on their servers' path (installed once from requirements-sniffio.txt, again when that changes)."""
    target = Path(sys.executable).parent.parent / "sniffio"
    stamp, wanted = target / ".installed", SNIFFIO_REQUIREMENTS.read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return target
    shutil.rmtree(target, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes"]
    out = subprocess.run(
        [*pip, "--no-deps", "--target", str(target), "-r", str(SNIFFIO_REQUIREMENTS)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise Failed(f"SNIFFIO=1: installing {SNIFFIO_REQUIREMENTS.name} failed: {out.stderr.strip()}")
    stamp.write_text(wanted)
    return target


def drop_app_copy_if_committed(run_dir: Path, commit: str) -> None:
    """Keep the copy only where it differs from the recorded commit's files; otherwise the commit
    names them, and the recorded commands serve them from the repository instead. A run of your app
    keeps its copy: runner/wrapper.py is served from beside counters.py."""
    if (run_dir / WRAPPER.name).exists():
        return
    for name in APP_FILES:
        committed = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{name}"], capture_output=True)
        if committed.returncode != 0 or committed.stdout != (run_dir / name).read_bytes():
            return
    for name in APP_FILES:
        (run_dir / name).unlink()
    shutil.rmtree(run_dir / "__pycache__", ignore_errors=True)
    for command in run_dir.glob("**/*.cmd"):
        words = [str(ROOT) if word == str(run_dir) else word for word in shlex.split(command.read_text())]
        command.write_text(shlex.join(words) + "\n")


def wait_drained(stats_dir: Path, since: float, limit_s: float) -> None:
    """Until every worker's counters, dumped after SINCE, show no request in flight (at most LIMIT_S):
    the warm-up's requests queued in a slow path would take seconds of the measured window."""
    deadline = time.monotonic() + limit_s
    time.sleep(0.3)  # every live worker dumps every 0.2 s: older files are workers gone (restarted)
    while time.monotonic() < deadline:
        fresh = [d for p in files.worker_files(stats_dir, "") if (d := json.loads(p.read_text()))["time"] > since]
        if fresh and all(d["in_flight"] == 0 for d in fresh):
            return
        time.sleep(0.1)


def remove_snapshot_requests(stats_dirs: list[Path]) -> None:
    for stats_dir in stats_dirs:  # a role without counters has no such directory: nothing to remove
        for request in stats_dir.glob(files.SNAPSHOT_REQUEST.format(name="*")):
            request.unlink()


# ---------------------------------------------------------------- profiles (PROFILE=1)


def start_profile(stack, cell_dir: Path, server_pid: int, seconds: int, lock, rate_hz: int) -> subprocess.Popen:
    """One py-spy on the server's main process and, through --subprocesses, on each of its workers,
    sampling over the measured window into profile.svg (each process a tower of its own, by function)."""
    from .process import started

    svg = files.CellFiles(cell_dir).profile()
    command = [f"{Path(sys.executable).parent}/py-spy", "record", "--nonblocking", "--subprocesses", "--function"]
    command += ["--rate", str(rate_hz), "--duration", str(seconds), "--format", "flamegraph"]
    command += ["--output", str(svg), "--pid", str(server_pid)]
    log = files.CellFiles(cell_dir).profile_log()
    return stack.enter_context(started(command, log, dict(os.environ), lock))


def profile_written(profiler: subprocess.Popen, svg: Path, profiling: bool) -> bool:
    """Wait for py-spy to write its flame graph; one that could not attach is one line, not a failure:
    whether the run goes on profiling."""
    log = files.CellFiles(svg.parent).profile_log()
    try:
        profiler.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    if svg.exists():
        log.unlink()
        return profiling
    if profiling:
        why = next(
            (line for line in reversed(log.read_text(errors="replace").splitlines()) if line.strip()), "no output"
        )
        print(
            f"PROFILE=1: py-spy could not profile the server ({why}); it needs root or "
            "ptrace rights on Linux, sudo on macOS: going on without profiles",
            file=sys.stderr,
        )
    return False
