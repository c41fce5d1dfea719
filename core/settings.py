"""Settings: every knob of one run, checked: the environment's text over the set's defaults,
turned into values (a BadInput names the first that is wrong, before anything starts)."""

import os
import re
import resource
import shutil
import sys
import textwrap
from dataclasses import dataclass, replace
from typing import Any

from .cell import Cell
from .endpoints import ENDPOINTS
from .knobs import (
    KNOBS,
    BadInput,
    flag,
    number,
    optional_count,
    optional_int,
    optional_number,
    positive_int,
    scaled_seconds,
)
from .servers import SERVERS

TERMINAL_WIDTH = 100  # every line the runner, --list and compare print; the rest goes on indented lines
PER_CELL_OVERHEAD_S = 2  # start, readiness, snapshots and stop: 1.5-1.7 s measured here; refined as cells run


@dataclass(frozen=True)
class Settings:
    """Every knob of one run, checked. `text` keeps each as given (or defaulted), for run.json."""

    set: str
    text: dict[str, str]
    scale: int
    repeat: int
    # Every cell's fields as the knobs set them (the sleep and DB_POOL_TIMEOUT divided by SCALE, but
    # for the openloop set); a set's function changes what its cells vary.
    base: Cell
    connections: list[int]
    configs: list[tuple[int, int]]  # (workers, threads)
    endpoints: list[str]
    rates: list[float]
    warmup: str
    latency: bool
    profile: bool
    host: str
    port: int
    ports: dict[str, int]  # by knob: PORT, and each backend's
    server_args: str
    requests: list["Request"]  # the app set's: what it asks APP, one request per path (PATHS)
    app_env: dict[str, str]  # the app set's: APP_ENV's settings
    headers: list[str]  # the app set's: HEADERS' lines, $NAME still to fill from APP_SETUP's output

    def cell(self, **fields: Any) -> Cell:
        """A cell with this run's settings, then the fields given."""
        return replace(self.base, **fields)

    def grid(self, **fields: Any) -> list[Cell]:
        """CONFIGS x ENDPOINTS x CONNECTIONS."""
        return [
            self.cell(workers=w, threads=t, endpoint=e, connections=c, **fields)
            for w, t in self.configs
            for e in self.endpoints
            for c in self.connections
        ]


