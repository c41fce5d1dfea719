"""The model, on cases worked by hand."""

from pathlib import Path

import pytest

from core import model
from core.bound import Bound
from core.cell import Cell

FIXTURES = Path(__file__).parent / "fixtures"


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


@pytest.mark.parametrize("endpoint", ["sync-cpu", "async-cpu"])
def test_work_without_a_wait_has_no_prediction_but_a_cpu(endpoint):
    p = model.predict(endpoint, 1, 64, sleep=1, duration=10)
    assert p.requests is None and p.bound is Bound.CPU


# ---------------------------------------------------------------- the CPU, from a calibrated cost


def test_with_no_sleep_the_calibrated_cost_sets_the_ceiling_over_the_cores_the_busy_workers_can_use():
    one = model.predict("async", 1, 64, 0.0, 10, cpu_per_request_s=1e-4, cores=1.8)
    assert (one.requests, one.bound) == (100_000, Bound.CPU)  # one worker uses one core at most
    four = model.predict("async", 4, 64, 0.0, 10, cpu_per_request_s=1e-4, cores=1.5)
    assert four.requests == 150_000 and "1.5 core(s) / 0.1 ms per request = 15000 req/s" in four.bound_by
    assert model.predict("async", 1, 64, 0.0, 10).requests is None  # no calibration: only the measured CPU


def test_a_ceiling_below_the_waves_replaces_them_and_one_above_changes_nothing():
    capped = model.predict("async", 1, 4000, 1.0, 10, cpu_per_request_s=4e-4, cores=1.9)
    assert (capped.requests, capped.edge, capped.bound) == (25_000, 0, Bound.CPU)
    free = model.predict("async", 1, 100, 1.0, 10, cpu_per_request_s=4e-4, cores=1.9)
    assert (free.requests, free.bound, free.burst_low) == (900, Bound.CLIENT, None)


def test_a_wave_that_keeps_the_loop_busy_long_enough_lowers_the_band_and_says_so():
    # 1000 requests x 0.5 ms = 0.5 s a wave: cycles of 1.5 s hold 3 waves in 6 s, not 5.
    busy = model.predict("async", 1, 1000, 1.0, 6, cpu_per_request_s=5e-4, cores=1.9)
    assert (busy.requests, busy.burst_low) == (5000, 3000)
    assert "one wave costs the busiest worker's loop 0.50 s (1000 x 0.5 ms): down to 3000" in busy.bound_by
    # `def`: a wave is what the threads hold, 40, not the connections.
    threads = model.predict("sync", 1, 1000, 1.0, 6, cpu_per_request_s=5e-4, cores=1.9)
    assert threads.burst_low is None
