#!/usr/bin/env bash
# Serve app.py with gunicorn under several configs and load each endpoint with wrk.
# Run ./benchmark.sh --help for the knobs.
set -euo pipefail
shopt -s inherit_errexit # a die() inside $(...) must stop the script too

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python

usage() {
  cat <<'EOF'
Usage: ./benchmark.sh [--quick] [--set NAME] [--repeat N] [--label TEXT]
       ./benchmark.sh --setup | --setup-dev | --help

Runs every cell of an experiment set: a fresh gunicorn serving app.py, then
wrk -t WRK_THREADS -c CONNECTIONS -d DURATION --timeout TIMEOUT against one endpoint.
Raw output goes to a new directory results/<UTC time>-<set>[-quick][-label]/.

Options:
  --quick         divide sleep, duration and timeout by 10 (same as SCALE=10): the same
                  request counts as the full run, in a tenth of the time
  --set NAME      experiment set (default: seed, the original experiment)
                    seed         CONFIGS x ENDPOINTS at CONNECTIONS
                    concurrency  1 and 4 workers x sync/async/async-blocking over CONNECTIONS
                                 (10 40 100 400 1000 4000)
                    threads      /sync: THREAD_LIMIT 40/100/400, then gunicorn --threads 1 vs 4
                    workers      CONFIGS x sync/async with UvicornWorker and gunicorn's asgi worker
                    overhead     sleep 0, one worker: raw req/s of def vs async def
  --repeat N      run the whole set N times (same as REPEAT=N)
  --label TEXT    appended to the run directory's name
  --list          print the cells the set would run, then exit
  --setup         only create .venv and install wrk, then exit
  --setup-dev     same, with the test tools (used by the test command)

Environment (defaults are those of the seed set; other sets set their own):
  SLEEP_SECONDS   seconds each request sleeps in the app             10
  DURATION        wrk duration, whole s/m/h                          1m
  TIMEOUT         wrk --timeout, whole s/m/h                         30s
  CONNECTIONS     wrk connections (a list for the concurrency set)   100
  WRK_THREADS     wrk threads                                        4
  CONFIGS         gunicorn WORKERSxTHREADS list                      "1x1 1x4 4x1 4x4"
  ENDPOINTS       endpoints to load: sync async async-blocking       "sync async"
  WORKER_CLASS    gunicorn worker class                              uvicorn_worker.UvicornWorker
  THREAD_LIMIT    anyio thread limit for `def` endpoints per worker  default (40)
  HOST, PORT      where gunicorn listens                             127.0.0.1, 8000
  SCALE           divide sleep, duration and timeout by this         1
  REPEAT          runs of each cell                                  1
  LATENCY=1       pass --latency to wrk (percentiles)                off
  STATS=0         skip the server-side counters (STATS_DIR)          on
  RESULTS_DIR     where run directories go                           results
  WRK             the wrk binary                                     wrk
  GUNICORN_CMD_ARGS  extra gunicorn flags (gunicorn's own convention); flags this script
                  sets (-w, --threads, -k, -b) come later on its command line and win.
EOF
}

die() {
  echo "benchmark.sh: $*" >&2
  exit 2
}

# ------------------------------------------------------------------ set-up

checksum() { cksum <"$1"; }

ensure_venv() { # ensure_venv REQUIREMENTS_FILE...
  local stamp=$VENV/.installed file missing=0
  for file in "$@"; do
    grep -qxF "$(checksum "$ROOT/$file") $file" "$stamp" 2>/dev/null || missing=1
  done
  ((missing)) || return 0
  local python
  python=$(command -v python3.11 || command -v python3) || die "Python 3.11+ is needed: install python3"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "Python 3.11+ is needed, $python is $("$python" -V 2>&1)"
  echo "Setting up $VENV from $* (once)" >&2
  "$python" -m venv --clear "$VENV"
  local args=()
  for file in "$@"; do args+=(-r "$ROOT/$file"); done
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps "${args[@]}" ||
    die "installing $* into $VENV failed (see pip's message above)"
  for file in "$@"; do echo "$(checksum "$ROOT/$file") $file"; done >"$stamp"
}

ensure_wrk() {
  if [[ -n ${WRK:-} ]]; then
    command -v "$WRK" >/dev/null || die "wrk not found: WRK=$WRK"
    return
  fi
  WRK=wrk
  command -v wrk >/dev/null && return
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "wrk is missing: installing it with apt-get" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } >/dev/null ||
      die "apt-get install wrk failed"
  elif command -v brew >/dev/null; then
    echo "wrk is missing: installing it with brew" >&2
    brew install wrk >/dev/null || die "brew install wrk failed"
  else
    die "wrk is not installed; install it with: sudo apt-get install -y wrk (Debian/Ubuntu) or brew install wrk (macOS)"
  fi
}

