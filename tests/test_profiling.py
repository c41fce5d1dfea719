"""PROFILE=1: py-spy runs after the measured runs, never in their window."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, only_run_dir, run_benchmark

PTRACE = sys.platform == "linux" and os.geteuid() == 0  # py-spy attaches as root here; elsewhere it may not


@pytest.mark.skipif(not PTRACE, reason="py-spy needs root or ptrace rights")
def test_profile_runs_a_cpu_bound_cell_once_more_under_py_spy_after_the_measured_runs(port, results):
    out = run_benchmark(
        port,
        results,
        "--set",
        "seed",
        "--quick",
        "--repeat",
        "2",
        PROFILE=1,
        ENDPOINTS="async",
        CONFIGS="1x1",
        SLEEP_SECONDS=0,
        CONNECTIONS=64,
        STATS=0,
        PIN=1,
        DURATION="10s",
    )
    assert out.returncode == 0 and "PROFILE=1: py-spy could not" not in out.stderr, out.stderr
    run_dir = only_run_dir(results)
    measured = sorted(d for d in run_dir.iterdir() if d.is_dir() and d.name not in ("profiles", "calibration"))
    assert len(measured) == 2 and not list(run_dir.glob("*/profile*"))  # no profiler in a measured window
    (profiled,) = (run_dir / "profiles").iterdir()
    assert profiled.name == measured[0].name  # the first run that needed it, once
    svg = (profiled / "profile.svg").read_text()
    assert svg.startswith("<?xml") and not (profiled / "profile.log").exists()
    server = json.loads((profiled / "server.stop.json").read_text())["roles"]["server"]
    assert {p["pid"] for p in server} <= {
        int(pid) for pid in re.findall(r"process (\d+)", svg)
    }  # gunicorn and its worker
    assert len(json.loads((run_dir / "summary.json").read_text())["cells"]) == 2  # the profiled run is in no figure
    shutil.rmtree(run_dir)
    # A sleeping cell that the model accounts for gets none.
    out = run_benchmark(port, results, PROFILE=1, CONFIGS="1x1", ENDPOINTS="async", CONNECTIONS=4, **TINY)
    assert out.returncode == 0, out.stderr
    assert not (only_run_dir(results) / "profiles").exists()


def test_a_profiler_that_cannot_attach_is_one_line_and_the_run_goes_on(tmp_path, capsys):
    from runner.process import started
    from runner.record import profile_written

    gone = subprocess.Popen(["true"])
    gone.wait()
    svg = tmp_path / "profile.svg"
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(gone.pid), "--output", str(svg)]
    with started(command, svg.with_suffix(".log"), dict(os.environ)) as profiler:
        profiling = profile_written(profiler, svg, True)
        assert profile_written(profiler, svg, profiling) is False  # said once
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("PROFILE=1: py-spy could not profile the server ("), lines
