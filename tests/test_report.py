"""The summary of a run and the README: on the committed runs, and on run directories made by hand."""

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import ROOT
from core import cell as cells_tsv
from core.bound import Bound
from core.cell import Cell
from core.endpoints import DEF, ENDPOINTS
from report import summary, tables

COMMITTED = sorted(p for p in (ROOT / "results").glob("*-*") if (p / "summary.json").exists())
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("run_dir", COMMITTED, ids=lambda p: p.name)
def test_summary_figures_match_the_raw_files_read_another_way(run_dir):
    """Not the report's own parser: wrk's count by a regular expression, each worker's connections
    straight from its counters (stop less start), the servers' CPU from the process samples."""
    checked = {"count": 0, "spread": 0, "cpu": 0}
    for row in json.loads((run_dir / "summary.json").read_text())["cells"]:
        cell = run_dir / row["cell"]
        if (cell / "wrk.txt").exists():
            (count,) = re.findall(r"^\s+(\d+) requests in", (cell / "wrk.txt").read_text(), flags=re.M)
            assert row["requests"] == int(count), row["cell"]
            checked["count"] += 1
        else:
            (count,) = re.findall(r"Reply status: 1xx=\d+ 2xx=(\d+)", (cell / "httperf.txt").read_text())
            assert row["replies"] == int(count), row["cell"]
            checked["count"] += 1
        if (cell / "stats").is_dir() and row["connections_per_worker"]:
            start = {
                json.loads(p.read_text())["pid"]: json.loads(p.read_text())["connections"]
                for p in (cell / "stats").glob("worker-*.start.json")
            }
            stops = [json.loads(p.read_text()) for p in (cell / "stats").glob("worker-*.stop.json")]
            seen = sorted((s["connections"] - start.get(s["pid"], 0) for s in stops), reverse=True)
            assert row["connections_per_worker"][: len(seen)] == seen or row["workers_restarted"], row["cell"]
            checked["spread"] += 1
        samples = {
            name: json.loads((cell / f"server.{name}.json").read_text())
            for name in ("start", "stop")
            if (cell / f"server.{name}.json").exists()
        }
        if len(samples) == 2 and row["server_cpu_s"] is not None:
            before = {p["pid"]: p["cpu_s"] for p in samples["start"]["roles"]["server"]}
            spent = sum(p["cpu_s"] - before.get(p["pid"], 0) for p in samples["stop"]["roles"]["server"])
            assert abs(row["server_cpu_s"] - spent) < 1e-6, row["cell"]
            checked["cpu"] += 1
    # Every cell's count; the spread and the CPU wherever the run kept counters (not STATS=0).
    cells = json.loads((run_dir / "summary.json").read_text())["cells"]
    assert checked["count"] == len(cells)
    counted = any((run_dir / row["cell"] / "stats").is_dir() for row in cells)
    assert checked["cpu"] and bool(checked["spread"]) == counted, checked


