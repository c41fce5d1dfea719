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

ENDPOINTS = ["sync", "async", "async-blocking"]


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
    out = subprocess.run([sys.executable, "-c", "import app; print(app.SLEEP_SECONDS)"],
                         cwd=ROOT, env=app_environment(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "10.0"


@pytest.mark.parametrize("name, value", [
    ("SLEEP_SECONDS", "ten"), ("SLEEP_SECONDS", "-1"), ("SLEEP_SECONDS", "nan"), ("SLEEP_SECONDS", "inf"),
    ("THREAD_LIMIT", "0"), ("THREAD_LIMIT", "4.5"),
])
def test_invalid_setting_refuses_to_start_with_a_clear_message(name, value):
    out = subprocess.run([sys.executable, "-c", "import app"], cwd=ROOT, env={**os.environ, name: value},
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == f"app.py: {name} must be a {'float' if name == 'SLEEP_SECONDS' else 'int'} >= {0 if name == 'SLEEP_SECONDS' else 1}, got {value!r}"


def test_invalid_sleep_under_gunicorn_fails_to_boot(port):
    server = Server(port, SLEEP_SECONDS="abc")
    assert server.process.wait(timeout=30) != 0
    assert "SLEEP_SECONDS must be a float >= 0, got 'abc'" in server.stop()


def test_without_stats_dir_the_handlers_are_untouched():
    code = (
        "import app, json; routes = {r.path: r.endpoint.__name__ for r in app.app.routes if hasattr(r, 'endpoint')};"
        "print(json.dumps([app.stats is None, routes, len(app.app.user_middleware)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=app_environment(), capture_output=True, text=True, check=True)
    no_stats, routes, middleware = json.loads(out.stdout)
    assert no_stats and middleware == 0
    assert routes["/sync"] == "sync_sleep" and routes["/async"] == "async_sleep"


def test_stats_count_connections_peak_and_thread_limit(serve, tmp_path):
    # 8 concurrent /sync requests with a thread limit of 3: never more than 3 inside the handler.
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
    assert stats["endpoints"]["sync"] == {"peak": 3, "completed": 8}
    assert stats["endpoints"]["async"] == {"peak": 1, "completed": 1}
    assert stats["connections"] == 9  # the readiness probe's /openapi.json is not counted


def test_gunicorn_threads_flag_does_not_change_the_thread_limit(serve, tmp_path):
    server = serve(threads=4, SLEEP_SECONDS=0, STATS_DIR=tmp_path)
    assert httpx.get(f"{server.url}/sync", timeout=10).status_code == 200
    server.stop()
    (stats_file,) = tmp_path.glob("worker-*.json")
    assert json.loads(stats_file.read_text())["thread_limit"] == 40
