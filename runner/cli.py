"""The command line of ./benchmark.sh (which sets up .venv, wrk and httperf, then runs this)."""

import argparse
import datetime
import errno
import os
import shlex
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import NoReturn

from core import files, sets
from core.cell import LISTING_HEADER, Cell
from core.knobs import KNOBS, BadInput, given
from core.servers import SERVERS
from core.settings import TERMINAL_WIDTH, command_lines, wrapped

from . import yours
from .backends import needed
from .checks import check_app_answers, check_gunicorn, check_port_free
from .process import Failed
from .reference import reference, results_dir

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = "benchmark.sh"
FAILED_SUFFIX = "-failed"
INTERRUPTED_SUFFIX = "-interrupted"


def usage() -> str:
    set_lines = "\n".join(f"    {name:<12} {s.purpose}" for name, s in sets.SETS.items())
    knob_lines = "\n".join(
        f"  {name:<18} {knob.help}" + (f" [{knob.default}]" if knob.default else "") for name, knob in KNOBS.items()
    )
    ignored = "\n".join(f"  {name:<20} ignores {', '.join(server.ignores)}" for name, server in SERVERS.items())
    return f"""\
Usage: ./benchmark.sh [--quick] [--set NAME] [--repeat N] [--label TEXT] [--quiet]
       ./benchmark.sh --app MODULE:APP [options]   (PATHS='/a /b': your app, the app set)
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
  --app M:A       your own ASGI app (same as APP=M:A) with PATHS='/a /b': the app set finds which
                  limit binds each path (APP_DIR: where it is imported from)
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


def die(message: str, status: int = 2) -> NoReturn:
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    raise SystemExit(status)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, as every other bad input
        die(f"{message} (see --help)")


def parser() -> Parser:
    p = Parser(prog=PROGRAM, add_help=False, allow_abbrev=False)
    p.add_argument("--quick", dest="scale", action="store_const", const="10")
    p.add_argument("--set")
    p.add_argument("--app")
    p.add_argument("--repeat")
    p.add_argument("--label", default="")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--list", action="store_true")
    p.add_argument("--reference", action="store_true")
    p.add_argument("--compare", nargs="+", metavar="RUN")
    p.add_argument("--out")
    p.add_argument("--setup", "--setup-dev", dest="setup", action="store_true")  # benchmark.sh did it already
    p.add_argument("--needs", action="store_true")  # benchmark.sh asks what to install before it runs us for real
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    options, unknown = parser().parse_known_args(argv)
    if unknown:
        die(f"unknown argument '{unknown[0]}' (see --help)")
    if not all(c.isalnum() or c in "._-" for c in options.label) or not options.label.isascii():
        die(f"--label may hold only letters, digits, '.', '_' and '-', got '{options.label}'")
    if options.compare is not None and len(options.compare) != 2:
        die(f"--compare needs 2 runs, got {len(options.compare)}")
    if options.app is not None:  # the same as APP=, which the settings, the check and the servers read
        os.environ["APP"] = options.app
    options.set = options.set or ("app" if os.environ.get("APP") else "seed")
    return options


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


def set_aside(run_dir: Path, suffix: str) -> Path:
    """Rename a run that did not complete so that no glob for good runs (`results/*-seed-quick`) picks
    it up; where the rename fails (a full disk), its run.json still says so."""
    kept = run_dir.with_name(run_dir.name + suffix)
    try:
        run_dir.rename(kept)
    except OSError:
        return run_dir
    return kept


def main(argv: list[str] | None = None) -> int:
    try:
        return command(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # ./benchmark.sh --list | head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def command(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print("none" if "--needs" in argv else usage(), end="" if "--needs" not in argv else "\n")
        return 0
    options = parse(argv)
    if options.setup:
        if options.needs:
            print("none")
        return 0
    if options.compare:
        runs = [run_directory(name) for name in options.compare]
        if options.needs:
            print("")  # .venv, nothing more
            return 0
        from report import compare

        return compare.main(runs[0], runs[1], Path(options.out) if options.out else None)
    if options.reference:
        if options.needs:
            print("none")
            return 0
        try:
            return reference(listing=options.list)
        except Failed as error:
            die(str(error))
    try:
        s = sets.settings(options.set, os.environ, options.scale, options.repeat)
        cells = sets.cells(s)
    except BadInput as error:
        die(str(error))
    if options.list:  # a plan needs neither .venv nor wrk nor PostgreSQL
        if options.needs:
            print("none")
            return 0
        print(sets.plan_line(s, cells))
        print("\n".join(wrapped(LISTING_HEADER, "#   ")))
        for cell in cells:
            print(cell.listing())
        for backend in needed(cells).values():
            for tool_name in backend.tools:
                needs = (
                    f"# needs {tool_name}: ./benchmark.sh installs it if missing (apt-get as root, brew), else says how"
                )
                print("\n".join(wrapped(needs, "#   ")))
        scale_and_repeat = {k: os.environ[k] for k in ("SCALE", "REPEAT") if k in os.environ}
        knobs = [f"{k}={shlex.quote(v)}" for k, v in {**sets.changed_knobs(s.set, s.text), **scale_and_repeat}.items()]
        command = [*knobs, *map(shlex.quote, ["./benchmark.sh", *(a for a in argv if a != "--list")])]
        one_line = "# run it: " + " ".join(command)
        # Too long for one line, it goes on lines of its own that paste as one command.
        print(
            one_line
            if len(one_line) <= TERMINAL_WIDTH
            else "\n".join(["# run it:", *command_lines(command, indent="  ")])
        )
        return 0
    open_loop = any(c.open_loop for c in cells)
    tools = {"wrk": tool("WRK", "wrk"), "httperf": tool("HTTPERF", "httperf") if open_loop else ""}
    try:
        missing = [name for backend in needed(cells).values() for name in backend.missing(options.needs)]
    except Failed as error:
        die(str(error))
    if options.needs:
        print(
            " ".join(
                [
                    name
                    for knob, name in (("WRK", "wrk"), ("HTTPERF", "httperf"))
                    if tools[name] and not os.environ.get(knob)
                ]
                + missing
            )
        )
        return 0
    try:
        check_gunicorn(cells, s.server_args)
        if s.requests and not (s.text["APP_SETUP"] or s.base.app_db):  # else once they have run (run.py)
            check_app_answers(s, {**s.app_env, **yours.check_requests(s, yours.headers(s, {}))})
    except BadInput as error:
        die(str(error))
    return run(s, cells, options, tools, argv)


# ---------------------------------------------------------------- a run


def run(
    s: sets.Settings, cells: list[Cell], options: argparse.Namespace, tools: dict[str, str], argv: list[str]
) -> int:
    from core import cell as cells_tsv
    from report import summary, tables
    from report.parse import ParseError

    from . import record
    from .database import remove_stale_clusters
    from .process import Interrupted, Lock, LockBusy, Output, raise_on_signals
    from .run import Run

    raise_on_signals()
    name = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{s.set}"
    name += {1: "", 10: "-quick"}.get(s.scale, f"-scale{s.scale}") + (f"-{options.label}" if options.label else "")
    lock = Lock(
        Path(os.environ.get("LOCK") or Path(os.environ.get("TMPDIR", "/tmp")) / "fastapi-def-vs-async-benchmark.lock"),
        name,
    )
    try:
        lock.take()
    except LockBusy as error:
        die(str(error))
    run_dir, out = None, Output(options.quiet)
    backends = needed(cells)
    remove_stale_clusters()  # a run killed with SIGKILL left its cluster's directory; the lock stopped its postgres
    try:
        try:
            check_port_free(s.host, s.port, "PORT")
            for backend in backends.values():
                check_port_free(backend.host(s), s.ports[backend.port_knob], backend.port_knob)
        except BadInput as error:
            die(str(error))
        results = results_dir()
        run_dir, suffix = results / name, 1
        while run_dir.exists():
            suffix += 1
            run_dir = results / f"{name}-{suffix}"
        run_dir.mkdir(parents=True)
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        (run_dir / files.INCOMPLETE).write_text(f"started {started}; removed when every cell has run\n")
        app_files = record.copy_app(run_dir, yours=bool(s.requests))
        cells_tsv.write_header(run_dir / files.CELLS_TSV)
        parameters = {
            "set": s.set,
            "label": options.label,
            **{
                k.lower(): v
                for k, v in s.text.items()
                if k not in ("VENV", "PYTHON", "LOCK", "RESULTS_DIR", "WRK", "HTTPERF")
            },
            "pin": "1" if s.base.pin else "0",
            "cpus": str(os.cpu_count() or 1),
            "wrk": tools["wrk"],
            "httperf": tools["httperf"],
            # What the cells ran with, after SCALE (the texts above are as given).
            "effective": {"sleep_s": s.base.sleep, "duration_s": s.base.duration, "timeout_s": s.base.timeout},
        }
        with ExitStack() as stack:  # what a backend starts once (PostgreSQL) lives as long as the cells run
            running = {name: stack.enter_context(backend.start(s, run_dir, lock)) for name, backend in backends.items()}
            database = running.get("database")
            document = record.describe(
                run_dir,
                [os.environ.get("BENCHMARK_SH", PROGRAM), *argv],
                parameters,
                given(),
                tools["wrk"],
                tools["httperf"],
                app_files,
                database.facts if database else None,
            )
            out.note(sets.plan_line(s, cells))
            out.note(f"Run directory: {run_dir}")
            Run(s, cells, run_dir, lock, out, tools, running).run()
        # Only a complete run drops its copy of the app: a failed or interrupted one keeps what it served
        # (and a full disk stays full for the message below to say so).
        record.drop_app_copy_if_committed(run_dir, document["code"]["git_commit"])
        (run_dir / files.INCOMPLETE).unlink()
        record.finish(run_dir, "complete")
        groups = summary.write_summary(run_dir)
        if not options.quiet:
            print()
            print(tables.compact_table(groups), end="")
            diagnosed = summary.diagnosis_text(run_dir)
            if diagnosed:
                print(f"\n{diagnosed}\nDiagnosis: {run_dir / files.DIAGNOSIS_MD}")
        print(f"Full table: {run_dir / files.SUMMARY_MD}")
        print(f"Plot: {run_dir / files.PLOT}")
        return 0
    except Interrupted:
        if run_dir and (run_dir / files.RUN_JSON).exists():
            record.finish(run_dir, "interrupted")
        kept = set_aside(run_dir, INTERRUPTED_SUFFIX) if run_dir else None
        try:  # the terminal may be gone (SIGHUP): a message it cannot show must not stop the clean-up
            print(
                f"\n{PROGRAM}: interrupted; its servers are stopped. Partial results kept in {kept or 'nothing yet'}",
                file=sys.stderr,
            )
        except OSError:
            pass
        return 130
    except (Failed, ParseError, OSError) as error:
        if isinstance(error, OSError) and error.errno != errno.ENOSPC:
            raise
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        where = "nothing was written"
        if run_dir:
            try:
                if (run_dir / files.RUN_JSON).exists():
                    record.finish(run_dir, "failed")
            except OSError:  # a full disk: run.json stays "running"; the folder's name says it failed
                pass
            where = f"what it wrote is in {set_aside(run_dir, FAILED_SUFFIX)}"
        # ENOSPC here, or met by a server (its log says so) or by the load generator (a truncated report,
        # with less than two pages of the disk left).
        full = (
            isinstance(error, OSError)
            or os.strerror(errno.ENOSPC) in str(error)
            or (run_dir is not None and shutil.disk_usage(run_dir.parent).free < 8192)
        )
        print(
            f"{PROGRAM}: the run failed" + ("; no space is left on its disk" if full else "") + f"; {where}",
            file=sys.stderr,
        )
        return 1
    finally:
        lock.release()