# ------------------------------------------------------------------ input

positive_int() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive whole number, got '$2'"; }

number() { [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$1 must be a number of seconds >= 0, got '$2'"; }

to_seconds() { # to_seconds NAME VALUE: whole s/m/h as wrk takes them
  [[ $2 =~ ^([0-9]+)([smh]?)$ ]] || die "$1 must be a whole number of seconds, minutes or hours (30s, 1m), got '$2'"
  local n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]:-s}
  case $unit in s) echo $((10#$n)) ;; m) echo $((10#$n * 60)) ;; h) echo $((10#$n * 3600)) ;; esac
}

scaled_seconds() { # scaled_seconds NAME VALUE: VALUE/SCALE, still whole seconds for wrk
  local total
  total=$(to_seconds "$1" "$2")
  ((total % SCALE == 0 && total / SCALE > 0)) || die "$1=$2 divided by SCALE=$SCALE is not a whole number of seconds >= 1"
  echo $((total / SCALE))
}

scaled_sleep() { awk -v s="$1" -v k="$SCALE" 'BEGIN { printf "%g", s / k }'; }

check_port_free() { # bind as gunicorn will (SO_REUSEADDR), so a port in TIME_WAIT still counts as free
  local status=0
  "$PY" - "$HOST" "$PORT" <<'EOF' || status=$?
import errno, socket, sys
try:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[1], int(sys.argv[2])))
except OSError as error:
    sys.exit(1 if error.errno == errno.EADDRINUSE else 3)
EOF
  case $status in
    0) ;;
    1) die "port $PORT on $HOST is already in use; stop what holds it or set PORT" ;;
    *) die "cannot listen on $HOST:$PORT; check HOST and PORT" ;;
  esac
}

# ------------------------------------------------------------------ experiment sets
# Each set prints one cell per line: workers threads worker_class thread_limit sleep endpoint connections stats

set_defaults() {
  case $SET in
    seed) ;;
    concurrency)
      : "${SLEEP_SECONDS:=1}" "${DURATION:=10s}" "${TIMEOUT:=10s}"
      : "${CONNECTIONS:=10 40 100 400 1000 4000}" "${CONFIGS:=1x1 4x1}" "${ENDPOINTS:=sync async async-blocking}"
      ;;
    threads) : "${SLEEP_SECONDS:=1}" "${DURATION:=10s}" "${TIMEOUT:=10s}" "${CONNECTIONS:=1000}" ;;
    workers) : "${SLEEP_SECONDS:=1}" "${DURATION:=10s}" "${TIMEOUT:=10s}" ;;
    overhead) # no sleep: only the CPU limits; the counters stay off so the bare app is measured
      : "${SLEEP_SECONDS:=0}" "${DURATION:=10s}" "${TIMEOUT:=10s}" "${CONNECTIONS:=64}" "${CONFIGS:=1x1}" "${STATS:=0}"
      ;;
    *) die "unknown set '$SET' (seed, concurrency, threads, workers, overhead)" ;;
  esac
  : "${SLEEP_SECONDS:=10}" "${DURATION:=1m}" "${TIMEOUT:=30s}" "${CONNECTIONS:=100}"
  : "${CONFIGS:=1x1 1x4 4x1 4x4}" "${ENDPOINTS:=sync async}" "${THREAD_LIMIT:=default}"
  : "${WORKER_CLASS:=uvicorn_worker.UvicornWorker}" "${STATS:=1}"
}

