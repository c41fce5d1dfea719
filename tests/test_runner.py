"""The runner's logic, in Python and without a server: each set's cells, each server's command
line, the names, the plan's time, cells.tsv, and the lock's memory of what a killed run left."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace

import psutil
import pytest

from conftest import ROOT, YOUR_APP
from core import cell as cells_tsv
from core import model, sets
from core.cell import Cell
from core.endpoints import ENDPOINTS
from core.knobs import BadInput
from core.servers import SERVERS, Where
from runner.process import Lock, LockBusy

WHERE = Where("/venv/bin", "/app", "127.0.0.1", 8123)


def cells_of(name: str, **environ) -> list[Cell]:
    return sets.cells(sets.settings(name, {k: str(v) for k, v in environ.items()}))


# ---------------------------------------------------------------- the sets


def test_seed_is_the_original_experiment():
    cells = cells_of("seed")
    assert [(c.workers, c.threads, c.endpoint) for c in cells] == [
        (w, t, e) for w, t in [(1, 1), (1, 4), (4, 1), (4, 4)] for e in ["sync", "async"]
    ]
    assert {(c.server, c.sleep, c.connections, c.duration, c.timeout, c.wrk_threads) for c in cells} == {
        ("gunicorn", 10.0, 100, 60, 30, 4)
    }


def test_quick_divides_sleep_duration_and_timeout_but_not_the_openloop_sleep():
    (cell,) = sets.cells(sets.settings("seed", {"CONFIGS": "1x1", "ENDPOINTS": "async"}, scale="10"))
    assert (cell.sleep, cell.duration, cell.timeout) == (1.0, 6, 3)
    loop = sets.cells(sets.settings("openloop", {}, scale="10"))
    assert {(c.sleep, c.duration, c.timeout) for c in loop} == {(1.0, 2, 3)}


def test_threads_set_compares_three_thread_limits_and_gunicorn_threads():
    cells = cells_of("threads")
    assert [(c.thread_limit, c.threads) for c in cells] == [(None, 1), (100, 1), (400, 1), (None, 4)]
    assert {(c.endpoint, c.connections) for c in cells} == {("sync", 1000)}


def test_workers_set_adds_the_server_bound_cells_for_both_worker_classes():
    cells = cells_of("workers")
    for worker_class in ("uvicorn_worker.UvicornWorker", "asgi"):
        mine = [c for c in cells if c.worker_class == worker_class]
        assert [(c.workers, c.endpoint, c.connections, c.sleep) for c in mine] == [
            (w, e, c, s)
            for w in (1, 4)
            for e, c, s in [("sync", 100, 1.0), ("async", 100, 1.0), ("async", 4000, 1.0), ("async", 64, 0.0)]
        ]
    (h11,) = [c for c in cells if c.worker_class == "uvicorn_worker.UvicornH11Worker"]  # loops busy in bursts
    assert (h11.workers, h11.endpoint, h11.connections, h11.sleep) == (1, "async", 1000, 1.0) and cells[-1] == h11
    warmed = {(c.connections, c.sleep): c.warmup for c in cells if c != h11}
    assert warmed == {(100, 1.0): 0, (4000, 1.0): 2, (64, 0.0): 2}  # only the CPU-bound cells warm up


def test_servers_set_runs_every_server_and_worker_class_in_the_table():
    cells = cells_of("servers")
    variants = {(c.server, c.worker_class) for c in cells}
    assert variants == {(name, k) for name, server in SERVERS.items() for k in server.worker_classes}
    assert {c.server for c in cells} == set(SERVERS)
    assert all(c.threads == 1 for c in cells if c.worker_class == "-")
    assert sets.settings("servers", {}).repeat == 3


def test_upstream_set_raises_the_pool_once_at_the_most_connections():
    cells = cells_of("upstream")
    assert {c.endpoint for c in cells} == {e for e, spec in ENDPOINTS.items() if spec.calls_upstream}
    raised, *with_sniffio = cells[-3:]
    assert raised.http_pool == 400 and raised.endpoint == "async-http" and raised.connections == 1000
    assert all(c.http_pool is None for c in cells if c != raised)
    # sniffio importable, beside the grid's same cells (1 and 4 workers at the most connections)
    assert [(c.workers, c.endpoint, c.connections, c.sniffio) for c in with_sniffio] == [
        (w, "async-http", 1000, True) for w in (1, 4)
    ]
    assert all(not c.sniffio for c in cells[:-2])
    for c in with_sniffio:
        assert replace(c, sniffio=False) in cells


def test_openloop_rates_are_fractions_of_the_def_endpoints_capacity():
    cells = cells_of("openloop", THREAD_LIMIT=10, RATES="0.5 2")
    rates = {(c.workers, c.endpoint): [] for c in cells}
    for c in cells:
        rates[(c.workers, c.endpoint)].append(c.rate)
    # 10 threads per worker, 1 s: 10/s a worker for sync and async alike; a blocked loop 1/s.
    assert rates[(1, "sync")] == rates[(1, "async")] == [5.0, 20.0]
    assert rates[(4, "sync")] == [20.0, 80.0] and rates[(1, "async-blocking")] == [0.5, 2.0]
    assert all(c.connections is None and c.open_loop for c in cells)


@pytest.mark.parametrize("name", sets.SETS)
def test_every_set_has_a_purpose_and_valid_cells_at_both_scales(name):
    assert sets.SETS[name].purpose
    for scale in (None, "10"):
        assert sets.cells(sets.settings(name, YOUR_APP if sets.SETS[name].your_app else {}, scale=scale))


def test_gunicorn_cmd_args_reach_every_gunicorn_cell_and_its_label():
    cells = cells_of("servers", GUNICORN_CMD_ARGS="--backlog 64")
    for c in cells:
        assert (c.server_args == "--backlog 64") == c.server.startswith("gunicorn")
    plain = next(c for c in cells if c.server == "gunicorn" and c.worker_class != "asgi")
    assert plain.label() == "4w x 1t +--backlog 64"
    assert "+--backlog 64" in plain.describe()


def test_reuse_port_given_by_hand_is_labelled_and_modelled_as_reuse_port():
    (cell,) = cells_of("seed", CONFIGS="4x1", ENDPOINTS="sync", GUNICORN_CMD_ARGS="--reuse-port --backlog 64")
    assert cell.server == "gunicorn-reuse-port"
    assert cell.label() == "4w x 1t --reuse-port +--reuse-port --backlog 64"


@pytest.mark.parametrize(
    "environ, message",
    [
        (dict(CONFIGS="2x"), "CONFIGS entries look like 4x1 (workers x threads), got '2x'"),
        (dict(SERVER="hypercorn"), f"unknown server 'hypercorn' ({' '.join(SERVERS)})"),
        (dict(RATES="1."), "RATES are fractions of capacity > 0, got '1.'"),
        (dict(UPSTREAM_PORT="8000"), "UPSTREAM_PORT must be below 65536 and differ from PORT, got '8000'"),
    ],
)
def test_bad_knobs_are_refused_with_their_message(environ, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        sets.settings("seed", environ)


# ---------------------------------------------------------------- the servers' command lines


@pytest.mark.parametrize("name", SERVERS)
def test_each_server_command_line_serves_the_app_dir_on_the_port_with_its_workers(name):
    server = SERVERS[name]
    cell = Cell(server=name, workers=3, worker_class=server.worker_classes[0])
    command = server.command(cell, WHERE)
    assert command[0].startswith("/venv/bin/")
    line = shlex.join(command)
    assert "/app" in command and "app:app" in command
    assert "3" in command and ("8123" in line)
    assert ("--reuse-port" in command) == (name == "gunicorn-reuse-port")


def test_only_granian_limits_requests_by_itself():
    assert {name for name, s in SERVERS.items() if s.own_limit(4)} == {"granian"}
    assert model.worker_limit("async", 4, server="granian").name == SERVERS["granian"].own_limit(4)[1]


def test_a_server_name_lives_in_at_most_two_source_files():
    """Adding a server is one entry in core/servers.py (plus its pin); the README may name it."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True, check=True
    ).stdout.split()
    files = [
        name
        for name in listed
        if (ROOT / name).is_file()
        and not name.startswith(("tests/", "results/"))
        and not name.startswith("requirements")
    ]
    naming = [name for name in files if "granian" in (ROOT / name).read_text(errors="replace")]
    assert len(naming) <= 2, naming