def read_settings(set_name: str, t: dict[str, str], open_loop: bool, your_app: bool = False) -> Settings:
    """Every knob's text (T: the environment's over the set's defaults) turned into checked values.
    OPEN_LOOP: httperf at fixed rates, where SCALE shrinks only the duration (scaled rates would
    outrun one machine) and the sleep must not be 0 (capacity is threads / sleep)."""
    scale_n = positive_int("SCALE", t["SCALE"])
    repeat_n = positive_int("REPEAT", t["REPEAT"])
    wrk_threads = positive_int("WRK_THREADS", t["WRK_THREADS"])
    port = positive_int("PORT", t["PORT"])
    if port >= 65536:
        raise BadInput(f"PORT must be below 65536, got '{t['PORT']}'")
    ports = {"PORT": port}  # each backend's too, none the same
    for name in (name for name, knob in KNOBS.items() if knob.port_after is not None):
        ports[name] = positive_int(name, t[name])
        if ports[name] >= 65536 or ports[name] in list(ports.values())[:-1]:
            raise BadInput(
                f"{name} must be below 65536 and differ from {' and '.join(list(ports)[:-1])}, got '{t[name]}'"
            )
    if not t["HOST"]:
        raise BadInput("HOST is empty")
    sleep_seconds = number("SLEEP_SECONDS", t["SLEEP_SECONDS"])
    thread_limit = optional_int("THREAD_LIMIT", t["THREAD_LIMIT"])
    http_pool = optional_int("HTTP_POOL", t["HTTP_POOL"])
    pool_timeout = optional_number("HTTP_POOL_TIMEOUT", t["HTTP_POOL_TIMEOUT"])
    db_pool_size = optional_int("DB_POOL_SIZE", t["DB_POOL_SIZE"])
    db_max_overflow = optional_count("DB_MAX_OVERFLOW", t["DB_MAX_OVERFLOW"])
    db_pool_timeout = optional_number("DB_POOL_TIMEOUT", t["DB_POOL_TIMEOUT"])
    stats, latency, pin, profile, sniffio, loop_clock = (
        flag(name, t[name]) for name in ("STATS", "LATENCY", "PIN", "PROFILE", "SNIFFIO", "LOOP_CLOCK")
    )
    if not (t["WARMUP"] == "auto" or t["WARMUP"].isdigit()):
        raise BadInput(f"WARMUP must be auto or a whole number of seconds, got '{t['WARMUP']}'")
    if t["SERVER"] not in SERVERS:
        raise BadInput(f"unknown server '{t['SERVER']}' ({' '.join(SERVERS)})")
    if not all(t[name].split() for name in ("CONFIGS", "ENDPOINTS", "CONNECTIONS", "RATES")):
        raise BadInput("CONFIGS, ENDPOINTS, CONNECTIONS and RATES must not be empty")
    sleep_scale = 1 if open_loop else scale_n
    duration = scaled_seconds("DURATION", t["DURATION"], scale_n)
    timeout = scaled_seconds("TIMEOUT", t["TIMEOUT"], sleep_scale)
    configs = []
    for config in t["CONFIGS"].split():
        workers, _, threads = config.partition("x")
        if not (workers.isdigit() and threads.isdigit()):
            raise BadInput(f"CONFIGS entries look like 4x1 (workers x threads), got '{config}'")
        configs.append(
            (positive_int(f"workers in '{config}'", workers), positive_int(f"threads in '{config}'", threads))
        )
    for endpoint in t["ENDPOINTS"].split():
        if endpoint not in ENDPOINTS:
            raise BadInput(f"unknown endpoint '{endpoint}' ({', '.join(ENDPOINTS)})")
    connections = []
    for text in t["CONNECTIONS"].split():
        connections.append(positive_int("CONNECTIONS", text))
        if connections[-1] < wrk_threads:
            raise BadInput(f"CONNECTIONS ({text}) must be >= WRK_THREADS ({wrk_threads}), as wrk requires")
    rates = []
    for text in t["RATES"].split():
        if not re.fullmatch(r"[0-9]*\.?[0-9]+", text) or float(text) <= 0:
            raise BadInput(f"RATES are fractions of capacity > 0, got '{text}'")
        rates.append(float(text))
    if open_loop and not all(ENDPOINTS[e].waits for e in t["ENDPOINTS"].split()):
        raise BadInput(
            f"the {set_name} set needs endpoints that wait (its capacity is threads / sleep), got '{t['ENDPOINTS']}'"
        )
    if open_loop and sleep_seconds <= 0:
        raise BadInput(f"the {set_name} set needs SLEEP_SECONDS > 0: capacity is threads / sleep")
    check_open_files(max(connections))
    requests = check_app(set_name, t, your_app, connections)
    base = Cell(
        server=t["SERVER"],
        worker_class=t["WORKER_CLASS"],
        thread_limit=thread_limit,
        http_pool=http_pool,
        sleep=float(f"{sleep_seconds / sleep_scale:g}"),
        wrk_threads=wrk_threads,
        duration=duration,
        timeout=timeout,
        pin=pin and pinning_possible(),
        pool_timeout=pool_timeout,
        stats=stats,
        loop_clock=loop_clock,
        sniffio=sniffio,
        db_pool_size=db_pool_size,
        db_max_overflow=db_max_overflow,
        db_pool_timeout=None if db_pool_timeout is None else float(f"{db_pool_timeout / sleep_scale:g}"),
        app_db=flag("APP_DB", t["APP_DB"]),
    )
    return Settings(
        set=set_name,
        text=t,
        scale=scale_n,
        repeat=repeat_n,
        base=base,
        connections=connections,
        configs=configs,
        endpoints=t["ENDPOINTS"].split(),
        rates=rates,
        warmup=t["WARMUP"],
        latency=latency,
        profile=profile,
        host=t["HOST"],
        port=port,
        ports=ports,
        server_args=t["GUNICORN_CMD_ARGS"],
        requests=requests,
        app_env=read_app_env(t["APP_ENV"]) if your_app else {},
        headers=[line.strip() for line in t["HEADERS"].splitlines() if line.strip()],
    )


def warmup_for(cell: Cell, s: Settings) -> int:
    """Seconds of unmeasured load: connect storms and first-request costs stay out of CPU-bound cells."""
    if cell.open_loop:
        return 0
    if s.warmup != "auto":
        return int(s.warmup)
    cpu_bound = (
        cell.sleep == 0
        or not ENDPOINTS[cell.endpoint].waits
        or (cell.endpoint == "async" and (cell.connections or 0) >= 4000)
    )
    return (2 if s.scale == 1 else 1) if cpu_bound else 0


@dataclass(frozen=True)
class Request:
    """One path of APP as the app set asks it: PATHS' `/path`, or `METHOD /path @body-file`."""

    method: str
    path: str
    body: str = ""  # a file whose bytes are the request's body, as an absolute path


