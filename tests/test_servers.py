"""Every server, the upstream and the open loop, end to end: each runs, answers as the model says,
and leaves nothing behind."""

import json
import os
import signal

import pytest

from conftest import (
    assert_as_predicted,
    only_run_dir,
    run_benchmark,
    server_pids,
    start_in_background,
    summary_groups,
    wait_for_load,
)


def test_servers_set_runs_every_server_and_leaves_nothing(port, results):
    out = run_benchmark(
        port,
        results,
        "--set",
        "servers",
        SLEEP_SECONDS=0.4,
        DURATION="1s",
        TIMEOUT="1s",
        CONFIGS="2x1",
        WRK_THREADS=2,
        WARMUP=0,
        REPEAT=1,
    )
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    cells = json.loads((run_dir / "summary.json").read_text())["cells"]
    assert {c["config"] for c in cells} == {
        "2w x 1t",
        "2w x 1t --reuse-port",
        "2w x 1t asgi",
        "uvicorn 2w",
        "granian 2w",
    }
    for c in cells:
        assert len(c["connections_per_worker"]) == 2, c["cell"]  # every worker of every server reported
        assert c["server_cpu_s"] is not None
        if c["sleep_s"] > 0:  # every connection reached one worker (with no sleep a busy worker may not get to all)
            assert sum(c["connections_per_worker"]) == c["connections"], c["cell"]
    assert "--reuse-port" in (run_dir / "05-2w1t-sync-c100-gunicorn-reuse-port" / "server.cmd").read_text()
    assert "granian --interface asgi" in (run_dir / "17-2w1t-sync-c100-granian" / "server.cmd").read_text()


@pytest.mark.parametrize("server", ["uvicorn", "granian", "gunicorn-reuse-port"])
def test_ctrl_c_stops_every_server(port, results, server):
    process = start_in_background(
        port,
        results,
        SERVER=server,
        SLEEP_SECONDS=1,
        DURATION="20s",
        TIMEOUT="5s",
        CONFIGS="2x1",
        ENDPOINTS="sync",
        CONNECTIONS=8,
        WRK_THREADS=2,
    )
    wait_for_load(port, results, process)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert server_pids(port) == []


def test_upstream_set_calls_a_real_upstream_and_stops_it(port, results):
    out = run_benchmark(
        port,
        results,
        "--set",
        "upstream",
        SLEEP_SECONDS=0.4,
        DURATION="3s",
        TIMEOUT="2s",
        CONFIGS="1x1",
        CONNECTIONS=8,
        WRK_THREADS=2,
        THREAD_LIMIT=2,
        HTTP_POOL=4,
    )
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    groups = {(g["config"], g["endpoint"]): g for g in summary_groups(run_dir)}
    # Per worker: 2 threads for /sync-http, a pool of 4 for /async-http, 1 for the blocking call.
    assert groups[("1w x 1t limit 2 pool 4", "sync-http")]["bound_by"] == "thread limiter: 2/worker"
    assert groups[("1w x 1t limit 2 pool 4", "async-http")]["bound_by"] == "HTTP client pool: 4/worker"
    assert groups[("1w x 1t limit 2 pool 4", "async-http-blocking")]["bound_by"] == "blocked event loop: 1/worker"
    assert groups[("1w x 1t limit 2 pool 400", "async-http")]["bound_by"] == "client: 8 connections"
    # The upstream's own counter agrees on how many calls were in flight at most: a limit's cells exactly that
    # many, the client's cells (pool 400; 4 workers x 4) past one pool of 4. Not always all 8: on a busy machine
    # the connections drift apart in phase, and the upstream's 0.4 s is then not the whole of each one's cycle.
    limited = [(g["bound_by"], g["upstream_peak_max"]) for g in groups.values() if g["bound_by"].endswith("/worker")]
    assert len(limited) == 4 and all(bound_by.endswith(f": {peak}/worker") for bound_by, peak in limited)
    client_bound = [g["upstream_peak_max"] for g in groups.values() if g["bound_by"] == "client: 8 connections"]
    assert len(client_bound) == 2 and all(4 < peak <= 8 for peak in client_bound)
    # With sniffio importable: the same limit, and its servers (only theirs) started with it on their path.
    assert groups[("1w x 1t limit 2 pool 4 sniffio", "async-http")]["bound_by"] == "HTTP client pool: 4/worker"
    commands = {c.name: (c / "server.cmd").read_text() for c in run_dir.glob("0*")}
    assert all(("PYTHONPATH=" in command) == name.endswith("-sniffio") for name, command in commands.items())
    assert_as_predicted(list(groups.values()))
    cell = run_dir / "02-1w1t-async-http-c8-limit2-pool4"
    assert (cell / "upstream.log").exists() and "uvicorn app:app" in (cell / "upstream.cmd").read_text()
    assert server_pids(port + 1) == []


def test_openloop_set_offers_fixed_rates_and_counts_the_timeouts(port, results):
    # Capacity 2 threads / 0.5 s = 4 req/s; offered 2/s and 8/s for 4 s, 1.5 s timeout.
    out = run_benchmark(
        port,
        results,
        "--set",
        "openloop",
        SLEEP_SECONDS=0.5,
        DURATION="4s",
        TIMEOUT="2s",
        CONFIGS="1x1",
        ENDPOINTS="sync async",
        RATES="0.5 2",
        THREAD_LIMIT=2,
    )
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    groups = {(g["endpoint"], g["rate"]): g for g in summary_groups(run_dir)}
    assert set(groups) == {("sync", 2), ("sync", 8), ("async", 2), ("async", 8)}
    assert groups[("async", 8)]["replies_median"] == groups[("async", 8)]["offered_median"] == 32
    assert groups[("sync", 8)]["predicted_timeouts"] > 0
    assert_as_predicted(list(groups.values()))
    assert (run_dir / "01-1w1t-sync-rate2-limit2" / "httperf.cmd").read_text().startswith("httperf --hog")
