"""The db set end to end: its own PostgreSQL, the pools measured, nothing left behind."""

import json
import os
import re
import signal
import tempfile
from pathlib import Path

import psutil

from conftest import ROOT, only_run_dir, run_benchmark, server_pids, start_in_background, summary_groups, wait_for_load


def postgres_state() -> tuple[set[int], set[str]]:
    """Every postgres process, and every cluster directory a run made."""

    pids = {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")}
    return pids, {p.name for p in Path(tempfile.gettempdir()).glob("fastapi-benchmark-postgres-*")}


def test_db_set_starts_its_own_postgresql_measures_the_pools_and_leaves_nothing(port, results):
    before = postgres_state()
    out = run_benchmark(
        port,
        results,
        "--set",
        "db",
        SLEEP_SECONDS=0.5,
        DURATION="2s",
        TIMEOUT="2s",
        CONNECTIONS=20,
        CONFIGS="1x1",
        WRK_THREADS=2,
    )
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
    process = start_in_background(
        port,
        results,
        ROOT / "benchmark.sh",
        "--set",
        "db",
        SLEEP_SECONDS=1,
        DURATION="20s",
        TIMEOUT="5s",
        CONNECTIONS=20,
        CONFIGS="1x1",
        WRK_THREADS=2,
    )
    wait_for_load(port, results, process)
    assert postgres_state() != before  # its postgres is up
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert server_pids(port) == [] and postgres_state() == before
