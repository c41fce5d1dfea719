"""compare: two real tiny runs, paired by configuration; the README's worked example as written."""

import json
import re
import shutil
import subprocess
import sys

from conftest import ROOT, benchmark_env, run_benchmark

# A tiny seed run (tests/fixtures/README.md): 1 and 4 workers, /sync and /async, 8 connections.
TINY_RUN = ROOT / "tests" / "fixtures" / "runs" / "20261204T055128Z-seed-tiny"

# 0.45 s waves in 2 s: 4 end inside the run, the 5th at 2.25 s, after wrk stops (no edge wave).
TINY = dict(
    CONFIGS="1x1", ENDPOINTS="sync", CONNECTIONS=200, SLEEP_SECONDS=0.45, DURATION="2s", TIMEOUT="2s", WRK_THREADS=2
)


def compare(*args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "report", "compare", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_a_knob_that_changes_the_result_is_beyond_the_spread_and_the_same_config_is_not(port, tmp_path):
    runs = {}
    for label, knobs in (("plain", {}), ("again", {}), ("limit", {"THREAD_LIMIT": 100})):
        out = run_benchmark(port, tmp_path / label, "--label", label, **TINY, **knobs)
        assert out.returncode == 0, out.stderr
        (runs[label],) = (tmp_path / label).iterdir()
    # 200 connections: 40 threads give 4 x 40 = 160 requests, 100 threads 400.
    beyond = compare(runs["plain"], runs["limit"], "--out", tmp_path / "compare.md")
    assert beyond.returncode == 1, beyond.stdout + beyond.stderr
    assert "knobs that differ: THREAD_LIMIT: 'default' -> '100'" in beyond.stdout
    assert "paired across: thread_limit" in beyond.stdout
    (row,) = [line for line in beyond.stdout.splitlines() if "/sync" in line]
    assert re.search(
        r"^1w x 1t /sync c=200: answered 1[56]\d -> (39\d|40\d) \(\+2\d\d\), beyond ±\d+ \(model's band\); both are",
        row,
    ), row
    said = " ".join(beyond.stdout.split())  # its lines wrap at 100 columns
    assert "the model, fed with each, accounts for the difference" in said
    assert "A: ✓ thread limiter: 40/worker" in said and "B: ✓ thread limiter: 100/worker" in said
    assert "1 of 1 paired cells differ (beyond the spread, or in their own verdicts)" in beyond.stdout
    assert all(len(line) <= 100 for line in beyond.stdout.splitlines())
    assert "| 1w x 1t | /sync | c=200 |" in (tmp_path / "compare.md").read_text()
    assert re.search(
        r"^    latency [0-9.]+ \w+ / [0-9.]+ \w+ \([+-][0-9.]+ \w+\), errors 0 / 0 \(\+0\)$", beyond.stdout, re.M
    )
    within = compare(runs["plain"], runs["again"])
    assert within.returncode == 0, within.stdout + within.stderr
    assert "0 of 1 paired cells differ" in within.stdout and " within " in within.stdout


def test_workers_restarted_mid_cell_differ_in_compare_as_in_the_run(port, tmp_path):
    # 40 connections, 0.45 s waves: 160 in 2 s. With --max-requests 50 the worker drains after its
    # second wave and the new one takes about a second to boot: waves are lost, the run says ✗.
    runs = {}
    for label, knobs in (("plain", {}), ("restarts", {"GUNICORN_CMD_ARGS": "--max-requests 50"})):
        out = run_benchmark(port, tmp_path / label, "--label", label, **{**TINY, "CONNECTIONS": 40}, **knobs)
        assert out.returncode == 0, out.stderr
        (runs[label],) = (tmp_path / label).iterdir()
    restarted = compare(runs["plain"], runs["restarts"])
    assert restarted.returncode == 1, restarted.stdout + restarted.stderr
    said = " ".join(restarted.stdout.split())
    assert "differ: B is not what its model predicts, A is" in said, said
    assert "restarted mid-cell" in said and "max-requests" in said and "1 of 1 paired cells differ" in said


def test_runs_at_different_scales_are_refused_in_one_line(tmp_path):
    seed = TINY_RUN
    quick = tmp_path / "quick"
    shutil.copytree(seed, quick)
    document = json.loads((quick / "run.json").read_text())
    document["parameters"]["scale"] = "10"
    (quick / "run.json").write_text(json.dumps(document))
    out = compare(seed, quick)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "SCALE=1" in out.stderr and "SCALE=10" in out.stderr


def test_cells_on_one_side_only_are_listed(tmp_path):
    seed = TINY_RUN
    fewer = tmp_path / "fewer"
    shutil.copytree(seed, fewer)
    lines = (fewer / "cells.tsv").read_text().splitlines()
    (fewer / "cells.tsv").write_text("\n".join(line for line in lines if "-4w1t-" not in line) + "\n")
    out = compare(seed, fewer)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "only in A: 4w x 1t /sync c=8" in out.stdout and "only in A: 4w x 1t /async c=8" in out.stdout
    assert "0 of 2 paired cells differ" in out.stdout


def test_the_readmes_worked_example_runs_as_written(port, tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Tweak and compare", 1)[1]
    commands = re.search(r"```sh\n(.*?)```", section, re.S).group(1).strip().splitlines()
    assert len(commands) == 3 and commands[-1].startswith("./benchmark.sh --compare ")
    results = tmp_path / "results"
    env = benchmark_env(port, results)
    for command in commands:  # in a directory of its own, where results/ is the test's
        out = subprocess.run(
            ["bash", "-c", command.replace("./benchmark.sh", str(ROOT / "benchmark.sh"))],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        expected = (0, 1) if "--compare" in command else (0,)
        assert out.returncode in expected, (command, out.stdout, out.stderr)
    assert "1w x 1t" in out.stdout and "/async" in out.stdout and "c=1000" in out.stdout
    # Each side's own verdict, with what bound it.
    assert re.search(r"^    A: [✓✗-] \S", out.stdout, re.M) and re.search(r"^    B: [✓✗-] \S", out.stdout, re.M), (
        out.stdout
    )


def test_a_pair_differs_when_one_side_is_not_what_its_model_predicts(tmp_path):
    from dataclasses import replace

    from report import compare as comparison
    from report import summary

    rows, _ = summary.summarise_run(TINY_RUN)
    a = comparison.figures([rows[0]])
    assert a.ok and comparison.judge(a, a) == (False, "within ±2 (model's band)")
    worse = replace(a, verdict="✗ (0/1 as predicted)", bound_by="1 worker(s) restarted mid-cell")
    beyond, said = comparison.judge(a, worse)
    assert beyond and said == "differ: B is not what its model predicts, A is (the count is within ±2 (model's band))"
    assert comparison.judge(worse, a)[1].startswith("differ: A is not what its model predicts, B is")
