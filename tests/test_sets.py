"""Every experiment set, end to end in miniature, and the parameters of their full and quick runs."""

import json

import pytest

from conftest import only_run_dir, run_benchmark, summary_groups

SETS = ["seed", "concurrency", "threads", "workers", "overhead"]


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("quick", [[], ["--quick"]], ids=["full", "quick"])
def test_every_set_is_valid_at_full_and_quick_scale(port, results, name, quick):
    out = run_benchmark(port, results, "--set", name, "--list", *quick)
    assert out.returncode == 0, out.stderr
    cells = [line.split() for line in out.stdout.splitlines() if not line.startswith("#")]
    assert cells and all(len(cell) == 8 for cell in cells)
    assert not results.exists()


def test_seed_full_run_has_exactly_the_original_parameters(port, results):
    out = run_benchmark(port, results, "--list")
    lines = out.stdout.splitlines()
    assert lines[0].endswith("wrk -d 60s --timeout 30s, 1 run(s)")
    assert [tuple(line.split()[:2]) + (line.split()[5],) for line in lines[1:]] == [
        (w, t, e) for w, t in [("1", "1"), ("1", "4"), ("4", "1"), ("4", "4")] for e in ["sync", "async"]]
    assert {line.split()[4] for line in lines[1:]} == {"10"} and {line.split()[6] for line in lines[1:]} == {"100"}


def test_concurrency_set_sweeps_connections_and_plots_them(port, results):
    out = run_benchmark(port, results, "--set", "concurrency", SLEEP_SECONDS=0.5, DURATION="2s", TIMEOUT="2s",
                        CONNECTIONS="4 8", CONFIGS="1x1", WRK_THREADS=2, THREAD_LIMIT=4)
    assert out.returncode == 0, out.stderr
    groups = summary_groups(only_run_dir(results))
    assert [(g["endpoint"], g["connections"]) for g in groups] == [
        (e, c) for e in ["sync", "async", "async-blocking"] for c in [4, 8]]
    by = {(g["endpoint"], g["connections"]): g for g in groups}
    assert by[("sync", 8)]["predicted_requests"] == 4 * 3  # the 4-thread limit, not the 8 connections
    assert by[("async", 8)]["predicted_requests"] == 8 * 3
    assert by[("async-blocking", 8)]["predicted_requests"] == 3
    assert by[("async-blocking", 8)]["peak_in_handler_max"] == 1
    assert (only_run_dir(results) / "plot.png").stat().st_size > 10_000


def test_threads_set_compares_thread_limits_with_gunicorn_threads(port, results):
    out = run_benchmark(port, results, "--set", "threads", SLEEP_SECONDS=0.5, DURATION="2s", TIMEOUT="2s",
                        CONNECTIONS=8, WRK_THREADS=2, THREAD_LIMIT=2)
    assert out.returncode == 0, out.stderr
    groups = summary_groups(only_run_dir(results))
    assert [g["config"] for g in groups] == ["1w x 1t limit 2", "1w x 1t limit 100", "1w x 1t limit 400", "1w x 4t limit 2"]
    peaks = [g["peak_in_handler_max"] for g in groups]
    assert peaks == [2, 8, 8, 2]  # --threads 4 leaves the limiter at 2


def test_workers_set_runs_both_worker_classes(port, results):
    out = run_benchmark(port, results, "--set", "workers", SLEEP_SECONDS=0.5, DURATION="2s", TIMEOUT="2s",
                        CONNECTIONS=4, CONFIGS="1x2", ENDPOINTS="async", WRK_THREADS=2)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    cells = json.loads((run_dir / "summary.json").read_text())["cells"]
    assert [(c["worker_class"], c["threads_warning"]) for c in cells] == [
        ("uvicorn_worker.UvicornWorker", False), ("asgi", True)]
    assert all(c["requests"] >= 12 for c in cells)


def test_overhead_set_measures_the_bare_app(port, results):
    out = run_benchmark(port, results, "--set", "overhead", DURATION="1s", CONNECTIONS=4, WRK_THREADS=2)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    groups = summary_groups(run_dir)
    assert [g["endpoint"] for g in groups] == ["sync", "async"]
    assert all(g["bound_by"] == "CPU (no sleep)" and g["requests_median"] > 100 for g in groups)
    assert not list(run_dir.glob("*/stats"))  # no counters: nothing wraps the handlers