set_cells() {
  local sleep config endpoint connections limit class
  sleep=$(scaled_sleep "$SLEEP_SECONDS")
  case $SET in
    threads)
      for connections in $CONNECTIONS; do
        for limit in "$THREAD_LIMIT" 100 400; do echo "1 1 $WORKER_CLASS $limit $sleep sync $connections $STATS"; done
        echo "1 4 $WORKER_CLASS $THREAD_LIMIT $sleep sync $connections $STATS"
      done
      ;;
    workers)
      for class in uvicorn_worker.UvicornWorker asgi; do
        for config in $CONFIGS; do for endpoint in $ENDPOINTS; do for connections in $CONNECTIONS; do
          echo "${config%x*} ${config#*x} $class $THREAD_LIMIT $sleep $endpoint $connections $STATS"
        done; done; done
      done
      ;;
    *)
      for config in $CONFIGS; do for endpoint in $ENDPOINTS; do for connections in $CONNECTIONS; do
        echo "${config%x*} ${config#*x} $WORKER_CLASS $THREAD_LIMIT $sleep $endpoint $connections $STATS"
      done; done; done
      ;;
  esac
}

validate() {
  positive_int SCALE "$SCALE"
  positive_int REPEAT "$REPEAT"
  positive_int WRK_THREADS "$WRK_THREADS"
  positive_int PORT "$PORT"
  ((PORT < 65536)) || die "PORT must be below 65536, got '$PORT'"
  [[ -n $HOST ]] || die "HOST is empty"
  number SLEEP_SECONDS "$SLEEP_SECONDS"
  [[ $THREAD_LIMIT == default ]] || positive_int THREAD_LIMIT "$THREAD_LIMIT"
  [[ $STATS == [01] ]] || die "STATS must be 0 or 1, got '$STATS'"
  [[ ${LATENCY:-0} == [01] ]] || die "LATENCY must be 0 or 1, got '$LATENCY'"
  [[ -n $CONFIGS && -n $ENDPOINTS && -n $CONNECTIONS ]] || die "CONFIGS, ENDPOINTS and CONNECTIONS must not be empty"
  DURATION_S=$(scaled_seconds DURATION "$DURATION")
  TIMEOUT_S=$(scaled_seconds TIMEOUT "$TIMEOUT")
  local config endpoint connections most=0
  for config in $CONFIGS; do
    [[ $config =~ ^[0-9]+x[0-9]+$ ]] || die "CONFIGS entries look like 4x1 (workers x threads), got '$config'"
    positive_int "workers in '$config'" "${config%x*}"
    positive_int "threads in '$config'" "${config#*x}"
  done
  for endpoint in $ENDPOINTS; do
    [[ $endpoint =~ ^(sync|async|async-blocking)$ ]] || die "unknown endpoint '$endpoint' (sync, async, async-blocking)"
  done
  for connections in $CONNECTIONS; do
    positive_int CONNECTIONS "$connections"
    ((connections >= WRK_THREADS)) || die "CONNECTIONS ($connections) must be >= WRK_THREADS ($WRK_THREADS), as wrk requires"
    ((connections > most)) && most=$connections
  done
  # wrk and the one worker that may take every connection each need a descriptor per connection.
  local open_files
  open_files=$(ulimit -n)
  [[ $open_files == unlimited ]] || ((open_files >= most + 64)) ||
    die "ulimit -n is $open_files, too low for $most connections; raise it first: ulimit -n $((most + 1024))"
}

# ------------------------------------------------------------------ server

server_pid=""
wrk_pid=""

start_server() { # start_server CELL_DIR WORKERS THREADS CLASS THREAD_LIMIT SLEEP STATS
  local cell_dir=$1 workers=$2 threads=$3 class=$4 limit=$5 sleep=$6 stats=$7
  local env=(SLEEP_SECONDS="$sleep")
  [[ $limit == default ]] || env+=(THREAD_LIMIT="$limit")
  if ((stats)); then
    mkdir -p "$cell_dir/stats"
    env+=(STATS_DIR="$cell_dir/stats")
  fi
  # A session of its own, so that stopping it reaches every worker and a Ctrl-C on the
  # terminal reaches only this script, which then stops the server itself.
  env "${env[@]}" "$PY" -c 'import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])' \
    "$VENV/bin/gunicorn" app:app --chdir "$ROOT" --no-control-socket \
    -b "$HOST:$PORT" -w "$workers" --threads "$threads" -k "$class" \
    >"$cell_dir/gunicorn.log" 2>&1 &
  server_pid=$!
  wait_until_ready "$cell_dir" "$workers" "$stats"
}

