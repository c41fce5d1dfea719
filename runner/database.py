"""PostgreSQL for the database cells, treated like wrk: found (or installed by benchmark.sh), then
a throwaway cluster that the run starts and removes.

The cluster is started once per run, not per cell: initdb and a start cost about a second, the
database holds nothing between cells (each cell's server is fresh, and every backend of the
app's role is ended before the next cell starts), and one cluster keeps max_connections and its
settings the same for every cell of a run.
"""

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import files

from .process import Failed, Lock, started, tail

PREFIX = "fastapi-benchmark-postgres-"
ROLE = "bench"  # an ordinary role: it gets max_connections - superuser_reserved_connections


def find_bindir(given: str | None = None) -> Path | None:
    """Where initdb and postgres are: PG_BINDIR if given; else PATH, `pg_config --bindir`, the newest
    /usr/lib/postgresql/*/bin (Debian and Ubuntu keep them there, off PATH), brew's postgresql@17."""

    def has_both(directory) -> bool:
        return directory is not None and all((Path(directory) / name).is_file() for name in ("initdb", "postgres"))

    if given:
        return Path(given) if has_both(given) else None

    def output(*command: str) -> str:
        if not shutil.which(command[0]):
            return ""
        return subprocess.run(list(command), capture_output=True, text=True).stdout.strip()

    def newest_debian():
        found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
        return max(found, key=lambda p: int(p.parent.name), default=None)

    lookups = [
        lambda: (initdb := shutil.which("initdb")) and Path(initdb).resolve().parent,
        lambda: output("pg_config", "--bindir"),
        newest_debian,
        lambda: (
            (output("brew", "--prefix", "postgresql@17") or None)
            and Path(output("brew", "--prefix", "postgresql@17")) / "bin"
        ),
    ]
    for lookup in lookups:  # in this order, each only if the one before found nothing usable
        found = lookup()
        if found and has_both(found):
            return Path(found)
    return None


def unprivileged() -> tuple[list[str], int, int] | None:
    """initdb and postgres refuse to run as root: as root, the prefix that runs them as `postgres`
    (else `nobody`), with that user's uid and gid. None when not root (a Mac user, say)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("setpriv"):
            return (
                ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"],
                user.pw_uid,
                user.pw_gid,
            )
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], user.pw_uid, user.pw_gid
    raise Failed("PostgreSQL refuses to run as root, and neither setpriv nor runuser (util-linux) is here")


@dataclass
class Database:
    url: str  # what the app connects with: the ordinary role, its password, TCP on 127.0.0.1
    password: str = field(repr=False)
    facts: dict[str, Any] = field(
        default_factory=dict
    )  # for run.json: version, max_connections, superuser_reserved_connections
    monitor: Any = field(default=None, repr=False)  # a superuser connection over the private socket
    pid: int = 0  # the postmaster's (its backends are its children: sampled with it, like a server's workers)

    def environment(self) -> dict[str, str]:
        """The address for your app (APP_DB=1): as a URL, as libpq's variables and as the names
        FastAPI's full-stack template reads, since apps build their URL in different ways."""
        host, port = "127.0.0.1", self.url.rsplit(":", 1)[1].split("/")[0]
        parts = {"HOST": host, "PORT": port, "USER": ROLE, "PASSWORD": self.password}
        return {
            "DATABASE_URL": self.url,
            **{f"PG{k}": v for k, v in parts.items()},
            "PGDATABASE": ROLE,
            **{f"POSTGRES_{k}": v for k, v in {**parts, "SERVER": host}.items() if k != "HOST"},
            "POSTGRES_DB": ROLE,
        }

    def backends(self) -> dict[str, int]:
        """PostgreSQL's own count of the app's backends, and of those running a query now."""
        row = self.query(
            "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity "
            "WHERE usename = %s AND backend_type = 'client backend'"
        ).fetchone()
        return {"backends": row[0], "active": row[1]}

    def end_backends(self, timeout_s: float = 10) -> None:
        """End every backend of the app's role, so that a cell starts with all its connections free."""
        self.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s")
        deadline = time.monotonic() + timeout_s
        while self.backends()["backends"] and time.monotonic() < deadline:
            time.sleep(0.05)

    def query(self, sql: str) -> Any:
        """A query about the app's role over the monitor connection; PostgreSQL gone is a failed run."""
        import psycopg

        try:
            return self.monitor.execute(sql, (ROLE,))
        except psycopg.Error as error:
            raise Failed(f"PostgreSQL stopped answering ({' '.join(str(error).split())}); see {files.POSTGRES_LOG}")


