"""The shell scripts: shellcheck-clean, free of bash-4-only constructs (macOS's /bin/bash is 3.2),
and careful with the interpreter they pick and the directories they may clear."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPTS = [ROOT / "benchmark.sh", ROOT / "tests" / "run.sh", ROOT / ".ci" / "run"]


def test_every_shell_script_is_listed_here():
    found = {
        p
        for p in ROOT.rglob("*")
        if p.is_file()
        and ".venv" not in p.parts
        and ".git" not in p.parts
        and "results" not in p.parts
        and (p.suffix == ".sh" or p.read_bytes()[:20].startswith(b"#!/usr/bin/env bash"))
    }
    assert found == set(SCRIPTS)


def test_shell_scripts_are_shellcheck_clean():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    out = subprocess.run([str(shellcheck), *map(str, SCRIPTS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


# ---------------------------------------------------------------- bash 3.2

# What bash 3.2 lacks (each with the version that brought it), one pattern per construct.
BASH4_ONLY = {
    "shopt inherit_errexit (4.4)": r"\binherit_errexit\b",
    "shopt globstar/lastpipe (4.0/4.2)": r"\b(globstar|lastpipe)\b",
    "associative arrays (4.0)": r"\b(declare|local|typeset)\s+-[a-zA-Z]*A",
    "namerefs (4.3)": r"\b(declare|local|typeset)\s+-[a-zA-Z]*n\b",
    "declare -g (4.2)": r"\b(declare|typeset)\s+-[a-zA-Z]*g",
    "mapfile/readarray (4.0)": r"\b(mapfile|readarray)\b",
    "case conversion ${x,,} ${x^^} (4.0)": r"\$\{[#!]?[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?(\^\^?|,,?)[^}]*\}",
    "wait -n (4.3)": r"\bwait\s+-n\b",
    "coproc (4.0)": r"\bcoproc\b",
    "|& (4.0)": r"\|&",
    "&>> (4.0)": r"&>>",
    "${x@Q} transformations (4.4)": r"\$\{[^}]*@[QEPAaKkUuL]\}",
    "EPOCHSECONDS/EPOCHREALTIME (5.0), BASHPID (4.0)": r"\b(EPOCHSECONDS|EPOCHREALTIME|BASHPID)\b",
    "negative array index (4.3)": r"\$\{[A-Za-z_][A-Za-z0-9_]*\[-[0-9]+\]\}",
    "[[ -v name ]] (4.2)": r"\[\[\s+-v\s",
    "case ;& and ;;& (4.0)": r";;&|;&",
    "fractional read -t (4.0)": r"\bread\b[^;|]*-t\s*[0-9]*\.[0-9]",
    "automatic file descriptors {fd}> (4.1)": r"\{[A-Za-z_][A-Za-z0-9_]*\}[<>]",
}


def bash4_constructs(text: str) -> list[str]:
    """Every bash-4-only construct in a script, as 'line N: what'."""
    found = []
    lines = text.splitlines()
    code = [re.sub(r"(^|\s)#.*$", "", line) for line in lines]  # comments may mention anything
    for number, line in enumerate(code, 1):
        for what, pattern in BASH4_ONLY.items():
            if re.search(pattern, line):
                found.append(f"line {number}: {what}")
    # "${name[@]}" of an array that may be empty is an error under set -u before bash 4.4:
    # every array a script starts empty must be expanded as ${name[@]+"${name[@]}"}.
    empty = set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)=\(\)", "\n".join(code)))
    for number, line in enumerate(code, 1):
        for name in empty:
            bare = line.replace(f'${{{name}[@]+"${{{name}[@]}}"}}', "")
            if re.search(rf'\$\{{{name}\[[@*]\]\}}', bare):
                found.append(f"line {number}: \"${{{name}[@]}}\" of an array that starts empty (set -u, < 4.4)")
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_bash4_only_construct(script):
    assert bash4_constructs(script.read_text()) == []


SAMPLES = [
    "shopt -s inherit_errexit",
    "declare -A seen",
    "local -n ref=$1",
    "mapfile -t lines < f",
    "readarray x",
    'echo "${name,,}"',
    'echo "${name^^}"',
    "wait -n",
    "coproc worker { :; }",
    "make |& tee log",
    "echo hi &>> log",
    'echo "${x@Q}"',
    "echo $EPOCHSECONDS",
    'echo "${arr[-1]}"',
    "[[ -v HOME ]]",
    "declare -g x=1",
    "read -r -t 0.5 line",
    "exec {fd}>file",
    "shopt -s globstar",
    'items=()\nprintf "%s" "${items[@]}"',
]


@pytest.mark.parametrize("sample", SAMPLES)
def test_the_static_check_fails_on_each_construct(sample):
    assert bash4_constructs(f"#!/usr/bin/env bash\nset -euo pipefail\n{sample}\n"), sample


def test_the_static_check_passes_what_bash_32_has():
    fine = (
        'items=()\nprintf "%s" ${items[@]+"${items[@]}"}\n# shopt -s inherit_errexit is only mentioned\nx+=1\n'
        '[[ $a =~ ^([0-9]+)$ ]] && echo "${BASH_REMATCH[1]}"\nprintf "%q " "$@"\necho "${x/a/b}" "${#x}"\n'
    )
    assert bash4_constructs(fine) == []


# ---------------------------------------------------------------- the Python it picks


def fake_python(directory: Path, name: str, version: str | None) -> None:
    """A stand-in interpreter: it reports VERSION, or fails as a pyenv shim for a missing version does."""
    path = directory / name
    if version is None:
        path.write_text(f"#!/bin/sh\necho 'pyenv: {name}: command not found' >&2\nexit 127\n")
    else:
        path.write_text(
            f"#!/bin/sh\nif [ \"$1\" = -c ]; then echo {version}; exit 0; fi\necho \"fake {name} $*\" >&2\nexit 1\n"
        )
    path.chmod(0o755)


def setup_with(tmp_path: Path, pythons: dict[str, str | None]) -> subprocess.CompletedProcess:
    """benchmark.sh --setup with only these interpreters (and the usual tools) on PATH."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in [
        "bash",
        "env",
        "dirname",
        "grep",
        "cksum",
        "ls",
        "ln",
        "readlink",
        "rm",
        "ps",
        "getconf",
        "id",
        "cat",
        "awk",
        "sed",
        "mkdir",
        "sleep",
        "date",
        "tail",
        "find",
        "wc",
        "kill",
    ]:
        if shutil.which(tool):
            (tools / tool).symlink_to(shutil.which(tool))
    for name, version in pythons.items():
        fake_python(tools, name, version)
    env = {"PATH": str(tools), "HOME": str(tmp_path), "VENV": str(tmp_path / "venv"), "LOCK": str(tmp_path / "lock")}
    return subprocess.run(
        [str(tools / "bash"), str(ROOT / "benchmark.sh"), "--setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_picks_the_newest_supported_python_that_runs(tmp_path):
    out = setup_with(tmp_path, {"python3.13": None, "python3.12": "3.12.1", "python3.11": "3.11.7", "python3": "3.9.6"})
    assert (
        "Using python3.12 (3.12.1), the newest of python3.14, python3.13, python3.12, python3.11, python3 on PATH; "
        "python3.13 does not run" in out.stderr
    )
    assert "fake python3.12 -m venv --clear" in out.stderr  # and it was the one used
    assert out.returncode == 2


@pytest.mark.parametrize(
    "pythons, found",
    [
        ({"python3": "3.9.6"}, "; python3 is 3.9.6, too old"),
        ({"python3": "3.10.13"}, "; python3 is 3.10.13, too old"),
        ({}, "; none on PATH"),
    ],
)
def test_refuses_an_old_python_with_the_install_command(tmp_path, pythons, found):
    out = setup_with(tmp_path, pythons)
    assert out.returncode == 2
    assert out.stderr == (
        "benchmark.sh: Python 3.11 or newer is needed (FastAPI and the pinned requirements; macOS's "
        f"/usr/bin/python3 is 3.9){found}; install one: brew install python@3.12 (macOS) or "
        "apt-get install python3 (Debian/Ubuntu)\n"
    )


def test_never_clears_a_venv_it_did_not_make(tmp_path):
    theirs = tmp_path / "their-env"
    theirs.mkdir()
    (theirs / "precious.txt").write_text("keep me")
    env = {**os.environ, "VENV": str(theirs), "LOCK": str(tmp_path / "lock")}
    out = subprocess.run([str(ROOT / "benchmark.sh"), "--setup"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr == (
        f"benchmark.sh: VENV={theirs} exists and was not made by benchmark.sh (no .installed in "
        "it); point VENV at a new directory\n"
    )
    assert (theirs / "precious.txt").read_text() == "keep me"


def test_no_unguarded_proc_read_in_the_code():
    """/proc is Linux's: each use must check that it exists and have a fallback (macOS has none)."""
    for path in [
        ROOT / "app.py",
        ROOT / "counters.py",
        ROOT / "benchmark.sh",
        *sorted((ROOT / "report").glob("*.py")),
        *sorted((ROOT / "runner").glob("*.py")),
        *sorted((ROOT / "tests").glob("*.py")),
    ]:
        if path.name == "test_shell.py":
            continue
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if re.search(r"[\"']/proc", line):
                assert any("exists()" in later for later in lines[number : number + 3]), f"{path.name}:{number + 1}"
