"""./benchmark.sh --reference: every run the README uses that has no run of the current code yet,
one after the other, each committed by itself as it ends (from a clean tree, so an interruption
costs one set)."""

import json
import os
import subprocess
from pathlib import Path

from core import files, sets
from core.knobs import KNOBS, MACHINE_KNOBS
from core.settings import command_lines, wrapped

from .process import Failed

ROOT = Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    return Path(os.environ.get("RESULTS_DIR") or ROOT / "results")


def reference_environment(knobs: dict) -> dict:
    """The caller's environment without the experiment's knobs, plus the entry's own: a reference
    run is the same wherever it is started."""
    env = {k: v for k, v in os.environ.items() if k not in KNOBS or k in MACHINE_KNOBS}
    return {**env, **knobs}


def taken_with_this_code(entry: sets.Reference) -> Path | None:
    """A complete run of this entry from a commit whose code is HEAD's: everything but results/ and
    README.md, which are made from the runs (a run's results and the README regenerated from them
    are committed after it)."""
    for run_dir in sorted(results_dir().glob(entry.directories), reverse=True):
        try:
            document = json.loads((run_dir / files.RUN_JSON).read_text())
        except (OSError, ValueError):
            continue
        code = document.get("code", {})
        if document.get("status") != "complete" or code.get("git_dirty") or not code.get("git_commit"):
            continue
        same = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "diff",
                "--quiet",
                code["git_commit"],
                "HEAD",
                "--",
                ".",
                ":(exclude)results",
                ":(exclude)README.md",
            ],
            capture_output=True,
        )
        if same.returncode == 0:
            return run_dir
    return None


def wait_passing_signals_on(child: subprocess.Popen) -> int:
    """Wait for one reference run. A Ctrl-C, SIGTERM or SIGHUP is passed on to it and it is waited for
    while it stops its servers (subprocess.run would SIGKILL it in the middle of that): 130."""
    import signal

    from .process import ENDING_SIGNALS

    received = []

    def pass_on(number, frame):
        received.append(number)
        if child.poll() is None:
            child.send_signal(number)  # it stops at the first and ignores the rest

    previous = {number: signal.signal(number, pass_on) for number in ENDING_SIGNALS}
    try:
        code = child.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 130 if received else code


def commit_results(run_dir: Path, message: str, repo: Path = ROOT) -> None:
    """Commit one finished reference run by itself, between sets: nothing is measuring now, and the
    next set starts from a clean tree again (a run directory outside the repository is left as is)."""
    try:
        path = str(run_dir.resolve().relative_to(repo.resolve()))
    except ValueError:
        print(f"== {run_dir} is outside the repository: not committed")
        return
    git = ["git", "-C", str(repo)]
    for command in ([*git, "add", "--", path], [*git, "commit", "-q", "-m", message, "--", path]):
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode != 0:
            raise Failed(f"could not commit {path}: {(out.stderr or out.stdout).strip()}")
    print(f"== committed {path}", flush=True)


def reference(listing: bool) -> int:
    """Take (or with LISTING, list with their time) every reference run not yet taken with this code."""
    if not listing:
        status = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
        if status.returncode != 0 or status.stdout.strip():
            raise Failed("reference runs are taken from a committed clean tree: commit or stash first (git status)")
    total = 0
    for entry in sets.REFERENCE:
        env = reference_environment(entry.knobs)
        s = sets.settings(entry.set, env, repeat="3")
        minutes = max(1, round(sets.run_seconds(s, sets.cells(s)) / 60))
        total += minutes
        command = entry.command()
        done = taken_with_this_code(entry)
        if listing:
            already = f"; taken with this code: {done.name}" if done else ""
            print("\n".join(command_lines(entry.words, f"   # about {minutes} min{already}")))
            continue
        if done:
            print("\n".join(wrapped(f"== {command}: taken with this code already ({done.name})")))
            continue
        print("\n".join(wrapped(f"== {command}")), flush=True)
        code = wait_passing_signals_on(subprocess.Popen([str(ROOT / "benchmark.sh"), *entry.args], env=env))
        if code == 130:
            return 130
        if code != 0:
            raise Failed(f"a reference run failed: {command}")
        taken = taken_with_this_code(entry)
        if taken is None:
            raise Failed(f"no complete run of this code after: {command}")
        commit_results(taken, f"Reference run {entry.name}, raw output untouched: {command}")
    print(f"# about {total // 60} h {total % 60} min in all, one run at a time")
    return 0
