"""Every experiment set: valid at full and quick scale, the seed exactly the original, and the
ones no other test runs, end to end in miniature."""

import json
import re
import subprocess

import pytest

from conftest import YOUR_APP, only_run_dir, run_benchmark, summary_groups
from core import sets
from core.sets import SETS


def listed_cells(out) -> list[list[str]]:
    return [line.split() for line in out.stdout.splitlines()[2:] if not line.startswith(("#", " "))]


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("quick", [[], ["--quick"]], ids=["full", "quick"])
def test_every_set_is_valid_at_full_and_quick_scale(port, results, name, quick):
    yours = YOUR_APP if SETS[name].your_app else {}
    out = run_benchmark(port, results, "--set", name, "--list", *quick, **yours)
    assert out.returncode == 0, out.stderr
    assert re.match(
        rf"set {name}: \d+ cells x \d run\(s\)( \+ \d+ calibrations)?; about \d+ ?(s|min) \(ends ~\d\d:\d\d\)$",
        out.stdout.splitlines()[0],
    )
    cells = listed_cells(out)
    assert cells and all(len(cell) == 12 for cell in cells)
    run_it = " ".join(["./benchmark.sh", "--set", name, *quick])
    if not yours:  # (the app set's knobs make it two lines: the long list's test has that)
        assert out.stdout.splitlines()[-1] == "# run it: " + run_it
    assert max(len(line) for line in out.stdout.splitlines()) <= 100
    assert not results.exists()


def test_a_long_list_stays_within_100_columns_and_its_command_pastes_as_one(port, results):
    knobs = {
        "WORKER_CLASS": "uvicorn_worker.UvicornH11Worker",
        "THREAD_LIMIT": "100",
        "SNIFFIO": "1",
        "GUNICORN_CMD_ARGS": "--backlog 64 --max-requests 50 --keep-alive 5",
    }
    out = run_benchmark(port, results, "--set", "workers", "--list", "--quick", **knobs)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    command = "\n".join(lines[lines.index("# run it:") + 1 :])
    assert command.count(" \\\n") >= 1  # it did need more than one line
    # What bash reads from the pasted lines is the knobs and the arguments, word for word.
    words = subprocess.run(
        ["bash", "-c", "set -- " + command + '; printf "%s\\n" "$@"'], capture_output=True, text=True
    )
    assert words.stdout.splitlines() == [
        *(f"{k}={v}" for k, v in knobs.items()),
        "./benchmark.sh",
        "--set",
        "workers",
        "--quick",
    ]


def test_seed_full_run_has_exactly_the_original_parameters(port, results):
    out = run_benchmark(port, results, "--list")
    assert out.stdout.splitlines()[1] == "  wrk -t4 -d60s --timeout 30s"
    cells = listed_cells(out)
    assert [(c[2], c[3], c[7]) for c in cells] == [
        (w, t, e) for w, t in [("1", "1"), ("1", "4"), ("4", "1"), ("4", "4")] for e in ["sync", "async"]
    ]
    assert {(c[0], c[1], c[6], c[8]) for c in cells} == {("gunicorn", "uvicorn_worker.UvicornWorker", "10", "100")}


def test_a_default_run_is_planned_to_fit_eight_and_a_half_minutes_and_its_calibration_five_percent_more(port, results):
    out = run_benchmark(port, results, "--list")
    assert re.search(r"about [89] min", out.stdout), out.stdout
    s = sets.settings("seed", {})
    cells = sets.cells(s)
    measured = sum(sets.cell_seconds(c) for c in cells) * s.repeat
    assert measured <= 8.5 * 60 and sets.run_seconds(s, cells) <= 1.05 * measured