# ---------------------------------------------------------------- names, cells.tsv, the plan


@pytest.mark.parametrize(
    "fields, name",
    [
        (dict(), "07-1w1t-sync-c100"),
        (dict(workers=4, endpoint="async", thread_limit=100, http_pool=4), "07-4w1t-async-c100-limit100-pool4"),
        (dict(server="granian", worker_class="-", sleep=0.0), "07-1w1t-sync-c100-granian-sleep0"),
        (dict(worker_class="asgi", round=2), "07-1w1t-sync-c100-asgi-r2"),
        (dict(connections=None, rate=36.0), "07-1w1t-sync-rate36"),
    ],
)
def test_cell_directory_names(fields, name):
    cell = Cell(sleep=fields.pop("sleep", 1.0), **fields)
    assert cell.directory_name(7, 2, set_sleep=1.0, numbered_rounds=cell.round > 1) == name


def test_cell_numbers_have_as_many_digits_as_the_count_needs():
    assert Cell().directory_name(7, 3, 10.0, False).startswith("007-")


def test_cells_tsv_round_trip_and_an_older_file_reads_with_defaults(tmp_path):
    path = tmp_path / "cells.tsv"
    written = [
        Cell(name="01-x", thread_limit=2, rate=None, server_args="--backlog 64"),
        Cell(name="02-y", connections=None, rate=36.0, pin=True, stats=False, pool_timeout=1.5, sleep=0.4),
    ]
    cells_tsv.write_header(path)
    for cell in written:
        cells_tsv.append(path, cell)
    assert cells_tsv.read(path) == written
    first = cells_tsv.read(ROOT / "tests" / "fixtures" / "cells-before-db-columns.tsv")[0]
    assert first.server_args == "" and first.thread_limit is None and first.rate is None and first.connections == 100


