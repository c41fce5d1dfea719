"""--app: your own ASGI app (tests/sample_app/shop.py, written as an app, not for this benchmark),
diagnosed path by path with real servers and wrk; bad input in one line before any server starts."""

import re
import subprocess
import time

import httpx
import pytest

from conftest import ROOT, SAMPLE_APP, VENV_BIN, app_environment, free_port, only_run_dir, run_benchmark

SHOP = {"APP_DIR": str(SAMPLE_APP)}
FULLSTACK = SAMPLE_APP / "fullstack"


def sections(diagnosis: str) -> dict[str, str]:
    """Each path's part of diagnosis.md, its lines joined (the terminal wraps them)."""
    parts = re.split(r"^## `([^`]+)`", diagnosis, flags=re.M)[1:]
    return {path: " ".join(text.split()) for path, text in zip(parts[::2], parts[1::2])}


def test_each_path_of_an_app_is_diagnosed_by_the_limit_that_binds_it(port, results):
    before = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", str(SAMPLE_APP)], capture_output=True)
    out = run_benchmark(
        port,
        results,
        "--app",
        "shop:app",
        **SHOP,
        PATHS="/health /catalogue /orders/1/receipt /me",
        CONFIGS="1x1",
        CONNECTIONS="1 10 100",
        DURATION="2s",
        TIMEOUT="2s",
        WARMUP="1",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(len(line) <= 100 for line in out.stdout.splitlines() if str(results) not in line)  # (a path: whole)
    run_dir = only_run_dir(results)
    diagnosis = (run_dir / "diagnosis.md").read_text()
    body = diagnosis.split("\n", 2)[2]  # below its title
    assert " ".join(body.split()) in " ".join(out.stdout.split())  # the terminal says the same
    found = sections(diagnosis)
    assert list(found) == ["/health", "/catalogue", "/orders/1/receipt", "/me"]
    # A fast path: S is timed at one connection; 100 keep the one worker's CPU busy.
    assert "1w c=1: S is timed here" in found["/health"]
    assert "binds at 1w x 1t, 100 connections: CPU" in found["/health"]
    # Serialising 2000 models holds a core: CPU from 10 connections on.
    assert "binds at 1w x 1t, 100 connections: CPU" in found["/catalogue"]
    # A blocking call two calls deep in `async def`: the loop held, and the function named.
    receipt = found["/orders/1/receipt"]
    assert receipt.startswith(": async def receipt")
    assert "limit: blocked event loop: 1/worker" in receipt
    assert "legacy_checksum (shop.py:" in receipt and "< receipt_for (shop.py:" in receipt
    assert "binds at 1w x 1t, 100 connections: blocked event loop" in receipt
    # `def` with a `def` dependency: anyio's 40 threads, all borrowed at 100 connections.
    me = found["/me"]
    assert me.startswith(": def me, `def` dependencies: current_user")
    assert "limit: thread limiter: 40/worker; peak 40 borrowed" in me
    assert "binds at 1w x 1t, 100 connections: thread limiter: 40/worker" in me
    assert "THREAD_LIMIT" in me
    # The app itself is untouched, and its copy of the wrapper stays with the run.
    after = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", str(SAMPLE_APP)], capture_output=True)
    assert after.stdout == before.stdout
    assert (run_dir / "wrapper.py").exists()


@pytest.mark.parametrize(
    "args, knobs, says",
    [
        (
            ["--app", "nosuch:app"],
            {"PATHS": "/health"},
            "APP=nosuch:app does not import (from APP_DIR; its packages must be in ",
        ),
        (["--app", "shop:nothing"], {"PATHS": "/health"}, "APP=shop:nothing: module 'shop' has no attribute"),
        (["--app", "shop:CATALOGUE"], {"PATHS": "/health"}, "APP=shop:CATALOGUE is not an ASGI app"),
        (["--app", "shop:app"], {"PATHS": "/health /nope"}, "/nope answered 404 at 1 connection"),
        (["--app", "shop:app"], {"PATHS": ""}, "PATHS is empty"),
        (["--app", "shop"], {"PATHS": "/health"}, "as module:attribute, e.g. main:app, got 'shop'"),
        (["--set", "seed"], {"APP": "shop:app"}, "not by the seed set"),
        (["--app", "shop:app"], {"PATHS": "/me?x=1"}, "with no query and no %-escape, got '/me?x=1'"),
        (["--app", "shop:app"], {"PATHS": "/me", "CONNECTIONS": "10 40"}, "CONNECTIONS must include 1"),
    ],
    ids=["import", "attribute", "not-asgi", "404", "no-paths", "no-colon", "other-set", "query", "no-alone"],
)
def test_bad_input_about_your_app_is_one_line_before_any_server_starts(port, results, args, knobs, says):
    out = run_benchmark(port, results, *args, **SHOP, **knobs)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and says in out.stderr, out.stderr
    assert not results.exists()


def test_an_app_whose_start_up_fails_is_one_line_before_any_server_starts(port, results, tmp_path):
    (tmp_path / "broken.py").write_text(
        "from contextlib import asynccontextmanager\n"
        "from fastapi import FastAPI\n\n\n"
        "@asynccontextmanager\n"
        "async def lifespan(app):\n"
        "    raise RuntimeError('no database at DATABASE_URL')\n"
        "    yield\n\n\n"
        "app = FastAPI(lifespan=lifespan)\n"
    )
    out = run_benchmark(port, results, "--app", "broken:app", APP_DIR=str(tmp_path), PATHS="/")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and "its lifespan's start-up failed" in out.stderr, out.stderr
    assert not results.exists()


@pytest.fixture
def inventory():
    """The shop's upstream: a real uvicorn serving app.py's /async (0.1 s a request) on a port of its own."""
    port = free_port()
    server = subprocess.Popen(
        [str(VENV_BIN / "uvicorn"), "app:app", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=app_environment(SLEEP_SECONDS="0.1"),
    )
    url = f"http://127.0.0.1:{port}/async"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_a_pooled_database_path_and_an_upstream_path_are_diagnosed_by_their_pools(port, results, tmp_path, inventory):
    env_file = tmp_path / "shop.env"
    env_file.write_text(f"# where the shop asks for stock\nINVENTORY_URL='{inventory}'\n")
    out = run_benchmark(
        port,
        results,
        "--app",
        "shop:app",
        **SHOP,
        APP_DB="1",
        APP_ENV=str(env_file),
        PATHS="/orders/1 /stock/1",
        CONFIGS="1x1",
        CONNECTIONS="1 10 100",
        DURATION="3s",
        TIMEOUT="10s",
        WARMUP="1",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    run_dir = only_run_dir(results)
    found = sections((run_dir / "diagnosis.md").read_text())
    # `def` on a sync session from a yield dependency: SQLAlchemy's default pool, 5 + 10, is full at 100.
    orders = found["/orders/1"]
    assert orders.startswith(": def order, `def` dependencies: get_session; route `/orders/{order_id}`")
    assert "limit: database pool 5+10: 15/worker; pool-1: peak 15 checked out" in orders
    assert "binds at 1w x 1t, 100 connections: database pool 5+10: 15/worker" in orders
    # `async def` awaiting an httpx.AsyncClient(max_connections=10): its pool, not the loop, binds.
    stock = found["/stock/1"]
    assert stock.startswith(": async def stock; route `/stock/{item_id}`")
    assert "limit: HTTP client pool: 10/worker" in stock
    assert "binds at 1w x 1t, 100 connections: HTTP client pool: 10/worker" in stock
    # The address each form of it, as the app was given it (the password left out of the record).
    recorded = (next(run_dir.glob("*-c1-*")) / "server.cmd").read_text()
    assert "POSTGRES_SERVER=127.0.0.1" in recorded and "PGUSER=bench" in recorded and "PASSWORD" in recorded
    assert "INVENTORY_URL=" in recorded


def test_an_app_shaped_like_the_full_stack_template_runs_end_to_end(port, results):
    """Migrations and a login (a password hash checked) by APP_SETUP, its token to HEADERS, `def` paths
    behind it on a sync session, and the login itself loaded with POST and a JSON body."""
    before = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", str(SAMPLE_APP)], capture_output=True)
    out = run_benchmark(
        port,
        results,
        "--app",
        "app.main:app",
        APP_DIR=str(FULLSTACK),
        APP_DB="1",
        APP_SETUP="python -m app.prestart && python -m app.login",
        HEADERS="Authorization: Bearer $TOKEN",
        PATHS=f"/api/v1/users/me /api/v1/items/ POST /api/v1/login/access-token @{FULLSTACK / 'login.json'}",
        CONFIGS="1x1",
        CONNECTIONS="1 10 100",
        DURATION="3s",
        TIMEOUT="3s",
        WARMUP="1",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    run_dir = only_run_dir(results)
    assert "applied 001_initial.sql" in (run_dir / "setup.log").read_text()
    found = sections((run_dir / "diagnosis.md").read_text())
    me = found["/api/v1/users/me"]
    assert me.startswith(": def read_user_me, `def` dependencies: get_current_user, get_db")
    assert "limit: database pool 5+10: 15/worker" in me and "limit: thread limiter: 40/worker" in me
    # Every answer to the loaded requests was a 200: the token went in every request.
    assert re.search(r"answers \(.*\): 200 x\d+", me)
    # The login hashes a password (PBKDF2) on every request: CPU, in threads outside the GIL.
    login = found["/api/v1/login/access-token"]
    assert login.startswith(": def login_access_token")
    assert "(threads outside the GIL, or processes of its own)" in login
    assert "1w c=10: " in login and "(CPU: " in login.split("1w c=10: ")[1].split("\n")[0]
    # 100 connections on 1 worker: pool (15) + threads (40) fewer than the requests held at once.
    for path in ("/api/v1/users/me", "/api/v1/items/"):
        assert (
            "binds at 1w x 1t, 100 connections: stalled: at the end all 40 threads borrowed and all 15" in (found[path])
        ), found[path]
    wrk = (next(run_dir.glob("*-app-post-api-v1-login-access-token-c1-*")) / "request.lua").read_text()
    assert wrk.startswith('wrk.method = "POST"')
    after = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", str(SAMPLE_APP)], capture_output=True)
    assert after.stdout == before.stdout


@pytest.mark.parametrize(
    "knobs, says",
    [
        ({"APP_ENV": "/nonexistent/.env"}, "APP_ENV /nonexistent/.env cannot be read"),
        ({"HEADERS": "Bearer abc"}, "HEADERS are lines of 'Name: value', got 'Bearer abc'"),
        ({"HEADERS": "Authorization: Bearer $NO_SUCH_TOKEN"}, "$NO_SUCH_TOKEN is not set"),
        ({"PATHS": "/health POST"}, "PATHS ends with POST: a method goes before its path"),
        ({"PATHS": "POST /health @/nonexistent.json"}, "the body file /nonexistent.json is not a file"),
        ({"PATHS": "@body.json /health"}, "must follow the path whose body it is"),
        ({"APP_DB": "2"}, "APP_DB must be 0 or 1, got '2'"),
        ({"PATHS": "/health POST /health"}, "PATHS names /health twice"),
        ({"HEADERS": "X-Price: 5$"}, "a $ that names nothing"),
    ],
    ids=[
        "app-env",
        "header-form",
        "header-unset",
        "method-last",
        "no-body-file",
        "body-first",
        "app-db",
        "twice",
        "dollar",
    ],
)
def test_bad_input_about_what_your_app_needs_is_one_line_before_anything_starts(port, results, knobs, says):
    out = run_benchmark(port, results, "--app", "shop:app", **SHOP, **{"PATHS": "/health", **knobs})
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and says in out.stderr, out.stderr
    assert not results.exists()


def test_app_db_and_the_rest_belong_to_the_app_set(port, results):
    out = run_benchmark(port, results, "--set", "seed", APP_DB="1")
    assert out.returncode == 2 and "APP_DB is for your own app" in out.stderr, out.stderr


def test_app_py_itself_served_as_your_app_is_diagnosed_as_the_model_predicts_its_cells(port, results, tmp_path):
    """The benchmark's own app through --app: at each config's heaviest load, the limit the diagnosis
    finds from the counters alone is the one core/model.py predicts for the same cell from
    core/endpoints.py (the thread limiter for /sync on one worker, the client on four, the pool for
    /sync-db, the client for /async)."""
    from core.model import predict
    from report import diagnosis, summary
    from report.read import RunFacts

    env_file = tmp_path / "app.env"
    env_file.write_text("SLEEP_SECONDS=0.5\n")
    out = run_benchmark(
        port,
        results,
        "--app",
        "app:app",
        APP_DIR=str(ROOT),
        APP_DB="1",
        APP_ENV=str(env_file),
        PATHS="/sync /async /sync-db",
        CONNECTIONS="1 100",
        DURATION="3s",
        TIMEOUT="3s",
        WARMUP="1",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    run_dir = only_run_dir(results)
    _, groups = summary.summarise_run(run_dir)
    found = diagnosis.diagnose(run_dir, groups, RunFacts(run_dir).cpus)
    assert [d.path for d in found] == ["/sync", "/async", "/sync-db"]
    checked = []
    for d in found:
        for point in d.binding:
            cell = point.group.cell
            spread = next((c for c in point.group.connections_per_worker if c), None)
            model = predict(
                d.path[1:], cell.workers, point.group.connections, 0.5, cell.duration, wrk_threads=1,
                connections_per_worker=spread,
            )  # fmt: skip
            checked.append((d.path, cell.workers, point.bound.name, model.bound.name))
    assert all(diagnosed == modelled for *_, diagnosed, modelled in checked), checked
    assert ("/sync", 1, "THREADS", "THREADS") in checked and ("/sync-db", 1, "DB_POOL", "DB_POOL") in checked


def test_your_app_keeps_the_environment_it_was_given(port, results, tmp_path):
    """DATABASE_URL is one of app.py's settings, which the runner clears for app.py's servers; your
    app's server keeps what the shell gave it (the check asked it with the same environment)."""
    (tmp_path / "envapp.py").write_text(
        "import os\n\n"
        "from fastapi import FastAPI, HTTPException\n\n"
        "app = FastAPI()\n\n\n"
        "@app.get('/')\n"
        "def root():\n"
        "    if os.environ.get('DATABASE_URL') != 'postgresql://elsewhere/db':\n"
        "        raise HTTPException(500, 'no DATABASE_URL')\n"
        "    return {}\n"
    )
    out = run_benchmark(
        port,
        results,
        "--app",
        "envapp:app",
        APP_DIR=str(tmp_path),
        PATHS="/",
        DATABASE_URL="postgresql://elsewhere/db",
        CONFIGS="1x1",
        CONNECTIONS="1",
        DURATION="1s",
        TIMEOUT="1s",
        WARMUP="0",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    found = sections((only_run_dir(results) / "diagnosis.md").read_text())
    assert "answers (warm-ups included): 200 x" in found["/"] and "500 x" not in found["/"], found["/"]
