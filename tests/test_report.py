"""report: the parsers on real outputs, the model on hand-worked cases, the summary and README."""

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
from core import model
from core.bound import Bound
from core.cell import Cell
from report import parse, summary, tables

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict:
    return parse.load_wrk(FIXTURES / name)


def test_parses_seconds_kilobytes_timeouts_and_bytes_per_second():
    wrk = fixture("seed-1w1t-sync-timeouts.txt")
    assert wrk["duration_s"] == 60 and wrk["threads"] == 4 and wrk["connections"] == 100
    assert wrk["url"] == "http://127.0.0.1:8000/sync"
    assert (wrk["latency_avg_s"], wrk["latency_stdev_s"], wrk["latency_max_s"]) == (17.43, 4.85, 30.0)
    assert wrk["thread_req_sec_avg"] == 7.27
    assert wrk["requests"] == 201 and wrk["runtime_s"] == 60.0
    assert wrk["bytes_read"] == pytest.approx(27.28 * 1024)
    assert (wrk["errors_connect"], wrk["errors_read"], wrk["errors_write"], wrk["timeouts"]) == (0, 0, 0, 58)
    assert wrk["non_2xx_3xx"] == 0 and wrk["latency_percentiles_s"] is None
    assert wrk["requests_per_sec"] == 3.35 and wrk["transfer_per_sec"] == pytest.approx(465.48)


def test_parses_milliseconds_and_no_error_line():
    wrk = fixture("seed-1w1t-async.txt")
    assert wrk["latency_stdev_s"] == pytest.approx(6.02e-3)
    assert wrk["timeouts"] == 0 and wrk["errors_read"] == 0
    assert wrk["transfer_per_sec"] == pytest.approx(1.28 * 1024)


def test_parses_microseconds_percentiles_megabytes_and_metric_rates():
    wrk = fixture("overhead-async-latency-us-MB.txt")
    assert wrk["latency_avg_s"] == pytest.approx(205.08e-6) and wrk["latency_max_s"] == pytest.approx(4.32e-3)
    assert wrk["latency_percentiles_s"] == pytest.approx({"50": 195e-6, "75": 208e-6, "90": 229e-6, "99": 752e-6})
    assert wrk["thread_req_sec_avg"] == pytest.approx(5150)
    assert wrk["requests"] == 15880 and wrk["runtime_s"] == pytest.approx(3.10)
    assert wrk["bytes_read"] == pytest.approx(2.09 * 1024**2)
    assert fixture("overhead-sync-latency-us.txt")["latency_percentiles_s"]["99"] == pytest.approx(1.05e-3)


def test_parses_minutes_in_latency_and_percentiles():
    wrk = fixture("sync-latency-minutes.txt")
    assert wrk["latency_max_s"] == pytest.approx(0.98 * 60)
    assert wrk["latency_percentiles_s"] == pytest.approx({"50": 30.04, "75": 45.05, "90": 54.0, "99": 58.8})
    assert wrk["runtime_s"] == 60.0 and wrk["requests"] == 59


def test_parses_read_errors_and_non_2xx():
    assert fixture("async-blocking-worker-killed.txt")["errors_read"] == 5
    wrk = fixture("not-found-404.txt")
    assert wrk["non_2xx_3xx"] == wrk["requests"] == 11956
    assert wrk["transfer_per_sec"] == pytest.approx(1.75 * 1024**2)


@pytest.mark.parametrize("text, value", [
    ("1.50GB", 1.5 * 1024**3), ("2.00TB", 2 * 1024**4), ("512.00B", 512.0),
])
def test_byte_units_beyond_what_a_real_run_here_reaches(text, value):
    assert parse.byte_count(text) == value


def test_hours_and_giga_units():
    assert parse.seconds("1.00h") == 3600 and parse.metric("1.20M") == 1.2e6


def test_truncated_output_names_the_file(tmp_path):
    lines = (FIXTURES / "seed-1w1t-async.txt").read_text().splitlines(keepends=True)
    truncated = tmp_path / "wrk.txt"
    truncated.write_text("".join(lines[:5]))
    with pytest.raises(parse.ParseError, match=rf"{truncated}: truncated or not this tool's output \(no totals, requests_per_sec"):
        parse.load_wrk(truncated)