@pytest.mark.parametrize("run_dir", COMMITTED, ids=lambda p: p.name)
def test_rerunning_the_report_on_a_committed_run_reproduces_its_summary(run_dir, tmp_path):
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    for name in ["summary.csv", "summary.json", "summary.md", "plot.png"]:
        (copy / name).unlink()
    summary.write_summary(copy)
    for name in ["summary.csv", "summary.json", "summary.md"]:
        assert (copy / name).read_text() == (run_dir / name).read_text(), name
    assert (copy / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def def_cells(run_dir: Path) -> list[dict]:
    """The cells of a committed run whose `def` handler reported its peak."""
    return [
        cell
        for cell in json.loads((run_dir / "summary.json").read_text())["cells"]
        if ENDPOINTS[cell["endpoint"]].kind == DEF and cell["peak_in_handler_per_worker"]
    ]


@pytest.mark.parametrize("run_dir", [p for p in COMMITTED if def_cells(p)], ids=lambda p: p.name)
def test_def_handler_never_ran_more_than_its_thread_limit_in_a_committed_run(run_dir):
    for cell in def_cells(run_dir):
        limit = 40 if cell["thread_limit"] == "default" else int(cell["thread_limit"])
        assert max(cell["peak_in_handler_per_worker"]) <= limit, cell["cell"]


def test_the_committed_runs_with_a_def_handler_are_checked():
    assert sum(bool(def_cells(p)) for p in COMMITTED) >= 5  # seed, concurrency, threads, workers, servers...


def test_readme_generated_sections_match_the_committed_runs():
    out = subprocess.run(
        [sys.executable, "-m", "report", "readme", "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr


def make_run(tmp_path: Path, connections_per_worker: list[int], cpu: tuple[float, float] | None = None) -> Path:
    """A run directory of one 4-worker /sync cell: a real wrk output and the workers' counts as given,
    and (optionally) the server's and wrk's CPU seconds over the 60 s window."""
    run_dir = tmp_path / "run"
    cell = run_dir / "01-4w1t-sync-c100"
    (cell / "stats").mkdir(parents=True)
    shutil.copy(FIXTURES / "seed-1w1t-sync-timeouts.txt", cell / "wrk.txt")
    for pid, connections in enumerate(connections_per_worker):
        for name, seen in (("start", 0), ("stop", connections)):  # the summary counts start -> stop
            (cell / "stats" / f"worker-{pid}.{name}.json").write_text(
                json.dumps(
                    {
                        "pid": pid,
                        "connections": seen,
                        "connections_answered": seen,
                        "in_flight": 0,
                        "oldest_unanswered_s": None,
                        "cpu_s": 1.0,
                        "peak_rss_bytes": 50 * 2**20,
                        "thread_limit": 40,
                        "endpoints": {
                            "sync": {
                                "peak": min(connections, 40),
                                "completed": 0,
                                "received": 0,
                                "peak_waiting": max(connections - 40, 0),
                            }
                        },
                    }
                )
            )
    if cpu:
        for name, spent in (("start", 0.0), ("stop", cpu[0])):
            (cell / f"server.{name}.json").write_text(
                json.dumps({"time": 0, "roles": {"server": [{"pid": 1, "cpu_s": spent, "rss_bytes": 2**20}]}})
            )
        (cell / "wrk.usage.json").write_text(json.dumps({"wall_s": 60.0, "cpu_s": cpu[1], "maxrss_bytes": 2**20}))
    (run_dir / "run.json").write_text(json.dumps({"environment": {"cpu_count": 2}, "parameters": {}}))
    cells_tsv.write_header(run_dir / "cells.tsv")
    cells_tsv.append(
        run_dir / "cells.tsv",
        Cell(
            name="01-4w1t-sync-c100", workers=4, sleep=10.0, endpoint="sync", connections=100, duration=60, timeout=30
        ),
    )
    return run_dir


def test_summary_uses_the_spread_the_workers_reported(tmp_path):
    (row,), (group,) = summary.summarise_run(make_run(tmp_path, [100, 0, 0, 0]))
    v = row.verdict
    assert v.bound_by == "connection spread 100/0/0/0" and v.bound is Bound.SPREAD
    assert (v.predicted_requests, v.expected_requests, v.expected_edge) == (500, 200, 40)
    assert v.as_predicted  # wrk counted 201: one worker's 40 threads, as if it were alone
    assert row.measured.max_share == 1.0 and row.measured.spread_index == 4.0
    assert "with the spread seen: 200" in tables.markdown_table([group])


def test_a_worker_gone_mid_cell_is_counted_from_its_last_file(tmp_path):
    # gunicorn --max-requests: two workers restarted; the survivors reported 57 and 43, the two that
    # went 32 and 25 in their last files, their replacements none.
    run_dir = make_run(tmp_path, [57, 43, 32, 25, 0, 0], cpu=(20.0, 4.0))
    stats = run_dir / "01-4w1t-sync-c100" / "stats"
    for pid in (2, 3):
        stop = stats / f"worker-{pid}.stop.json"
        stop.rename(stats / f"worker-{pid}.json")
    (stats / "worker-4.start.json").unlink()
    (stats / "worker-5.start.json").unlink()
    for name, time_s in (("start", 100.0), ("stop", 160.0)):
        path = run_dir / "01-4w1t-sync-c100" / f"server.{name}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "time": time_s}))
    for pid in (2, 3):  # written at 130 s, inside the window
        path = stats / f"worker-{pid}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "time": 130.0}))
    # A worker that went before the window (its last file at 90 s) is not one of the cell's.
    (stats / "worker-9.json").write_text(
        json.dumps({**json.loads((stats / "worker-2.json").read_text()), "pid": 9, "time": 90.0, "connections": 99})
    )
    (run_dir / "01-4w1t-sync-c100" / "server.log").write_text(
        "Application startup complete\n" * 6 + "Maximum request limit of 100 exceeded. Terminating process.\n" * 2
    )
    (row,), (group,) = summary.summarise_run(run_dir)
    assert row.measured.connections_per_worker == [57, 43, 32, 25, 0, 0]
    assert (row.measured.workers_restarted, row.measured.restart_reasons) == (2, "2x max-requests")
    # wrk's 201 are below the 500 predicted: the restarts are named, not the spread of the survivors.
    assert row.verdict.bound is Bound.RESTARTED
    assert tables.bound_text(group) == "2 worker(s) restarted mid-cell (2x max-requests): the model keeps its workers"


@pytest.mark.parametrize("dropped, overflowed", [(0, False), (12, True)])
def test_late_connections_are_an_overflow_only_with_the_kernels_count(tmp_path, dropped, overflowed):
    # A blocked event loop reads a new connection's first request late too: late starts alone say nothing.
    run_dir = make_run(tmp_path, [25, 25, 25, 25], cpu=(20.0, 4.0))
    cell = run_dir / "01-4w1t-sync-c100"
    for name, count in (("start", 1000), ("stop", 1000 + dropped)):
        path = cell / f"server.{name}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "listen_queue": {"ListenOverflows": count}}))
    for path in (cell / "stats").glob("worker-*.stop.json"):
        data = json.loads(path.read_text())
        data.update(connection_starts={"0": 20, "1": 5})
        path.write_text(json.dumps(data))
    (row,), _ = summary.summarise_run(run_dir)
    assert row.measured.connections_started_late == 20 and row.measured.listen_overflows == dropped
    assert ("accept queue overflowed" in row.verdict.bound_by) == overflowed == row.verdict.overflowed


def test_below_prediction_without_a_cpu_figure_is_not_called_cpu(tmp_path):
    # An overloaded worker has not yet seen a request from every connection: no evidence to use.
    (row,), _ = summary.summarise_run(make_run(tmp_path, [30, 20, 10, 0]))
    assert row.verdict.expected_requests == row.verdict.predicted_requests == 500
    assert row.verdict.bound_by == (
        "unexplained: below the prediction, no CPU saturated (CPU not measured); no loop clock"
    )
    assert row.verdict.bound is Bound.UNEXPLAINED


@pytest.mark.parametrize(
    "server_cpu, wrk_cpu, verdict",
    [
        (115.0, 4.0, "CPU: machine 99% busy (server 96%, wrk 3% of 2 cores)"),
        (
            20.0,
            4.0,
            "unexplained: below the prediction, no CPU saturated (server 17%, wrk 3% of 2 cores); no loop clock",
        ),
    ],
)
def test_cpu_is_named_only_when_measured_saturated(tmp_path, server_cpu, wrk_cpu, verdict):
    (row,), _ = summary.summarise_run(make_run(tmp_path, [30, 20, 10, 0], cpu=(server_cpu, wrk_cpu)))
    assert row.verdict.bound_by == verdict
    assert row.verdict.bound is (Bound.CPU if verdict.startswith("CPU") else Bound.UNEXPLAINED)


def test_an_unexplained_cell_comes_with_its_loops_figures(tmp_path):
    run_dir = make_run(tmp_path, [30, 20, 10, 0], cpu=(20.0, 4.0))
    bounds = [0.001, 0.01, 0.1, 1.0]
    for path in (run_dir / "01-4w1t-sync-c100" / "stats").glob("worker-*.json"):
        data = json.loads(path.read_text())
        stop = path.name.endswith(".stop.json")
        data["loop"] = {
            "late_buckets": [90, 0, 0, 9, 1] if stop else [0] * 5,
            "late_bucket_bounds_s": bounds,
            "late_max_s": 1.5 if stop else 0.0,
            "late_total_s": 4.0 if stop else 0.5,
            "stuck_s": 0.1,
            "watch_s": 0.05,
            "stuck_samples": {"f (a.py:9) < g (b.py:2)": 40} if stop else {},
        }
        path.write_text(json.dumps(data))
    (row,), _ = summary.summarise_run(run_dir)
    assert row.verdict.bound is Bound.UNEXPLAINED
    # 99 of 100 wake-ups within 1 s; the latest 1.5 s; 3.5 s late in each worker's window; 2 s stuck in each.
    assert row.verdict.bound_by.endswith(
        "; loop woke up to 1.50 s late (p99 ≤1.00 s), 14.00 s late in all; stuck ≥100.00 ms: 8.00 s in "
        "f (a.py:9) < g (b.py:2)"
    ), row.verdict.bound_by


def test_compact_table_fits_100_columns(tmp_path):
    _, groups = summary.summarise_run(make_run(tmp_path, [30, 20, 10, 0], cpu=(20.0, 4.0)))
    long = replace(groups[0].cell, server="gunicorn-reuse-port", thread_limit=400, http_pool=400)  # as long as they get
    table = tables.compact_table([replace(groups[0], cell=long)])
    assert all(len(line) <= 100 for line in table.splitlines()), table
    assert f"✗ {long.label()} /sync" in table  # named with its reason
    assert "…" not in table and " ".join(groups[0].bound_by.split()) in " ".join(table.split())  # all of it


def test_a_config_too_long_for_a_column_heads_its_rows(tmp_path):
    _, groups = summary.summarise_run(make_run(tmp_path, [30, 20, 10, 0], cpu=(20.0, 4.0)))
    knobs = "--max-requests 20 --backlog 64 --keep-alive 5 --graceful-timeout 5"
    long = replace(groups[0].cell, thread_limit=100, server_args=knobs)
    table = tables.compact_table([replace(groups[0], cell=long)]).splitlines()
    assert table[0].split()[:2] == ["endpoint", "load"] and table[1] == long.label(), table
    assert table[2].startswith("  /sync ") and all(len(line) <= 100 for line in table), table


def test_the_line_a_cell_ends_with_keeps_its_whole_explanation(tmp_path):
    run_dir = make_run(tmp_path, [30, 20, 10, 0], cpu=(20.0, 4.0))
    (row,), _ = summary.summarise_run(run_dir)
    text = summary.brief(run_dir, row.cell.name, width=60)
    assert all(len(line) <= 60 for line in text.splitlines()) and len(text.splitlines()) > 1, text
    assert text.startswith(f"{row.cell.name}: 201 requests") and "…" not in text
    assert " ".join(row.verdict.bound_by.split()) in " ".join(text.split())


def test_spread_counts_only_connections_made_after_the_warm_up(tmp_path):
    run_dir = make_run(tmp_path, [40, 30, 20, 10])
    for path in (run_dir / "01-4w1t-sync-c100" / "stats").glob("worker-*.json"):
        data = json.loads(path.read_text())
        data["connections"] += 25  # the warm-up's connections, in the start and the stop snapshot alike
        path.write_text(json.dumps(data))
    (row,), _ = summary.summarise_run(run_dir)
    assert row.measured.connections_per_worker == [40, 30, 20, 10]


def test_readme_answers_in_its_first_40_lines_within_20_kb():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 20_000
    head = text.splitlines()[:40]
    answers = [line for line in head if line.startswith("- **") and "([evidence](results/" in line]
    assert len(answers) == 5, answers
    for line in answers:
        page, anchor = line.rsplit("([evidence](", 1)[1].rstrip(")").split("#")
        assert f'<a id="{anchor}"></a>' in (ROOT / page).read_text(), line


def test_a_hand_edit_to_a_per_set_page_fails_the_check(tmp_path):
    from report import readme

    results = tmp_path / "results"
    seed = next((ROOT / "results").glob("*-seed-reference"))
    shutil.copytree(seed, results / seed.name)
    page = tmp_path / "README.md"
    page.write_text((ROOT / "README.md").read_text())
    readme.update(path=page, results=results, allow_unreproduced=True)  # writes the pages for this results/
    assert readme.update(check=True, path=page, results=results, allow_unreproduced=True) == 0
    with open(results / "seed.md", "a") as f:
        f.write("a hand edit\n")
    assert readme.update(check=True, path=page, results=results, allow_unreproduced=True) == 1


def test_a_bad_report_is_one_line_naming_file_and_line(tmp_path):
    run = make_run(tmp_path, [100, 0, 0, 0])
    (run / "01-4w1t-sync-c100" / "wrk.txt").write_text("unable to connect to 127.0.0.1:9 Connection refused\n")
    out = subprocess.run(
        [sys.executable, "-m", "report", "summary", str(run)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 1
    assert (
        out.stderr == f"report: {run / '01-4w1t-sync-c100' / 'wrk.txt'}:1: not a line of the report: "
        "'unable to connect to 127.0.0.1:9 Connection refused'\n"
    )


# ---------------------------------------------------------------- httperf


@pytest.mark.parametrize("recorded, reasons", [(True, ""), (False, "4x exited")])
def test_the_runners_own_stop_is_not_a_restart(tmp_path, recorded, reasons):
    run_dir = make_run(tmp_path, [25, 25, 25, 25], cpu=(20.0, 4.0))
    cell = run_dir / "01-4w1t-sync-c100"
    served = "Application startup complete\n" * 4
    (cell / "server.log").write_text(served + "[INFO] Worker (pid:7) was sent SIGTERM!\n" * 4)
    if recorded:  # the runner notes how far the log had come at the stop snapshot, before it stops the server
        stop = cell / "server.stop.json"
        stop.write_text(json.dumps({**json.loads(stop.read_text()), "log_bytes": {"server": len(served)}}))
    (row,), _ = summary.summarise_run(run_dir)
    assert (row.measured.workers_restarted, row.measured.restart_reasons) == (0, reasons)


def test_runs_bound_by_the_same_kind_are_one_reason_with_their_figures_run_by_run():
    from report.group import merged_bound_by

    texts = ["pool: 40/worker; 941 dropped", "pool: 40/worker; 58 dropped", "client: 100 connections"]
    assert merged_bound_by(texts) == "pool: 40/worker; {941, 58} dropped (2/3); client: 100 connections (1/3)"
    assert merged_bound_by(["client: 100 connections"] * 3) == "client: 100 connections (3/3)"
    assert merged_bound_by(["client: 100 connections"]) == "client: 100 connections"


@pytest.mark.parametrize(
    "knobs, pool",
    [
        ({}, "5+10,30s"),
        ({"db_pool_size": 40, "db_max_overflow": 0}, "40+0,30s"),
        ({"db_pool_timeout": 1.5}, "5+10,1.5s"),
    ],
)
def test_list_shows_the_pool_a_database_cell_will_have(knobs, pool):
    assert Cell(endpoint="sync-db", **knobs).listing().split()[-2] == pool
    assert Cell(endpoint="sync", **knobs).listing().split()[-2] == "-"
