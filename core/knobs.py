"""Every knob (environment variable) the benchmark reads: its default, what it means, and the
check that turns its text into a value. The help text and run.json read this table."""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass


class BadInput(Exception):
    """Bad input: one line, exit 2, before anything starts."""


@dataclass(frozen=True)
class Knob:
    default: str  # for the seed set; a set may set its own (sets.py)
    help: str
    port_after: int | None = None  # a backend's port: PORT plus this, unless set (runner/backends.py)


KNOBS = {
    "SLEEP_SECONDS": Knob("10", "seconds each request sleeps in the app (or the upstream)"),
    "DURATION": Knob("1m", "wrk/httperf duration, whole s/m/h"),
    "TIMEOUT": Knob("30s", "wrk --timeout / httperf --timeout, whole s/m/h"),
    "CONNECTIONS": Knob("100", "wrk connections (a list for the concurrency set)"),
    "WRK_THREADS": Knob("4", "wrk threads"),
    "CONFIGS": Knob("1x1 1x4 4x1 4x4", "WORKERSxTHREADS list"),
    "ENDPOINTS": Knob("sync async", "endpoints to load (see app.py and core/endpoints.py)"),
    "SERVER": Knob("gunicorn", "the server in front of the app (core/servers.py)"),
    "WORKER_CLASS": Knob("uvicorn_worker.UvicornWorker", "gunicorn worker class"),
    "THREAD_LIMIT": Knob("default", "anyio thread limit for `def` endpoints per worker (default 40)"),
    "HTTP_POOL": Knob("default", "httpx max_connections per client per worker (default 100)"),
    "HTTP_POOL_TIMEOUT": Knob("default", "seconds a call may wait for a pooled connection (default 5)"),
    "SNIFFIO": Knob(
        "0",
        "1: the servers can import sniffio (a pinned copy, requirements-sniffio.txt); 0: as a fresh "
        "FastAPI + httpx install has it since anyio 4.11, without",
    ),
    "DB_POOL_SIZE": Knob("default", "SQLAlchemy pool_size for the /*-db endpoints, per worker (default 5)"),
    "DB_MAX_OVERFLOW": Knob("default", "SQLAlchemy max_overflow (default 10)"),
    "DB_POOL_TIMEOUT": Knob("default", "seconds a request may wait for a pooled connection (default 30)"),
    "RATES": Knob("0.5 0.9 1.1 2", "openloop: offered rates as fractions of predicted capacity"),
    "HOST": Knob("127.0.0.1", "where the server listens"),
    "PORT": Knob("8000", "its port"),
    "UPSTREAM_PORT": Knob("PORT + 1", "where the upstream for the /*-http endpoints listens", port_after=1),
    "DB_PORT": Knob("PORT + 2", "where the PostgreSQL for the /*-db endpoints listens (127.0.0.1)", port_after=2),
    "SCALE": Knob("1", "divide sleep, duration and timeout by this"),
    "REPEAT": Knob("1", "runs of each cell"),
    "WARMUP": Knob("auto", "seconds of unmeasured load before each cell; auto: 2 s for CPU-bound cells"),
    "PIN": Knob("0", "1: load generator on CPU 0, servers on the others (Linux, taskset)"),
    "LATENCY": Knob("0", "1: pass --latency to wrk (percentiles)"),
    "PROFILE": Knob(
        "0",
        "1: run each CPU-bound or unexplained cell once more under py-spy, after the measured "
        "runs (profiles/CELL/profile.svg; root or ptrace rights, sudo on macOS)",
    ),
    "STATS": Knob("1", "0: skip the server-side counters (STATS_DIR)"),
    "LOOP_CLOCK": Knob("1", "0: the counters without the event loop's clock (the overhead set measures its cost)"),
    "RESULTS_DIR": Knob("results", "where run directories go"),
    "WRK": Knob("wrk", "the closed-loop load generator"),
    "HTTPERF": Knob("httperf", "the open-loop load generator"),
    "PG_BINDIR": Knob("", "where initdb and postgres are (found on PATH, pg_config, /usr/lib/postgresql, brew)"),
    "VENV": Knob(".venv", "the virtual environment benchmark.sh makes and uses"),
    "PYTHON": Knob("newest 3.11+", "the interpreter to make it with (python3.14 ... python3)"),
    "LOCK": Knob("$TMPDIR/...lock", "the lock that keeps two runs off the same cores"),
    "GUNICORN_CMD_ARGS": Knob("", "extra gunicorn flags; the runner's own (-w, --threads, -k, -b) win"),
    "APP": Knob("", "your ASGI app as module:attr (also --app): the app set loads its PATHS"),
    "APP_DIR": Knob(".", "where APP is imported from"),
    "PATHS": Knob("", "the app set's paths, space-separated; GET, or METHOD /path @body.json"),
    "APP_ENV": Knob("", "a file of NAME=value lines: the environment your app needs"),
    "APP_DB": Knob("0", "1: a throwaway PostgreSQL for your app (DATABASE_URL, PG*, POSTGRES_*)"),
    "APP_SETUP": Knob(
        "", "a command run once before the cells (migrations, a login): its NAME=value lines fill $NAME in HEADERS"
    ),
    "HEADERS": Knob("", "request headers for your app's paths, one per line ('Authorization: Bearer $TOKEN')"),
}
# Your own app's (the app set's): the README lists them in its own section.
YOUR_APP_KNOBS = {"APP", "APP_DIR", "PATHS", "APP_ENV", "APP_DB", "APP_SETUP", "HEADERS"}
# Knobs that say where and with what, not what is measured: left out of "knobs that differ".
MACHINE_KNOBS = {
    "HOST",
    "PORT",
    "UPSTREAM_PORT",
    "DB_PORT",
    "RESULTS_DIR",
    "WRK",
    "HTTPERF",
    "PG_BINDIR",
    "VENV",
    "PYTHON",
    "LOCK",
}


def given(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The knobs set in this environment."""
    return {name: environ[name] for name in KNOBS if name in environ}


# ---------------------------------------------------------------- checks, each with bash's old message


def positive_int(name: str, text: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]*", text):
        raise BadInput(f"{name} must be a positive whole number, got '{text}'")
    return int(text)


def number(name: str, text: str) -> float:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        raise BadInput(f"{name} must be a number >= 0, got '{text}'")
    return float(text)


def flag(name: str, text: str) -> bool:
    if text not in ("0", "1"):
        raise BadInput(f"{name} must be 0 or 1, got '{text}'")
    return text == "1"


def seconds(name: str, text: str) -> int:
    """Whole s/m/h, as wrk takes them."""
    match = re.fullmatch(r"([0-9]+)([smh]?)", text)
    if not match:
        raise BadInput(f"{name} must be a whole number of seconds, minutes or hours (30s, 1m), got '{text}'")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def scaled_seconds(name: str, text: str, scale: int) -> int:
    total = seconds(name, text)
    if total % scale or total // scale == 0:
        raise BadInput(f"{name}={text} divided by SCALE={scale} is not a whole number of seconds >= 1")
    return total // scale


def optional_int(name: str, text: str) -> int | None:
    return None if text == "default" else positive_int(name, text)


def optional_number(name: str, text: str) -> float | None:
    return None if text == "default" else number(name, text)


def optional_count(name: str, text: str) -> int | None:
    """A whole number >= 0, or "default"."""
    if text == "default":
        return None
    if not re.fullmatch(r"[0-9]+", text):
        raise BadInput(f"{name} must be a whole number >= 0, got '{text}'")
    return int(text)
