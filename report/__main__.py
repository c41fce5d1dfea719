"""python -m report RUN_DIR [--compact]     write summary.{csv,json,md} and plot.png, print the table
python -m report readme [--check] [--allow-unreproduced]
                                        regenerate (or check) README.md's generated sections from results/
python -m report brief RUN_DIR CELL      one line of a cell's figures (benchmark.sh, after each cell)
python -m report describe RUN_DIR k=v ... -- ARGV...   write run.json (knobs, command, machine, code)
python -m report finish RUN_DIR STATUS   note the end time and status in run.json
python -m report timed USAGE_JSON COMMAND...   run COMMAND, record its CPU and memory (benchmark.sh)
python -m report snapshot CELL_DIR NAME WORKERS STATS ROLE=PID...   sample the servers (benchmark.sh)

Everything but the last four reads only the raw files, so it can be re-run at any time.
"""

import sys
from pathlib import Path

from . import parse, record, summary


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "brief" and len(argv) == 3:
        print(summary.brief(Path(argv[1]), argv[2]))
    elif command == "describe" and len(argv) >= 2:
        record.describe(Path(argv[1]), argv[2:])
    elif command == "finish" and len(argv) == 3:
        record.finish(Path(argv[1]), argv[2])
    elif command == "timed" and len(argv) >= 3:
        return record.timed(Path(argv[1]), argv[2:])
    elif command == "snapshot" and len(argv) >= 5:
        roles = {role: int(pid) for role, pid in (a.split("=", 1) for a in argv[5:]) if pid}
        record.snapshot(Path(argv[1]), argv[2], int(argv[3]), argv[4] == "1", roles)
    elif command == "readme" and set(argv[1:]) <= {"--check", "--allow-unreproduced"}:
        from . import readme

        return readme.update(check="--check" in argv, allow_unreproduced="--allow-unreproduced" in argv)
    elif len(argv) in (1, 2) and Path(argv[0]).is_dir() and argv[1:] in ([], ["--compact"]):
        groups = summary.write_summary(Path(argv[0]))
        print(summary.compact_table(groups) if argv[1:] else summary.markdown_table(groups), end="")
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except parse.ParseError as error:
        sys.exit(f"report: {error}")
