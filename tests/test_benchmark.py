"""benchmark.sh end to end: real servers, real wrk, on 127.0.0.1, in tiny configurations.

Measured counts are checked against the model's own band (summary's as_predicted), never for
exact equality, and durations are chosen so that no wave ends as wrk stops.
"""

import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import shutil

from conftest import ROOT, app_environment, benchmark_env, only_run_dir, run_benchmark, server_pids, summary_groups
from core.endpoints import ENDPOINTS

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
    differs = any(subprocess.run(["git", "-C", str(ROOT), "show", f"{run['code']['git_commit']}:{name}"],
                                 capture_output=True, text=True).stdout != (ROOT / name).read_text()
                  for name in ("app.py", "counters.py"))
    for name in ("app.py", "counters.py"):
        assert (run_dir / name).exists() == differs, name
        assert run["code"]["app_sha256"][name] == hashlib.sha256((ROOT / name).read_bytes()).hexdigest()
    cells = sorted(p.name for p in run_dir.iterdir() if p.is_dir())
    assert cells == ["01-1w1t-sync-c8-limit2", "02-1w1t-async-c8-limit2", "03-2w1t-sync-c8-limit2", "04-2w1t-async-c8-limit2"]
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
    predicted = {("1w x 1t limit 2", "sync"): 14, ("1w x 1t limit 2", "async"): 56,
                 ("2w x 1t limit 2", "sync"): 28, ("2w x 1t limit 2", "async"): 56}
    groups = summary_groups(run_dir)
    assert {(g["config"], g["endpoint"]): g["predicted_requests"] for g in groups} == predicted
    assert_as_predicted(groups)
    for cell in json.loads((run_dir / "summary.json").read_text())["cells"]:
        for figure in ("server_cpu_s", "load_cpu_s", "window_s", "rss_mib_per_worker", "received",
                       "in_flight_at_stop", "never_answered", "peak_waiting"):
            assert cell[figure] is not None, (cell["cell"], figure)
        assert cell["peak_in_handler_per_worker"][0] <= (2 if cell["endpoint"] == "sync" else 8)
        assert 20 < cell["rss_mib_per_worker"][0] < 500
        assert 0 < cell["load_cpu_s"] < cell["window_s"] * 2


def test_def_handler_peaks_at_the_40_threads_and_the_rest_wait(port, results):
    # 100 connections, 0.8 s each, 2 s: 2 waves of 40; wrk stops mid-wave (the 3rd ends at 2.4 s).
    out = run_benchmark(port, results, SLEEP_SECONDS=0.8, DURATION="2s", TIMEOUT="2s",
                        CONFIGS="1x4", ENDPOINTS="sync", CONNECTIONS=100)
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


def test_quick_mode_divides_sleep_duration_and_timeout_by_ten(port, results):
    out = run_benchmark(port, results, "--quick", SLEEP_SECONDS=5, DURATION="30s", TIMEOUT="20s",
                        CONFIGS="1x1", ENDPOINTS="async", CONNECTIONS=4, WRK_THREADS=2)
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
        out = run_benchmark(port, results, SLEEP_SECONDS=0, DURATION="1s", CONFIGS="1x1", ENDPOINTS="async",
                            CONNECTIONS=2, WRK_THREADS=1)
        assert out.returncode == 0, out.stderr
    assert len(list(results.iterdir())) == 2


