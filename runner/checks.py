"""What is checked before any server starts: each is one line and exit 2 when it fails (BadInput)."""

import contextlib
import errno
import io
import os
import shlex
import socket
import subprocess
import sys
from typing import NoReturn

from core.cell import Cell
from core.knobs import BadInput
from core.settings import Settings

from .record import WRAPPER


def check_gunicorn(cells: list[Cell], server_args: str) -> None:
    """A worker class that does not load, or a flag gunicorn does not take, is one line before any
    server starts (gunicorn would print a traceback, and the run a folder like a good one's)."""
    gunicorn_cells = [c for c in cells if c.server.startswith("gunicorn")]
    if not gunicorn_cells:
        return

    from gunicorn.config import Config
    from gunicorn.util import load_class

    for worker_class in sorted({c.worker_class for c in gunicorn_cells}):
        try:
            load_class(worker_class, section="gunicorn.workers")
        except (RuntimeError, ImportError, AttributeError) as error:
            # gunicorn puts the import's traceback in brackets: its last line says why.
            lines = [line for line in str(error).strip(" \n]").splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else type(error).__name__
            raise BadInput(f"WORKER_CLASS={worker_class} does not load in gunicorn: {reason}") from None
    parser = Config().parser()

    def refuse(message: str) -> NoReturn:
        raise BadInput(f"GUNICORN_CMD_ARGS={server_args}: gunicorn refuses it: {message}")

    parser.error = refuse
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            parser.parse_args(shlex.split(server_args))
    except ValueError as error:  # a value its setting's validator refuses
        refuse(str(error))
    except SystemExit:  # --help, --version: gunicorn would print and exit instead of serving
        refuse("it makes gunicorn print and exit instead of serving")


def check_port_free(host: str, port: int, knob: str) -> None:
    """Bind as the servers will (SO_REUSEADDR)."""
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise BadInput(f"port {port} on {host} is already in use; stop what holds it or set {knob}")
        raise BadInput(f"cannot listen on {host}:{port}; check HOST and {knob}") from None


def check_app_answers(s: Settings, app_env: dict[str, str]) -> None:
    """APP imports, is an ASGI app, and each of PATHS answers its request at 1 connection with a 2xx or
    3xx (runner/wrapper.py --check, in a process of its own: the app's imports stay out of the
    runner's). APP_ENV: the app's environment, and the requests and headers (runner/yours.py)."""
    if not s.requests:
        return
    env = {
        **os.environ,
        **app_env,
        "APP": s.text["APP"],
        "APP_DIR": os.path.abspath(s.text["APP_DIR"]),
    }
    env.pop("STATS_DIR", None)
    try:
        out = subprocess.run(
            [sys.executable, str(WRAPPER), "--check"], env=env, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        raise BadInput(f"APP={s.text['APP']}: importing it and asking each path once took over 120 s") from None
    if out.returncode != 0:
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        raise BadInput(lines[-1] if lines else f"APP={s.text['APP']}: the check failed (exit {out.returncode})")
