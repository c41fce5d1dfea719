"""SERVERS: every server the benchmark can put in front of app.py, as one table.

Each entry builds its command line from a cell, names the knobs it ignores, says what it limits
by itself and which log line each ready worker prints. Adding a server is one entry here plus its
pin in requirements.in.
"""

import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .bound import Bound

if TYPE_CHECKING:
    from .cell import Cell

DEFAULT_WORKER_CLASS = "uvicorn_worker.UvicornWorker"
H11_WORKER_CLASS = "uvicorn_worker.UvicornH11Worker"  # uvicorn's pure-Python HTTP parser (h11)
GRANIAN_BACKLOG = 1024  # granian/cli.py --backlog; --backpressure defaults to backlog // workers
LISTEN_BACKLOG = 2048  # gunicorn config.py Backlog and uvicorn config.py: the listen() backlog they ask for
GUNICORN_TIMEOUT_S = 30  # gunicorn config.py Timeout: a worker silent this long is killed


def flag(server_args: str, name: str, default: int) -> int:
    """An integer flag's value in GUNICORN_CMD_ARGS (`--name N` or `--name=N`), the last one winning."""
    value, words = default, shlex.split(server_args or "")
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            value = int(words[i + 1])
        elif word.startswith(name + "="):
            value = int(word.split("=", 1)[1])
    return value


@dataclass(frozen=True)
class Where:
    """What a command line needs besides the cell: the binaries, the app and the address."""

    venv_bin: str
    app_dir: str
    host: str
    port: int
    app: str = "app:app"  # the module:attribute served from app_dir (runner/wrapper.py's for your app)


@dataclass(frozen=True)
class Server:
    command: Callable[["Cell", Where], list[str]]  # the argv that serves the app
    ready_line: str  # a regular expression each worker prints once it serves
    packages: tuple[str, ...]  # recorded with their versions in run.json
    ignores: tuple[str, ...] = ("the threads (T in CONFIGS' WxT)", "WORKER_CLASS", "GUNICORN_CMD_ARGS")
    # (workers) -> (requests/worker, why, Bound.BACKPRESSURE) or None
    own_limit: Callable[[int], tuple[int, str, Bound] | None] = field(default=lambda workers: None)
    label: Callable[["Cell"], str] | None = None  # the summary's config column; None: "NAME Nw"
    # Worker classes the servers set compares ("-": the server has none, and no --threads either).
    worker_classes: tuple[str, ...] = ("-",)
    # (cell) -> (listening sockets, the backlog each asks listen() for); the kernel caps it at somaxconn.
    listen: Callable[["Cell"], tuple[int, int]] = field(default=lambda cell: (1, LISTEN_BACKLOG))

    def ready_workers(self, log_text: str) -> int:
        return len(re.findall(self.ready_line, log_text))


def gunicorn(cell: "Cell", where: Where, *extra: str) -> list[str]:
    return [
        f"{where.venv_bin}/gunicorn",
        where.app,
        "--chdir",
        where.app_dir,
        "--no-control-socket",
        "-b",
        f"{where.host}:{where.port}",
        "-w",
        str(cell.workers),
        "--threads",
        str(cell.threads),
        "-k",
        cell.worker_class,
        *extra,
    ]


def gunicorn_label(cell: "Cell") -> str:
    name = f"{cell.workers}w x {cell.threads}t"
    if cell.server == "gunicorn-reuse-port":
        name += " --reuse-port"
    if cell.worker_class != DEFAULT_WORKER_CLASS:
        name += f" {cell.worker_class}"
    return name


def gunicorn_listen(cell: "Cell") -> tuple[int, int]:
    backlog = flag(cell.server_args, "--backlog", LISTEN_BACKLOG)
    return (cell.workers if cell.server == "gunicorn-reuse-port" else 1), backlog


GUNICORN: dict[str, Any] = dict(
    ready_line=r"Application startup complete|ASGI server listening on",
    packages=("gunicorn", "uvicorn-worker", "uvicorn", "uvloop", "httptools"),
    # --threads "only affects the Gthread worker type" (gunicorn config.py): no ASGI worker reads it.
    ignores=("the threads (T in CONFIGS' WxT): only its gthread worker reads `--threads`",),
    label=gunicorn_label,
    listen=gunicorn_listen,
)

SERVERS = {
    "gunicorn": Server(command=gunicorn, worker_classes=(DEFAULT_WORKER_CLASS, "asgi"), **GUNICORN),
    # Each worker binds its own SO_REUSEPORT socket (gunicorn >= 24, arbiter.py): the kernel spreads connections.
    "gunicorn-reuse-port": Server(
        command=lambda cell, where: gunicorn(cell, where, "--reuse-port"),
        worker_classes=(DEFAULT_WORKER_CLASS,),
        **GUNICORN,
    ),
    "uvicorn": Server(
        command=lambda cell, where: [
            f"{where.venv_bin}/uvicorn",
            where.app,
            "--app-dir",
            where.app_dir,
            "--host",
            where.host,
            "--port",
            str(where.port),
            "--workers",
            str(cell.workers),
            "--no-access-log",
        ],
        ready_line=r"Application startup complete",
        packages=("uvicorn", "uvloop", "httptools"),
    ),
    "granian": Server(
        command=lambda cell, where: [
            f"{where.venv_bin}/granian",
            "--interface",
            "asgi",
            "--working-dir",
            where.app_dir,
            "--host",
            where.host,
            "--port",
            str(where.port),
            "--workers",
            str(cell.workers),
            "--no-access-log",
            where.app,
        ],
        ready_line=r"Started worker-",
        packages=("granian",),
        listen=lambda cell: (1, GRANIAN_BACKLOG),
        own_limit=lambda workers: (
            max(1, GRANIAN_BACKLOG // workers),
            f"granian backpressure: {max(1, GRANIAN_BACKLOG // workers)}/worker",
            Bound.BACKPRESSURE,
        ),
    ),
}
# The upstream the /*-http endpoints call: the same app's /async, one worker.
UPSTREAM_SERVER = "uvicorn"
