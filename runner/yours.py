"""What the runner does for your own app (the app set) besides serving it inside runner/wrapper.py:
the environment it needs (APP_ENV, APP_DB's PostgreSQL), APP_SETUP once before the cells, HEADERS
with $NAME filled from what APP_SETUP printed, and what wrk sends (a Lua script for a method or a
body, -H for each header)."""

import json
import os
import re
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

from core import files
from core.cell import Cell
from core.knobs import BadInput
from core.settings import Settings

from .process import Failed, Lock, spawn, stop_group, tail

SETUP_TIMEOUT_S = 600


def environment(s: Settings, database: Any) -> dict[str, str]:
    """APP_ENV's settings, then APP_DB's address over them (a .env's own database is not this run's)."""
    return {**s.app_env, **(database.environment() if database else {})}


def set_up(s: Settings, run_dir: Path, env: dict[str, str], lock: Lock) -> dict[str, str]:
    """APP_SETUP, once, in APP_DIR with the app's environment and the venv's python first on PATH
    (output in setup.log): the NAME=value
    lines it printed, for HEADERS. It failing, or running past SETUP_TIMEOUT_S, fails the run."""
    command = s.text["APP_SETUP"]
    if not command:
        return {}
    log = run_dir / files.SETUP_LOG
    processes: list = []
    try:
        shell = ["/bin/sh", "-c", 'cd "$0" && eval "$1"', os.path.abspath(s.text["APP_DIR"]), command]
        # The venv's python first on PATH: the packages your app is served with.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        process = spawn(shell, log, processes, {**os.environ, **env, "PATH": path}, lock)
        process.wait(timeout=SETUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Failed(f"APP_SETUP ran past {SETUP_TIMEOUT_S} s; last lines of {log}:\n{tail(log)}") from None
    finally:
        for process in processes:
            if process.poll() is None:
                stop_group(process)
            lock.remove_group(process.pid)
    if process.returncode != 0:
        raise Failed(f"APP_SETUP failed (exit {process.returncode}); last lines of {log}:\n{tail(log)}")
    printed = re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", log.read_text(errors="replace"), flags=re.M)
    return dict(printed)


def prepare(
    s: Settings, run_dir: Path, env: dict[str, str], lock: Lock
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """APP_SETUP, then HEADERS filled from it (and what it printed); where the app needed either or
    APP_DB, the check the runner otherwise makes before anything starts (checks.check_app_answers)."""
    from .checks import check_app_answers

    printed = set_up(s, run_dir, env, lock)
    try:
        filled = headers(s, printed)
        if s.text["APP_SETUP"] or s.base.app_db:
            check_app_answers(s, {**env, **check_requests(s, filled)})
    except BadInput as error:
        raise Failed(str(error)) from None
    return filled, printed


def headers(s: Settings, printed: dict[str, str]) -> list[tuple[str, str]]:
    """HEADERS as (name, value), each $NAME from APP_SETUP's output, APP_ENV or the environment."""
    values = {**os.environ, **s.app_env, **printed}
    filled = []
    for line in s.headers:
        try:
            text = string.Template(line).substitute(values)
        except KeyError as error:
            setup = " (APP_SETUP printed no such NAME=value line)" if s.text["APP_SETUP"] else ""
            raise BadInput(f"HEADERS '{line}': ${str(error).strip(chr(39))} is not set{setup}") from None
        except ValueError:
            raise BadInput(f"HEADERS '{line}': a $ that names nothing ($$ is a $ itself)") from None
        name, _, value = text.partition(":")
        filled.append((name.strip(), value.strip()))
    if any(r.body.endswith(".json") for r in s.requests) and "content-type" not in {n.lower() for n, _ in filled}:
        filled.append(("Content-Type", "application/json"))
    return filled


def check_requests(s: Settings, filled: list[tuple[str, str]]) -> dict[str, str]:
    """What runner/wrapper.py --check asks the app: each request, with the headers."""
    return {
        "CHECK_REQUESTS": json.dumps([{"method": r.method, "path": r.path, "body": r.body} for r in s.requests]),
        "CHECK_HEADERS": json.dumps(filled),
    }


def wrk_request(cell: Cell, filled: list[tuple[str, str]], cell_dir: Path) -> list[str]:
    """wrk's flags for the cell's request: -H per header; a method or a body in request.lua, beside wrk.txt."""
    flags = [word for name, value in filled for word in ("-H", f"{name}: {value}")]
    if cell.method == "GET" and not cell.body:
        return flags
    script = files.CellFiles(cell_dir).path / files.REQUEST_LUA
    if not script.exists():
        body = Path(cell.body).read_bytes() if cell.body else b""
        # Every byte as a decimal escape: a body of any bytes is one Lua string.
        escaped = "".join(f"\\{byte}" for byte in body)
        script.write_text(f'wrk.method = "{cell.method}"\nwrk.body = "{escaped}"\n')
    return [*flags, "-s", str(script)]
