"""What a terminal shows of a run: the plan, a countdown, one line a cell, and --quiet."""

import os
import re
import time

from conftest import ROOT, benchmark_env, run_benchmark


def test_quiet_prints_only_the_result_lines_and_the_paths(port, results):
    out = run_benchmark(
        port,
        results,
        "--quiet",
        SLEEP_SECONDS=0,
        DURATION="1s",
        CONFIGS="1x1",
        ENDPOINTS="sync async",
        CONNECTIONS=2,
        WRK_THREADS=1,
    )
    assert out.returncode == 0, out.stderr
    # One line a calibration and a cell (its explanation going on, indented, below it), then the paths.
    lines = [line for line in out.stdout.splitlines() if not line.startswith("    ")]
    assert [line[:6] for line in lines[:4]] == ["[calib", "[calib", "[1/2] ", "[2/2] "] and len(lines) == 6, lines
    assert lines[4].startswith("Full table: ") and lines[5].startswith("Plot: ")
    cells = [line for line in out.stdout.splitlines() if not line.startswith(("Full table: ", "Plot: "))]
    assert "…" not in out.stdout and all(len(line) <= 100 for line in cells), cells


def run_in_a_terminal(command: list[str], env: dict, timeout: float = 120) -> bytes:
    """Run under a pseudo-terminal, as a user at a terminal would, and return what it printed."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.execve(command[0], command, env)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.waitpid(pid, 0)
    return output


def test_a_terminal_gets_the_plan_and_a_countdown_and_a_file_gets_plain_lines(port, results):
    knobs = dict(
        SLEEP_SECONDS=0.5,
        DURATION="3s",
        TIMEOUT="2s",
        CONFIGS="1x1",
        ENDPOINTS="sync async",
        CONNECTIONS=4,
        WRK_THREADS=2,
    )
    started = time.monotonic()
    tty = run_in_a_terminal([str(ROOT / "benchmark.sh")], benchmark_env(port, results, **knobs)).decode()
    elapsed = time.monotonic() - started
    plan = re.search(
        r"set seed: 2 cells x 1 run\(s\) \+ 2 calibrations; about (\d+)s \(ends ~\d\d:\d\d\)\r?\n"
        r"  wrk -t2 -d3s --timeout 2s",
        tty,
    )
    assert plan, tty
    assert 0.3 < int(plan.group(1)) / elapsed < 3  # the estimate is within a sane factor
    assert re.search(r"\r\x1b\[K      wrk: \ds left in this cell, about \d+s left in the run", tty)
    assert "[2/2] 02-1w1t-async-c4:" in tty
    piped = run_benchmark(port, results, **knobs)
    assert piped.returncode == 0, piped.stderr
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", piped.stdout + piped.stderr)  # no \r, no escapes
    table = piped.stdout.split("\n\n", 1)[1].split("Full table:")[0].splitlines()
    assert len(table) == 3 and all(len(line) <= 100 for line in table), table
