"""benchmark.sh's command line: bad input in one line before anything starts, help, plans, ports."""

import os
import socket
import subprocess
import time

import pytest

from conftest import ROOT, TINY, benchmark_env, only_run_dir, run_benchmark, summary_groups
from core.endpoints import ENDPOINTS


def test_quick_mode_divides_sleep_duration_and_timeout_by_ten(port, results):
    out = run_benchmark(
        port,
        results,
        "--quick",
        SLEEP_SECONDS=5,
        DURATION="30s",
        TIMEOUT="20s",
        CONFIGS="1x1",
        ENDPOINTS="async",
        CONNECTIONS=4,
        WRK_THREADS=2,
    )
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    assert run_dir.name.endswith("-seed-quick")
    wrk = (run_dir / "01-1w1t-async-c4" / "wrk.txt").read_text()
    assert wrk.startswith("Running 3s test")
    assert "c=4  sleep=0.5s  3s" in out.stdout
    (group,) = summary_groups(run_dir)
    assert group["predicted_requests"] == 4 * 5  # the same count as the full-scale run would give


def test_each_run_gets_its_own_directory(port, results):
    for _ in range(2):
        out = run_benchmark(
            port,
            results,
            SLEEP_SECONDS=0,
            DURATION="1s",
            CONFIGS="1x1",
            ENDPOINTS="async",
            CONNECTIONS=2,
            WRK_THREADS=1,
        )
        assert out.returncode == 0, out.stderr
    assert len(list(results.iterdir())) == 2


