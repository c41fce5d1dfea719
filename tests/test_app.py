"""app.py under a real gunicorn on 127.0.0.1."""

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from conftest import ROOT, Server, app_environment

ENDPOINTS = ["sync", "async", "async-blocking"]  # the /*-http ones: see the end of this file


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_endpoint_answers_after_sleeping(serve, endpoint):
    server = serve(SLEEP_SECONDS=0.3)
    started = time.monotonic()
    response = httpx.get(f"{server.url}/{endpoint}", timeout=10)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json() == {"slept": 0.3}
    assert 0.3 <= elapsed < 2


def test_default_sleep_is_the_original_ten_seconds():
    out = subprocess.run(
        [sys.executable, "-c", "import app; print(app.SLEEP_SECONDS)"],
        cwd=ROOT,
        env=app_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "10.0"


@pytest.mark.parametrize(
    "name, value",
    [
        ("SLEEP_SECONDS", "ten"),
        ("SLEEP_SECONDS", "-1"),
        ("SLEEP_SECONDS", "nan"),
        ("SLEEP_SECONDS", "inf"),
        ("THREAD_LIMIT", "0"),
        ("THREAD_LIMIT", "4.5"),
        ("HTTP_POOL", "0"),
        ("HTTP_POOL_TIMEOUT", "-1"),
    ],
)
def test_invalid_setting_refuses_to_start_with_a_clear_message(name, value):
    out = subprocess.run(
        [sys.executable, "-c", "import app"], cwd=ROOT, env={**os.environ, name: value}, capture_output=True, text=True
    )
    assert out.returncode != 0
    kind, minimum = ("float", 0) if name in ("SLEEP_SECONDS", "HTTP_POOL_TIMEOUT") else ("int", 1)
    assert out.stderr.strip().splitlines()[-1] == f"app.py: {name} must be a {kind} >= {minimum}, got {value!r}"


def test_invalid_sleep_under_gunicorn_fails_to_boot(port):
    server = Server(port, SLEEP_SECONDS="abc")
    assert server.process.wait(timeout=30) != 0
    assert "SLEEP_SECONDS must be a float >= 0, got 'abc'" in server.stop()


def test_without_stats_dir_the_handlers_are_untouched():
    code = (
        "import app, json; routes = {r.path: r.endpoint.__name__ for r in app.app.routes if hasattr(r, 'endpoint')};"
        "print(json.dumps([app.stats is None, routes, len(app.app.user_middleware)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=app_environment(), capture_output=True, text=True, check=True
    )
    no_stats, routes, middleware = json.loads(out.stdout)
    assert no_stats and middleware == 0
    assert routes["/sync"] == "sync_sleep" and routes["/async"] == "async_sleep"


def test_stats_count_arrivals_waits_peak_answers_and_resources(serve, tmp_path):
    # 8 concurrent /sync requests with a thread limit of 3: never more than 3 inside the handler,
    # the other 5 wait for a thread (counted on arrival, before that wait).
    server = serve(SLEEP_SECONDS=0.3, THREAD_LIMIT=3, STATS_DIR=tmp_path)

    def one_request(_):
        with httpx.Client(timeout=10) as client:  # a connection of its own
            return client.get(f"{server.url}/sync").status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one_request, range(8))) == [200] * 8
    httpx.get(f"{server.url}/async", timeout=10)
    server.stop()
    (stats_file,) = tmp_path.glob("worker-*.json")
    stats = json.loads(stats_file.read_text())
    assert stats["thread_limit"] == 3
    sync = stats["endpoints"]["sync"]
    assert (sync["received"], sync["entered"], sync["completed"], sync["peak"]) == (8, 8, 8, 3)
    assert 5 <= sync["peak_waiting"] <= 8  # at least the 5 beyond the limit; at most all 8
    assert stats["endpoints"]["async"]["completed"] == 1 and stats["endpoints"]["async"]["peak_waiting"] <= 1
    # The readiness probe's /openapi.json is not counted; each request came on its own connection.
    assert stats["connections"] == stats["connections_answered"] == 9
    assert stats["in_flight"] == 0 and stats["oldest_unanswered_s"] is None
    assert stats["cpu_s"] > 0 and stats["peak_rss_bytes"] > 10 * 2**20