def check_app(set_name: str, t: dict[str, str], your_app: bool, connections: list[int]) -> list[Request]:
    """APP, its PATHS and what it needs, where the set loads them (whether APP imports is the runner's check)."""
    if not your_app:
        for name in ("APP", "APP_ENV", "APP_SETUP", "HEADERS"):
            if t[name]:
                raise BadInput(f"{name} is for your own app, loaded by the app set (--app), not by the {set_name} set")
        if t["APP_DB"] != "0":
            raise BadInput(f"APP_DB is for your own app, loaded by the app set (--app), not by the {set_name} set")
        return []
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", t["APP"]):
        raise BadInput(f"APP (or --app) names your ASGI app as module:attribute, e.g. main:app, got '{t['APP']}'")
    if not os.path.isdir(t["APP_DIR"]):
        raise BadInput(f"APP_DIR '{t['APP_DIR']}' is not a directory")
    requests = parse_paths(t["PATHS"])
    for line in t["HEADERS"].splitlines():
        if line.strip() and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:.*", line.strip()):
            raise BadInput(f"HEADERS are lines of 'Name: value', got '{line.strip()}'")
    if 1 not in connections:
        raise BadInput("the app set times a request alone (S) at 1 connection: CONNECTIONS must include 1")
    return requests


def parse_paths(text: str) -> list[Request]:
    """PATHS: `/a /b` (GET each), a METHOD before a path, `@file` after it for its body."""
    requests: list[Request] = []
    method = ""
    for word in text.split():
        if re.fullmatch(r"[A-Z]+", word):
            if method:
                raise BadInput(f"PATHS: {method} is followed by {word}, not by a path")
            method = word
        elif word.startswith("@"):
            if method or not requests or requests[-1].body:
                raise BadInput(f"PATHS: {word} must follow the path whose body it is, e.g. POST /items @item.json")
            if not os.path.isfile(word[1:]):
                raise BadInput(f"PATHS: the body file {word[1:]} is not a file")
            requests[-1] = replace(requests[-1], body=os.path.abspath(word[1:]))
        elif word.startswith("/") and "?" not in word and "%" not in word:
            # (the counters match the request's path as the server decodes it, without its query)
            if word in (r.path for r in requests):
                raise BadInput(f"PATHS names {word} twice: the counters count each path, whatever its method")
            requests.append(Request(method or "GET", word))
            method = ""
        else:
            raise BadInput(f"PATHS are paths that start with '/', with no query and no %-escape, got '{word}'")
    if method:
        raise BadInput(f"PATHS ends with {method}: a method goes before its path")
    if not requests:
        raise BadInput("PATHS is empty: name the paths of your app to load, e.g. PATHS='/items/1 /users/me'")
    return requests


def read_app_env(name: str) -> dict[str, str]:
    """APP_ENV's NAME=value lines (as a .env file has them: # comments, `export`, quotes allowed)."""
    if not name:
        return {}
    try:
        lines = open(name).read().splitlines()
    except OSError as error:
        raise BadInput(f"APP_ENV {name} cannot be read: {error.strerror}") from None
    settings = {}
    for line_number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if not match:
            raise BadInput(f"APP_ENV {name}, line {line_number}: not NAME=value: '{line}'")
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        settings[match.group(1)] = value
    return settings


def check_open_files(connections: int) -> None:
    """wrk and the one worker that may take every connection each need a descriptor per connection."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < connections + 64:
        raise BadInput(
            f"ulimit -n is {soft}, too low for {connections} connections; "
            f"raise it first: ulimit -n {connections + 1024}"
        )


def pinning_possible() -> bool:
    if shutil.which("taskset") is None:
        print("benchmark.sh: PIN=1 needs taskset (Linux); running unpinned", file=sys.stderr)
        return False
    if (os.cpu_count() or 1) < 2:
        print(
            f"benchmark.sh: PIN=1 needs 2 cores, this machine has {os.cpu_count()}; running unpinned", file=sys.stderr
        )
        return False
    return True


def wrapped(text: str, indent: str = "    ") -> list[str]:
    """TEXT in lines of TERMINAL_WIDTH, the rest indented: nothing dropped, no word split (a word
    longer than a line, a rare long knob value, stands alone on its line)."""
    return textwrap.wrap(text, TERMINAL_WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def command_lines(words: list[str], comment: str = "", indent: str = "") -> list[str]:
    """A shell command (its WORDS, quoted) and a trailing COMMENT in lines of TERMINAL_WIDTH that
    paste as one: each line but the last ends in a backslash; the first starts with INDENT."""
    lines = [indent]
    for word in words:
        if lines[-1].strip() and len(lines[-1]) + len(word) + 3 > TERMINAL_WIDTH:
            lines[-1] += " \\"
            lines.append(indent + "    ")
        lines[-1] += (" " if lines[-1].strip() else "") + word
    if comment and len(lines[-1]) + len(comment) > TERMINAL_WIDTH:
        return [*lines, indent + comment.strip()]
    return [*lines[:-1], lines[-1] + comment]


def minutes(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 90 else f"{(seconds + 30) // 60:.0f} min"


def cell_seconds(cell: Cell, overhead: float = PER_CELL_OVERHEAD_S) -> float:
    return cell.duration + cell.warmup + overhead
