"""The pinned requirements resolve, hashes and all, for every Python and system the README promises.

pip resolves each file for another interpreter and platform without installing anything
(--dry-run --python-version --platform --only-binary); it needs PyPI (or pip's cache) for that,
and the test is skipped, saying so, when neither answers.
"""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

LINUX = [f"manylinux_2_{glibc}_{{arch}}" for glibc in (17, 24, 26, 27, 28, 31, 34)] + ["manylinux2014_{arch}"]
SYSTEMS = {
    "linux-x86_64": ([p.format(arch="x86_64") for p in LINUX], ["requirements.txt", "requirements-dev.txt"]),
    "linux-aarch64": ([p.format(arch="aarch64") for p in LINUX], ["requirements.txt"]),
    "macos-arm64": (["macosx_14_0_arm64"], ["requirements.txt", "requirements-dev.txt"]),
    "macos-x86_64": (["macosx_13_0_x86_64"], ["requirements.txt", "requirements-dev.txt"]),
}
OFFLINE = (
    "Could not fetch URL",
    "Failed to establish a new connection",
    "Network is unreachable",
    "Temporary failure in name resolution",
)


def pinned(files: list[str]) -> set[str]:
    names = set()
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            if "==" in line and not line.startswith((" ", "#", "-")):
                names.add(line.split("==")[0].lower())
    return names


@pytest.mark.parametrize("python", ["3.11", "3.12", "3.13", "3.14"])
@pytest.mark.parametrize("system", SYSTEMS)
def test_pinned_requirements_install_on(tmp_path, python, system):
    platforms, files = SYSTEMS[system]
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--dry-run",
        "--ignore-installed",
        "--target",
        str(tmp_path / "target"),
        "--python-version",
        python,
        "--only-binary=:all:",
        "--no-deps",
        "--require-hashes",
        "--report",
        str(report),
        "--disable-pip-version-check",
    ]
    for platform in platforms:
        command += ["--platform", platform]
    for name in files:
        command += ["-r", str(ROOT / name)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if out.returncode and any(sign in out.stderr for sign in OFFLINE):
        pytest.skip(f"PyPI unreachable: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr
    installed = {
        item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]
    }
    assert installed == pinned(files)
