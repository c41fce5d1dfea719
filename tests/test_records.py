"""What a run records, end to end on tiny configurations: every raw file, run.json, the copy of the
app it serves, the lock, pinning, the warm-up, flags added by hand and what they change.

Measured counts are checked against the model's own band (summary's as_predicted), never for
exact equality, and durations are chosen so that no wave ends as wrk stops.
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import (
    ROOT,
    TINY,
    app_environment,
    assert_as_predicted,
    benchmark_env,
    clone,
    only_run_dir,
    run_benchmark,
    start_in_background,
    summary_groups,
    wait_for_load,
)


def test_tiny_run_writes_every_raw_file_and_counts_within_the_model(port, results):
    out = run_benchmark(port, results, **TINY, CONFIGS="1x1 2x1", CONNECTIONS=8, THREAD_LIMIT=2)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    assert not (run_dir / "INCOMPLETE").exists()
    for name in ["run.json", "cells.tsv", "summary.csv", "summary.json", "summary.md", "plot.png"]:
        assert (run_dir / name).stat().st_size > 0, name
    # The run keeps the app it served (both files, served together) only where it differs from the
    # recorded commit's.
    run = json.loads((run_dir / "run.json").read_text())
    differs = any(
        subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{run['code']['git_commit']}:{name}"], capture_output=True, text=True
        ).stdout
        != (ROOT / name).read_text()
        for name in ("app.py", "counters.py")
    )
    for name in ("app.py", "counters.py"):
        assert (run_dir / name).exists() == differs, name
        assert run["code"]["app_sha256"][name] == hashlib.sha256((ROOT / name).read_bytes()).hexdigest()
    cells = sorted(p.name for p in run_dir.iterdir() if p.is_dir() and p.name != "calibration")
    assert cells == [
        "01-1w1t-sync-c8-limit2",
        "02-1w1t-async-c8-limit2",
        "03-2w1t-sync-c8-limit2",
        "04-2w1t-async-c8-limit2",
    ]
    for cell in cells:
        cell_dir = run_dir / cell
        assert (cell_dir / "wrk.txt").read_text().startswith("Running 3s test @ http://127.0.0.1:")
        assert (cell_dir / "wrk.cmd").read_text().startswith("wrk -t2 -c8 -d3s --timeout 2s http://127.0.0.1:")
        assert " app:app --chdir " in (cell_dir / "server.cmd").read_text()
        assert "Booting worker" in (cell_dir / "server.log").read_text()
        workers = 1 if "-1w" in cell else 2
        for name in ("start", "stop"):
            assert len(list((cell_dir / "stats").glob(f"worker-*.{name}.json"))) == workers
            assert json.loads((cell_dir / f"server.{name}.json").read_text())["roles"]["server"]
        assert not list((cell_dir / "stats").glob("snapshot-*"))  # the runner's requests, gone with the cell
        assert json.loads((cell_dir / "wrk.usage.json").read_text())["exit"] == 0
    assert "[1/4] 1 worker x 1 thread limit 2  /sync  c=8  sleep=0.4s  3s" in out.stdout
    assert len(re.findall(r"^\[\d/4\] 0\d-\S+: \d+ requests  [0-9.]+ req/s ", out.stdout, re.M)) == 4

    run = json.loads((run_dir / "run.json").read_text())
    assert run["parameters"]["configs"] == "1x1 2x1" and run["status"] == "complete"
    assert run["environment"]["packages"]["gunicorn"] and run["environment"]["wrk"].startswith("wrk")
    assert run["environment"]["cpu_count"] >= 1 and run["environment"]["somaxconn"] > 0

    # 8 connections, 0.4 s each, 3 s: 7 waves; 2 threads per worker for /sync.
    predicted = {
        ("1w x 1t limit 2", "sync"): 14,
        ("1w x 1t limit 2", "async"): 56,
        ("2w x 1t limit 2", "sync"): 28,
        ("2w x 1t limit 2", "async"): 56,
    }
    groups = summary_groups(run_dir)
    assert {(g["config"], g["endpoint"]): g["predicted_requests"] for g in groups} == predicted
    assert_as_predicted(groups)
    for cell in json.loads((run_dir / "summary.json").read_text())["cells"]:
        for figure in (
            "server_cpu_s",
            "load_cpu_s",
            "window_s",
            "rss_mib_per_worker",
            "received",
            "in_flight_at_stop",
            "never_answered",
            "peak_waiting",
        ):
            assert cell[figure] is not None, (cell["cell"], figure)
        assert cell["peak_in_handler_per_worker"][0] <= (2 if cell["endpoint"] == "sync" else 8)
        assert 20 < cell["rss_mib_per_worker"][0] < 500
        assert 0 < cell["load_cpu_s"] < cell["window_s"] * 2


def test_def_handler_peaks_at_the_40_threads_and_the_rest_wait(port, results):
    # 100 connections, 0.8 s each, 2 s: 2 waves of 40; wrk stops mid-wave (the 3rd ends at 2.4 s).
    out = run_benchmark(
        port, results, SLEEP_SECONDS=0.8, DURATION="2s", TIMEOUT="2s", CONFIGS="1x4", ENDPOINTS="sync", CONNECTIONS=100
    )
    assert out.returncode == 0, out.stderr
    (group,) = summary_groups(only_run_dir(results))
    assert group["peak_in_handler_max"] == 40  # reached, never passed, despite gunicorn --threads 4
    assert group["bound_by"] == "thread limiter: 40/worker"
    assert group["predicted_requests"] == 80
    assert_as_predicted([group])
    # When wrk stopped: 40 inside the handler and 60 waiting for a thread, none answered yet.
    assert 95 <= group["in_flight_at_stop_median"] <= 100
    assert 60 <= group["peak_waiting_max"] <= 100  # briefly above 60: arrivals beat the freed threads
    assert 0 < group["never_answered_median"] <= 60  # waited the whole run: wrk's latency leaves them out


def test_run_json_keeps_the_exact_command_and_a_dirty_tree_its_diff(port, results, tmp_path):
    repo = clone(tmp_path)
    assert (
        subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True).stdout == ""
    )
    with open(repo / "app.py", "a") as f:
        f.write("# an edit nobody committed\n")
    out = subprocess.run(
        [str(repo / "benchmark.sh"), "--quick", "--label", "x", "--repeat", "2"],
        env=benchmark_env(
            port,
            results,
            SLEEP_SECONDS=0,
            DURATION="10s",
            CONFIGS="1x1",
            ENDPOINTS="async",
            CONNECTIONS=2,
            WRK_THREADS=1,
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["argv"] == [str(repo / "benchmark.sh"), "--quick", "--label", "x", "--repeat", "2"]
    assert (run["parameters"]["label"], run["parameters"]["repeat"], run["parameters"]["scale"]) == ("x", "2", "10")
    # As given (the default 30 s timeout), and as run: --quick divides by 10.
    assert run["parameters"]["timeout"] == "30s"
    assert run["parameters"]["effective"] == {"sleep_s": 0.0, "duration_s": 1, "timeout_s": 3}
    assert run["started"] <= run["ended"] and run["status"] == "complete"
    assert run["code"]["git_dirty"] and run["code"]["git_describe"].endswith("-dirty")
    assert "+# an edit nobody committed" in (run_dir / "code.diff").read_text()
    assert (run_dir / "app.py").read_text().endswith("# an edit nobody committed\n")
    assert len(list(run_dir.glob("*-r[12]/wrk.txt"))) == 2


def test_editing_app_py_during_a_run_does_not_change_what_it_serves(port, results, tmp_path):
    repo = clone(tmp_path)
    process = start_in_background(
        port,
        results,
        repo / "benchmark.sh",
        SLEEP_SECONDS=0.5,
        DURATION="2s",
        TIMEOUT="2s",
        CONFIGS="1x1",
        ENDPOINTS="sync async",
        CONNECTIONS=2,
        WRK_THREADS=1,
    )
    wait_for_load(port, results, process)
    (repo / "app.py").write_text("raise SystemExit('an app.py edited during the run was imported')\n")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "[2/2] 02-1w1t-async-c2:" in stdout


def test_a_second_run_refuses_while_one_runs_and_a_stale_lock_is_taken_over(port, results, tmp_path):
    lock = tmp_path / "benchmark.lock"
    first = start_in_background(
        port,
        results,
        LOCK=lock,
        SLEEP_SECONDS=0.5,
        DURATION="3s",
        TIMEOUT="2s",
        CONFIGS="1x1",
        ENDPOINTS="async",
        CONNECTIONS=2,
        WRK_THREADS=1,
    )
    wait_for_load(port, results, first)
    second = run_benchmark(port + 2, tmp_path / "other", LOCK=lock, **TINY)
    assert second.returncode == 2
    assert re.fullmatch(
        rf"benchmark\.sh: another benchmark is running \(pid {first.pid}: \d{{8}}T\d{{6}}Z-seed\); "
        rf"two runs would share the cores\. Wait for it or stop it: kill {first.pid}\n",
        second.stderr,
    )
    assert first.wait(timeout=60) == 0
    assert not os.path.lexists(lock)  # released at the end
    os.symlink("999999 20000101T000000Z-seed-crashed", lock)  # a run that died without cleaning up
    third = run_benchmark(
        port,
        results,
        LOCK=lock,
        SLEEP_SECONDS=0,
        DURATION="1s",
        CONFIGS="1x1",
        ENDPOINTS="async",
        CONNECTIONS=2,
        WRK_THREADS=1,
    )
    assert third.returncode == 0, third.stderr
    assert not os.path.lexists(lock)


@pytest.mark.skipif(
    shutil.which("taskset") is None or (os.cpu_count() or 1) < 2, reason="PIN needs taskset and 2 cores"
)
def test_pin_puts_the_load_generator_and_the_servers_on_separate_cores(port, results):
    out = run_benchmark(
        port,
        results,
        PIN=1,
        SLEEP_SECONDS=0,
        DURATION="1s",
        CONFIGS="2x1",
        ENDPOINTS="async",
        CONNECTIONS=2,
        WRK_THREADS=1,
    )
    assert out.returncode == 0, out.stderr
    cell = only_run_dir(results) / "01-2w1t-async-c2"
    assert json.loads((cell / "wrk.usage.json").read_text())["cpus"] == [0]
    server = json.loads((cell / "server.stop.json").read_text())["roles"]["server"]
    assert len(server) == 3 and all(p["cpus"] == list(range(1, os.cpu_count())) for p in server)
    run = json.loads((only_run_dir(results) / "run.json").read_text())
    assert run["parameters"]["pin"] == "1"


def test_warmup_runs_unmeasured_before_the_cell(port, results):
    out = run_benchmark(
        port,
        results,
        WARMUP=1,
        SLEEP_SECONDS=0,
        DURATION="1s",
        CONFIGS="1x1",
        ENDPOINTS="async",
        CONNECTIONS=2,
        WRK_THREADS=1,
    )
    assert out.returncode == 0, out.stderr
    cell = only_run_dir(results) / "01-1w1t-async-c2"
    assert (cell / "warmup.txt").read_text().startswith("Running 1s test")
    start = {s["pid"]: s for s in map(json.loads, (p.read_text() for p in (cell / "stats").glob("*.start.json")))}
    assert all(s["endpoints"]["async"]["received"] > 0 for s in start.values())  # the warm-up came first
    (row,) = json.loads((cell.parent / "summary.json").read_text())["cells"]
    assert row["received"] <= row["requests"] + 2  # the window counts only the measured pass


def test_a_flag_added_by_hand_shows_everywhere_and_a_pasted_server_cmd_starts_the_same_server(port, results, tmp_path):
    repo = clone(tmp_path)  # clean: the run serves the committed app.py, and its commands name the repository
    out = subprocess.run(
        [str(repo / "benchmark.sh"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=benchmark_env(
            port,
            results,
            GUNICORN_CMD_ARGS="--backlog 64",
            SLEEP_SECONDS=4,
            DURATION="30s",
            TIMEOUT="20s",
            CONFIGS="1x1",
            ENDPOINTS="async",
            CONNECTIONS=4,
            WRK_THREADS=2,
        ),
    )
    assert out.returncode == 0, out.stderr
    plan = out.stdout.split("\nRun directory:")[0]  # its knobs go on as many lines as they need
    assert re.fullmatch(r"set seed: 1 cells .*\n  wrk .*; knobs: .*GUNICORN_CMD_ARGS='--backlog 64'", plan, re.S), plan
    assert re.search(r"^1w x 1t \+--backlog 64 +/async ", out.stdout, re.M)  # the compact table
    run_dir = only_run_dir(results)
    assert "| 1w x 1t +--backlog 64 | /async |" in (run_dir / "summary.md").read_text()
    assert not (run_dir / "app.py").exists()
    command = (run_dir / "01-1w1t-async-c4" / "server.cmd").read_text()
    words = shlex.split(command)
    assert words[0] == "env" and "SLEEP_SECONDS=0.4" in words and "GUNICORN_CMD_ARGS=--backlog 64" in words
    assert "-uTHREAD_LIMIT" in words  # a THREAD_LIMIT in the shell it is pasted into does not leak in
    assert words[words.index("--chdir") + 1] == str(repo)
    pasted = subprocess.Popen(
        ["bash", "-c", command],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env=app_environment(),
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/async", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer.json() == {"slept": 0.4}
        gunicorn = [w for w in words[1:] if "=" not in w and not w.startswith("-u")]
        # The same server with the same flags (gunicorn's script runs under the venv's python).
        assert psutil.Process(pasted.pid).cmdline()[-len(gunicorn) :] == gunicorn
    finally:
        os.killpg(pasted.pid, signal.SIGKILL)
        pasted.wait()


def test_max_requests_restarts_are_counted_and_the_gone_workers_connections_kept(port, results):
    out = run_benchmark(
        port, results, "--quick", GUNICORN_CMD_ARGS="--max-requests 100", CONFIGS="4x1", ENDPOINTS="sync"
    )
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    (row,) = json.loads((run_dir / "summary.json").read_text())["cells"]
    log = (run_dir / row["cell"] / "server.log").read_text()
    assert row["workers_restarted"] >= 1 and "max-requests" in row["restart_reasons"], row
    # Each restart once: a new worker's start-up, or (still draining at the stop) the old one's reason.
    draining = max(log.count("Autorestarting worker after current request"), log.count("Maximum request limit of"))
    assert row["workers_restarted"] == max(log.count("Application startup complete") - 4, draining)
    # Every connection is on some worker's count, the gone (or still draining) workers' included.
    assert len(row["connections_per_worker"]) == log.count("Application startup complete")
    assert sum(row["connections_per_worker"]) >= 100


@pytest.mark.skipif(not Path("/proc/net/netstat").exists(), reason="the kernel's listen counters are Linux's")
def test_a_short_backlog_overflows_the_accept_queue_and_the_summary_shows_it(port, results):
    out = run_benchmark(
        port, results, "--quick", GUNICORN_CMD_ARGS="--backlog 64", CONFIGS="1x1", ENDPOINTS="async", CONNECTIONS=1000
    )
    assert out.returncode == 0, out.stderr
    (row,) = json.loads((only_run_dir(results) / "summary.json").read_text())["cells"]
    assert row["listen_backlog"] == 64 and row["listen_overflows"] > 0 and row["connections_started_late"] > 0
    assert row["expected_low"] < row["expected_requests"] and row["as_predicted"], row
    assert "accept queue overflowed" in row["bound_by"]
