"""benchmark.sh end to end: real gunicorn, real wrk, on 127.0.0.1, in tiny configurations."""

import hashlib
import re
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import ROOT, benchmark_env, gunicorn_pids, only_run_dir, run_benchmark, summary_groups

TINY = dict(SLEEP_SECONDS=0.5, DURATION="3s", TIMEOUT="2s", WRK_THREADS=2)


def test_tiny_run_writes_every_raw_file_and_the_expected_counts(port, results):
    out = run_benchmark(port, results, **TINY, CONFIGS="1x1 2x1", CONNECTIONS=8, THREAD_LIMIT=2)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    assert not (run_dir / "INCOMPLETE").exists()
    for name in ["run.json", "cells.tsv", "summary.csv", "summary.json", "summary.md", "plot.png"]:
        assert (run_dir / name).stat().st_size > 0, name
    cells = sorted(p.name for p in run_dir.iterdir() if p.is_dir())
    assert cells == ["01-1w1t-sync-c8-limit2", "02-1w1t-async-c8-limit2", "03-2w1t-sync-c8-limit2", "04-2w1t-async-c8-limit2"]
    for cell in cells:
        assert (run_dir / cell / "wrk.txt").read_text().startswith("Running 3s test @ http://127.0.0.1:")
        assert "Booting worker" in (run_dir / cell / "gunicorn.log").read_text()
        assert list((run_dir / cell / "stats").glob("worker-*.json"))
    # Progress lines before and after every cell.
    assert "[1/4] 1 worker x 1 thread limit 2  /sync  c=8 sleep=0.5s  3s" in out.stdout
    assert len(re.findall(r"^      \d+ requests  [0-9.]+ req/s ", out.stdout, re.M)) == 4

    run = json.loads((run_dir / "run.json").read_text())
    assert run["parameters"]["configs"] == "1x1 2x1"
    assert run["environment"]["packages"]["gunicorn"] and run["environment"]["wrk"].startswith("wrk")
    assert run["environment"]["cpu_count"] >= 1

    # A closed loop of 8 connections, 0.5 s each, for 3 s: 5 complete waves (the 6th ends just
    # as wrk stops). 2 threads per worker for /sync: 2 (one worker) or 4 (two) per wave.
    expected = {("1w x 1t limit 2", "sync"): 10, ("1w x 1t limit 2", "async"): 40,
                ("2w x 1t limit 2", "async"): 40}
    for group in summary_groups(run_dir):
        key = (group["config"], group["endpoint"])
        if key in expected:
            assert group["predicted_requests"] == expected[key]
            assert expected[key] <= group["requests_median"] <= expected[key] * 1.2, group
        assert group["peak_in_handler_max"] <= (2 if group["endpoint"] == "sync" else 8)


def test_peak_in_a_def_handler_never_exceeds_anyio_default_limit_of_40(port, results):
    out = run_benchmark(port, results, SLEEP_SECONDS=0.5, DURATION="2s", TIMEOUT="2s",
                        CONFIGS="1x4", ENDPOINTS="sync", CONNECTIONS=100)
    assert out.returncode == 0, out.stderr
    (group,) = summary_groups(only_run_dir(results))
    assert group["peak_in_handler_max"] == 40  # reached, never passed, despite gunicorn --threads 4
    assert group["bound_by"] == "thread limiter: 40/worker"
    assert group["requests_median"] == 3 * 40


def test_quick_mode_divides_sleep_duration_and_timeout_by_ten(port, results):
    out = run_benchmark(port, results, "--quick", SLEEP_SECONDS=5, DURATION="30s", TIMEOUT="20s",
                        CONFIGS="1x1", ENDPOINTS="async", CONNECTIONS=4, WRK_THREADS=2)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    assert run_dir.name.endswith("-seed-quick")
    wrk = (run_dir / "01-1w1t-async-c4" / "wrk.txt").read_text()
    assert wrk.startswith("Running 3s test")
    assert "c=4 sleep=0.5s  3s" in out.stdout
    (group,) = summary_groups(run_dir)
    assert group["predicted_requests"] == 4 * 5  # the same count as the full-scale run would give


def test_each_run_gets_its_own_directory(port, results):
    for _ in range(2):
        out = run_benchmark(port, results, SLEEP_SECONDS=0, DURATION="1s", CONFIGS="1x1", ENDPOINTS="async",
                            CONNECTIONS=2, WRK_THREADS=1)
        assert out.returncode == 0, out.stderr
    assert len(list(results.iterdir())) == 2


@pytest.mark.parametrize("knobs, message", [
    (dict(CONFIGS="0x1"), "workers in '0x1' must be a positive whole number, got '0'"),
    (dict(CONFIGS="4xfour"), "CONFIGS entries look like 4x1 (workers x threads), got '4xfour'"),
    (dict(ENDPOINTS="sync blocking"), "unknown endpoint 'blocking' (sync, async, async-blocking)"),
    (dict(DURATION="500ms"), "DURATION must be a whole number of seconds, minutes or hours (30s, 1m), got '500ms'"),
    (dict(DURATION="15s", SCALE=10), "DURATION=15s divided by SCALE=10 is not a whole number of seconds >= 1"),
    (dict(TIMEOUT="soon"), "TIMEOUT must be a whole number of seconds, minutes or hours (30s, 1m), got 'soon'"),
    (dict(CONNECTIONS=2), "CONNECTIONS (2) must be >= WRK_THREADS (4), as wrk requires"),
    (dict(CONNECTIONS="many"), "CONNECTIONS must be a positive whole number, got 'many'"),
    (dict(SLEEP_SECONDS="-1"), "SLEEP_SECONDS must be a number of seconds >= 0, got '-1'"),
    (dict(THREAD_LIMIT="0"), "THREAD_LIMIT must be a positive whole number, got '0'"),
    (dict(REPEAT="x"), "REPEAT must be a positive whole number, got 'x'"),
    (dict(PORT="70000"), "PORT must be below 65536, got '70000'"),
    (dict(WRK="/nonexistent/wrk"), "wrk not found: WRK=/nonexistent/wrk"),
])
def test_bad_input_is_one_clear_line_and_nothing_starts(port, results, knobs, message):
    out = run_benchmark(port, results, **knobs)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"benchmark.sh: {message}"), out.stderr
    assert not results.exists() and out.stdout == ""


