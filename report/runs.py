"""The committed runs the README and the per-set pages read: the newest complete run of each
entry of REFERENCE (core/sets.py), each summarised once for every finding that quotes it."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import files
from core.sets import REFERENCE

from . import parse, summary
from .records import CellResult, Group


@dataclass
class Run:
    run_dir: Path
    rows: list[CellResult]
    groups: list[Group]
    parameters: dict[str, str]
    environment: dict[str, Any]
    document: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path) -> "Run":
        document = parse.read_json(run_dir / files.RUN_JSON) or {}
        rows, groups = summary.summarise_run(run_dir)
        return cls(run_dir, rows, groups, document["parameters"], document["environment"], document)

    @property
    def timeout_s(self) -> float:
        return float(self.rows[0].cell.timeout)

    def here(self) -> str:
        """The machine a CPU-bound figure was measured on: such figures hold for it alone."""
        return f"{self.environment['cpu_count']} cores of {self.environment['cpu_model']}"


Runs = dict[str, Run]


def reference_runs(results: Path) -> Runs:
    """The newest complete run of each entry of REFERENCE."""
    chosen = {}
    for entry in REFERENCE:
        for run_dir in sorted(results.glob(entry.directories)):
            if not (run_dir / files.INCOMPLETE).exists() and (run_dir / files.RUN_JSON).exists():
                chosen[entry.name] = run_dir
    return {name: Run.load(run_dir) for name, run_dir in chosen.items()}
