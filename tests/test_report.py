"""report.py: the wrk parser on real outputs, the model on hand-worked cases, the summary and README."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import report
from conftest import ROOT

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict:
    return report.load_wrk(FIXTURES / name)


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
    assert report.byte_count(text) == value


def test_hours_and_giga_units():
    assert report.seconds("1.00h") == 3600 and report.metric("1.20M") == 1.2e6


def test_truncated_output_names_the_file(tmp_path):
    lines = (FIXTURES / "seed-1w1t-async.txt").read_text().splitlines(keepends=True)
    truncated = tmp_path / "wrk.txt"
    truncated.write_text("".join(lines[:5]))
    with pytest.raises(report.WrkParseError, match=rf"{truncated}: truncated or not wrk output \(no totals, requests_per_sec"):
        report.load_wrk(truncated)


def test_unknown_line_names_file_and_line(tmp_path):
    odd = tmp_path / "wrk.txt"
    odd.write_text("unable to connect to 127.0.0.1:9 Connection refused\n")
    with pytest.raises(report.WrkParseError, match=rf"{odd}:1: not a line of wrk's report"):
        report.load_wrk(odd)


def test_unknown_unit_is_an_error_not_a_zero(tmp_path):
    text = (FIXTURES / "seed-1w1t-async.txt").read_text().replace("76.94KB read", "76.94XB read")
    with pytest.raises(report.WrkParseError, match="cannot read a size '76.94XB'"):
        report.parse_wrk(text, "odd.txt")


def test_brief_command_line_and_its_error():
    ok = subprocess.run([sys.executable, str(ROOT / "report.py"), "brief", str(FIXTURES / "seed-1w1t-sync-timeouts.txt")],
                        capture_output=True, text=True)
    assert ok.stdout == "201 requests  3.35 req/s  latency avg 17.43 s  58 timeouts  0 errors\n"
    bad = subprocess.run([sys.executable, str(ROOT / "report.py"), "brief", str(FIXTURES / "README.md")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith(f"report.py: {FIXTURES / 'README.md'}:1:")


# ---------------------------------------------------------------- the model, worked by hand


def test_original_one_worker_sync_is_bound_by_the_40_threads():
    # 40 at once, 10 s each: waves end at 10..50 s; the one at 60 s races wrk's stop.
    p = report.predict("sync", workers=1, connections=100, sleep=10, duration=60)
    assert (p.requests, p.edge, p.concurrency, p.bound_by) == (200, 40, 40, "thread limiter: 40/worker")


def test_original_async_and_four_worker_sync_are_bound_by_the_client():
    assert report.predict("async", 1, 100, 10, 60).requests == 500
    p = report.predict("sync", 4, 100, 10, 60)
    assert (p.requests, p.bound_by) == (500, "client: 100 connections")


def test_connections_landing_on_one_worker_give_the_one_worker_result():
    p = report.predict("sync", 4, 100, 10, 60, connections_per_worker=[100, 0, 0, 0])
    assert (p.requests, p.bound_by) == (200, "connection spread 100/0/0/0")
    # 46 on one worker: it runs 40, the others all theirs: 40 + 21 + 18 + 15 = 94 per wave.
    assert report.predict("sync", 4, 100, 10, 60, connections_per_worker=[46, 21, 18, 15]).requests == 470
    # async has no per-worker limit, so the spread does not matter.
    assert report.predict("async", 4, 100, 10, 60, connections_per_worker=[100, 0, 0, 0]).requests == 500


def test_blocking_async_runs_one_request_per_worker():
    p = report.predict("async-blocking", 1, 1000, 1, 10)
    assert (p.requests, p.concurrency, p.bound_by) == (9, 1, "blocked event loop: 1/worker")
    assert report.predict("async-blocking", 4, 1000, 1, 10).requests == 36


def test_wrk_rounds_connections_down_to_a_multiple_of_its_threads():
    p = report.predict("async", 1, 10, 1, 10, wrk_threads=4)
    assert (p.client_connections, p.requests) == (8, 72)


def test_thread_limit_raises_the_def_ceiling():
    assert report.predict("sync", 1, 1000, 1, 10, thread_limit=100).requests == 900


def test_no_edge_wave_when_the_duration_is_not_a_multiple_of_the_sleep():
    p = report.predict("async", 1, 8, 4, 6, wrk_threads=2)
    assert (p.requests, p.edge) == (8, 0)  # one wave at 4 s; the next would end at 8 s


def test_zero_sleep_has_no_prediction():
    p = report.predict("sync", 1, 64, 0, 10)
    assert (p.requests, p.bound_by) == (None, "CPU (no sleep)")


# ---------------------------------------------------------------- committed runs and README


COMMITTED = sorted(p for p in (ROOT / "results").glob("*-reference") if (p / "summary.json").exists())


@pytest.mark.skipif(not COMMITTED, reason="no reference run committed")
@pytest.mark.parametrize("run_dir", COMMITTED, ids=lambda p: p.name)
def test_rerunning_the_report_on_a_committed_run_reproduces_its_summary(run_dir, tmp_path):
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    for name in ["summary.csv", "summary.json", "summary.md", "plot.png"]:
        (copy / name).unlink()
    report.write_summary(copy)
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
    out = subprocess.run([sys.executable, str(ROOT / "report.py"), "readme", "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def make_run(tmp_path: Path, connections_per_worker: list[int]) -> Path:
    """A run directory of one 4-worker /sync cell: a real wrk output and the workers' counts as given."""
    run_dir = tmp_path / "run"
    cell = run_dir / "01-4w1t-sync-c100"
    (cell / "stats").mkdir(parents=True)
    shutil.copy(FIXTURES / "seed-1w1t-sync-timeouts.txt", cell / "wrk.txt")
    for pid, connections in enumerate(connections_per_worker):
        (cell / "stats" / f"worker-{pid}.json").write_text(json.dumps(
            {"pid": pid, "connections": connections, "thread_limit": 40,
             "endpoints": {"sync": {"peak": min(connections, 40), "completed": 0}}}))
    values = ["01-4w1t-sync-c100", "1", "4", "1", "uvicorn_worker.UvicornWorker", "default", "10", "sync", "100",
              "4", "60", "30", "1"]
    (run_dir / "cells.tsv").write_text("\t".join(report.CELL_FIELDS) + "\n" + "\t".join(values) + "\n")
    return run_dir


def test_summary_uses_the_spread_the_workers_reported(tmp_path):
    (row,), (group,) = report.summarise_run(make_run(tmp_path, [100, 0, 0, 0]))
    assert row["bound_by"] == "connection spread 100/0/0/0"
    assert (row["predicted_requests"], row["expected_requests"], row["expected_edge"]) == (500, 200, 40)
    assert row["as_predicted"]  # wrk counted 201: one worker's 40 threads, as if it were alone
    assert "with the spread seen: 200" in report.markdown_table([group])


def test_summary_ignores_a_spread_that_misses_connections(tmp_path):
    # An overloaded worker has not yet seen a request from every connection: no evidence to use.
    (row,), _ = report.summarise_run(make_run(tmp_path, [30, 20, 10, 0]))
    assert row["expected_requests"] == row["predicted_requests"] == 500
    assert row["bound_by"] == "CPU / server overhead (below every other limit)"
