"""The command line of ./benchmark.sh (which sets up .venv, wrk and httperf, then runs this)."""

import datetime
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from core import files, sets
from core.cell import LISTING_HEADER
from core.endpoints import ENDPOINTS
from core.knobs import KNOBS, MACHINE_KNOBS, BadInput, given
from core.servers import SERVERS

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = "benchmark.sh"


def usage() -> str:
    set_lines = "\n".join(f"    {name:<12} {s.purpose}" for name, s in sets.SETS.items())
    knob_lines = "\n".join(f"  {name:<18} {knob.help}" + (f" [{knob.default}]" if knob.default else "")
                           for name, knob in KNOBS.items())
    ignored = "\n".join(f"  {name:<20} ignores {', '.join(server.ignores)}" for name, server in SERVERS.items())
    return f"""\
Usage: ./benchmark.sh [--quick] [--set NAME] [--repeat N] [--label TEXT] [--quiet]
       ./benchmark.sh --list [--set NAME] | --reference [--list] | --setup | --setup-dev | --help
       ./benchmark.sh --compare RUN_A RUN_B [--out FILE]

Runs every cell of an experiment set: a fresh server serving app.py, then
wrk -t WRK_THREADS -c CONNECTIONS -d DURATION --timeout TIMEOUT against one endpoint
(httperf at a fixed rate for the openloop set). Raw output goes to a new directory
results/<UTC time>-<set>[-quick][-label]/. Servers: core/servers.py; sets: core/sets.py.

Options:
  --quick         divide sleep, duration and timeout by 10 (same as SCALE=10): the same
                  request counts as the full run, in a tenth of the time (openloop: duration only)
  --set NAME      experiment set (default: seed)
{set_lines}
  --repeat N      run the whole set N times (same as REPEAT=N; the servers set: 3 by default)
  --label TEXT    appended to the run directory's name
  --quiet         print only each cell's result line and the final paths
  --list          print the cells the set would run and how long it should take, then exit
  --reference     run every set the README uses that has no run of the current code yet, one
                  after the other, 3 runs each, committing each run as it ends (git; from a clean
                  tree, so an interruption costs one set) (with --list: the commands and their time)
  --compare A B   pair the cells of two runs (directories, or names under results/) by
                  configuration and print A vs B; exit 1 when a pair differs beyond what the
                  repetitions (or, with one run each, the model's band) allow, else 0
  --out FILE      with --compare: also write the comparison as markdown
  --setup         only create .venv and install wrk and httperf, then exit
  --setup-dev     same, with the test tools (used by the test command)

Environment [defaults: the seed set's; other sets set their own, see --list]:
{knob_lines}

What each server ignores (the cell's label shows every knob that differs from the set's default):
{ignored}
httperf multiplexes with select(): about 1,000 connections open at once at most, so
RATE x TIMEOUT must stay below 1000 per cell.
"""


def die(message: str, status: int = 2):
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    raise SystemExit(status)


def parse(argv: list[str]) -> dict:
    options = dict(set="seed", scale=None, repeat=None, label="", quiet=False, mode="run", needs=False, out=None)
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            options["mode"] = "help"
            return options
        elif arg == "--quick":
            options["scale"] = "10"
        elif arg in ("--set", "--repeat", "--label"):
            if not args:
                die(f"{arg} needs {dict(zip(('--set', '--repeat', '--label'), ('a name', 'a number', 'a text')))[arg]}")
            options[arg[2:]] = args.pop(0)
        elif arg == "--quiet":
            options["quiet"] = True
        elif arg in ("--setup", "--setup-dev"):
            options["mode"] = "setup"  # benchmark.sh did it already
        elif arg == "--list":
            options["mode"] = "reference-list" if options["mode"] == "reference" else "list"
        elif arg == "--reference":
            options["mode"] = "reference-list" if options["mode"] == "list" else "reference"
        elif arg == "--compare":
            if len(args) < 2:
                die("--compare needs two run directories")
            options["mode"], options["compare"] = "compare", (args.pop(0), args.pop(0))
        elif arg == "--out":
            if not args:
                die("--out needs a file")
            options["out"] = args.pop(0)
        elif arg == "--needs":  # benchmark.sh asks what to install before it runs us for real
            options["needs"] = True
        else:
            die(f"unknown argument '{arg}' (see --help)")
    if not all(c.isalnum() or c in "._-" for c in options["label"]) or not options["label"].isascii():
        die(f"--label may hold only letters, digits, '.', '_' and '-', got '{options['label']}'")
    return options


