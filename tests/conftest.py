import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(sys.executable).parent


def app_environment(**settings) -> dict:
    """This process's environment without the app's own settings from the caller's shell, plus these."""
    env = {k: v for k, v in os.environ.items() if k not in {"SLEEP_SECONDS", "STATS_DIR", "THREAD_LIMIT"}}
    env.update({k: str(v) for k, v in settings.items()})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn_pids(port: int) -> list[int]:
    """Every live gunicorn process (master or worker) serving on this port."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(b"gunicorn" in part for part in cmdline) and f"127.0.0.1:{port}".encode() in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def port():
    port = free_port()
    yield port
    leftovers = gunicorn_pids(port)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"gunicorn processes left on port {port}: {leftovers}"


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


def benchmark_env(port: int, results: Path, **knobs) -> dict:
    return app_environment(**{"PORT": port, "RESULTS_DIR": results, "VENV": VENV_BIN.parent, **knobs})


def run_benchmark(port: int, results: Path, *args: str, timeout: float = 600, **knobs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "benchmark.sh"), *args], env=benchmark_env(port, results, **knobs),
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def only_run_dir(results: Path) -> Path:
    runs = sorted(results.iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def summary_groups(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "summary.json").read_text())["groups"]


class Server:
    """A real gunicorn serving app.py on 127.0.0.1, for tests of the app itself."""

    def __init__(self, port: int, workers: int = 1, threads: int = 1,
                 worker_class: str = "uvicorn_worker.UvicornWorker", **env):
        self.url = f"http://127.0.0.1:{port}"
        self.log = ""
        self.process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "app:app", "--chdir", str(ROOT), "--no-control-socket",
             "-b", f"127.0.0.1:{port}", "-w", str(workers), "--threads", str(threads), "-k", worker_class],
            env=app_environment(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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