wait_until_ready() { # the master listens before workers load the app: wait for the app itself
  local cell_dir=$1 workers=$2 stats=$3 deadline=$((SECONDS + 60)) url="http://$HOST:$PORT/openapi.json"
  while ((SECONDS < deadline)); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      server_failed "$cell_dir" "gunicorn exited during start-up"
    fi
    if { ((!stats)) || (($(find "$cell_dir/stats" -name 'worker-*.json' | wc -l) >= workers)); } &&
      "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" 2>/dev/null; then
      return
    fi
    sleep 0.2
  done
  server_failed "$cell_dir" "gunicorn did not answer $url within 60 s"
}

server_failed() {
  echo "benchmark.sh: $2; last lines of $1/gunicorn.log:" >&2
  tail -n 20 "$1/gunicorn.log" >&2
  exit 1
}

stop_server() { # stop_server SECONDS_TO_DRAIN
  [[ -n $server_pid ]] || return 0
  local deadline=$((SECONDS + $1))
  kill -TERM "$server_pid" 2>/dev/null || true
  while kill -0 "$server_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  kill -KILL -- "-$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# shellcheck disable=SC2329 # called by the EXIT trap
stop_everything() {
  [[ -z $wrk_pid ]] || kill -TERM "$wrk_pid" 2>/dev/null || true
  stop_server 3
}

# shellcheck disable=SC2329 # called by the INT/TERM trap
on_signal() {
  trap - INT TERM
  echo >&2
  echo "benchmark.sh: interrupted; stopping the server. Partial results kept in ${RUN_DIR:-nothing yet}" >&2
  stop_everything
  exit 130
}

# ------------------------------------------------------------------ one cell

run_cell() { # run_cell INDEX TOTAL ROUND workers threads class limit sleep endpoint connections stats
  local index=$1 total=$2 round=$3 workers=$4 threads=$5 class=$6 limit=$7 sleep=$8 endpoint=$9
  local connections=${10} stats=${11}
  local name
  name=$(printf '%02d-%sw%st-%s-c%s' "$index" "$workers" "$threads" "$endpoint" "$connections")
  [[ $class == uvicorn_worker.UvicornWorker ]] || name+="-${class##*.}"
  [[ $limit == default ]] || name+="-limit$limit"
  ((REPEAT == 1)) || name+="-r$round"
  local cell_dir=$RUN_DIR/$name
  mkdir -p "$cell_dir"
  printf '%s\t' "$name" "$round" "$workers" "$threads" "$class" "$limit" "$sleep" "$endpoint" \
    "$connections" "$WRK_THREADS" "$DURATION_S" "$TIMEOUT_S" >>"$RUN_DIR/cells.tsv"
  printf '%s\n' "$stats" >>"$RUN_DIR/cells.tsv"

  local what="$workers worker x $threads thread"
  ((workers == 1)) || what=${what/worker/workers}
  ((threads == 1)) || what+=s
  [[ $class == uvicorn_worker.UvicornWorker ]] || what+=" ($class)"
  [[ $limit == default ]] || what+=" limit $limit"
  printf '[%d/%d] %s  /%s  c=%s sleep=%ss  %ss\n' "$index" "$total" "$what" "$endpoint" "$connections" "$sleep" "$DURATION_S"

  start_server "$cell_dir" "$workers" "$threads" "$class" "$limit" "$sleep" "$stats"
  local wrk_args=(-t"$WRK_THREADS" -c"$connections" -d"${DURATION_S}s" --timeout "${TIMEOUT_S}s")
  [[ ${LATENCY:-0} == 1 ]] && wrk_args+=(--latency)
  # In the background so that a signal reaches our trap at once instead of after wrk, which
  # catches SIGINT itself and would let the loop go on to the next cell.
  "$WRK" "${wrk_args[@]}" "http://$HOST:$PORT/$endpoint" >"$cell_dir/wrk.txt" 2>&1 &
  wrk_pid=$!
  local status=0
  wait "$wrk_pid" || status=$?
  wrk_pid=""
  if ((status != 0)); then
    echo "benchmark.sh: wrk failed (exit $status):" >&2
    cat "$cell_dir/wrk.txt" >&2
    exit 1
  fi
  echo "      $("$PY" "$ROOT/report.py" brief "$cell_dir/wrk.txt")"
  # Let requests still in the server finish (they show as "server completed"), within reason.
  stop_server "$(awk -v s="$sleep" 'BEGIN { d = int(2 * s + 5); print (d > 35 ? 35 : d) }')"
}

# ------------------------------------------------------------------ main

main() {
  SET=seed
  local label="" setup=""
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --quick) SCALE=10 ;;
      --set) [[ $# -ge 2 ]] || die "--set needs a name"; SET=$2; shift ;;
      --repeat) [[ $# -ge 2 ]] || die "--repeat needs a number"; REPEAT=$2; shift ;;
      --label) [[ $# -ge 2 ]] || die "--label needs a text"; label=$2; shift ;;
      --setup) setup=runtime ;;
      --setup-dev) setup=dev ;;
      --list) setup=list ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
  done
  [[ $label =~ ^[A-Za-z0-9._-]*$ ]] || die "--label may hold only letters, digits, '.', '_' and '-', got '$label'"
  : "${SCALE:=1}" "${REPEAT:=1}" "${WRK_THREADS:=4}" "${HOST:=127.0.0.1}" "${PORT:=8000}"
  : "${RESULTS_DIR:=$ROOT/results}"

  if [[ $setup == dev ]]; then
    ensure_venv requirements.txt requirements-dev.txt
    ensure_wrk
    exit 0
  fi
  set_defaults
  validate
  local cells=() line
  while read -r line; do cells+=("$line"); done < <(set_cells)
  if [[ $setup == list ]]; then # a plan needs neither .venv nor wrk
    echo "# workers threads worker_class thread_limit sleep endpoint connections stats; wrk -d ${DURATION_S}s --timeout ${TIMEOUT_S}s, $REPEAT run(s)"
    printf '%s\n' "${cells[@]}"
    exit 0
  fi
  ensure_venv requirements.txt
  ensure_wrk
  [[ $setup == runtime ]] && exit 0
  check_port_free
  export WRK
  local total=$((${#cells[@]} * REPEAT))

  local name
  name="$(date -u +%Y%m%dT%H%M%SZ)-$SET"
  case $SCALE in 1) ;; 10) name+="-quick" ;; *) name+="-scale$SCALE" ;; esac
  [[ -z $label ]] || name+="-$label"
  RUN_DIR=$RESULTS_DIR/$name
  local suffix=1
  while [[ -e $RUN_DIR ]]; do RUN_DIR=$RESULTS_DIR/$name-$((++suffix)); done
  mkdir -p "$RUN_DIR"
  echo "started $(date -u +%FT%TZ); removed when every cell has run" >"$RUN_DIR/INCOMPLETE"
  trap on_signal INT TERM
  trap stop_everything EXIT
  printf '%s\t' cell round workers threads worker_class thread_limit sleep endpoint connections \
    wrk_threads duration timeout >"$RUN_DIR/cells.tsv"
  echo stats >>"$RUN_DIR/cells.tsv"
  "$PY" "$ROOT/report.py" describe "$RUN_DIR" set="$SET" scale="$SCALE" repeat="$REPEAT" \
    sleep_seconds="$SLEEP_SECONDS" duration="$DURATION" timeout="$TIMEOUT" connections="$CONNECTIONS" \
    wrk_threads="$WRK_THREADS" configs="$CONFIGS" endpoints="$ENDPOINTS" worker_class="$WORKER_CLASS" \
    thread_limit="$THREAD_LIMIT" host="$HOST" port="$PORT" latency="${LATENCY:-0}" stats="$STATS" \
    gunicorn_cmd_args="${GUNICORN_CMD_ARGS:-}" command="$0 $*"
  echo "Run directory: $RUN_DIR"

  local round index=0
  for ((round = 1; round <= REPEAT; round++)); do
    for line in "${cells[@]}"; do
      # shellcheck disable=SC2086 # a cell line is a list of words on purpose
      run_cell $((++index)) "$total" "$round" $line
    done
  done

  rm "$RUN_DIR/INCOMPLETE"
  echo
  "$PY" "$ROOT/report.py" "$RUN_DIR"
  echo "Raw files, summary.{csv,json,md} and plot.png: $RUN_DIR"
}

# On one line, so that bash has read all it runs even if this file is edited during a run.
main "$@"; exit