def results_dir() -> Path:
    return Path(os.environ.get("RESULTS_DIR") or ROOT / "results")


def run_directory(name: str) -> Path:
    """A run directory as given, or by its name under RESULTS_DIR."""
    for candidate in (Path(name), results_dir() / name):
        if (candidate / files.RUN_JSON).is_file():
            return candidate
    die(f"no run directory '{name}' (a path, or a name under results/, with a run.json)")


def tool(knob: str, name: str) -> str:
    """The load generator to use: the one a knob names, which must exist, or the one benchmark.sh installed."""
    chosen = os.environ.get(knob)
    if chosen:
        if not shutil.which(chosen):
            die(f"{name} not found: {knob}={chosen}")
        return chosen
    return name


def main(argv: list[str] | None = None) -> int:
    try:
        return command(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # ./benchmark.sh --list | head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def command(argv: list[str]) -> int:
    options = parse(argv)
    mode = options["mode"]
    if options["needs"] and mode in ("help", "setup", "reference-list"):
        print("none")
        return 0
    if mode == "help":
        print(usage(), end="")
        return 0
    if mode == "setup":
        return 0
    if mode == "compare":
        runs = [run_directory(name) for name in options["compare"]]
        if options["needs"]:
            print("")  # .venv, nothing more
            return 0
        from report import compare

        return compare.main(*runs, Path(options["out"]) if options["out"] else None)
    if mode in ("reference", "reference-list"):
        if options["needs"]:
            print("none")
            return 0
        return reference(listing=mode == "reference-list")
    try:
        s = sets.settings(options["set"], os.environ, options["scale"], options["repeat"])
        cells = sets.cells(s)
    except BadInput as error:
        die(str(error))
    open_loop = any(c.open_loop for c in cells)
    tools = {"wrk": tool("WRK", "wrk"), "httperf": tool("HTTPERF", "httperf") if open_loop else ""}
    if mode != "list" and any(ENDPOINTS[c.endpoint].queries_database for c in cells):
        tools["postgres"] = postgres_bindir(installed=not options["needs"])
    if mode == "list":  # a plan needs neither .venv nor wrk nor PostgreSQL
        if options["needs"]:
            print("none")
            return 0
        print(sets.plan_line(s, cells))
        print(LISTING_HEADER)
        for cell in cells:
            print(cell.listing())
        return 0
    if options["needs"]:
        print(" ".join([name for knob, name in (("WRK", "wrk"), ("HTTPERF", "httperf"))
                        if tools[name] and not os.environ.get(knob)]
                       + (["postgresql"] if tools.get("postgres") == "" else [])))
        return 0
    return run(s, cells, options, tools, argv)


def postgres_bindir(installed: bool) -> str:
    """initdb's and postgres's directory; "" while benchmark.sh is still to install PostgreSQL."""
    from .database import find_bindir

    given = os.environ.get("PG_BINDIR")
    found = find_bindir(given)
    if found:
        return str(found)
    if given:
        die(f"initdb and postgres not found: PG_BINDIR={given}")
    if installed:
        die("PostgreSQL's initdb and postgres are not installed; install them with: sudo apt-get install -y "
            "postgresql (Debian/Ubuntu) or brew install postgresql@17 (macOS)")
    return ""


# ---------------------------------------------------------------- a run


def check_port_free(host: str, port: int, knob: str) -> None:
    """Bind as the servers will (SO_REUSEADDR)."""
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            die(f"port {port} on {host} is already in use; stop what holds it or set {knob}")
        die(f"cannot listen on {host}:{port}; check HOST and {knob}")


def run(s, cells, options: dict, tools: dict, argv: list[str]) -> int:
    from report import summary, tables

    from core import cell as cells_tsv
    from . import record
    from .database import cluster, remove_stale_clusters
    from .process import Failed, Interrupted, Lock, LockBusy, raise_on_signals
    from .run import Output, Run, copy_app, drop_app_copy_if_committed
    from core.sets import plan_line

    raise_on_signals()
    name = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{s.set}"
    name += {1: "", 10: "-quick"}.get(s.scale, f"-scale{s.scale}") + (f"-{options['label']}" if options["label"] else "")
    lock = Lock(Path(os.environ.get("LOCK") or Path(os.environ.get("TMPDIR", "/tmp")) /
                     "fastapi-def-vs-async-benchmark.lock"), name)
    try:
        lock.take()
    except LockBusy as error:
        die(str(error))
    run_dir, out = None, Output(options["quiet"])
    remove_stale_clusters()  # a run killed with SIGKILL left its cluster's directory; the lock stopped its postgres
    try:
        check_port_free(s.host, s.port, "PORT")
        if any(ENDPOINTS[c.endpoint].calls_upstream for c in cells):
            check_port_free(s.host, s.upstream_port, "UPSTREAM_PORT")
        if "postgres" in tools:
            check_port_free("127.0.0.1", s.db_port, "DB_PORT")
        results = results_dir()
        run_dir, suffix = results / name, 1
        while run_dir.exists():
            suffix += 1
            run_dir = results / f"{name}-{suffix}"
        run_dir.mkdir(parents=True)
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        (run_dir / files.INCOMPLETE).write_text(f"started {started}; removed when every cell has run\n")
        app_files = copy_app(run_dir)
        cells_tsv.write_header(run_dir / files.CELLS_TSV)
        parameters = {"set": s.set, "label": options["label"],
                      **{k.lower(): v for k, v in s.text.items() if k not in ("VENV", "PYTHON", "LOCK", "RESULTS_DIR", "WRK", "HTTPERF")},
                      "pin": "1" if s.base.pin else "0", "cpus": str(os.cpu_count() or 1), "wrk": tools["wrk"],
                      "httperf": tools["httperf"]}
        with ExitStack() as stack:  # the cluster, when the cells need one, lives as long as the cells run
            database = (stack.enter_context(cluster(Path(tools["postgres"]), s.db_port, run_dir, lock))
                        if "postgres" in tools else None)
            document = record.describe(run_dir, [os.environ.get("BENCHMARK_SH", PROGRAM), *argv], parameters,
                                       given(), tools["wrk"], tools["httperf"], app_files,
                                       database.facts if database else None)
            out.note(plan_line(s, cells))
            out.note(f"Run directory: {run_dir}")
            try:
                Run(s, cells, run_dir, lock, out, tools, database).run()
            finally:
                drop_app_copy_if_committed(run_dir, document["code"]["git_commit"])
        (run_dir / files.INCOMPLETE).unlink()
        record.finish(run_dir, "complete")
        groups = summary.write_summary(run_dir)
        if not options["quiet"]:
            print()
            print(tables.compact_table(groups), end="")
        print(f"Full table: {run_dir / files.SUMMARY_MD}")
        print(f"Plot: {run_dir / files.PLOT}")
        return 0
    except Interrupted:
        try:  # the terminal may be gone (SIGHUP): a message it cannot show must not stop the clean-up
            print(f"\n{PROGRAM}: interrupted; stopping the servers. Partial results kept in "
                  f"{run_dir or 'nothing yet'}", file=sys.stderr)
        except OSError:
            pass
        if run_dir and (run_dir / files.RUN_JSON).exists():
            record.finish(run_dir, "interrupted")
        return 130
    except Failed as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        if run_dir and (run_dir / files.RUN_JSON).exists():
            record.finish(run_dir, "failed")
        return 1
    finally:
        lock.release()


# ---------------------------------------------------------------- every reference run


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
        same = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", code["git_commit"], "HEAD", "--", ".",
                               ":(exclude)results", ":(exclude)README.md"], capture_output=True)
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
            die(f"could not commit {path}: {(out.stderr or out.stdout).strip()}")
    print(f"== committed {path}", flush=True)