def test_too_low_open_file_limit_is_reported(port, results):
    out = subprocess.run(["bash", "-c", 'ulimit -n 512 && exec "$0"', str(ROOT / "benchmark.sh")],
                         env=benchmark_env(port, results, CONNECTIONS=1000), capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr == ("benchmark.sh: ulimit -n is 512, too low for 1000 connections; "
                          "raise it first: ulimit -n 2024\n")


@pytest.mark.parametrize("args, message", [
    (["--set", "everything"], "unknown set 'everything' (seed, concurrency, threads, workers, overhead)"),
    (["--bogus"], "unknown argument '--bogus' (see --help)"),
    (["--label", "a b"], "--label may hold only letters, digits, '.', '_' and '-', got 'a b'"),
])
def test_bad_arguments(port, results, args, message):
    out = run_benchmark(port, results, *args)
    assert (out.returncode, out.stderr) == (2, f"benchmark.sh: {message}\n")


def test_help_lists_every_knob(port, results):
    out = run_benchmark(port, results, "--help")
    assert out.returncode == 0
    for knob in ["SLEEP_SECONDS", "DURATION", "TIMEOUT", "CONNECTIONS", "WRK_THREADS", "CONFIGS", "ENDPOINTS",
                 "WORKER_CLASS", "HOST", "PORT", "GUNICORN_CMD_ARGS", "--quick", "SCALE", "REPEAT", "--set"]:
        assert knob in out.stdout


def test_port_in_use_is_named_and_nothing_starts(port, results):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        out = run_benchmark(port, results, **TINY, CONFIGS="1x1")
    assert out.returncode == 2
    assert out.stderr == f"benchmark.sh: port {port} on 127.0.0.1 is already in use; stop what holds it or set PORT\n"
    assert not results.exists()


def test_host_that_cannot_be_bound_is_reported(port, results):
    out = run_benchmark(port, results, HOST="no-such-host.invalid")
    assert (out.returncode, out.stderr) == (2, f"benchmark.sh: cannot listen on no-such-host.invalid:{port}; check HOST and PORT\n")


def test_server_that_cannot_start_shows_its_log_and_fails(port, results):
    out = run_benchmark(port, results, **TINY, CONFIGS="1x1", WORKER_CLASS="no_such_module.Worker")
    assert out.returncode == 1
    assert "gunicorn exited during start-up; last lines of" in out.stderr
    assert "no_such_module" in out.stderr  # the tail of gunicorn's own log
    assert (only_run_dir(results) / "INCOMPLETE").exists()


def test_gunicorn_cmd_args_reach_gunicorn(port, results):
    out = run_benchmark(port, results, **TINY, CONFIGS="1x1", ENDPOINTS="async", CONNECTIONS=2,
                        GUNICORN_CMD_ARGS="--log-level debug")
    assert out.returncode == 0, out.stderr
    log = (only_run_dir(results) / "01-1w1t-async-c2" / "gunicorn.log").read_text()
    assert "[DEBUG]" in log


def start_in_background(port, results, **knobs):
    return subprocess.Popen(
        [str(ROOT / "benchmark.sh")], env=benchmark_env(port, results, **knobs), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, stdin=subprocess.DEVNULL,
    )


def wait_for_wrk(port, results, process, timeout=60):
    """Until the first cell's wrk is running against a live server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if gunicorn_pids(port) and results.exists() and list(results.glob("*/01-*/wrk.txt")):
            time.sleep(1)
            return
        time.sleep(0.1)
    raise AssertionError("benchmark.sh never reached wrk")


def tree_digest(path):
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        digest.update(str(file.relative_to(path)).encode())
        if file.is_file():
            digest.update(file.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("how", ["SIGINT to the process group (Ctrl-C)", "SIGTERM to the script alone"])
def test_interrupt_stops_everything_and_keeps_results(port, results, how):
    earlier = results / "20000101T000000Z-seed-earlier"
    earlier.mkdir(parents=True)
    (earlier / "summary.md").write_text("an earlier run\n")
    before = tree_digest(earlier)

    process = start_in_background(port, results, SLEEP_SECONDS=2, DURATION="20s", TIMEOUT="5s",
                                  CONFIGS="1x1 4x1", ENDPOINTS="sync async")
    wait_for_wrk(port, results, process)
    started = time.monotonic()
    if how.startswith("SIGINT"):
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert time.monotonic() - started < 15
    assert process.returncode == 130
    assert "interrupted; stopping the server" in stderr
    assert "[2/" not in stdout  # it did not go on with the next cell
    assert gunicorn_pids(port) == []
    assert tree_digest(earlier) == before
    partial = [run for run in results.iterdir() if run != earlier]
    assert len(partial) == 1 and (partial[0] / "INCOMPLETE").exists()
    assert (partial[0] / "run.json").exists()
