#!/usr/bin/env bash
# The test command: set up .venv (with the test tools) and wrk the way benchmark.sh does, then run pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./benchmark.sh --setup-dev
exec "${VENV:-$PWD/.venv}/bin/python" -m pytest "$@"
