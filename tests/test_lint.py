"""The tools hold the types and the style: ruff (lint and format) on everything, mypy strict on the
definitions (core/) and the report, mypy's default checks on the runner and the served app."""

import subprocess
import sys

import pytest

from conftest import ROOT

BIN = f"{sys.prefix}/bin"
CHECKS = {
    "ruff check": [f"{BIN}/ruff", "check", "--config", "tests/ruff.toml", "."],
    "ruff format": [f"{BIN}/ruff", "format", "--config", "tests/ruff.toml", "--check", "."],
    "mypy strict": [f"{BIN}/mypy", "--config-file", "tests/mypy.ini", "--strict", "core", "report"],
    "mypy": [f"{BIN}/mypy", "--config-file", "tests/mypy.ini", "runner", "app.py", "counters.py"],
}


@pytest.mark.parametrize("name", CHECKS)
def test_passes(name):
    out = subprocess.run(CHECKS[name], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
