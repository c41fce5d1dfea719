import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_shell_scripts_are_shellcheck_clean():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    scripts = [ROOT / "benchmark.sh", ROOT / "tests" / "run.sh", ROOT / ".ci" / "run"]
    out = subprocess.run([str(shellcheck), *map(str, scripts)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