@pytest.mark.parametrize("knobs, message", [
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
    (["--set", "everything"], "unknown set 'everything' (seed concurrency threads workers overhead servers "
                              "upstream db openloop)"),
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
                 "SERVER", "WORKER_CLASS", "THREAD_LIMIT", "HTTP_POOL", "HTTP_POOL_TIMEOUT", "RATES", "HOST",
                 "PORT", "UPSTREAM_PORT", "GUNICORN_CMD_ARGS", "--quick", "SCALE", "REPEAT", "WARMUP", "PIN",
                 "--set", "--quiet", "--reference", "LOCK", "VENV", "about 1,000"]:
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
    run_dir = only_run_dir(results)
    assert (run_dir / "INCOMPLETE").exists()


def test_gunicorn_cmd_args_reach_gunicorn(port, results):
    out = run_benchmark(port, results, **TINY, CONFIGS="1x1", ENDPOINTS="async", CONNECTIONS=2,
                        GUNICORN_CMD_ARGS="--log-level debug")
    assert out.returncode == 0, out.stderr
    log = (only_run_dir(results) / "01-1w1t-async-c2" / "server.log").read_text()
    assert "[DEBUG]" in log


# ---------------------------------------------------------------- records that replay a run


def clone(tmp_path):
    """This working tree (results aside) as a fresh, clean repository, to run or edit freely."""
    repo = tmp_path / "repo"
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if not name.startswith("results/") and (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@localhost"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "snapshot"]):
        subprocess.run(git + command, check=True)
    return repo


def test_run_json_keeps_the_exact_command_and_a_dirty_tree_its_diff(port, results, tmp_path):
    repo = clone(tmp_path)
    assert subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True).stdout == ""
    with open(repo / "app.py", "a") as f:
        f.write("# an edit nobody committed\n")
    out = subprocess.run([str(repo / "benchmark.sh"), "--quick", "--label", "x", "--repeat", "2"],
                         env=benchmark_env(port, results, SLEEP_SECONDS=0, DURATION="10s", CONFIGS="1x1",
                                           ENDPOINTS="async", CONNECTIONS=2, WRK_THREADS=1),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["argv"] == [str(repo / "benchmark.sh"), "--quick", "--label", "x", "--repeat", "2"]
    assert (run["parameters"]["label"], run["parameters"]["repeat"], run["parameters"]["scale"]) == ("x", "2", "10")
    assert run["started"] <= run["ended"] and run["status"] == "complete"
    assert run["code"]["git_dirty"] and run["code"]["git_describe"].endswith("-dirty")
    assert "+# an edit nobody committed" in (run_dir / "code.diff").read_text()
    assert (run_dir / "app.py").read_text().endswith("# an edit nobody committed\n")
    assert len(list(run_dir.glob("*-r[12]/wrk.txt"))) == 2


def start_in_background(port, results, script=ROOT / "benchmark.sh", *args, **knobs):
    return subprocess.Popen(
        [str(script), *args], env=benchmark_env(port, results, **knobs), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, stdin=subprocess.DEVNULL,
    )


def wait_for_load(port, results, process, timeout=60):
    """Until the first cell's load generator is running against a live server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if server_pids(port) and results.exists() and list(results.glob("*/01-*/*.usage.json")) == [] \
                and list(results.glob("*/01-*/server.start.json")):
            return
        time.sleep(0.05)
    raise AssertionError("benchmark.sh never reached the load generator")


def test_editing_app_py_during_a_run_does_not_change_what_it_serves(port, results, tmp_path):
    repo = clone(tmp_path)
    process = start_in_background(port, results, repo / "benchmark.sh", SLEEP_SECONDS=0.5, DURATION="2s",
                                  TIMEOUT="2s", CONFIGS="1x1", ENDPOINTS="sync async", CONNECTIONS=2, WRK_THREADS=1)
    wait_for_load(port, results, process)
    (repo / "app.py").write_text("raise SystemExit('an app.py edited during the run was imported')\n")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "[2/2] 02-1w1t-async-c2:" in stdout


def test_a_second_run_refuses_while_one_runs_and_a_stale_lock_is_taken_over(port, results, tmp_path):
    lock = tmp_path / "benchmark.lock"
    first = start_in_background(port, results, LOCK=lock, SLEEP_SECONDS=0.5, DURATION="3s", TIMEOUT="2s",
                                CONFIGS="1x1", ENDPOINTS="async", CONNECTIONS=2, WRK_THREADS=1)
    wait_for_load(port, results, first)
    second = run_benchmark(port + 2, tmp_path / "other", LOCK=lock, **TINY)
    assert second.returncode == 2
    assert re.fullmatch(rf"benchmark\.sh: another benchmark is running \(pid {first.pid}: \d{{8}}T\d{{6}}Z-seed\); "
                        rf"two runs would share the cores\. Wait for it or stop it: kill {first.pid}\n", second.stderr)
    assert first.wait(timeout=60) == 0
    assert not os.path.lexists(lock)  # released at the end
    os.symlink("999999 20000101T000000Z-seed-crashed", lock)  # a run that died without cleaning up
    third = run_benchmark(port, results, LOCK=lock, SLEEP_SECONDS=0, DURATION="1s", CONFIGS="1x1",
                          ENDPOINTS="async", CONNECTIONS=2, WRK_THREADS=1)
    assert third.returncode == 0, third.stderr
    assert not os.path.lexists(lock)


@pytest.mark.skipif(shutil.which("taskset") is None or (os.cpu_count() or 1) < 2, reason="PIN needs taskset and 2 cores")
def test_pin_puts_the_load_generator_and_the_servers_on_separate_cores(port, results):
    out = run_benchmark(port, results, PIN=1, SLEEP_SECONDS=0, DURATION="1s", CONFIGS="2x1", ENDPOINTS="async",
                        CONNECTIONS=2, WRK_THREADS=1)
    assert out.returncode == 0, out.stderr
    cell = only_run_dir(results) / "01-2w1t-async-c2"
    assert json.loads((cell / "wrk.usage.json").read_text())["cpus"] == [0]
    server = json.loads((cell / "server.stop.json").read_text())["roles"]["server"]
    assert len(server) == 3 and all(p["cpus"] == list(range(1, os.cpu_count())) for p in server)
    run = json.loads((only_run_dir(results) / "run.json").read_text())
    assert run["parameters"]["pin"] == "1"


def test_warmup_runs_unmeasured_before_the_cell(port, results):
    out = run_benchmark(port, results, WARMUP=1, SLEEP_SECONDS=0, DURATION="1s", CONFIGS="1x1", ENDPOINTS="async",
                        CONNECTIONS=2, WRK_THREADS=1)
    assert out.returncode == 0, out.stderr
    cell = only_run_dir(results) / "01-1w1t-async-c2"
    assert (cell / "warmup.txt").read_text().startswith("Running 1s test")
    start = {s["pid"]: s for s in map(json.loads, (p.read_text() for p in (cell / "stats").glob("*.start.json")))}
    assert all(s["endpoints"]["async"]["received"] > 0 for s in start.values())  # the warm-up came first
    (row,) = json.loads((cell.parent / "summary.json").read_text())["cells"]
    assert row["received"] <= row["requests"] + 2  # the window counts only the measured pass


# ---------------------------------------------------------------- the terminal


def test_quiet_prints_only_the_result_lines_and_the_paths(port, results):
    out = run_benchmark(port, results, "--quiet", SLEEP_SECONDS=0, DURATION="1s", CONFIGS="1x1",
                        ENDPOINTS="sync async", CONNECTIONS=2, WRK_THREADS=1)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line[:6] for line in lines[:2]] == ["[1/2] ", "[2/2] "] and len(lines) == 4
    assert lines[2].startswith("Full table: ") and lines[3].startswith("Plot: ")


def run_in_a_terminal(command: list[str], env: dict, timeout: float = 120) -> bytes:
    """Run under a pseudo-terminal, as a user at a terminal would, and return what it printed."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.execve(command[0], command, env)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.waitpid(pid, 0)
    return output


def test_a_terminal_gets_the_plan_and_a_countdown_and_a_file_gets_plain_lines(port, results):
    knobs = dict(SLEEP_SECONDS=0.5, DURATION="3s", TIMEOUT="2s", CONFIGS="1x1", ENDPOINTS="sync async",
                 CONNECTIONS=4, WRK_THREADS=2)
    started = time.monotonic()
    tty = run_in_a_terminal([str(ROOT / "benchmark.sh")], benchmark_env(port, results, **knobs)).decode()
    elapsed = time.monotonic() - started
    plan = re.search(r"set seed: 2 cells x 1 run\(s\), wrk -t2 -d3s --timeout 2s; about (\d+)s \(ends ~\d\d:\d\d\)", tty)
    assert plan, tty
    assert 0.3 < int(plan.group(1)) / elapsed < 3  # the estimate is within a sane factor
    assert re.search(r"\r\x1b\[K      wrk: \ds left in this cell, about \d+s left in the run", tty)
    assert "[2/2] 02-1w1t-async-c4:" in tty
    piped = run_benchmark(port, results, **knobs)
    assert piped.returncode == 0, piped.stderr
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", piped.stdout + piped.stderr)  # no \r, no escapes
    table = piped.stdout.split("\n\n", 1)[1].split("Full table:")[0].splitlines()
    assert len(table) == 3 and all(len(line) <= 100 for line in table), table


# ---------------------------------------------------------------- servers, upstream, open loop


def test_servers_set_runs_every_server_and_leaves_nothing(port, results):
    out = run_benchmark(port, results, "--set", "servers", SLEEP_SECONDS=0.4, DURATION="1s", TIMEOUT="1s",
                        CONFIGS="2x1", WRK_THREADS=2, WARMUP=0, REPEAT=1)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    cells = json.loads((run_dir / "summary.json").read_text())["cells"]
    assert {c["config"] for c in cells} == {"2w x 1t", "2w x 1t --reuse-port", "2w x 1t asgi", "uvicorn 2w", "granian 2w"}
    for c in cells:
        assert len(c["connections_per_worker"]) == 2, c["cell"]  # every worker of every server reported
        assert c["server_cpu_s"] is not None
        if c["sleep_s"] > 0:  # every connection reached one worker (with no sleep a busy worker may not get to all)
            assert sum(c["connections_per_worker"]) == c["connections"], c["cell"]
    assert "--reuse-port" in (run_dir / "05-2w1t-sync-c100-gunicorn-reuse-port" / "server.cmd").read_text()
    assert "granian --interface asgi" in (run_dir / "17-2w1t-sync-c100-granian" / "server.cmd").read_text()


@pytest.mark.parametrize("server", ["uvicorn", "granian", "gunicorn-reuse-port"])
def test_ctrl_c_stops_every_server(port, results, server):
    process = start_in_background(port, results, SERVER=server, SLEEP_SECONDS=1, DURATION="20s", TIMEOUT="5s",
                                  CONFIGS="2x1", ENDPOINTS="sync", CONNECTIONS=8, WRK_THREADS=2)
    wait_for_load(port, results, process)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert server_pids(port) == []


def test_upstream_set_calls_a_real_upstream_and_stops_it(port, results):
    out = run_benchmark(port, results, "--set", "upstream", SLEEP_SECONDS=0.4, DURATION="3s", TIMEOUT="2s",
                        CONFIGS="1x1", CONNECTIONS=8, WRK_THREADS=2, THREAD_LIMIT=2, HTTP_POOL=4)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    groups = {(g["config"], g["endpoint"]): g for g in summary_groups(run_dir)}
    # Per worker: 2 threads for /sync-http, a pool of 4 for /async-http, 1 for the blocking call.
    assert groups[("1w x 1t limit 2 pool 4", "sync-http")]["bound_by"] == "thread limiter: 2/worker"
    assert groups[("1w x 1t limit 2 pool 4", "async-http")]["bound_by"] == "HTTP client pool: 4/worker"
    assert groups[("1w x 1t limit 2 pool 4", "async-http-blocking")]["bound_by"] == "blocked event loop: 1/worker"
    assert groups[("1w x 1t limit 2 pool 400", "async-http")]["bound_by"] == "client: 8 connections"
    # The upstream's own counter agrees on how many calls were in flight at most.
    assert [groups[k]["upstream_peak_max"] for k in sorted(groups)] == [4, 1, 2, 8]
    assert_as_predicted(list(groups.values()))
    cell = run_dir / "02-1w1t-async-http-c8-limit2-pool4"
    assert (cell / "upstream.log").exists() and "uvicorn app:app" in (cell / "upstream.cmd").read_text()
    assert server_pids(port + 1) == []


def test_openloop_set_offers_fixed_rates_and_counts_the_timeouts(port, results):
    # Capacity 2 threads / 0.5 s = 4 req/s; offered 2/s and 8/s for 4 s, 1.5 s timeout.
    out = run_benchmark(port, results, "--set", "openloop", SLEEP_SECONDS=0.5, DURATION="4s", TIMEOUT="2s",
                        CONFIGS="1x1", ENDPOINTS="sync async", RATES="0.5 2", THREAD_LIMIT=2)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    groups = {(g["endpoint"], g["rate"]): g for g in summary_groups(run_dir)}
    assert set(groups) == {("sync", 2), ("sync", 8), ("async", 2), ("async", 8)}
    assert groups[("async", 8)]["replies_median"] == groups[("async", 8)]["offered_median"] == 32
    assert groups[("sync", 8)]["predicted_timeouts"] > 0
    assert_as_predicted(list(groups.values()))
    assert (run_dir / "01-1w1t-sync-rate2-limit2" / "httperf.cmd").read_text().startswith("httperf --hog")


def test_openloop_refuses_more_open_connections_than_httperf_can_hold(port, results):
    out = run_benchmark(port, results, "--set", "openloop", TIMEOUT="30s")
    assert (out.returncode, out.stderr) == (2, "benchmark.sh: rate 36/s x timeout 30s keeps about 1080 connections "
                                            "open; httperf's select() allows about 1000: lower RATES or TIMEOUT\n")


def test_missing_httperf_is_named(port, results):
    out = run_benchmark(port, results, "--set", "openloop", HTTPERF="/nonexistent/httperf")
    assert (out.returncode, out.stderr) == (2, "benchmark.sh: httperf not found: HTTPERF=/nonexistent/httperf\n")


# ---------------------------------------------------------------- interrupted runs


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
    wait_for_load(port, results, process)
    started = time.monotonic()
    if how.startswith("SIGINT"):
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert time.monotonic() - started < 15
    assert process.returncode == 130
    assert "interrupted; stopping the servers" in stderr
    assert "[2/" not in stdout  # it did not go on with the next cell
    assert server_pids(port) == []
    assert tree_digest(earlier) == before
    partial = [run for run in results.iterdir() if run != earlier]
    assert len(partial) == 1 and (partial[0] / "INCOMPLETE").exists()
    assert json.loads((partial[0] / "run.json").read_text())["status"] == "interrupted"
    assert not psutil.pid_exists(process.pid) or psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE
    assert not any("wrk" in " ".join(p.info["cmdline"] or []) and str(port) in " ".join(p.info["cmdline"] or [])
                   for p in psutil.process_iter(["cmdline"]))


def test_sighup_when_the_terminal_closes_leaves_no_server(port, results):
    process = start_in_background(port, results, SLEEP_SECONDS=1, DURATION="20s", TIMEOUT="5s",
                                  CONFIGS="2x1", ENDPOINTS="sync-http", CONNECTIONS=8, WRK_THREADS=2)
    wait_for_load(port, results, process)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=30) == 130
    assert server_pids(port) == [] and server_pids(port + 1) == []  # the server and its upstream
    (run_dir,) = results.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"


def test_after_sigkill_the_next_run_stops_what_the_killed_one_left(port, results, tmp_path):
    lock = tmp_path / "lock"
    killed = start_in_background(port, results, LOCK=lock, SLEEP_SECONDS=1, DURATION="30s", TIMEOUT="5s",
                                 CONFIGS="2x1", ENDPOINTS="sync", CONNECTIONS=8, WRK_THREADS=2)
    wait_for_load(port, results, killed)

    def load_generators() -> list[int]:
        return [p.pid for p in psutil.process_iter(["cmdline"]) if f":{port}/" in " ".join(p.info["cmdline"] or [])]

    deadline = time.monotonic() + 10
    while not load_generators() and time.monotonic() < deadline:  # wrk starts just after the start snapshot
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # no clean-up runs: its server and its wrk go on
    killed.wait(timeout=10)
    left, wrk = server_pids(port), load_generators()
    assert left and wrk, "the killed run's server and wrk should still be running"
    after = run_benchmark(port, tmp_path / "after", LOCK=lock, SLEEP_SECONDS=0, DURATION="1s", CONFIGS="1x1",
                          ENDPOINTS="async", CONNECTIONS=2, WRK_THREADS=1)
    assert after.returncode == 0, after.stderr
    assert re.search(rf"stopping \d+ processes a killed run \(pid {killed.pid}\) left behind: ", after.stderr)
    for pid in left + wrk:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    assert not os.path.lexists(lock)


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


def test_a_flag_added_by_hand_shows_everywhere_and_a_pasted_server_cmd_starts_the_same_server(port, results, tmp_path):
    repo = clone(tmp_path)  # clean: the run serves the committed app.py, and its commands name the repository
    out = subprocess.run([str(repo / "benchmark.sh"), "--quick"], capture_output=True, text=True, timeout=300,
                         env=benchmark_env(port, results, GUNICORN_CMD_ARGS="--backlog 64", SLEEP_SECONDS=4,
                                           DURATION="30s", TIMEOUT="20s", CONFIGS="1x1", ENDPOINTS="async",
                                           CONNECTIONS=4, WRK_THREADS=2))
    assert out.returncode == 0, out.stderr
    assert re.search(r"^set seed: 1 cells .*; knobs: .*GUNICORN_CMD_ARGS='--backlog 64'", out.stdout, re.M)
    assert re.search(r"^1w x 1t \+--backlog 64 +/async ", out.stdout, re.M)  # the compact table
    run_dir = only_run_dir(results)
    assert "| 1w x 1t +--backlog 64 | /async |" in (run_dir / "summary.md").read_text()
    assert not (run_dir / "app.py").exists()
    command = (run_dir / "01-1w1t-async-c4" / "server.cmd").read_text()
    words = shlex.split(command)
    assert words[0] == "env" and "SLEEP_SECONDS=0.4" in words and "GUNICORN_CMD_ARGS=--backlog 64" in words
    assert "-uTHREAD_LIMIT" in words  # a THREAD_LIMIT in the shell it is pasted into does not leak in
    assert words[words.index("--chdir") + 1] == str(repo)
    pasted = subprocess.Popen(["bash", "-c", command], start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, env=app_environment())
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
        assert psutil.Process(pasted.pid).cmdline()[-len(gunicorn):] == gunicorn
    finally:
        os.killpg(pasted.pid, signal.SIGKILL)
        pasted.wait()


# ---------------------------------------------------------------- the database set


def postgres_state() -> tuple[set[int], set[str]]:
    """Every postgres process, and every cluster directory a run made."""
    import tempfile

    pids = {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")}
    return pids, {p.name for p in Path(tempfile.gettempdir()).glob("fastapi-benchmark-postgres-*")}


def test_db_set_starts_its_own_postgresql_measures_the_pools_and_leaves_nothing(port, results):
    before = postgres_state()
    out = run_benchmark(port, results, "--set", "db", SLEEP_SECONDS=0.5, DURATION="2s", TIMEOUT="2s",
                        CONNECTIONS=20, CONFIGS="1x1", WRK_THREADS=2)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    facts = json.loads((run_dir / "run.json").read_text())["database"]
    assert facts["max_connections"] == 100 and facts["superuser_reserved_connections"] == 3
    assert re.match(r"\d+\.\d+", facts["postgres_version"])
    assert "PASSWORD@127.0.0.1" in (run_dir / "01-1w1t-sync-db-c20" / "server.cmd").read_text()
    groups = {(g["config"], g["endpoint"], g["connections"]): g for g in summary_groups(run_dir)}
    # SQLAlchemy's default pool, 5 + 10, holds each worker, def and async def alike; a blocked loop runs one.
    assert groups[("1w x 1t", "sync-db", 20)]["db_pool_peak_max"] == 15
    assert groups[("1w x 1t", "async-db", 20)]["db_pool_peak_max"] == 15
    assert groups[("1w x 1t", "async-db-blocking", 20)]["peak_in_handler_max"] == 1
    assert groups[("1w x 1t dbpool 40+0", "sync-db", 100)]["db_pool_peak_max"] == 40
    for endpoint in ("sync-db", "async-db"):  # the short pool timeout: 503s, each counted by the app as one
        g = groups[("1w x 1t dbtimeout 0.75", endpoint, 100)]
        assert g["non_2xx_max"] > 0 and g["pool_timeouts_max"] == g["non_2xx_max"] and g["db_refused_max"] == 0
    refused = groups[("8w x 1t", "async-db", 400)]  # 8 x 15 > 97: PostgreSQL refuses the rest
    assert refused["db_refused_max"] > 0 and refused["db_active_stop_max"] <= 97
    assert postgres_state() == before


def test_ctrl_c_during_a_db_run_stops_postgresql_and_removes_its_cluster(port, results):
    before = postgres_state()
    process = start_in_background(port, results, ROOT / "benchmark.sh", "--set", "db", SLEEP_SECONDS=1,
                                  DURATION="20s", TIMEOUT="5s", CONNECTIONS=20, CONFIGS="1x1", WRK_THREADS=2)
    wait_for_load(port, results, process)
    assert postgres_state() != before  # its postgres is up
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert server_pids(port) == [] and postgres_state() == before


# ---------------------------------------------------------------- flags people add by hand


def test_max_requests_restarts_are_counted_and_the_gone_workers_connections_kept(port, results):
    out = run_benchmark(port, results, "--quick", GUNICORN_CMD_ARGS="--max-requests 100", CONFIGS="4x1",
                        ENDPOINTS="sync")
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    (row,) = json.loads((run_dir / "summary.json").read_text())["cells"]
    log = (run_dir / row["cell"] / "server.log").read_text()
    assert row["workers_restarted"] >= 1 and "max-requests" in row["restart_reasons"], row
    assert row["workers_restarted"] == log.count("Application startup complete") - 4
    # Every connection is on some worker's count, the gone workers' included.
    assert len(row["connections_per_worker"]) == 4 + row["workers_restarted"]
    assert sum(row["connections_per_worker"]) >= 100


@pytest.mark.skipif(not Path("/proc/net/netstat").exists(), reason="the kernel's listen counters are Linux's")
def test_a_short_backlog_overflows_the_accept_queue_and_the_summary_shows_it(port, results):
    out = run_benchmark(port, results, "--quick", GUNICORN_CMD_ARGS="--backlog 64", CONFIGS="1x1",
                        ENDPOINTS="async", CONNECTIONS=1000)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads((only_run_dir(results) / "summary.json").read_text())["cells"]
    assert row["listen_backlog"] == 64 and row["listen_overflows"] > 0 and row["connections_started_late"] > 0
    assert row["expected_low"] < row["expected_requests"] and row["as_predicted"], row
    assert "accept queue overflowed" in row["bound_by"]


# ---------------------------------------------------------------- PROFILE=1

PTRACE = sys.platform == "linux" and os.geteuid() == 0  # py-spy attaches as root here; elsewhere it may not


@pytest.mark.skipif(not PTRACE, reason="py-spy needs root or ptrace rights")
def test_profile_runs_a_cpu_bound_cell_once_more_under_py_spy_after_the_measured_runs(port, results):
    out = run_benchmark(port, results, "--set", "overhead", "--quick", "--repeat", "2", PROFILE=1, ENDPOINTS="async")
    assert out.returncode == 0 and "PROFILE=1: py-spy could not" not in out.stderr, out.stderr
    run_dir = only_run_dir(results)
    measured = sorted(d for d in run_dir.iterdir() if d.is_dir() and d.name != "profiles")
    assert len(measured) == 2 and not list(run_dir.glob("*/profile*"))  # no profiler in a measured window
    (profiled,) = (run_dir / "profiles").iterdir()
    assert profiled.name == measured[0].name  # the first run that needed it, once
    svg = (profiled / "profile.svg").read_text()
    assert svg.startswith("<?xml") and not (profiled / "profile.log").exists()
    server = json.loads((profiled / "server.stop.json").read_text())["roles"]["server"]
    assert {p["pid"] for p in server} <= {int(pid) for pid in re.findall(r"process (\d+)", svg)}  # gunicorn and its worker
    assert len(json.loads((run_dir / "summary.json").read_text())["cells"]) == 2  # the profiled run is in no figure
    shutil.rmtree(run_dir)
    # A sleeping cell that the model accounts for gets none.
    out = run_benchmark(port, results, PROFILE=1, CONFIGS="1x1", ENDPOINTS="async", CONNECTIONS=4, **TINY)
    assert out.returncode == 0, out.stderr
    assert not (only_run_dir(results) / "profiles").exists()


def test_a_profiler_that_cannot_attach_is_one_line_and_the_run_goes_on(tmp_path, capsys):
    from runner.process import started
    from runner.run import Run

    run = Run.__new__(Run)  # only what profile_written reads
    run.profiling = True
    gone = subprocess.Popen(["true"])
    gone.wait()
    svg = tmp_path / "profile.svg"
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(gone.pid), "--output", str(svg)]
    with started(command, svg.with_suffix(".log"), dict(os.environ)) as profiler:
        run.profile_written(profiler, svg)
        run.profile_written(profiler, svg)  # said once
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("PROFILE=1: py-spy could not profile the server ("), lines
    assert not run.profiling and not svg.exists()