def remove_stale_clusters() -> None:
    """Directories of clusters whose run was killed (SIGKILL: no clean-up ran) and whose postgres is gone."""
    import psutil

    for directory in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        pid_file = directory / "data" / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is None or not psutil.pid_exists(pid):
            shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def cluster(bindir: Path, port: int, log_dir: Path, lock: Lock | None = None):
    """initdb into a new temporary directory, start postgres on 127.0.0.1:PORT and a socket only the
    benchmark can enter, and yield a Database; stopped and removed on every way out."""
    import psycopg
    from psycopg import sql

    remove_stale_clusters()
    base = Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        run_as = unprivileged()
        prefix = run_as[0] if run_as else []
        data, sockets, password_file = base / "data", base / "sockets", base / "password"
        sockets.mkdir(mode=0o700)
        password = secrets.token_urlsafe(24)
        superuser_password = secrets.token_urlsafe(24)
        password_file.write_text(superuser_password + "\n")
        password_file.chmod(0o600)
        if run_as:
            for path in (base, sockets, password_file):
                os.chown(path, run_as[1], run_as[2])
        # No trust anywhere: a random password for every role, on the private socket and on TCP alike.
        initdb = subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--auth=scram-sha-256",
                f"--pwfile={password_file}",
            ],
            capture_output=True,
            text=True,
        )
        (log_dir / files.POSTGRES_INITDB_LOG).write_text(initdb.stdout + initdb.stderr)
        if initdb.returncode != 0:
            raise Failed(f"initdb failed (exit {initdb.returncode}):\n{initdb.stderr.strip()}")
        # fsync off: the cluster holds no data worth keeping, and the benchmark waits on pg_sleep, not the disk.
        command = [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            # a backend whose client is gone (a stopped server) notices within 100 ms, even in pg_sleep
            "-c",
            "client_connection_check_interval=100ms",
        ]
        log = log_dir / files.POSTGRES_LOG
        with started(
            [*prefix, *command], log, dict(os.environ), lock, stop_signal=signal.SIGINT, grace_s=10
        ) as process:
            monitor = connect_when_ready(psycopg, process, log, sockets, port, superuser_password)
            try:
                monitor.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(password))
                )
                monitor.execute(sql.SQL("CREATE DATABASE {0} OWNER {0}").format(sql.Identifier(ROLE)))
                facts = {
                    "postgres_version": monitor.execute("SHOW server_version").fetchone()[0],
                    "max_connections": int(monitor.execute("SHOW max_connections").fetchone()[0]),
                    "superuser_reserved_connections": int(
                        monitor.execute("SHOW superuser_reserved_connections").fetchone()[0]
                    ),
                }
                yield Database(
                    f"postgresql://{ROLE}:{password}@127.0.0.1:{port}/{ROLE}", password, facts, monitor, process.pid
                )
            finally:
                monitor.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def connect_when_ready(psycopg, process, log: Path, sockets: Path, port: int, password: str, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Failed(f"postgres exited during start-up; last lines of {log}:\n{tail(log)}")
        try:
            return psycopg.connect(
                host=str(sockets), port=port, user="postgres", password=password, dbname="postgres", autocommit=True
            )
        except psycopg.OperationalError:
            time.sleep(0.05)
    raise Failed(f"postgres did not accept connections within {timeout_s:g} s; see {log}")
