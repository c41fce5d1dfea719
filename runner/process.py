"""Processes the runner starts and stops: one context manager for every server, one lock per
machine, and the signals that end a run.

Every process starts in a session of its own, so that stopping it reaches every worker it
forked and a Ctrl-C on the terminal reaches only the runner, which then stops them itself. The
lock records those sessions, so a runner killed with SIGKILL (no clean-up runs) leaves enough
behind for the next run to stop what it left.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from core.settings import wrapped


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP (the terminal closed): clean up and exit 130."""


class Failed(Exception):
    """A run that cannot go on (a server that does not start, a load generator that fails): exit 1."""


def raise_on_signals() -> None:
    def interrupted(number, frame):
        # Once: the clean-up that follows must not be cut short by a second Ctrl-C.
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        raise Interrupted(signal.Signals(number).name)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), interrupted)


def taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def stop_group(process: subprocess.Popen, grace_s: float = 1.0, stop_signal: int = signal.SIGTERM) -> None:
    """STOP_SIGNAL to the whole session, a moment to finish (the stop snapshot has what we need), then SIGKILL."""
    pgid = process.pid
    try:
        os.killpg(pgid, stop_signal)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)  # workers the leader left behind, or a leader that ignored SIGTERM
    except ProcessLookupError:
        pass
    process.wait()


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a process's log, for the one-line error that says it did not start."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


ENDING_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def spawn(
    command: list[str],
    log: Path,
    into: list,
    env: dict | None = None,
    lock: "Lock | None" = None,
    cpus: str | None = None,
) -> subprocess.Popen:
    """Start COMMAND in a session of its own (pinned to CPUS with taskset), output to LOG, and append
    it to INTO and its session to the lock before a Ctrl-C, SIGTERM or SIGHUP can interrupt: those
    are held meanwhile, so one that arrives then is raised only once the caller can stop the process
    (call this inside the try whose finally stops what INTO holds)."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, ENDING_SIGNALS)
    try:
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*taskset(cpus), *command],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                # the child gets the signals back: a mask survives exec
                preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, ENDING_SIGNALS),
            )
        into.append(process)
        if lock:
            lock.add_group(process.pid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return process


@contextmanager
def started(
    command: list[str],
    log: Path,
    env: dict,
    lock: "Lock | None" = None,
    cpus: str | None = None,
    stop_signal: int = signal.SIGTERM,
    grace_s: float = 1.0,
):
    """Start COMMAND (see spawn) and stop its whole session on every way out: the end of the block,
    an exception, a signal (STOP_SIGNAL, GRACE_S to finish, then SIGKILL)."""
    processes: list[subprocess.Popen] = []
    try:
        yield spawn(command, log, processes, env, lock, cpus)
    finally:
        for process in processes:
            stop_group(process, grace_s, stop_signal)
            if lock:
                lock.remove_group(process.pid)


# ---------------------------------------------------------------- the lock


def _create_time(pid: int) -> float | None:
    import psutil  # the runner's .venv has it; `--list` and `--needs` run without one and never get here

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


class Lock:
    """A symlink whose target is "PID RUN [GROUP@START ...]": made atomically, rewritten atomically
    (a new link renamed over it), readable without a second file."""

    def __init__(self, path: Path, run: str):
        self.path, self.run = Path(path), run
        self.groups: dict[int, float] = {}  # each session it started -> when its leader started

    def _target(self) -> str:
        return " ".join([str(os.getpid()), self.run, *(f"{g}@{t:.2f}" for g, t in self.groups.items())])

    def take(self) -> None:
        try:
            os.symlink(self._target(), self.path)
            return
        except FileExistsError:
            pass
        try:
            holder = os.readlink(self.path)
        except OSError:
            holder = ""
        words = holder.split()
        pid = int(words[0]) if words and words[0].isdigit() else None
        if pid and _is_runner(pid):
            raise LockBusy(
                f"another benchmark is running (pid {pid}: {words[1] if len(words) > 1 else '?'}); two runs "
                f"would share the cores. Wait for it or stop it: kill {pid}"
            )
        stop_left_behind(words[2:], pid)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        try:
            os.symlink(self._target(), self.path)
        except FileExistsError:
            raise LockBusy(f"another benchmark took {self.path} just now")

    def _rewrite(self) -> None:
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        os.symlink(self._target(), temporary)
        os.replace(temporary, self.path)

    def add_group(self, pgid: int) -> None:
        self.groups[pgid] = _create_time(pgid) or time.time()
        self._rewrite()

    def remove_group(self, pgid: int) -> None:
        self.groups.pop(pgid, None)
        self._rewrite()

    def release(self) -> None:
        try:
            if os.readlink(self.path).split()[0] == str(os.getpid()):
                self.path.unlink()
        except (OSError, IndexError):
            pass


class LockBusy(Exception):
    pass


def _is_runner(pid: int) -> bool:
    import psutil

    try:
        command = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False
    return "runner.cli" in command or "benchmark.sh" in command


def stop_left_behind(groups: list[str], holder: int | None) -> None:
    """Stop the sessions a killed run left running: every live process still in one of them that
    is not older than its leader was (so a recycled process group id is left alone)."""
    import psutil

    left = []
    for word in groups:
        pgid_text, _, started_text = word.partition("@")
        if not pgid_text.isdigit():
            continue
        pgid, started = int(pgid_text), float(started_text or 0)
        for process in psutil.process_iter(["pid", "create_time"]):
            try:
                if os.getpgid(process.pid) == pgid and process.info["create_time"] >= started - 1:
                    left.append(process)
            except (ProcessLookupError, psutil.Error):
                continue
    if not left:
        return
    print(
        f"benchmark.sh: stopping {len(left)} processes a killed run (pid {holder}) left behind: "
        + " ".join(str(p.pid) for p in left),
        file=sys.stderr,
    )
    for process in left:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(left, timeout=2)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=2)


class Output:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.countdown = sys.stdout.isatty() and not quiet

    def note(self, text: str) -> None:
        if not self.quiet:
            print("\n".join(part for line in text.splitlines() for part in wrapped(line)), flush=True)


def answers(url: str, any_status: bool = False) -> bool:
    """URL answers a GET with a 2xx or 3xx (as the app set's check asks of its paths); with
    ANY_STATUS, with anything (a path of your app behind a login, or asked with POST, says 401 or 405)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 400
    except urllib.error.HTTPError:
        return any_status
    except OSError:
        return False