def test_snapshot_on_request_shows_what_is_still_in_flight(serve, tmp_path):
    server = serve(SLEEP_SECONDS=2, THREAD_LIMIT=2, STATS_DIR=tmp_path)

    def one_request(_):
        with httpx.Client(timeout=10) as client:
            return client.get(f"{server.url}/sync").status_code

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(one_request, i) for i in range(5)]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until all 5 have arrived
            live = json.loads(next(tmp_path.glob("worker-*.json")).read_text())
            if live["endpoints"].get("sync", {}).get("received") == 5:
                break
            time.sleep(0.05)
        asked = time.time()
        (tmp_path / "snapshot-now").touch()
        deadline = time.monotonic() + 2
        while not list(tmp_path.glob("worker-*.now.json")) and time.monotonic() < deadline:
            time.sleep(0.01)
        (snapshot_file,) = tmp_path.glob("worker-*.now.json")
        assert [f.result() for f in futures] == [200] * 5
    snapshot = json.loads(snapshot_file.read_text())
    assert snapshot["time"] - asked < 0.5  # the workers poll every 20 ms
    assert snapshot["in_flight"] == 5  # 2 inside the handler, 3 waiting for a thread
    # 3 wait for a thread; up to all 5 for a moment, if they arrived before the first two got theirs
    assert 3 <= snapshot["endpoints"]["sync"]["peak_waiting"] <= 5
    assert 0 < snapshot["oldest_unanswered_s"] < 2
    assert snapshot["connections_answered"] == 0


def test_gunicorn_threads_flag_does_not_change_the_thread_limit(serve, tmp_path):
    server = serve(threads=4, SLEEP_SECONDS=0, STATS_DIR=tmp_path)
    assert httpx.get(f"{server.url}/sync", timeout=10).status_code == 200
    server.stop()
    (stats_file,) = tmp_path.glob("worker-*.json")
    assert json.loads(stats_file.read_text())["thread_limit"] == 40


# ---------------------------------------------------------------- the upstream call


def upstream_and_front(serve, port, tmp_path, **front_env):
    """A real upstream (the same app's /async, 0.5 s) on port + 1 and the front server on port."""
    upstream = Server(port + 1, SLEEP_SECONDS=0.5, STATS_DIR=tmp_path / "upstream")
    (tmp_path / "upstream").mkdir()
    try:
        upstream.wait_ready()
        (tmp_path / "front").mkdir()
        front = serve(UPSTREAM_URL=f"{upstream.url}/async", STATS_DIR=tmp_path / "front", **front_env)
    except BaseException:
        upstream.stop()
        raise
    return upstream, front


def concurrent_gets(url: str, n: int) -> list[httpx.Response]:
    def one_request(_):
        with httpx.Client(timeout=20) as client:
            return client.get(url)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one_request, range(n)))


@pytest.mark.parametrize("endpoint", ["sync-http", "async-http", "async-http-blocking"])
def test_http_endpoints_call_the_upstream_within_the_pool(serve, port, tmp_path, endpoint):
    upstream, front = upstream_and_front(serve, port, tmp_path, HTTP_POOL=2)
    try:
        responses = concurrent_gets(f"{front.url}/{endpoint}", 6)
    finally:
        front.stop()
        upstream.stop()
    assert [(r.status_code, r.json()) for r in responses] == [(200, {"upstream": 200})] * 6
    (upstream_stats,) = (tmp_path / "upstream").glob("worker-*.json")
    upstream_peak = json.loads(upstream_stats.read_text())["endpoints"]["async"]["peak"]
    # The pool of 2 is the limit for the two client kinds; the blocking call runs one at a time.
    assert upstream_peak == (1 if endpoint == "async-http-blocking" else 2)
    (front_stats,) = (tmp_path / "front").glob("worker-*.json")
    front_counts = json.loads(front_stats.read_text())["endpoints"][endpoint]
    assert front_counts["completed"] == 6 and front_counts["pool_timeouts"] == 0


def test_pool_timeout_answers_503_naming_it_and_is_counted(serve, port, tmp_path):
    upstream, front = upstream_and_front(serve, port, tmp_path, HTTP_POOL=1, HTTP_POOL_TIMEOUT=0.1)
    try:
        responses = concurrent_gets(f"{front.url}/async-http", 3)
    finally:
        front.stop()
        upstream.stop()
    assert sorted(r.status_code for r in responses) == [200, 503, 503]
    failed = next(r for r in responses if r.status_code == 503)
    assert failed.json() == {"error": "httpx.PoolTimeout: no pooled connection within 0.1 s"}
    (front_stats,) = (tmp_path / "front").glob("worker-*.json")
    assert json.loads(front_stats.read_text())["endpoints"]["async-http"]["pool_timeouts"] == 2


@pytest.mark.parametrize("endpoint", ["sync-cpu", "async-cpu"])
def test_cpu_endpoints_do_the_same_work_and_never_sleep(serve, endpoint):
    server = serve(SLEEP_SECONDS=5)  # a wait they must not take
    started = time.monotonic()
    response = httpx.get(f"{server.url}/{endpoint}", timeout=10)
    assert response.status_code == 200 and time.monotonic() - started < 2
    n = 20_000  # app.py's CPU_WORK_ITERATIONS
    assert response.json() == {"work": (n - 1) * n * (2 * n - 1) // 6}
