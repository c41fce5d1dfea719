"""A run directory, summarised: each cell's raw files read once (read.py), judged against the model
(judge.py), its repetitions grouped (group.py), then written as summary.{md,json,csv} and plot.png
(tables.py, plot.py)."""

import csv
import json
from pathlib import Path

from core import cell as cells_tsv
from core import files
from core.cell import Cell
from core.settings import TERMINAL_WIDTH

from . import diagnosis
from .export import group_dict, row_dict
from .group import summarise_groups
from .judge import judge
from .read import RunFacts, load_output, read_cell
from .records import CellResult, Group
from .tables import brief_line, markdown_table


def read_cells(run_dir: Path) -> list[Cell]:
    return cells_tsv.read(run_dir / files.CELLS_TSV)


def summarise_cell(run_dir: Path, cell: Cell, facts: RunFacts | None = None) -> CellResult | None:
    """One run of one cell; None when its load generator has not written its report yet."""
    if not load_output(run_dir, cell).exists():
        return None
    facts = facts or RunFacts(run_dir)
    measured = read_cell(run_dir, cell, facts)
    return CellResult(cell, measured, judge(cell, measured, facts))


def summarise_run(run_dir: Path) -> tuple[list[CellResult], list[Group]]:
    facts = RunFacts(run_dir)
    rows = [row for cell in read_cells(run_dir) if (row := summarise_cell(run_dir, cell, facts))]
    if not rows:
        raise SystemExit(f"report: {run_dir}: no cell has a wrk.txt or httperf.txt yet")
    return rows, summarise_groups(rows, facts.cpus)


def write_summary(run_dir: Path) -> list[Group]:
    from .plot import plot

    rows, groups = summarise_run(run_dir)
    dicts = [row_dict(row) for row in rows]
    with open(run_dir / files.SUMMARY_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in dicts for k in r)))
        writer.writeheader()
        writer.writerows(dicts)
    document = {"cells": dicts, "groups": [group_dict(g) for g in groups]}
    (run_dir / files.SUMMARY_JSON).write_text(json.dumps(document, indent=2) + "\n")
    title = run_dir.name + (" (INCOMPLETE)" if (run_dir / files.INCOMPLETE).exists() else "")
    (run_dir / files.SUMMARY_MD).write_text(f"# {title}\n\n{markdown_table(groups)}")
    plot(run_dir, groups)
    diagnosis.write(run_dir, groups, RunFacts(run_dir).cpus)  # a run of your app's
    return groups


def diagnosis_text(run_dir: Path) -> str:
    """For a run of your app, its diagnosis.md in the terminal's columns ("" for app.py's sets)."""
    written = run_dir / files.DIAGNOSIS_MD
    return diagnosis.terminal(written.read_text().split("\n", 2)[2]) if written.exists() else ""


def brief(run_dir: Path, cell_name: str, width: int = TERMINAL_WIDTH) -> str:
    """The line the runner prints when a cell ends: the detail is in summary.md."""
    (cell,) = [c for c in read_cells(run_dir) if c.name == cell_name]
    facts = RunFacts(run_dir)
    row = summarise_cell(run_dir, cell, facts)
    if row is None:
        raise SystemExit(f"report: {run_dir}: {cell_name} has no wrk.txt or httperf.txt yet")
    return brief_of(row, facts.cpus, width)


def brief_of(row: CellResult, cpus: int, width: int = TERMINAL_WIDTH) -> str:
    (group,) = summarise_groups([row], cpus)
    return brief_line(row, group, width)