def test_unknown_line_names_file_and_line(tmp_path):
    odd = tmp_path / "wrk.txt"
    odd.write_text("unable to connect to 127.0.0.1:9 Connection refused\n")
    with pytest.raises(parse.ParseError, match=rf"{odd}:1: not a line of the report"):
        parse.load_wrk(odd)


def test_unknown_unit_is_an_error_not_a_zero(tmp_path):
    text = (FIXTURES / "seed-1w1t-async.txt").read_text().replace("76.94KB read", "76.94XB read")
    with pytest.raises(parse.ParseError, match="cannot read a size '76.94XB'"):
        parse.parse_wrk(text, "odd.txt")


def test_a_bad_report_is_one_line_naming_file_and_line(tmp_path):
    run = make_run(tmp_path, [100, 0, 0, 0])
    (run / "01-4w1t-sync-c100" / "wrk.txt").write_text("unable to connect to 127.0.0.1:9 Connection refused\n")
    out = subprocess.run([sys.executable, "-m", "report", "summary", str(run)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr == f"report: {run / '01-4w1t-sync-c100' / 'wrk.txt'}:1: not a line of the report: " \
                         "'unable to connect to 127.0.0.1:9 Connection refused'\n"


# ---------------------------------------------------------------- httperf


def httperf_fixture(name: str) -> dict:
    return parse.load_httperf(FIXTURES / name)


def test_parses_httperf_replies_latency_and_status():
    h = httperf_fixture("httperf-async-all-replied.txt")
    assert (h["connections"], h["requests"], h["replies"], h["status_2xx"]) == (60, 60, 60, 60)
    assert h["test_duration_s"] == 3.952 and h["concurrent_max"] == 21
    assert (h["latency_min_s"], h["latency_median_s"], h["latency_max_s"]) == pytest.approx((1.0005, 1.0005, 1.0048))
    assert h["errors_total"] == h["client_timeouts"] == 0 and h["cpu_system_s"] == 3.72


def test_parses_httperf_client_timeouts_and_refused_connections():
    h = httperf_fixture("httperf-blocking-client-timeouts.txt")
    assert (h["replies"], h["client_timeouts"], h["errors_total"]) == (2, 10, 10)
    refused = httperf_fixture("httperf-connection-refused.txt")
    assert (refused["requests"], refused["replies"], refused["connrefused"]) == (0, 0, 10)
    overloaded = httperf_fixture("httperf-sync-overloaded.txt")
    assert overloaded["replies"] + overloaded["client_timeouts"] == overloaded["connections"]


def test_httperf_unknown_line_and_truncation_name_the_file(tmp_path):
    text = (FIXTURES / "httperf-async-all-replied.txt").read_text()
    odd = tmp_path / "httperf.txt"
    odd.write_text(text.replace("Net I/O:", "Session rate [sess/s]: min 0.00\nNet I/O:"))
    with pytest.raises(parse.ParseError, match=rf"{odd}:\d+: not a line of the report: 'Session rate"):
        parse.load_httperf(odd)
    odd.write_text(text.split("Reply status")[0])
    with pytest.raises(parse.ParseError, match=r"truncated or not this tool's output \(no reply_status, cpu, errors"):
        parse.load_httperf(odd)


# ---------------------------------------------------------------- the model, worked by hand


def test_original_one_worker_sync_is_bound_by_the_40_threads():
    # 40 at once, 10 s each: waves end at 10..50 s; the one at 60 s races wrk's stop.
    p = model.predict("sync", workers=1, connections=100, sleep=10, duration=60)
    assert (p.requests, p.edge, p.concurrency, p.bound_by) == (200, 40, 40, "thread limiter: 40/worker")


def test_original_async_and_four_worker_sync_are_bound_by_the_client():
    assert model.predict("async", 1, 100, 10, 60).requests == 500
    p = model.predict("sync", 4, 100, 10, 60)
    assert (p.requests, p.bound_by) == (500, "client: 100 connections")


def test_connections_landing_on_one_worker_give_the_one_worker_result():
    p = model.predict("sync", 4, 100, 10, 60, connections_per_worker=[100, 0, 0, 0])
    assert (p.requests, p.bound_by) == (200, "connection spread 100/0/0/0")
    # 46 on one worker: it runs 40, the others all theirs: 40 + 21 + 18 + 15 = 94 per wave.
    assert model.predict("sync", 4, 100, 10, 60, connections_per_worker=[46, 21, 18, 15]).requests == 470
    # async has no per-worker limit, so the spread does not matter.
    assert model.predict("async", 4, 100, 10, 60, connections_per_worker=[100, 0, 0, 0]).requests == 500


def test_blocking_async_runs_one_request_per_worker():
    p = model.predict("async-blocking", 1, 1000, 1, 10)
    assert (p.requests, p.concurrency, p.bound_by) == (9, 1, "blocked event loop: 1/worker")
    assert model.predict("async-blocking", 4, 1000, 1, 10).requests == 36


def test_wrk_rounds_connections_down_to_a_multiple_of_its_threads():
    p = model.predict("async", 1, 10, 1, 10, wrk_threads=4)
    assert (p.client_connections, p.requests) == (8, 72)


def test_thread_limit_raises_the_def_ceiling():
    assert model.predict("sync", 1, 1000, 1, 10, thread_limit=100).requests == 900


def test_no_edge_wave_when_the_duration_is_not_a_multiple_of_the_sleep():
    p = model.predict("async", 1, 8, 4, 6, wrk_threads=2)
    assert (p.requests, p.edge) == (8, 0)  # one wave at 4 s; the next would end at 8 s


def test_zero_sleep_has_no_prediction():
    p = model.predict("sync", 1, 64, 0, 10)
    assert (p.requests, p.bound_by) == (None, "CPU (no sleep)")


def test_the_http_client_pool_is_the_limit_for_async_http():
    p = model.predict("async-http", 1, 1000, 1, 10)
    assert (p.requests, p.concurrency, p.bound_by) == (900, 100, "HTTP client pool: 100/worker")
    assert model.predict("async-http", 1, 1000, 1, 10, http_pool=400).requests == 3600
    # `def` + httpx.Client: the 40 threads come first, the pool of 100 is never reached.
    assert model.predict("sync-http", 1, 1000, 1, 10).bound_by == "thread limiter: 40/worker"
    assert model.predict("async-http-blocking", 4, 1000, 1, 10).requests == 36


def test_pool_timeouts_by_hand():
    # 1000 connections, a pool of 100, 1 s calls, 5 s pool timeout: waves of 100 at 1..4 s; the
    # 500 still waiting at 5 s give up then (503) and ask again, behind the 400 that were answered,
    # whose waits run out at 10 s, just as wrk stops.
    assert model.simulate_pool(1000, 100, 1, 5, 10) == (500, 500)
    assert model.simulate_pool(100, 100, 1, 5, 10) == (0, 0)  # nobody waits
    p = model.predict("async-http", 1, 1000, 1, 10)
    assert (p.errors, p.errors_edge) == (500, 500)


def test_connections_past_the_listen_backlog_may_start_a_syn_retry_late():
    # 1000 connections, backlog 64 (Linux queues 65), 1 s sleep, 6 s: 65 start at once (5 waves each)
    # and 935 a second later (4 waves each, the 5th ending as wrk stops).
    p = model.predict("async", 1, 1000, 1, 6, backlog=64)
    assert (p.requests, p.late_requests) == (5000, 65 * 5 + 935 * 4)
    # As measured: 176 at once, 603 a second late, 213 two, 8 four seconds late.
    measured = model.predict("async", 1, 1000, 1, 6, backlog=64, connection_starts={0: 176, 1: 603, 2: 213, 4: 8})
    assert measured.late_requests == 176 * 5 + 603 * 4 + 213 * 3 + 8 * 1
    # Where the threads hold fewer than the backlog, a late start costs nothing.
    assert model.predict("sync", 1, 1000, 1, 6, backlog=64).late_requests == 40 * 5
    assert model.predict("async", 1, 1000, 1, 6).late_requests is None  # the default backlog holds them


def test_the_effective_backlog_is_the_flag_capped_at_somaxconn_per_socket():
    cell = Cell(workers=4, server_args="--backlog 64")
    assert model.effective_backlog(cell, somaxconn=4096) == 64
    assert model.effective_backlog(Cell(workers=4), somaxconn=4096) == 2048
    assert model.effective_backlog(Cell(workers=4), somaxconn=128) == 128
    assert model.effective_backlog(Cell(workers=4, server="gunicorn-reuse-port"), somaxconn=4096) == 4 * 2048


def test_granian_backpressure_is_a_limit_per_worker():
    limit = model.worker_limit("async", 4, server="granian")
    assert (limit.per_worker, limit.name) == (256, "granian backpressure: 256/worker")
    assert model.worker_limit("sync", 4, server="granian").per_worker == 40


def test_open_loop_below_and_above_capacity_by_hand():
    # Checked with httperf here: 1 worker, 1 s sleep, 60/s offered for 15 s, 5 s timeout:
    # 480 replies and 420 timeouts. Request k waits k (1/40 - 1/60) s more than the one before.
    p = model.predict_open_loop("sync", 1, 60, 1, 5, 15)
    assert (p.offered, p.replies, p.timeouts, p.capacity_per_s) == (900, 480, 420, 40)
    assert p.bound_by == "thread limiter: 40/worker = 40 req/s"
    below = model.predict_open_loop("sync", 1, 36, 1, 3, 20)
    assert (below.replies, below.timeouts, below.bound_by) == (720, 0, "below capacity")
    assert below.latency_median_s == pytest.approx(1.001)
    anything = model.predict_open_loop("async", 4, 320, 1, 3, 20)
    assert (anything.replies, anything.bound_by) == (6400, "no limit below the CPU")


def test_open_loop_with_an_uneven_spread_overloads_one_worker():
    even = model.predict_open_loop("sync", 4, 144, 1, 3, 20)
    assert even.timeouts == 0
    lopsided = model.predict_open_loop("sync", 4, 144, 1, 3, 20, connections_per_worker=[130, 10, 0, 4])
    assert lopsided.timeouts > 1000 and lopsided.bound_by == "connection spread 130/10/0/4"
    assert lopsided.replies + lopsided.timeouts == lopsided.offered == 2880


# ---------------------------------------------------------------- committed runs and README


COMMITTED = sorted(p for p in (ROOT / "results").glob("*-*") if (p / "summary.json").exists())


@pytest.mark.skipif(not COMMITTED, reason="no reference run committed")
@pytest.mark.parametrize("run_dir", COMMITTED, ids=lambda p: p.name)
def test_summary_figures_match_the_raw_files_read_another_way(run_dir):
    """Not the report's own parser: wrk's count by a regular expression, each worker's connections
    straight from its counters (stop less start), the servers' CPU from the process samples."""
    for row in json.loads((run_dir / "summary.json").read_text())["cells"]:
        cell = run_dir / row["cell"]
        if (cell / "wrk.txt").exists():
            (count,) = re.findall(r"^\s+(\d+) requests in", (cell / "wrk.txt").read_text(), flags=re.M)
            assert row["requests"] == int(count), row["cell"]
        if (cell / "stats").is_dir() and row["connections_per_worker"]:
            start = {json.loads(p.read_text())["pid"]: json.loads(p.read_text())["connections"]
                     for p in (cell / "stats").glob("worker-*.start.json")}
            stops = [json.loads(p.read_text()) for p in (cell / "stats").glob("worker-*.stop.json")]
            seen = sorted((s["connections"] - start.get(s["pid"], 0) for s in stops), reverse=True)
            assert row["connections_per_worker"][:len(seen)] == seen or row["workers_restarted"], row["cell"]
        samples = {name: json.loads((cell / f"server.{name}.json").read_text()) for name in ("start", "stop")
                   if (cell / f"server.{name}.json").exists()}
        if len(samples) == 2 and row["server_cpu_s"] is not None:
            before = {p["pid"]: p["cpu_s"] for p in samples["start"]["roles"]["server"]}
            spent = sum(p["cpu_s"] - before.get(p["pid"], 0) for p in samples["stop"]["roles"]["server"])
            assert abs(row["server_cpu_s"] - spent) < 1e-6, row["cell"]


@pytest.mark.skipif(not COMMITTED, reason="no reference run committed")
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


@pytest.mark.skipif(not COMMITTED, reason="no reference run committed")
@pytest.mark.parametrize("run_dir", COMMITTED, ids=lambda p: p.name)
def test_def_handler_never_ran_more_than_its_thread_limit_in_a_committed_run(run_dir):
    for cell in json.loads((run_dir / "summary.json").read_text())["cells"]:
        if cell["endpoint"] == "sync" and cell["peak_in_handler_per_worker"]:
            limit = 40 if cell["thread_limit"] == "default" else int(cell["thread_limit"])
            assert max(cell["peak_in_handler_per_worker"]) <= limit, cell["cell"]


def test_readme_generated_sections_match_the_committed_runs():
    out = subprocess.run([sys.executable, "-m", "report", "readme", "--check"], capture_output=True, text=True, cwd=ROOT)
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
            (cell / "stats" / f"worker-{pid}.{name}.json").write_text(json.dumps(
                {"pid": pid, "connections": seen, "connections_answered": seen, "in_flight": 0,
                 "oldest_unanswered_s": None, "cpu_s": 1.0, "peak_rss_bytes": 50 * 2**20, "thread_limit": 40,
                 "endpoints": {"sync": {"peak": min(connections, 40), "completed": 0, "received": 0,
                                        "peak_waiting": max(connections - 40, 0)}}}))
    if cpu:
        for name, spent in (("start", 0.0), ("stop", cpu[0])):
            (cell / f"server.{name}.json").write_text(json.dumps(
                {"time": 0, "roles": {"server": [{"pid": 1, "cpu_s": spent, "rss_bytes": 2**20}]}}))
        (cell / "wrk.usage.json").write_text(json.dumps({"wall_s": 60.0, "cpu_s": cpu[1], "maxrss_bytes": 2**20}))
    (run_dir / "run.json").write_text(json.dumps({"environment": {"cpu_count": 2}, "parameters": {}}))
    cells_tsv.write_header(run_dir / "cells.tsv")
    cells_tsv.append(run_dir / "cells.tsv", Cell(name="01-4w1t-sync-c100", workers=4, sleep=10.0, endpoint="sync",
                                                 connections=100, duration=60, timeout=30))
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
    (stats / "worker-9.json").write_text(json.dumps({**json.loads((stats / "worker-2.json").read_text()),
                                                      "pid": 9, "time": 90.0, "connections": 99}))
    (run_dir / "01-4w1t-sync-c100" / "server.log").write_text(
        "Application startup complete\n" * 6 + "Maximum request limit of 100 exceeded. Terminating process.\n" * 2)
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
    edit = lambda data, i: data.update(connection_starts={"0": 20, "1": 5})
    for path in (cell / "stats").glob("worker-*.stop.json"):
        data = json.loads(path.read_text())
        edit(data, 0)
        path.write_text(json.dumps(data))
    (row,), _ = summary.summarise_run(run_dir)
    assert row.measured.connections_started_late == 20 and row.measured.listen_overflows == dropped
    assert ("accept queue overflowed" in row.verdict.bound_by) == overflowed == row.verdict.overflowed


def test_below_prediction_without_a_cpu_figure_is_not_called_cpu(tmp_path):
    # An overloaded worker has not yet seen a request from every connection: no evidence to use.
    (row,), _ = summary.summarise_run(make_run(tmp_path, [30, 20, 10, 0]))
    assert row.verdict.expected_requests == row.verdict.predicted_requests == 500
    assert row.verdict.bound_by == "unexplained: below the prediction, no CPU saturated (CPU not measured)"
    assert row.verdict.bound is Bound.UNEXPLAINED


@pytest.mark.parametrize("server_cpu, wrk_cpu, verdict", [
    (115.0, 4.0, "CPU: machine 99% busy (server 96%, wrk 3% of 2 cores)"),
    (20.0, 4.0, "unexplained: below the prediction, no CPU saturated (server 17%, wrk 3% of 2 cores)"),
])
def test_cpu_is_named_only_when_measured_saturated(tmp_path, server_cpu, wrk_cpu, verdict):
    (row,), _ = summary.summarise_run(make_run(tmp_path, [30, 20, 10, 0], cpu=(server_cpu, wrk_cpu)))
    assert row.verdict.bound_by == verdict
    assert row.verdict.bound is (Bound.CPU if verdict.startswith("CPU") else Bound.UNEXPLAINED)


def test_compact_table_fits_100_columns(tmp_path):
    _, groups = summary.summarise_run(make_run(tmp_path, [30, 20, 10, 0], cpu=(20.0, 4.0)))
    long = replace(groups[0].cell, server="gunicorn-reuse-port", thread_limit=400, http_pool=400)  # as long as they get
    table = tables.compact_table([replace(groups[0], cell=long)])
    assert all(len(line) <= 100 for line in table.splitlines()), table
    assert f"✗ {long.label()} /sync" in table  # named with its reason


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
