"""--app: your own ASGI app (tests/sample_app/shop.py, written as an app, not for this benchmark),
diagnosed path by path with real servers and wrk; bad input in one line before any server starts."""

import re
import subprocess

import pytest

from conftest import ROOT, SAMPLE_APP, only_run_dir, run_benchmark

SHOP = {"APP_DIR": str(SAMPLE_APP)}


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
    # A fast path: one connection is the client's limit; 100 keep the one worker's CPU busy.
    assert "1w c=1: " in found["/health"] and "(client: 1 connections / S)" in found["/health"]
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
