import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(sys.executable).parent
# The app set's knobs, on the sample app (tests/sample_app: an app as users write one).
SAMPLE_APP = ROOT / "tests" / "sample_app"
YOUR_APP = {"APP": "shop:app", "APP_DIR": str(SAMPLE_APP), "PATHS": "/health /me"}

from core.cell import Cell  # noqa: E402 (after the path)
from core.knobs import KNOBS  # noqa: E402 (the knobs: a value left in the caller's shell must not leak in)
from core.servers import SERVERS, Where  # noqa: E402
from runner.run import APP_SETTINGS  # noqa: E402


def pytest_configure(config):
    # A shell without job control starts background commands with SIGINT ignored, and an ignored
    # signal stays ignored across exec, where bash may not trap it: benchmark.sh would never see
    # the tests' Ctrl-C. A handler here is reset to the default in every child, as in a terminal.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "real_server: starts a real server or benchmark.sh (tests/run.sh --repeat N)")


def pytest_collection_modifyitems(items):
    for item in items:
        if "port" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_server)


def app_environment(**settings) -> dict:
    """This process's environment without the app's own settings from the caller's shell, plus these."""
    env = {k: v for k, v in os.environ.items() if k not in APP_SETTINGS and k not in KNOBS}
    env.update({k: str(v) for k, v in settings.items()})
    return env


def free_port() -> int:
    """A port that is free, and whose neighbour (benchmark.sh's upstream) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two free neighbouring ports")


def server_pids(port: int) -> list[int]:
    """Every live server process (any of core/servers.py's: master or worker) started for this port.

    psutil rather than /proc, so that this works on macOS too. Workers that the server spawned
    (uvicorn's, granian's) do not carry the port on their command line: their parent does.
    """
    marks = {f"127.0.0.1:{port}", f"--port {port}", f"--port={port}"}
    binaries = {
        Path(server.command(Cell(), Where("bin", "app", "127.0.0.1", port))[0]).name for server in SERVERS.values()
    }
    masters = set()
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            line = " ".join(process.info["cmdline"] or [])
            if (
                process.info["status"] != psutil.STATUS_ZOMBIE
                and any(m in line for m in marks)
                and any(b in line for b in binaries)
            ):
                masters.add(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    pids = set(masters)
    for pid in masters:
        try:
            pids.update(
                c.pid for c in psutil.Process(pid).children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.NoSuchProcess:
            continue
    return sorted(pids)


@pytest.fixture
def port():
    port = free_port()
    yield port
    leftovers = server_pids(port) + server_pids(port + 1)  # benchmark.sh's upstream is PORT + 1
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not leftovers, f"server processes left on ports {port}, {port + 1}: {leftovers}"


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


def benchmark_env(port: int, results: Path, **knobs) -> dict:
    # The machine-wide lock stays: tests that run benchmark.sh must not share the cores with a real run.
    return app_environment(**{"PORT": port, "RESULTS_DIR": results, "VENV": VENV_BIN.parent, **knobs})


def run_benchmark(port: int, results: Path, *args: str, timeout: float = 600, **knobs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "benchmark.sh"), *args],
        env=benchmark_env(port, results, **knobs),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def only_run_dir(results: Path) -> Path:
    runs = sorted(results.iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def summary_groups(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "summary.json").read_text())["groups"]


class Server:
    """A real gunicorn serving app.py on 127.0.0.1, for tests of the app itself."""

    def __init__(
        self, port: int, workers: int = 1, threads: int = 1, worker_class: str = "uvicorn_worker.UvicornWorker", **env
    ):
        self.url = f"http://127.0.0.1:{port}"
        self.log = ""
        self.process = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "app:app",
                "--chdir",
                str(ROOT),
                "--no-control-socket",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                str(workers),
                "--threads",
                str(threads),
                "-k",
                worker_class,
            ],
            env=app_environment(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited: {self.process.stdout.read()}")
            try:
                if httpx.get(self.url + "/openapi.json", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("gunicorn did not answer in time")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.log = self.process.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.log = self.process.communicate()[0]
        return self.log


@pytest.fixture
def serve(port):
    servers = []

    def start(**kwargs) -> Server:
        server = Server(port, **kwargs)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------- shared by the end-to-end tests

# 0.4 s waves in a 3 s run: 7 end inside it (at 2.8 s) and the 8th at 3.2 s, well after wrk stops.
TINY = dict(SLEEP_SECONDS=0.4, DURATION="3s", TIMEOUT="2s", WRK_THREADS=2)


def assert_as_predicted(groups: list[dict]) -> None:
    """Every group the model predicts is as predicted, and the model predicts every group with a sleep
    (only a cell with no sleep, where the CPU alone limits, goes without a prediction)."""
    assert groups
    for group in groups:
        predicted = group["predicted_requests" if group["rate"] is None else "predicted_replies"]
        assert (predicted is None) == (group["sleep_s"] == 0), group
        if predicted is not None:
            assert group["as_predicted"] == group["runs"], group


def clone(tmp_path):
    """This working tree (results aside) as a fresh, clean repository, to run or edit freely."""
    repo = tmp_path / "repo"
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listed:
        if not name.startswith("results/") and (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@localhost"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "snapshot"]):
        subprocess.run(git + command, check=True)
    return repo


def start_in_background(port, results, script=ROOT / "benchmark.sh", *args, **knobs):
    return subprocess.Popen(
        [str(script), *args],
        env=benchmark_env(port, results, **knobs),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


def wait_for_load(port, results, process, timeout=60):
    """Until the first cell's load generator is running against a live server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (
            server_pids(port)
            and results.exists()
            and list(results.glob("*/01-*/*.usage.json")) == []
            and list(results.glob("*/01-*/server.start.json"))
        ):
            return
        time.sleep(0.05)
    raise AssertionError("benchmark.sh never reached the load generator")


def tree_digest(path):
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        digest.update(str(file.relative_to(path)).encode())
        if file.is_file():
            digest.update(file.read_bytes())
    return digest.hexdigest()