def reference(listing: bool) -> int:
    if not listing:
        status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True)
        if status.returncode != 0 or status.stdout.strip():
            die("reference runs are taken from a committed clean tree: commit or stash first (git status)")
    total = 0
    for entry in sets.REFERENCE:
        env = reference_environment(entry.knobs)
        s = sets.settings(entry.set, env, repeat="3")
        minutes = max(1, round(sum(sets.cell_seconds(c) for c in sets.cells(s)) * s.repeat / 60))
        total += minutes
        command = entry.command()
        done = taken_with_this_code(entry)
        if listing:
            print(f"{command}   # about {minutes} min" + (f"; taken with this code: {done.name}" if done else ""))
            continue
        if done:
            print(f"== {command}: taken with this code already ({done.name})")
            continue
        print(f"== {command}", flush=True)
        code = wait_passing_signals_on(subprocess.Popen([str(ROOT / "benchmark.sh"), *entry.args], env=env))
        if code == 130:
            return 130
        if code != 0:
            die(f"a reference run failed: {command}")
        taken = taken_with_this_code(entry)
        if taken is None:
            die(f"no complete run of this code after: {command}")
        commit_results(taken, f"Reference run {entry.name}, raw output untouched: {command}")
    print(f"# about {total // 60} h {total % 60} min in all, one run at a time")
    return 0