@pytest.mark.parametrize(
    "knobs, message",
    [
        (dict(CONFIGS="0x1"), "workers in '0x1' must be a positive whole number, got '0'"),
        (dict(CONFIGS="4xfour"), "CONFIGS entries look like 4x1 (workers x threads), got '4xfour'"),
        (dict(ENDPOINTS="sync blocking"), f"unknown endpoint 'blocking' ({', '.join(ENDPOINTS)})"),
        (dict(SERVER="hypercorn"), "unknown server 'hypercorn' (gunicorn gunicorn-reuse-port uvicorn granian)"),
        (dict(DURATION="500ms"), "DURATION must be a whole number of seconds, minutes or hours (30s, 1m), got '500ms'"),
        (dict(DURATION="15s", SCALE=10), "DURATION=15s divided by SCALE=10 is not a whole number of seconds >= 1"),
        (dict(TIMEOUT="soon"), "TIMEOUT must be a whole number of seconds, minutes or hours (30s, 1m), got 'soon'"),
        (dict(CONNECTIONS=2), "CONNECTIONS (2) must be >= WRK_THREADS (4), as wrk requires"),
        (dict(CONNECTIONS="many"), "CONNECTIONS must be a positive whole number, got 'many'"),
        (dict(SLEEP_SECONDS="-1"), "SLEEP_SECONDS must be a number >= 0, got '-1'"),
        (dict(THREAD_LIMIT="0"), "THREAD_LIMIT must be a positive whole number, got '0'"),
        (dict(HTTP_POOL="0"), "HTTP_POOL must be a positive whole number, got '0'"),
        (dict(RATES="0"), "RATES are fractions of capacity > 0, got '0'"),
        (dict(REPEAT="x"), "REPEAT must be a positive whole number, got 'x'"),
        (dict(PIN="yes"), "PIN must be 0 or 1, got 'yes'"),
        (dict(WARMUP="soon"), "WARMUP must be auto or a whole number of seconds, got 'soon'"),
        (dict(PORT="70000"), "PORT must be below 65536, got '70000'"),
        (
            dict(WORKER_CLASS="nosuch.Worker"),
            "WORKER_CLASS=nosuch.Worker does not load in gunicorn: ModuleNotFoundError: No module named 'nosuch'",
        ),
        (
            dict(GUNICORN_CMD_ARGS="--no-such-flag"),
            "GUNICORN_CMD_ARGS=--no-such-flag: gunicorn refuses it: unrecognized arguments: --no-such-flag",
        ),
        (dict(WRK="/nonexistent/wrk"), "wrk not found: WRK=/nonexistent/wrk"),
        (
            dict(GUNICORN_CMD_ARGS="--version"),
            "GUNICORN_CMD_ARGS=--version: gunicorn refuses it: it makes gunicorn print and exit instead of serving",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_nothing_starts(port, results, knobs, message):
    out = run_benchmark(port, results, **knobs)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"benchmark.sh: {message}"), out.stderr
    assert not results.exists() and out.stdout == ""


def test_too_low_open_file_limit_is_reported(port, results):
    out = subprocess.run(
        ["bash", "-c", 'ulimit -n 512 && exec "$0"', str(ROOT / "benchmark.sh")],
        env=benchmark_env(port, results, CONNECTIONS=1000),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr == (
        "benchmark.sh: ulimit -n is 512, too low for 1000 connections; raise it first: ulimit -n 2024\n"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--set", "everything"],
            "unknown set 'everything' (seed concurrency threads workers overhead servers upstream db app openloop)",
        ),
        (["--bogus"], "unknown argument '--bogus' (see --help)"),
        (["--label", "a b"], "--label may hold only letters, digits, '.', '_' and '-', got 'a b'"),
    ],
)
def test_bad_arguments(port, results, args, message):
    out = run_benchmark(port, results, *args)
    assert (out.returncode, out.stderr) == (2, f"benchmark.sh: {message}\n")


def test_help_lists_every_knob(port, results):
    out = run_benchmark(port, results, "--help")
    assert out.returncode == 0
    for knob in [
        "SLEEP_SECONDS",
        "DURATION",
        "TIMEOUT",
        "CONNECTIONS",
        "WRK_THREADS",
        "CONFIGS",
        "ENDPOINTS",
        "SERVER",
        "WORKER_CLASS",
        "THREAD_LIMIT",
        "HTTP_POOL",
        "HTTP_POOL_TIMEOUT",
        "RATES",
        "HOST",
        "PORT",
        "UPSTREAM_PORT",
        "GUNICORN_CMD_ARGS",
        "--quick",
        "SCALE",
        "REPEAT",
        "WARMUP",
        "PIN",
        "--set",
        "--quiet",
        "--reference",
        "LOCK",
        "VENV",
        "about 1,000",
    ]:
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
    assert (out.returncode, out.stderr) == (
        2,
        f"benchmark.sh: cannot listen on no-such-host.invalid:{port}; check HOST and PORT\n",
    )


def test_server_that_cannot_start_shows_its_log_and_fails(port, results):
    # A flag gunicorn takes, for a directory that is not there: its arbiter fails as it starts a worker.
    out = run_benchmark(port, results, **TINY, CONFIGS="1x1", GUNICORN_CMD_ARGS="--worker-tmp-dir /no/such/dir")
    assert out.returncode == 1
    assert "gunicorn exited during start-up; last lines of" in out.stderr
    assert "/no/such/dir" in out.stderr  # the tail of gunicorn's own log
    run_dir = only_run_dir(results)
    assert (run_dir / "INCOMPLETE").exists() and run_dir.name.endswith("-seed-failed")  # no glob for good runs
    assert out.stderr.splitlines()[-1] == f"benchmark.sh: the run failed; what it wrote is in {run_dir}"


def test_gunicorn_cmd_args_reach_gunicorn(port, results):
    out = run_benchmark(
        port, results, **TINY, CONFIGS="1x1", ENDPOINTS="async", CONNECTIONS=2, GUNICORN_CMD_ARGS="--log-level debug"
    )
    assert out.returncode == 0, out.stderr
    log = (only_run_dir(results) / "01-1w1t-async-c2" / "server.log").read_text()
    assert "[DEBUG]" in log


def test_openloop_refuses_more_open_connections_than_httperf_can_hold(port, results):
    out = run_benchmark(port, results, "--set", "openloop", TIMEOUT="30s")
    assert (out.returncode, out.stderr) == (
        2,
        "benchmark.sh: rate 36/s x timeout 30s keeps about 1080 connections "
        "open; httperf's select() allows about 1000: lower RATES or TIMEOUT\n",
    )


def test_missing_httperf_is_named(port, results):
    out = run_benchmark(port, results, "--set", "openloop", HTTPERF="/nonexistent/httperf")
    assert (out.returncode, out.stderr) == (2, "benchmark.sh: httperf not found: HTTPERF=/nonexistent/httperf\n")


def test_setup_list_and_help_need_no_lock_but_a_run_does(port, results, tmp_path):
    lock = tmp_path / "lock"
    holder = subprocess.Popen(["bash", "-c", "exec -a benchmark.sh sleep 60"])
    try:
        time.sleep(0.3)
        os.symlink(f"{holder.pid} 20000101T000000Z-seed", lock)
        for args in (["--list"], ["--help"], ["--setup"], ["--reference", "--list"]):
            out = run_benchmark(port, results, *args, LOCK=lock)
            assert out.returncode == 0, (args, out.stderr)
        out = run_benchmark(port, results, LOCK=lock, **TINY)
        assert out.returncode == 2 and f"another benchmark is running (pid {holder.pid}" in out.stderr
    finally:
        holder.kill()
