#!/usr/bin/env bash
# Serve app.py under several servers and configs, load each endpoint with wrk (closed loop)
# or httperf (open loop), and keep every raw output. Run ./benchmark.sh --help for the knobs.
# This script only sets up what the runner needs (.venv from the pinned requirements, wrk,
# httperf), then hands over to it: python -m runner (runner/), with the same arguments.
# Written for bash 3.2 (macOS's /bin/bash) and later: see tests/test_shell.py for what that rules out.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")" && pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHONS="python3.14 python3.13 python3.12 python3.11 python3"

die() {
  echo "benchmark.sh: $*" >&2
  exit 2
}

find_python() { # sets PYTHON: PYTHON if given, else the newest supported interpreter on PATH
  local candidate version minor tried="" candidates=$PYTHONS given=${PYTHON:-}
  [[ -z $given ]] || candidates=$given
  for candidate in $candidates; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    if ! version=$("$candidate" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null); then
      tried+="; $candidate does not run"
      continue
    fi
    minor=${version#3.}
    minor=${minor%%.*}
    if [[ $version == 3.* ]] && ((minor >= 11)); then
      PYTHON=$candidate
      if [[ -n $given ]]; then
        echo "Using PYTHON=$candidate ($version)" >&2
      else
        echo "Using $candidate ($version), the newest of ${PYTHONS// /, } on PATH$tried" >&2
      fi
      return
    fi
    tried+="; $candidate is $version, too old"
  done
  die "Python 3.11 or newer is needed (FastAPI and the pinned requirements; macOS's /usr/bin/python3 is 3.9)${tried:-; none on PATH}; install one: brew install python@3.12 (macOS) or apt-get install python3 (Debian/Ubuntu)"
}

checksum() { cksum <"$1"; }

venv_current() { # venv_current REQUIREMENTS_FILE...: installed from exactly these files
  local file
  for file in "$@"; do
    grep -qxF "$(checksum "$ROOT/$file") $file" "$VENV/.installed" 2>/dev/null || return 1
  done
}

ensure_venv() { # ensure_venv REQUIREMENTS_FILE...
  local stamp=$VENV/.installed file
  ! venv_current "$@" || return 0
  # Only ever clear what this script made: a VENV pointing at someone's own environment stays.
  if [[ -e $VENV && ! -f $stamp ]] && [[ ! -d $VENV || -n $(ls -A "$VENV") ]]; then
    die "VENV=$VENV exists and was not made by benchmark.sh (no .installed in it); point VENV at a new directory"
  fi
  [[ -n ${PYTHON_FOUND:-} ]] || find_python
  echo "Setting up $VENV from $* (once)" >&2
  "$PYTHON" -m venv --clear "$VENV" || die "$PYTHON -m venv $VENV failed (see its message above)"
  : >"$stamp"
  local args=()
  for file in "$@"; do args+=(-r "$ROOT/$file"); done
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps ${args[@]+"${args[@]}"} ||
    die "installing $* into $VENV failed (see pip's message above)"
  for file in "$@"; do echo "$(checksum "$ROOT/$file") $file"; done >"$stamp"
}

install() { # install APT_PACKAGE BREW_PACKAGE: with apt-get (as root) or brew, else the command to run
  local apt=$1 brew=$2
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "$apt is missing: installing it with apt-get" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$apt"; } >/dev/null ||
      die "apt-get install $apt failed"
  elif command -v brew >/dev/null; then
    echo "$brew is missing: installing it with brew" >&2
    brew install "$brew" >/dev/null || die "brew install $brew failed"
  else
    die "$apt is not installed; install it with: sudo apt-get install -y $apt (Debian/Ubuntu) or brew install $brew (macOS)"
  fi
}

ensure_tool() { # ensure_tool NAME: a load generator, from PATH or installed
  command -v "$1" >/dev/null || install "$1" "$1"
}

# -P: the runner and report come from this repository (ROOT, the first argument), never from
# the caller's working directory, which stays the caller's (RESULTS_DIR and LOCK may be relative).
RUNNER='import sys; sys.path.insert(0, sys.argv.pop(1)); from runner.cli import main; sys.exit(main())'

main() {
  local arg tool needs python
  for arg in "$@"; do
    case $arg in
      --setup | --setup-dev)
        if [[ $arg == --setup ]]; then ensure_venv requirements.txt; else ensure_venv requirements.txt requirements-dev.txt; fi
        ensure_tool wrk
        ensure_tool httperf
        exit 0
        ;;
    esac
  done
  # The runner checks the arguments and says what it needs before anything is installed or started;
  # a plan (--list) or --help needs nothing but a Python.
  if venv_current requirements.txt; then python=$VENV/bin/python; else find_python; PYTHON_FOUND=1 python=$PYTHON; fi
  needs=$("$python" -P -c "$RUNNER" "$ROOT" --needs "$@") || exit $?
  if [[ $needs != none ]]; then
    ensure_venv requirements.txt
    for tool in $needs; do
      # The runner looked for PostgreSQL where Debian and brew put it (off PATH): it is missing.
      if [[ $tool == postgresql ]]; then install postgresql postgresql@17; else ensure_tool "$tool"; fi
    done
    python=$VENV/bin/python
  fi
  # exec: the runner takes this process over, so its pid is the one the lock and a Ctrl-C see.
  export BENCHMARK_SH=$0
  exec "$python" -P -c "$RUNNER" "$ROOT" "$@"
}

# On one line, so that bash has read all it runs even if this file is edited during a run.
main "$@"; exit
