#!/usr/bin/env bash
# The test command: set up .venv (with the test tools), wrk and httperf the way benchmark.sh does,
# then run pytest. Usage: tests/run.sh [--repeat N] [PYTEST ARGUMENTS...]
#   --repeat N   run the tests that start real servers N times in a row, to make flakiness visible
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=1
if [[ ${1:-} == --repeat ]]; then
  [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "tests/run.sh: --repeat needs a positive whole number" >&2; exit 2; }
  repeat=$2
  shift 2
fi
./benchmark.sh --setup-dev
python=${VENV:-$PWD/.venv}/bin/python
if ((repeat == 1)); then
  exec "$python" -m pytest "$@"
fi
for ((round = 1; round <= repeat; round++)); do
  echo "== tests that start real servers, round $round of $repeat"
  "$python" -m pytest -m real_server "$@" || { echo "tests/run.sh: round $round of $repeat failed" >&2; exit 1; }
done
