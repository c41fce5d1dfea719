"""Interrupted runs: Ctrl-C, SIGTERM, SIGHUP and SIGKILL stop every server and keep every earlier result."""

import json
import os
import re
import signal
import time

import psutil
import pytest

from conftest import run_benchmark, server_pids, start_in_background, tree_digest, wait_for_load


@pytest.mark.parametrize("how", ["SIGINT to the process group (Ctrl-C)", "SIGTERM to the script alone"])
def test_interrupt_stops_everything_and_keeps_results(port, results, how):
    earlier = results / "20000101T000000Z-seed-earlier"
    earlier.mkdir(parents=True)
    (earlier / "summary.md").write_text("an earlier run\n")
    before = tree_digest(earlier)

    process = start_in_background(
        port, results, SLEEP_SECONDS=2, DURATION="20s", TIMEOUT="5s", CONFIGS="1x1 4x1", ENDPOINTS="sync async"
    )
    wait_for_load(port, results, process)
    started = time.monotonic()
    if how.startswith("SIGINT"):
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert time.monotonic() - started < 15
    assert process.returncode == 130
    assert "interrupted; its servers are stopped" in stderr
    assert "[2/" not in stdout  # it did not go on with the next cell
    assert server_pids(port) == []
    assert tree_digest(earlier) == before
    partial = [run for run in results.iterdir() if run != earlier]
    assert len(partial) == 1 and (partial[0] / "INCOMPLETE").exists()
    assert partial[0].name.endswith("-interrupted") and str(partial[0]) in stderr  # no glob for good runs takes it
    assert json.loads((partial[0] / "run.json").read_text())["status"] == "interrupted"
    assert not psutil.pid_exists(process.pid) or psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE
    assert not any(
        "wrk" in " ".join(p.info["cmdline"] or []) and str(port) in " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["cmdline"])
    )


def test_sighup_when_the_terminal_closes_leaves_no_server(port, results):
    process = start_in_background(
        port,
        results,
        SLEEP_SECONDS=1,
        DURATION="20s",
        TIMEOUT="5s",
        CONFIGS="2x1",
        ENDPOINTS="sync-http",
        CONNECTIONS=8,
        WRK_THREADS=2,
    )
    wait_for_load(port, results, process)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=30) == 130
    assert server_pids(port) == [] and server_pids(port + 1) == []  # the server and its upstream
    (run_dir,) = results.iterdir()
    assert run_dir.name.endswith("-interrupted")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"


def test_after_sigkill_the_next_run_stops_what_the_killed_one_left(port, results, tmp_path):
    lock = tmp_path / "lock"
    killed = start_in_background(
        port,
        results,
        LOCK=lock,
        SLEEP_SECONDS=1,
        DURATION="30s",
        TIMEOUT="5s",
        CONFIGS="2x1",
        ENDPOINTS="sync",
        CONNECTIONS=8,
        WRK_THREADS=2,
    )
    wait_for_load(port, results, killed)

    def load_generators() -> list[int]:
        return [p.pid for p in psutil.process_iter(["cmdline"]) if f":{port}/" in " ".join(p.info["cmdline"] or [])]

    def recorded() -> bool:
        """wrk runs, and the lock lists its session (the runner records it just after starting it)."""
        target = os.readlink(lock) if lock.is_symlink() else ""
        return any(f" {pid}@" in target for pid in load_generators())

    deadline = time.monotonic() + 10
    while not recorded() and time.monotonic() < deadline:  # wrk starts just after the start snapshot
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # no clean-up runs: its server and its wrk go on
    killed.wait(timeout=10)
    left, wrk = server_pids(port), load_generators()
    assert left and wrk, "the killed run's server and wrk should still be running"
    after = run_benchmark(
        port,
        tmp_path / "after",
        LOCK=lock,
        SLEEP_SECONDS=0,
        DURATION="1s",
        CONFIGS="1x1",
        ENDPOINTS="async",
        CONNECTIONS=2,
        WRK_THREADS=1,
    )
    assert after.returncode == 0, after.stderr
    assert re.search(rf"stopping \d+ processes a killed run \(pid {killed.pid}\) left behind: ", after.stderr)
    for pid in left + wrk:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    assert not os.path.lexists(lock)