def test_reference_lists_every_set_with_three_runs_and_its_time(port, results):
    out = run_benchmark(port, results, "--reference", "--list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for name, s in SETS.items():  # every set of app.py's; the app set loads yours, which has no reference
        listed = f"./benchmark.sh --set {name} --repeat 3 --label reference   # about "
        assert (listed in out.stdout) != s.your_app
    assert any("--label worker-killed" in line for line in lines)
    assert re.fullmatch(r"# about \d h \d+ min in all, one run at a time", lines[-1])
    assert max(len(line) for line in lines) <= 100  # the worker-killed run's command goes on two lines


def test_concurrency_set_sweeps_connections_and_plots_them(port, results):
    out = run_benchmark(
        port,
        results,
        "--set",
        "concurrency",
        SLEEP_SECONDS=0.4,
        DURATION="2s",
        TIMEOUT="2s",
        CONNECTIONS="4 8",
        CONFIGS="1x1",
        WRK_THREADS=2,
        THREAD_LIMIT=4,
    )
    assert out.returncode == 0, out.stderr
    groups = summary_groups(only_run_dir(results))
    assert [(g["endpoint"], g["connections"]) for g in groups] == [
        (e, c) for e in ["sync", "async", "async-blocking"] for c in [4, 8]
    ]
    by = {(g["endpoint"], g["connections"]): g for g in groups}
    assert by[("sync", 8)]["predicted_requests"] == 4 * 4  # the 4-thread limit, not the 8 connections
    assert by[("async", 8)]["predicted_requests"] == 8 * 4
    assert by[("async-blocking", 8)]["predicted_requests"] == 4
    assert by[("async-blocking", 8)]["peak_in_handler_max"] == 1
    assert (only_run_dir(results) / "plot.png").stat().st_size > 10_000


def test_threads_set_compares_thread_limits_with_gunicorn_threads(port, results):
    out = run_benchmark(
        port,
        results,
        "--set",
        "threads",
        SLEEP_SECONDS=0.4,
        DURATION="2s",
        TIMEOUT="2s",
        CONNECTIONS=8,
        WRK_THREADS=2,
        THREAD_LIMIT=2,
    )
    assert out.returncode == 0, out.stderr
    groups = summary_groups(only_run_dir(results))
    assert [g["config"] for g in groups] == [
        "1w x 1t limit 2",
        "1w x 1t limit 100",
        "1w x 1t limit 400",
        "1w x 4t limit 2",
    ]
    peaks = [g["peak_in_handler_max"] for g in groups]
    assert peaks == [2, 8, 8, 2]  # --threads 4 leaves the limiter at 2


def test_workers_set_compares_both_worker_classes_where_the_server_is_the_limit(port, results):
    out = run_benchmark(
        port,
        results,
        "--set",
        "workers",
        SLEEP_SECONDS=0.4,
        DURATION="2s",
        TIMEOUT="2s",
        CONNECTIONS=4,
        CONFIGS="1x2",
        ENDPOINTS="async",
        WRK_THREADS=2,
        WARMUP=0,
    )
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    cells = json.loads((run_dir / "summary.json").read_text())["cells"]
    assert [(c["worker_class"], c["connections"], c["sleep_s"]) for c in cells] == [
        (k, c, s) for k in ("uvicorn_worker.UvicornWorker", "asgi") for c, s in ((4, 0.4), (4000, 0.4), (64, 0))
    ] + [("uvicorn_worker.UvicornH11Worker", 1000, 0.4)]
    log = (run_dir / "04-1w2t-async-c4-asgi" / "server.log").read_text()
    assert "ASGI worker does not use threads configuration" in log
    assert all(c["requests"] >= 12 for c in cells)
    busy = [c for c in cells if c["sleep_s"] == 0]
    # No sleep: the CPU per request its calibration measured (one worker, before the cells) sets the
    # prediction, and the cell is judged against it.
    for c in busy:
        assert (run_dir / "calibration" / c["calibration"] / "wrk.txt").exists(), c
        assert c["calibrated_cpu_per_request_s"] > 0 and c["predicted_requests"] > 0 and c["server_cpu_s"] > 0
        assert c["as_predicted"] is not None and c["bound_by"].startswith(("CPU: ", "unexplained")), c


def test_overhead_set_measures_the_bare_app_pinned_and_warmed_up(port, results):
    out = run_benchmark(port, results, "--set", "overhead", DURATION="1s", CONNECTIONS=4, WRK_THREADS=2)
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    groups = summary_groups(run_dir)
    # The bare app, then with the counters without and with the loop clock.
    assert [(g["config"], g["endpoint"]) for g in groups] == [
        (config, e) for config in ("1w x 1t nostats", "1w x 1t noclock", "1w x 1t") for e in ("sync", "async")
    ]
    assert all(g["requests_median"] > 100 and g["server_cpu_share"] > 0 for g in groups)
    bare = [d for d in run_dir.glob("0*") if d.name[:2] in ("01", "02")]
    assert len(bare) == 2 and not [d for d in bare if (d / "stats").exists()]  # nothing wraps the bare app's handlers
    cells = {
        c["config"]: c for c in json.loads((run_dir / "summary.json").read_text())["cells"] if c["endpoint"] == "async"
    }
    assert cells["1w x 1t noclock"]["loop_late_max_s"] is None and cells["1w x 1t"]["loop_late_max_s"]
    assert len(list(run_dir.glob("0*/warmup.txt"))) == 6
