"""The layers: imports go runner -> report -> core and never back, and every source file stays small."""

import ast
import importlib.util
from pathlib import Path

import pytest

from conftest import ROOT
from core import files

LAYERS = ["core", "report", "runner"]  # each may import only those before it
MAX_LINES = 400


def imported_packages(path: Path) -> set[str]:
    """The top-level names a module imports (a relative import stays in its own package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", LAYERS[:-1])  # the runner is the top: nothing is above it
def test_a_layer_imports_only_the_layers_below_it(package):
    above = set(LAYERS[LAYERS.index(package) + 1 :])
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(package)
        for name in imported_packages(path) & above
    }
    assert not wrong


def test_the_layer_check_sees_a_wrong_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom runner.run import Run\n\ndef f():\n    from report import summary\n")
    assert imported_packages(module) == {"os", "runner", "report"}


@pytest.mark.parametrize(
    "path",
    [p for layer in LAYERS for p in sources(layer)] + [ROOT / "app.py", ROOT / "counters.py"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_source_file_is_over_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines"


def test_counters_names_its_files_as_core_does():
    """counters.py is served from a run directory without core/: it spells the names itself."""
    spec = importlib.util.spec_from_file_location("counters_under_test", ROOT / "counters.py")
    counters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(counters)
    assert (counters.WORKER_FILE, counters.WORKER_SNAPSHOT_FILE, counters.SNAPSHOT_REQUEST) == (
        files.WORKER_FILE,
        files.WORKER_SNAPSHOT_FILE,
        files.SNAPSHOT_REQUEST,
    )


def test_results_holds_only_the_runs_the_pages_link_and_no_snapshot_request():
    results = ROOT / "results"
    linked = {
        part.split("/")[0]
        for page in results.glob("*.md")
        for part in page.read_text().split("](")[1:]
        if part.startswith("2")
    }
    runs = {path.name for path in results.iterdir() if path.is_dir()}
    assert runs == linked
    assert not list(results.rglob(files.SNAPSHOT_REQUEST.format(name="*")))