def test_the_plan_counts_duration_warmup_and_start_stop_time_for_every_run_and_calibration():
    from core.calibration import calibration_cells

    s = sets.settings("workers", {})
    cells = sets.cells(s)
    calibrations = calibration_cells(cells)
    seconds = sum(c.duration + c.warmup + sets.PER_CELL_OVERHEAD_S for c in cells) * s.repeat + sum(
        c.duration + sets.PER_CELL_OVERHEAD_S for c in calibrations
    )
    assert calibrations and all(c.sleep == 0 and c.workers == 1 and c.duration == 2 for c in calibrations)
    assert re.fullmatch(
        rf"set workers: {len(cells)} cells x 1 run\(s\) \+ {len(calibrations)} calibrations; "
        rf"about {re.escape(sets.minutes(seconds))} \(ends ~\d\d:\d\d\)\n  wrk -t4 -d10s --timeout 10s",
        sets.plan_line(s, cells),
    )


def test_the_plan_names_the_knobs_that_differ_from_the_sets_defaults():
    s = sets.settings("seed", {"GUNICORN_CMD_ARGS": "--backlog 64", "SLEEP_SECONDS": "10", "PORT": "9000"})
    assert sets.plan_line(s, sets.cells(s)).endswith(
        "\n  wrk -t4 -d60s --timeout 30s; knobs: GUNICORN_CMD_ARGS='--backlog 64'"
    )


def test_the_plan_goes_on_indented_lines_of_100_columns_when_many_knobs_differ():
    knobs = {
        "WORKER_CLASS": "uvicorn_worker.UvicornH11Worker",
        "THREAD_LIMIT": "100",
        "SNIFFIO": "1",
        "GUNICORN_CMD_ARGS": "--backlog 64 --max-requests 50 --keep-alive 5",
    }
    s = sets.settings("workers", knobs)
    first, *rest = sets.plan_line(s, sets.cells(s)).splitlines()
    assert first.startswith("set workers: ") and len(rest) >= 2
    assert all(len(line) <= 100 and line.startswith("  ") for line in [first, *rest][1:])
    assert " ".join(line.strip() for line in rest).endswith(
        "; knobs: WORKER_CLASS=uvicorn_worker.UvicornH11Worker THREAD_LIMIT=100 SNIFFIO=1 "
        "GUNICORN_CMD_ARGS='--backlog 64 --max-requests 50 --keep-alive 5'"
    )


# ---------------------------------------------------------------- the lock


def start_session(*command: str) -> subprocess.Popen:
    return subprocess.Popen(list(command), start_new_session=True)


def test_a_stale_lock_stops_the_servers_its_killed_run_left(tmp_path, capsys):
    left = start_session("sleep", "60")
    try:
        started = psutil.Process(left.pid).create_time()
        os.symlink(f"999999 20000101T000000Z-seed {left.pid}@{started:.2f}", tmp_path / "lock")
        lock = Lock(tmp_path / "lock", "now")
        lock.take()
        left.wait(timeout=5)  # raises TimeoutExpired if it still runs
        assert not psutil.pid_exists(left.pid)
        assert f"a killed run (pid 999999) left behind: {left.pid}" in capsys.readouterr().err
        assert os.readlink(tmp_path / "lock").startswith(f"{os.getpid()} now")
        lock.release()
        assert not os.path.lexists(tmp_path / "lock")
    finally:
        left.kill()


