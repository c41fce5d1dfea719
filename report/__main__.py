"""python -m report: turn run directories into summaries, and the README's generated sections."""

import argparse
import sys
from pathlib import Path

from . import parse, summary, tables


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m report", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("summary", help="write RUN_DIR's summary.{csv,json,md} and plot.png, print its table")
    one.add_argument("run_dir", type=Path)
    one.add_argument("--compact", action="store_true", help="the terminal's table, in 100 columns")
    readme = commands.add_parser("readme", help="regenerate (or check) README.md's generated sections from results/")
    readme.add_argument("--check", action="store_true", help="fail if README.md differs from what the runs give")
    readme.add_argument("--allow-unreproduced", action="store_true", help="do not fail on a finding not reproduced")
    brief = commands.add_parser("brief", help="one line of a cell's figures, as the runner prints it")
    brief.add_argument("run_dir", type=Path)
    brief.add_argument("cell")
    compare = commands.add_parser(
        "compare",
        help="pair two runs' cells by configuration: did a flag change anything? "
        "(exit 1 when a pair differs beyond the spread)",
    )
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument("--out", type=Path, help="also write the comparison as markdown to this file")
    args = parser.parse_args(argv)
    if args.command == "summary":
        if not args.run_dir.is_dir():
            parser.error(f"{args.run_dir} is not a directory")
        groups = summary.write_summary(args.run_dir)
        print(tables.compact_table(groups) if args.compact else tables.markdown_table(groups), end="")
        diagnosed = summary.diagnosis_text(args.run_dir)
        print(f"\n{diagnosed}" if diagnosed else "", end="\n" if diagnosed else "")
    elif args.command == "readme":
        from . import readme as generator

        return generator.update(check=args.check, allow_unreproduced=args.allow_unreproduced)
    elif args.command == "compare":
        from . import compare as comparison

        for run in (args.run_a, args.run_b):
            if not run.is_dir():
                parser.error(f"{run} is not a run directory")
        return comparison.main(args.run_a, args.run_b, args.out)
    else:
        print(summary.brief(args.run_dir, args.cell))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except parse.ParseError as error:
        sys.exit(f"report: {error}")
