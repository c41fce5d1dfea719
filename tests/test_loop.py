"""The event loop's own clock (counters.py LoopClock): an idle loop wakes its probe on time, a blocked
one late, and the watchdog names the function that holds it, in a real run."""

import json

import pytest

from conftest import only_run_dir, run_benchmark
from report.read import percentile_bound


def test_a_blocked_loop_is_late_and_its_stack_names_the_blocking_function(port, results):
    out = run_benchmark(
        port,
        results,
        CONFIGS="1x1",
        ENDPOINTS="async async-blocking",
        CONNECTIONS=8,
        SLEEP_SECONDS=0.5,
        DURATION="3s",
        TIMEOUT="2s",
        WRK_THREADS=2,
    )
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(results)
    rows = {r["endpoint"]: r for r in json.loads((run_dir / "summary.json").read_text())["cells"]}
    idle, blocked = rows["async"], rows["async-blocking"]
    assert max(idle["loop_late_max_s"]) < 0.1 and idle["loop_stuck_s"] == {}
    assert max(blocked["loop_late_max_s"]) >= 0.45  # at least one whole sleep
    (where, seconds), *_ = blocked["loop_stuck_s"].items()
    assert where.startswith("async_blocking_sleep (app.py:") and seconds >= 1.0, blocked["loop_stuck_s"]
    assert "in async_blocking_sleep (app.py:" in (run_dir / "summary.md").read_text()  # the note under the table


@pytest.mark.parametrize(
    "buckets, most, p99",
    [([99, 1, 0], 0.5, 0.001), ([0, 100, 0], 0.0015, 0.0015), ([50, 0, 50], 7.0, 7.0), ([0, 0, 0], 0.0, 0.0)],
)
def test_the_99th_percentile_is_the_bucket_bound_it_falls_in(buckets, most, p99):
    assert percentile_bound(buckets, [0.001, 0.002], 0.99, most) == p99