def test_a_recycled_process_group_id_is_left_alone(tmp_path):
    older = start_session("sleep", "60")  # older than the session the lock says it recorded
    try:
        recorded = psutil.Process(older.pid).create_time() + 100
        os.symlink(f"999999 old {older.pid}@{recorded:.2f}", tmp_path / "lock")
        Lock(tmp_path / "lock", "now").take()
        time.sleep(0.2)
        assert older.poll() is None
    finally:
        older.kill()


def test_the_lock_refuses_while_its_runner_lives_and_records_each_group(tmp_path):
    holder = subprocess.Popen(["bash", "-c", "exec -a benchmark.sh sleep 30"])
    try:
        time.sleep(0.2)
        os.symlink(f"{holder.pid} 20000101T000000Z-seed", tmp_path / "lock")
        with pytest.raises(
            LockBusy, match=f"another benchmark is running \\(pid {holder.pid}: 20000101T000000Z-seed\\)"
        ):
            Lock(tmp_path / "lock", "now").take()
    finally:
        holder.kill()
    os.unlink(tmp_path / "lock")
    lock = Lock(tmp_path / "lock", "run")
    lock.take()
    lock.add_group(os.getpid())
    assert re.fullmatch(rf"{os.getpid()} run {os.getpid()}@[0-9.]+", os.readlink(tmp_path / "lock"))
    lock.remove_group(os.getpid())
    assert os.readlink(tmp_path / "lock") == f"{os.getpid()} run"
    lock.release()


# ---------------------------------------------------------------- the database set


def test_db_set_runs_each_pool_limit_once_beside_the_grid():
    s = sets.settings("db", {})
    cells = sets.cells(s)
    grid = [
        c
        for c in cells
        if (
            c.workers in (1, 4)
            and c.db_pool_size is None
            and c.db_pool_timeout is None
            and c.connections in (10, 40, 100, 400)
        )
    ]
    assert {(c.workers, c.endpoint, c.connections) for c in grid} == {
        (w, e, n) for w in (1, 4) for e in ("sync-db", "async-db", "async-db-blocking") for n in (10, 40, 100, 400)
    }
    extra = [c for c in cells if c not in grid]
    assert [(c.workers, c.endpoint, c.connections, c.label()) for c in extra] == [
        (1, "sync-db", 100, "1w x 1t dbpool 40+0"),
        (8, "async-db", 400, "8w x 1t"),
        (1, "sync-db", 100, "1w x 1t dbtimeout 1.5"),
        (1, "async-db", 100, "1w x 1t dbtimeout 1.5"),
        (1, "sync-db", 1000, "1w x 1t"),
    ]
    quick = sets.cells(sets.settings("db", {}, scale="10"))
    assert {c.db_pool_timeout for c in quick} == {None, 0.15}  # scaled with the sleep


def test_db_knobs_reach_every_cell_and_are_checked():
    (cell,) = cells_of("seed", CONFIGS="1x1", ENDPOINTS="sync-db", DB_POOL_SIZE=2, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=3)
    assert (cell.db_pool_size, cell.db_max_overflow, cell.db_pool_timeout) == (2, 0, 3.0)
    assert cell.directory_name(1, 2, 10.0, False) == "01-1w1t-sync-db-c100-dbpool2+0-dbtimeout3"
    with pytest.raises(BadInput, match="DB_MAX_OVERFLOW must be a whole number >= 0, got '-1'"):
        sets.settings("db", {"DB_MAX_OVERFLOW": "-1"})
    with pytest.raises(BadInput, match="DB_PORT must be below 65536 and differ from PORT and UPSTREAM_PORT"):
        sets.settings("db", {"DB_PORT": "8001"})


@pytest.mark.parametrize(
    "endpoint, workers, connections, pool, expected, bound",
    [
        ("sync-db", 1, 100, 15, 15, "database pool: 15/worker"),  # 40 threads, 15 connections
        ("sync-db", 1, 100, 40, 40, "thread limiter: 40/worker"),  # the pool raised: the threads again
        ("async-db", 1, 100, 15, 15, "database pool: 15/worker"),
        ("async-db-blocking", 4, 100, 15, 4, "blocked event loop: 1/worker"),
        ("async-db", 4, 40, 15, 40, "client: 40 connections"),
    ],
)
def test_the_model_holds_database_endpoints_to_the_pool(endpoint, workers, connections, pool, expected, bound):
    p = model.predict(endpoint, workers, connections, sleep=1, duration=10, db_pool=pool, db_available=97)
    assert (p.concurrency, p.bound_by, p.requests, p.errors) == (expected, bound, 9 * expected, 0)


