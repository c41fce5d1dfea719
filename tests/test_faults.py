"""Faults, made on purpose in the middle of a cell: each run ends with one clear line, leaves no
process behind and keeps what it wrote (or, for a worker its master restarts, goes on and says so)."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from conftest import TINY, only_run_dir, server_pids, start_in_background, wait_for_load


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def finished(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def ends_failed(results: Path, stderr: str, what: str) -> Path:
    """The run failed naming WHAT, its last line names its folder, and the folder's name says it failed."""
    run_dir = only_run_dir(results)
    assert run_dir.name.endswith("-failed"), run_dir
    assert what in stderr, stderr
    assert stderr.splitlines()[-1] == f"benchmark.sh: the run failed; what it wrote is in {run_dir}", stderr
    return run_dir


def test_the_upstream_killed_in_a_cell_fails_the_run_in_one_line(port, results):
    process = start_in_background(
        port, results, **{**TINY, "DURATION": "6s"}, CONFIGS="1x1", ENDPOINTS="async-http", CONNECTIONS=8
    )
    wait_for_load(port, results, process)
    kill(server_pids(port + 1))  # the upstream listens on PORT + 1
    code, stderr = finished(process)
    assert code == 1, stderr
    run_dir = ends_failed(results, stderr, "the upstream exited during 01-1w1t-async-http-c8")
    assert (run_dir / "01-1w1t-async-http-c8" / "wrk.txt").exists()  # what was measured is kept
    assert not server_pids(port) and not server_pids(port + 1)


def postmasters(port: int) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] in ("postgres", "postmaster") and str(port) in (p.info["cmdline"] or [])
    ]


def test_postgresql_killed_in_a_cell_fails_the_run_in_one_line(port, results):
    process = start_in_background(
        port, results, **{**TINY, "DURATION": "6s"}, CONFIGS="1x1", ENDPOINTS="sync-db", CONNECTIONS=8
    )
    wait_for_load(port, results, process)
    kill(postmasters(port + 2))  # the db set's PostgreSQL listens on PORT + 2
    code, stderr = finished(process)
    assert code == 1, stderr
    run_dir = ends_failed(results, stderr, "PostgreSQL stopped answering")
    assert (run_dir / "01-1w1t-sync-db-c8" / "wrk.txt").exists()
    assert not server_pids(port) and not postmasters(port + 2)


def test_a_worker_killed_in_a_cell_is_restarted_and_the_summary_says_so(port, results):
    process = start_in_background(
        port, results, **{**TINY, "DURATION": "4s"}, CONFIGS="1x1", ENDPOINTS="async", CONNECTIONS=8
    )
    wait_for_load(port, results, process)
    (master,) = [pid for pid in server_pids(port) if psutil.Process(pid).ppid() not in server_pids(port)]
    kill([child.pid for child in psutil.Process(master).children()])  # gunicorn starts another
    code, stderr = finished(process)
    assert code == 0, stderr
    (row,) = json.loads((only_run_dir(results) / "summary.json").read_text())["cells"]
    assert row["workers_restarted"] >= 1 and "exited" in row["restart_reasons"], row
    assert not server_pids(port)


@pytest.fixture
def small_disk(tmp_path):
    """A 96 KiB file system (root and Linux only: a tmpfs)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("no tmpfs to fill here (it needs root and Linux)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_ends_the_run_in_one_line_and_stops_every_server(port, small_disk):
    results = small_disk / "results"
    process = start_in_background(port, results, **TINY, CONFIGS="1x1 2x1", ENDPOINTS="sync async", CONNECTIONS=8)
    code, stderr = finished(process, timeout=300)
    assert code == 1, stderr
    assert stderr.splitlines()[-1].startswith("benchmark.sh: the run failed; no space is left on its disk"), stderr
    assert "Traceback" not in stderr.split("last lines of")[0]  # ours is one line; a server's log may follow
    assert all(run.name.endswith("-failed") for run in results.iterdir())  # what it wrote, kept and named so
    time.sleep(0.5)
    assert not server_pids(port)
