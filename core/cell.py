"""Cell: one server configuration under one load, the unit the benchmark runs. Its fields are the
columns of a run's cells.tsv: the runner writes that file from this class and report/ reads it
back through it, so the list of fields exists only here."""

import csv
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .endpoints import ENDPOINTS, SQLALCHEMY_MAX_OVERFLOW, SQLALCHEMY_POOL_SIZE, SQLALCHEMY_POOL_TIMEOUT_S
from .servers import DEFAULT_WORKER_CLASS, SERVERS


def _text(value: object, none: str) -> str:
    if value is None:
        return none
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def column(default: Any, none: str = "", read: Callable[[str], Any] = str) -> Any:
    """A cells.tsv column: its default (for files written before it existed), how None is
    written ("default": the library's own default; "-": does not apply) and how it is read."""
    return field(default=default, metadata={"none": none, "read": read})


def _flag(text: str) -> bool:
    return text == "1"


@dataclass(frozen=True)
class Cell:
    name: str = column("")  # the cell's directory, e.g. 01-1w1t-sync-c100
    round: int = column(1, read=int)
    server: str = column("gunicorn")  # a key of SERVERS
    worker_class: str = column(DEFAULT_WORKER_CLASS)  # gunicorn's -k; "-" for the other servers
    workers: int = column(1, read=int)
    threads: int = column(1, read=int)  # gunicorn's --threads (which its ASGI workers ignore)
    thread_limit: int | None = column(None, "default", int)  # anyio's limiter; None: its default (40)
    http_pool: int | None = column(None, "default", int)  # httpx max_connections; None: its default (100)
    sleep: float = column(10.0, read=float)
    endpoint: str = column("sync")  # a key of ENDPOINTS
    connections: int | None = column(100, "-", int)  # wrk's -c; None: open loop
    rate: float | None = column(None, "-", float)  # httperf's --rate; None: closed loop (wrk)
    wrk_threads: int = column(4, read=int)
    duration: int = column(60, read=int)  # seconds
    timeout: int = column(30, read=int)  # seconds
    warmup: int = column(0, read=int)  # seconds of unmeasured load before the measured window
    pin: bool = column(False, read=_flag)  # load generator on CPU 0, servers on the others
    pool_timeout: float | None = column(None, "default", float)  # httpx pool timeout; None: its default (5 s)
    stats: bool = column(True, read=_flag)  # the workers' counters (STATS_DIR)
    loop_clock: bool = column(True, read=_flag)  # with the counters, the event loop's clock (counters.py)
    server_args: str = column("")  # GUNICORN_CMD_ARGS as given: flags added by hand
    db_pool_size: int | None = column(None, "default", int)  # SQLAlchemy's pool_size; None: its default (5)
    db_max_overflow: int | None = column(None, "default", int)  # its max_overflow; None: its default (10)
    db_pool_timeout: float | None = column(None, "default", float)  # its pool_timeout; None: its default (30 s)
    sniffio: bool = column(False, read=_flag)  # the servers can import sniffio (httpcore looks for it per request)
    path: str = column("")  # the app set's: the path of APP it loads (endpoint "app"); "": /<endpoint>
    method: str = column("GET")  # the app set's: the request's method
    body: str = column("")  # the app set's: the file whose bytes are the request's body
    app_db: bool = column(False, read=_flag)  # the app set's: APP_DB=1, a throwaway PostgreSQL for APP

    @property
    def url_path(self) -> str:
        return self.path or f"/{self.endpoint}"

    @property
    def counted_as(self) -> str:
        """The name counters.py counts its requests under: the path without its first '/'."""
        return self.url_path[1:]

    @property
    def waits_on(self) -> str:
        """What its requests wait on besides the app (runner/backends.py starts it): the endpoint's,
        or the database your app was given."""
        return "database" if self.app_db else ENDPOINTS[self.endpoint].waits_on

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    def label(self) -> str:
        """The summary's config column: '4w x 1t', 'uvicorn 4w', plus the knobs that differ."""
        server = SERVERS.get(self.server)
        name = server.label(self) if server and server.label else f"{self.server} {self.workers}w"
        return name + self._knobs()

    def _knobs(self) -> str:
        """What the knobs change, as both label() and describe() show it."""
        return (
            (f" limit {self.thread_limit}" if self.thread_limit is not None else "")
            + (f" pool {self.http_pool}" if self.http_pool is not None else "")
            + (f" dbpool {self.db_pool_text()}" if self.db_pool_text() else "")
            + (f" dbtimeout {self.db_pool_timeout:g}" if self.db_pool_timeout is not None else "")
            + (" sniffio" if self.sniffio else "")
            + (" nostats" if not self.stats else " noclock" if not self.loop_clock else "")
            + (f" +{self.server_args}" if self.server_args else "")
        )

    def db_pool_text(self) -> str:
        """'40+0': pool_size + max_overflow, when a knob set either."""
        if self.db_pool_size is None and self.db_max_overflow is None:
            return ""
        return f"{self.text('db_pool_size')}+{self.text('db_max_overflow')}".replace("default", "d")

    def describe(self) -> str:
        """The line printed as the cell starts: '1 worker x 1 thread limit 2'."""

        def plural(n: int, word: str) -> str:
            return f"{n} {word}" + ("" if n == 1 else "s")

        what = f"{plural(self.workers, 'worker')} x {plural(self.threads, 'thread')}"
        if self.server == "gunicorn-reuse-port":
            what += " gunicorn --reuse-port"
        elif not self.server.startswith("gunicorn"):
            what = f"{self.server} {plural(self.workers, 'worker')}"
        if self.worker_class not in ("-", DEFAULT_WORKER_CLASS):
            what += f" ({self.worker_class})"
        return what + self._knobs()

    def directory_name(self, index: int, digits: int, set_sleep: float, numbered_rounds: bool) -> str:
        endpoint = self.endpoint
        if self.path:
            method = "" if self.method == "GET" else f"-{self.method.lower()}"
            endpoint = "app" + method + re.sub(r"[^A-Za-z0-9]+", "-", self.path).rstrip("-")
        name = f"{index:0{digits}d}-{self.workers}w{self.threads}t-{endpoint}"
        name += f"-c{self.connections}" if self.rate is None else f"-rate{self.rate:g}"
        if self.server != "gunicorn":
            name += f"-{self.server}"
        if self.worker_class not in ("-", DEFAULT_WORKER_CLASS):
            name += f"-{self.worker_class.rsplit('.', 1)[-1]}"
        if self.thread_limit is not None:
            name += f"-limit{self.thread_limit}"
        if self.http_pool is not None:
            name += f"-pool{self.http_pool}"
        if self.db_pool_text():
            name += f"-dbpool{self.db_pool_text()}"
        if self.db_pool_timeout is not None:
            name += f"-dbtimeout{self.db_pool_timeout:g}"
        if self.sniffio:
            name += "-sniffio"
        if not self.stats:
            name += "-nostats"
        elif not self.loop_clock:
            name += "-noclock"
        if self.sleep != set_sleep:
            name += f"-sleep{self.sleep:g}"
        if numbered_rounds:
            name += f"-r{self.round}"
        return name

    def listing(self) -> str:
        """The twelve words --list prints for a cell (see LISTING_HEADER): its fields; for an endpoint
        that queries the database, its pool as SQLAlchemy will have it (size+overflow,timeout); and what
        else differs from the defaults (sniffio, nostats, noclock), each - when nothing."""
        pool = "-"
        if ENDPOINTS[self.endpoint].queries_database:
            size = SQLALCHEMY_POOL_SIZE if self.db_pool_size is None else self.db_pool_size
            overflow = SQLALCHEMY_MAX_OVERFLOW if self.db_max_overflow is None else self.db_max_overflow
            timeout = SQLALCHEMY_POOL_TIMEOUT_S if self.db_pool_timeout is None else self.db_pool_timeout
            pool = f"{size}+{overflow},{timeout:g}s"
        extras = [
            name
            for name, on in (
                ("sniffio", self.sniffio),
                ("nostats", not self.stats),
                ("noclock", self.stats and not self.loop_clock),
            )
            if on
        ]
        words = [self.path if f == "endpoint" and self.path else _text(getattr(self, f), NONE[f]) for f in LISTING]
        return " ".join([*words, pool, ",".join(extras) or "-"])

    def text(self, name: str) -> str:
        return _text(getattr(self, name), NONE[name])


FIELDS = [f.name for f in dataclasses.fields(Cell)]
NONE = {f.name: f.metadata["none"] for f in dataclasses.fields(Cell)}
COLUMN = {"name": "cell"}  # cells.tsv has always called the name column "cell"
LISTING = "server worker_class workers threads thread_limit http_pool sleep endpoint connections rate".split()
LISTING_HEADER = "# " + " ".join(LISTING) + " db_pool extras"


def write_header(path: Path) -> None:
    path.write_text("\t".join(COLUMN.get(f, f) for f in FIELDS) + "\n")


def append(path: Path, cell: Cell) -> None:
    with open(path, "a") as f:
        f.write("\t".join(cell.text(name) for name in FIELDS) + "\n")


def read(path: Path) -> list[Cell]:
    """Every cell of a cells.tsv; columns an older file lacks take their defaults."""
    cells = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            values: dict[str, Any] = {}
            for spec in dataclasses.fields(Cell):
                text = row.get(COLUMN.get(spec.name, spec.name))
                if text is None:
                    continue
                values[spec.name] = None if text == spec.metadata["none"] and text else spec.metadata["read"](text)
            cells.append(Cell(**values))
    return cells