def test_the_model_caps_the_pools_at_what_postgresql_allows_and_expects_refusals():
    p = model.predict("async-db", 8, 400, sleep=1, duration=10, db_available=97)
    assert (p.concurrency, p.requests, p.errors_uncounted) == (97, 9 * 97, True)
    assert "97 connections" in p.bound_by
    assert not model.predict("async-db", 4, 400, sleep=1, duration=10, db_available=97).errors_uncounted


def test_a_short_pool_timeout_turns_waiting_into_errors_in_the_model():
    waited = model.predict("async-db", 1, 100, sleep=1, duration=10, db_pool_timeout=1.5)
    assert waited.errors > 0 and waited.requests == 9 * 15
    assert model.predict("async-db", 1, 100, sleep=1, duration=10).errors == 0  # 30 s: none within 10 s


def test_postgres_binaries_are_found_where_pg_bindir_says_or_refused(tmp_path):
    from runner.database import find_bindir

    assert find_bindir(str(tmp_path)) is None
    for name in ("initdb", "postgres"):
        (tmp_path / name).write_text("")
    assert find_bindir(str(tmp_path)) == tmp_path


def test_a_finished_reference_run_is_committed_by_itself(tmp_path):
    from runner.reference import commit_results

    git = ["git", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "config", "user.email", "t@example.com"], check=True)
    subprocess.run([*git, "config", "user.name", "t"], check=True)
    (tmp_path / "app.py").write_text("edited, not committed\n")
    run_dir = tmp_path / "results" / "20261127T000000Z-seed-reference"
    (run_dir / "01-cell").mkdir(parents=True)
    (run_dir / "01-cell" / "wrk.txt").write_text("raw\n")
    commit_results(run_dir, "Reference run seed", repo=tmp_path)
    shown = subprocess.run(
        [*git, "show", "--name-only", "--format=%s", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert shown[:3] == ["Reference", "run", "seed"]
    assert shown[3:] == ["results/20261127T000000Z-seed-reference/01-cell/wrk.txt"]  # nothing else


def test_an_interrupted_reference_waits_for_its_run_to_stop_its_servers(tmp_path):
    # A stand-in for one reference run: on SIGTERM it takes a second to clean up, then says so.
    child = tmp_path / "child.py"
    child.write_text(
        "import signal, sys, time, pathlib\n"
        "def stop(n, f):\n"
        "    time.sleep(1); pathlib.Path(sys.argv[1]).write_text('cleaned'); sys.exit(130)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "pathlib.Path(sys.argv[1] + '.up').touch()\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; sys.path.insert(0, sys.argv[1]); from runner.reference import "
            "wait_passing_signals_on as w; sys.exit(w(subprocess.Popen([sys.executable] + sys.argv[2:])))",
            str(ROOT),
            str(child),
            str(tmp_path / "done"),
        ]
    )
    deadline = time.monotonic() + 10
    while not (tmp_path / "done.up").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    parent.send_signal(signal.SIGTERM)  # to the parent alone, as `kill` would
    assert parent.wait(timeout=10) == 130
    assert (tmp_path / "done").read_text() == "cleaned"


@pytest.mark.parametrize(
    "name, backends", [("seed", []), ("upstream", ["upstream"]), ("db", ["database"]), ("openloop", [])]
)
def test_the_backends_a_set_needs_come_from_its_endpoints(name, backends):
    from runner.backends import needed

    assert list(needed(sets.cells(sets.settings(name, {})))) == backends


@pytest.mark.parametrize("name, needs", [("seed", "wrk"), ("openloop", "wrk httperf"), ("upstream", "wrk")])
def test_needs_names_the_load_generators_a_set_uses(name, needs, capsys, monkeypatch):
    from runner import cli

    for knob in ("WRK", "HTTPERF"):
        monkeypatch.delenv(knob, raising=False)
    assert cli.main(["--needs", "--set", name]) == 0
    assert capsys.readouterr().out == needs + "\n"


def test_a_missing_postgresql_is_named_for_benchmark_sh_to_install(capsys, monkeypatch, tmp_path):
    from runner import backends

    monkeypatch.setattr("runner.database.find_bindir", lambda given=None: None)
    monkeypatch.delenv("PG_BINDIR", raising=False)
    assert backends.BACKENDS["database"].missing(True) == ["postgresql"]
    with pytest.raises(backends.Failed, match="PostgreSQL's initdb and postgres are not installed"):
        backends.BACKENDS["database"].missing(False)
