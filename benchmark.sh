#!/usr/bin/env bash
# Serve app.py under several servers and configs, load each endpoint with wrk (closed loop)
# or httperf (open loop), and keep every raw output. Run ./benchmark.sh --help for the knobs.
# Written for bash 3.2 (macOS's /bin/bash) and later: see tests/test_shell.py for what that rules out.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")" && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
SETS="seed concurrency threads workers overhead servers upstream openloop"
ENDPOINT_NAMES="sync async async-blocking sync-http async-http async-http-blocking"
SERVER_NAMES="gunicorn gunicorn-reuse-port uvicorn granian"

usage() {
  cat <<'EOF'
Usage: ./benchmark.sh [--quick] [--set NAME] [--repeat N] [--label TEXT] [--quiet]
       ./benchmark.sh --list [--set NAME] | --reference [--list] | --setup | --setup-dev | --help

Runs every cell of an experiment set: a fresh server serving app.py, then
wrk -t WRK_THREADS -c CONNECTIONS -d DURATION --timeout TIMEOUT against one endpoint
(httperf at a fixed rate for the openloop set). Raw output goes to a new directory
results/<UTC time>-<set>[-quick][-label]/, which also keeps the app.py it served.

Options:
  --quick         divide sleep, duration and timeout by 10 (same as SCALE=10): the same
                  request counts as the full run, in a tenth of the time (openloop: duration only)
  --set NAME      experiment set (default: seed, the original experiment)
                    seed         CONFIGS x ENDPOINTS at CONNECTIONS
                    concurrency  1 and 4 workers x sync/async/async-blocking over CONNECTIONS
                                 (10 40 100 400 1000 4000)
                    threads      /sync: THREAD_LIMIT 40/100/400, then gunicorn --threads 1 vs 4
                    workers      UvicornWorker vs gunicorn's asgi worker: client-bound (100
                                 connections), server-bound (4000 connections; sleep 0)
                    overhead     sleep 0, one worker: raw req/s of def vs async def (pinned)
                    servers      4 workers under each server: gunicorn, gunicorn --reuse-port,
                                 gunicorn's asgi worker, uvicorn --workers, granian
                    upstream     /sync-http, /async-http, /async-http-blocking calling a second
                                 server, 1 and 4 workers over CONNECTIONS; HTTP_POOL=400 once
                    openloop     httperf at RATES x each cell's predicted capacity, 1 and 4 workers
  --repeat N      run the whole set N times (same as REPEAT=N; the servers set: 3 by default)
  --label TEXT    appended to the run directory's name
  --quiet         print only each cell's result line and the final paths
  --list          print the cells the set would run and how long it should take, then exit
  --reference     run every set the README uses, one after the other, 3 runs each
                  (with --list: print those commands and the expected time)
  --setup         only create .venv and install wrk and httperf, then exit
  --setup-dev     same, with the test tools (used by the test command)

Environment (defaults are those of the seed set; other sets set their own):
  SLEEP_SECONDS   seconds each request sleeps in the app (or the upstream)   10
  DURATION        wrk/httperf duration, whole s/m/h                          1m
  TIMEOUT         wrk --timeout / httperf --timeout, whole s/m/h             30s
  CONNECTIONS     wrk connections (a list for the concurrency set)           100
  WRK_THREADS     wrk threads                                                4
  CONFIGS         WORKERSxTHREADS list                                       "1x1 1x4 4x1 4x4"
  ENDPOINTS       endpoints to load: sync async async-blocking               "sync async"
                  sync-http async-http async-http-blocking (call the upstream)
  SERVER          gunicorn, gunicorn-reuse-port, uvicorn or granian          gunicorn
  WORKER_CLASS    gunicorn worker class                                      uvicorn_worker.UvicornWorker
  THREAD_LIMIT    anyio thread limit for `def` endpoints per worker          default (40)
  HTTP_POOL       httpx max_connections per client per worker                default (100)
  HTTP_POOL_TIMEOUT  seconds a call may wait for a pooled connection         default (5)
  RATES           openloop: offered rates as fractions of predicted capacity "0.5 0.9 1.1 2"
  HOST, PORT      where the server listens                                   127.0.0.1, 8000
  UPSTREAM_PORT   where the upstream for the /*-http endpoints listens       PORT + 1
  SCALE           divide sleep, duration and timeout by this                 1
  REPEAT          runs of each cell                                          1
  WARMUP          seconds of unmeasured load before each cell; "auto" warms  auto
                  only CPU-bound cells (sleep 0, or async at >= 4000 connections)
  PIN=1           Linux with taskset: load generator on CPU 0, servers on the  0 (overhead and
                  others                                                      openloop sets: 1)
  LATENCY=1       pass --latency to wrk (percentiles)                        off
  STATS=0         skip the server-side counters (STATS_DIR)                  on
  RESULTS_DIR     where run directories go                                   results
  WRK, HTTPERF    the load generator binaries                                wrk, httperf
  VENV            the virtual environment this script makes and uses         .venv
  PYTHON          the interpreter to make it with      newest of python3.13/3.12/3.11/python3
  LOCK            the lock that keeps two runs off the same cores            $TMPDIR/...lock
  GUNICORN_CMD_ARGS  extra gunicorn flags (gunicorn's own convention); flags this script
                  sets (-w, --threads, -k, -b) come later on its command line and win.

What each server ignores: THREADS (the T in WxT) is passed only to gunicorn, whose ASGI
workers ignore it too (it "only affects the Gthread worker type"); WORKER_CLASS and
GUNICORN_CMD_ARGS only reach gunicorn. granian limits each worker to 1024/WORKERS requests
at once (its --backpressure default). httperf multiplexes with select(): about 1,000
connections open at once at most, so RATE x TIMEOUT must stay below 1000 per cell.
EOF
}

die() {
  echo "benchmark.sh: $*" >&2
  exit 2
}

note() { ((QUIET)) || echo "$@"; }

# -P: this repository's report package, never one in the caller's working directory.
report() { PYTHONPATH=$ROOT "$PY" -P -m report "$@"; }

# ------------------------------------------------------------------ set-up

find_python() { # sets PYTHON: PYTHON if given, else the newest supported interpreter on PATH
  local candidate version minor tried="" candidates="python3.13 python3.12 python3.11 python3" given=${PYTHON:-}
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
        echo "Using $candidate ($version), the newest of python3.13, python3.12, python3.11, python3 on PATH$tried" >&2
      fi
      return
    fi
    tried+="; $candidate is $version, too old"
  done
  die "Python 3.11 or newer is needed (FastAPI and the pinned requirements; macOS's /usr/bin/python3 is 3.9)${tried:-; none on PATH}; install one: brew install python@3.12 (macOS) or apt-get install python3 (Debian/Ubuntu)"
}

checksum() { cksum <"$1"; }

ensure_venv() { # ensure_venv REQUIREMENTS_FILE...
  local stamp=$VENV/.installed file missing=0
  for file in "$@"; do
    grep -qxF "$(checksum "$ROOT/$file") $file" "$stamp" 2>/dev/null || missing=1
  done
  ((missing)) || return 0
  # Only ever clear what this script made: a VENV pointing at someone's own environment stays.
  if [[ -e $VENV && ! -f $stamp ]] && [[ ! -d $VENV || -n $(ls -A "$VENV") ]]; then
    die "VENV=$VENV exists and was not made by benchmark.sh (no .installed in it); point VENV at a new directory"
  fi
  find_python
  echo "Setting up $VENV from $* (once)" >&2
  "$PYTHON" -m venv --clear "$VENV" || die "$PYTHON -m venv $VENV failed (see its message above)"
  : >"$stamp"
  local args=()
  for file in "$@"; do args+=(-r "$ROOT/$file"); done
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps ${args[@]+"${args[@]}"} ||
    die "installing $* into $VENV failed (see pip's message above)"
  for file in "$@"; do echo "$(checksum "$ROOT/$file") $file"; done >"$stamp"
}

ensure_tool() { # ensure_tool NAME: NAME from PATH, else apt-get (as root) or brew, else the command to run
  local name=$1
  command -v "$name" >/dev/null && return
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "$name is missing: installing it with apt-get" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$name"; } >/dev/null ||
      die "apt-get install $name failed"
  elif command -v brew >/dev/null; then
    echo "$name is missing: installing it with brew" >&2
    brew install "$name" >/dev/null || die "brew install $name failed"
  else
    die "$name is not installed; install it with: sudo apt-get install -y $name (Debian/Ubuntu) or brew install $name (macOS)"
  fi
}

ensure_load_generators() { # the ones the cells need; WRK/HTTPERF name a binary of the user's own
  if [[ -n ${WRK:-} ]]; then command -v "$WRK" >/dev/null || die "wrk not found: WRK=$WRK"; else ensure_tool wrk; WRK=wrk; fi
  ((${1:-1})) || return 0
  if [[ -n ${HTTPERF:-} ]]; then command -v "$HTTPERF" >/dev/null || die "httperf not found: HTTPERF=$HTTPERF"; else ensure_tool httperf; HTTPERF=httperf; fi
}

# ------------------------------------------------------------------ the lock

# A symlink whose target is "PID RUN": made atomically, and readable without a second file.
take_lock() { # take_lock WHAT
  local holder pid
  ln -s "$$ $1" "$LOCK" 2>/dev/null && return
  holder=$(readlink "$LOCK" 2>/dev/null) || holder=""
  pid=${holder%% *}
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o command= 2>/dev/null | grep -q benchmark.sh; then
    die "another benchmark is running (pid $pid: ${holder#* }); two runs would share the cores. Wait for it or stop it: kill $pid"
  fi
  rm -f "$LOCK" # its run is gone (crashed or killed): a stale lock
  ln -s "$$ $1" "$LOCK" 2>/dev/null || die "another benchmark took $LOCK just now"
}

# shellcheck disable=SC2329 # called by the EXIT trap
release_lock() {
  [[ $(readlink "$LOCK" 2>/dev/null) == "$$ "* ]] && rm -f "$LOCK"
  return 0
}

# ------------------------------------------------------------------ input

positive_int() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive whole number, got '$2'"; }

number() { [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$1 must be a number >= 0, got '$2'"; }

to_seconds() { # to_seconds NAME VALUE: whole s/m/h as wrk takes them
  [[ $2 =~ ^([0-9]+)([smh]?)$ ]] || die "$1 must be a whole number of seconds, minutes or hours (30s, 1m), got '$2'"
  local n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]:-s}
  case $unit in s) echo $((10#$n)) ;; m) echo $((10#$n * 60)) ;; h) echo $((10#$n * 3600)) ;; esac
}

scaled_seconds() { # scaled_seconds NAME VALUE SCALE: VALUE/SCALE, still whole seconds for wrk
  local total
  total=$(to_seconds "$1" "$2") || exit 2
  ((total % $3 == 0 && total / $3 > 0)) || die "$1=$2 divided by SCALE=$3 is not a whole number of seconds >= 1"
  echo $((total / $3))
}

calc() { awk "BEGIN { printf \"%g\", ($1) }"; }

check_port_free() { # check_port_free PORT NAME: bind as the servers will (SO_REUSEADDR)
  local status=0
  "$PY" - "$HOST" "$1" <<'EOF' || status=$?
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
    1) die "port $1 on $HOST is already in use; stop what holds it or set $2" ;;
    *) die "cannot listen on $HOST:$1; check HOST and $2" ;;
  esac
}

# ------------------------------------------------------------------ experiment sets
# A cell is one line of words:
#   server worker_class workers threads thread_limit http_pool sleep endpoint connections rate

set_defaults() {
  case $SET in
    seed) ;;
    concurrency)
      : "${SLEEP_SECONDS:=1}" "${DURATION:=10s}" "${TIMEOUT:=10s}"
      : "${CONNECTIONS:=10 40 100 400 1000 4000}" "${CONFIGS:=1x1 4x1}" "${ENDPOINTS:=sync async async-blocking}"
      ;;
    threads) : "${SLEEP_SECONDS:=1}" "${DURATION:=10s}" "${TIMEOUT:=10s}" "${CONNECTIONS:=1000}" ;;
    workers) : "${SLEEP_SECONDS:=1}" "${DURATION:=10s}" "${TIMEOUT:=10s}" "${CONFIGS:=1x1 4x1}" ;;
    overhead) # no sleep: only the CPU limits; the counters stay off so the bare app is measured
      : "${SLEEP_SECONDS:=0}" "${DURATION:=10s}" "${TIMEOUT:=10s}" "${CONNECTIONS:=64}" "${CONFIGS:=1x1}"
      : "${STATS:=0}" "${PIN:=1}"
      ;;
    servers) # 3 runs by default: the spread varies from run to run, and that is the point
      : "${SLEEP_SECONDS:=1}" "${DURATION:=10s}" "${TIMEOUT:=10s}" "${CONFIGS:=4x1}" "${REPEAT:=3}"
      ;;
    upstream)
      : "${SLEEP_SECONDS:=1}" "${DURATION:=10s}" "${TIMEOUT:=10s}" "${CONNECTIONS:=10 40 100 400 1000}"
      : "${CONFIGS:=1x1 4x1}" "${ENDPOINTS:=sync-http async-http async-http-blocking}"
      ;;
    openloop) # httperf spins on a core of its own: pinned, it leaves the other to the server
      : "${SLEEP_SECONDS:=1}" "${DURATION:=20s}" "${TIMEOUT:=3s}" "${CONFIGS:=1x1 4x1}"
      : "${ENDPOINTS:=sync async async-blocking}" "${PIN:=1}"
      ;;
    *) die "unknown set '$SET' ($SETS)" ;;
  esac
  : "${SLEEP_SECONDS:=10}" "${DURATION:=1m}" "${TIMEOUT:=30s}" "${CONNECTIONS:=100}"
  : "${CONFIGS:=1x1 1x4 4x1 4x4}" "${ENDPOINTS:=sync async}" "${THREAD_LIMIT:=default}"
  : "${HTTP_POOL:=default}" "${HTTP_POOL_TIMEOUT:=default}" "${SERVER:=gunicorn}"
  : "${WORKER_CLASS:=uvicorn_worker.UvicornWorker}" "${STATS:=1}" "${PIN:=0}" "${WARMUP:=auto}"
  : "${RATES:=0.5 0.9 1.1 2}" "${LATENCY:=0}" "${REPEAT:=1}"
}

set_cells() {
  local sleep config endpoint connections limit class server rate w t
  sleep=$(calc "$SLEEP_SECONDS / $SLEEP_SCALE")
  case $SET in
    threads)
      for connections in $CONNECTIONS; do
        for limit in "$THREAD_LIMIT" 100 400; do
          echo "$SERVER $WORKER_CLASS 1 1 $limit $HTTP_POOL $sleep sync $connections -"
        done
        echo "$SERVER $WORKER_CLASS 1 4 $THREAD_LIMIT $HTTP_POOL $sleep sync $connections -"
      done
      ;;
    workers) # client-bound first, then where the server is the limit
      for class in uvicorn_worker.UvicornWorker asgi; do
        for config in $CONFIGS; do
          w=${config%x*} t=${config#*x}
          for endpoint in $ENDPOINTS; do for connections in $CONNECTIONS; do
            echo "gunicorn $class $w $t $THREAD_LIMIT $HTTP_POOL $sleep $endpoint $connections -"
          done; done
          echo "gunicorn $class $w $t $THREAD_LIMIT $HTTP_POOL $sleep async 4000 -"
          echo "gunicorn $class $w $t $THREAD_LIMIT $HTTP_POOL 0 async 64 -"
        done
      done
      ;;
    servers) # the seed's load (1 s sleep, 100 connections), then sleep 0 where the CPU is the limit
      for config in $CONFIGS; do
        w=${config%x*} t=${config#*x}
        for server in gunicorn gunicorn-reuse-port gunicorn:asgi uvicorn granian; do
          class=$WORKER_CLASS
          case $server in gunicorn:asgi) server=gunicorn class=asgi ;; uvicorn | granian) class=- t=1 ;; esac
          for endpoint in sync async; do
            echo "$server $class $w $t $THREAD_LIMIT $HTTP_POOL $sleep $endpoint 100 -"
            echo "$server $class $w $t $THREAD_LIMIT $HTTP_POOL 0 $endpoint 256 -"
          done
        done
      done
      ;;
    upstream)
      for config in $CONFIGS; do for endpoint in $ENDPOINTS; do for connections in $CONNECTIONS; do
        echo "$SERVER $WORKER_CLASS ${config%x*} ${config#*x} $THREAD_LIMIT $HTTP_POOL $sleep $endpoint $connections -"
      done; done; done
      # The pool is the ceiling for /async-http: raise it and the ceiling moves.
      connections=${CONNECTIONS##* }
      echo "$SERVER $WORKER_CLASS 1 1 $THREAD_LIMIT 400 $sleep async-http $connections -"
      ;;
    openloop)
      for config in $CONFIGS; do for endpoint in $ENDPOINTS; do for rate in $RATES; do
        w=${config%x*}
        # /sync and /async get the same offered rates (the def endpoint's capacity), so the two
        # can be compared; a blocked loop serves one request per sleep per worker.
        limit=$THREAD_LIMIT
        [[ $limit == default ]] && limit=40
        [[ $endpoint == async-blocking ]] && limit=1
        echo "$SERVER $WORKER_CLASS $w ${config#*x} $THREAD_LIMIT $HTTP_POOL $sleep $endpoint - $(calc "$rate * $limit * $w / $sleep")"
      done; done; done
      ;;
    *)
      for config in $CONFIGS; do for endpoint in $ENDPOINTS; do for connections in $CONNECTIONS; do
        echo "$SERVER $WORKER_CLASS ${config%x*} ${config#*x} $THREAD_LIMIT $HTTP_POOL $sleep $endpoint $connections -"
      done; done; done
      ;;
  esac
}

validate() {
  positive_int SCALE "$SCALE"
  positive_int REPEAT "$REPEAT"
  positive_int WRK_THREADS "$WRK_THREADS"
  positive_int PORT "$PORT"
  positive_int UPSTREAM_PORT "$UPSTREAM_PORT"
  ((PORT < 65536)) || die "PORT must be below 65536, got '$PORT'"
  ((UPSTREAM_PORT < 65536 && UPSTREAM_PORT != PORT)) || die "UPSTREAM_PORT must be below 65536 and differ from PORT, got '$UPSTREAM_PORT'"
  [[ -n $HOST ]] || die "HOST is empty"
  number SLEEP_SECONDS "$SLEEP_SECONDS"
  [[ $THREAD_LIMIT == default ]] || positive_int THREAD_LIMIT "$THREAD_LIMIT"
  [[ $HTTP_POOL == default ]] || positive_int HTTP_POOL "$HTTP_POOL"
  [[ $HTTP_POOL_TIMEOUT == default ]] || number HTTP_POOL_TIMEOUT "$HTTP_POOL_TIMEOUT"
  [[ $STATS == [01] ]] || die "STATS must be 0 or 1, got '$STATS'"
  [[ $LATENCY == [01] ]] || die "LATENCY must be 0 or 1, got '$LATENCY'"
  [[ $PIN == [01] ]] || die "PIN must be 0 or 1, got '$PIN'"
  [[ $WARMUP == auto || $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be auto or a whole number of seconds, got '$WARMUP'"
  [[ " $SERVER_NAMES " == *" $SERVER "* ]] || die "unknown server '$SERVER' ($SERVER_NAMES)"
  [[ -n $CONFIGS && -n $ENDPOINTS && -n $CONNECTIONS && -n $RATES ]] ||
    die "CONFIGS, ENDPOINTS, CONNECTIONS and RATES must not be empty"
  SLEEP_SCALE=$SCALE
  [[ $SET == openloop ]] && SLEEP_SCALE=1 # scaled rates would outrun one machine: only the duration shrinks
  DURATION_S=$(scaled_seconds DURATION "$DURATION" "$SCALE") || exit 2
  TIMEOUT_S=$(scaled_seconds TIMEOUT "$TIMEOUT" "$SLEEP_SCALE") || exit 2
  local config endpoint connections rate most=0
  for config in $CONFIGS; do
    [[ $config =~ ^[0-9]+x[0-9]+$ ]] || die "CONFIGS entries look like 4x1 (workers x threads), got '$config'"
    positive_int "workers in '$config'" "${config%x*}"
    positive_int "threads in '$config'" "${config#*x}"
  done
  for endpoint in $ENDPOINTS; do
    [[ " $ENDPOINT_NAMES " == *" $endpoint "* ]] || die "unknown endpoint '$endpoint' (${ENDPOINT_NAMES// /, })"
  done
  for connections in $CONNECTIONS; do
    positive_int CONNECTIONS "$connections"
    ((connections >= WRK_THREADS)) || die "CONNECTIONS ($connections) must be >= WRK_THREADS ($WRK_THREADS), as wrk requires"
    ((connections > most)) && most=$connections
  done
  for rate in $RATES; do
    [[ $rate =~ ^[0-9]*\.?[0-9]+$ ]] && [[ $(calc "$rate > 0") == 1 ]] || die "RATES are fractions of capacity > 0, got '$rate'"
  done
  if [[ $SET == openloop ]]; then
    number SLEEP_SECONDS "$SLEEP_SECONDS"
    [[ $(calc "$SLEEP_SECONDS > 0") == 1 ]] || die "the openloop set needs SLEEP_SECONDS > 0: capacity is threads / sleep"
  fi
  # wrk and the one worker that may take every connection each need a descriptor per connection.
  local open_files
  open_files=$(ulimit -n)
  [[ $open_files == unlimited ]] || ((open_files >= most + 64)) ||
    die "ulimit -n is $open_files, too low for $most connections; raise it first: ulimit -n $((most + 1024))"
  if ((PIN)); then
    command -v taskset >/dev/null || { echo "benchmark.sh: PIN=1 needs taskset (Linux); running unpinned" >&2; PIN=0; }
    ((CPUS >= 2)) || { echo "benchmark.sh: PIN=1 needs 2 cores, this machine has $CPUS; running unpinned" >&2; PIN=0; }
  fi
  return 0
}

validate_cell() { # validate_cell CELL...: what only a whole cell can tell
  local connections=$9 rate=${10} open_files
  if [[ $connections != - ]]; then
    open_files=$(ulimit -n)
    [[ $open_files == unlimited ]] || ((open_files >= connections + 64)) ||
      die "ulimit -n is $open_files, too low for $connections connections; raise it first: ulimit -n $((connections + 1024))"
    return 0
  fi
  [[ $(calc "$rate * $TIMEOUT_S < 1000") == 1 ]] ||
    die "rate $rate/s x timeout ${TIMEOUT_S}s keeps about $(calc "$rate * $TIMEOUT_S") connections open; httperf's select() allows about 1000: lower RATES or TIMEOUT"
}

warmup_for() { # warmup_for SLEEP ENDPOINT CONNECTIONS RATE: seconds of warm-up for this cell
  if [[ $4 != - ]]; then echo 0; return; fi
  if [[ $WARMUP != auto ]]; then echo "$WARMUP"; return; fi
  if [[ $1 == 0 ]] || { [[ $2 == async ]] && (($3 >= 4000)); }; then
    ((SCALE == 1)) && echo 2 || echo 1
  else
    echo 0
  fi
}

# ------------------------------------------------------------------ servers

server_pid=""
upstream_pid=""
load_pid=""
countdown_pid=""

server_command() { # server_command SERVER CLASS WORKERS THREADS PORT: sets COMMAND, one table of servers
  local server=$1 class=$2 workers=$3 threads=$4 port=$5
  case $server in
    gunicorn | gunicorn-reuse-port)
      COMMAND=("$VENV/bin/gunicorn" app:app --chdir "$APP_DIR" --no-control-socket -b "$HOST:$port"
        -w "$workers" --threads "$threads" -k "$class")
      [[ $server == gunicorn ]] || COMMAND+=(--reuse-port)
      ;;
    uvicorn) COMMAND=("$VENV/bin/uvicorn" app:app --app-dir "$APP_DIR" --host "$HOST" --port "$port"
      --workers "$workers" --no-access-log) ;;
    granian) COMMAND=("$VENV/bin/granian" --interface asgi --working-dir "$APP_DIR" --host "$HOST"
      --port "$port" --workers "$workers" --no-access-log app:app) ;;
  esac
}

start_process() { # start_process LOG CPUS ENV... -- COMMAND...: in a session of its own; sets STARTED_PID
  local log=$1 cpus=$2
  shift 2
  local pin=()
  [[ $cpus == all ]] || pin=(taskset -c "$cpus")
  # A session of its own, so that stopping it reaches every worker and a Ctrl-C on the
  # terminal reaches only this script, which then stops the servers itself.
  env "$@" ${pin[@]+"${pin[@]}"} "$PY" -c 'import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])' \
    "${COMMAND[@]}" >"$log" 2>&1 &
  STARTED_PID=$!
}

wait_until_ready() { # wait_until_ready PID LOG STATS_DIR|- WORKERS WHAT: the app answers, every worker is up
  local pid=$1 log=$2 stats_dir=$3 workers=$4 what=$5 deadline=$((SECONDS + 60)) port=$6
  local url="http://$HOST:$port/openapi.json"
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || server_failed "$log" "$what exited during start-up"
    if { [[ $stats_dir == - ]] || (($(find "$stats_dir" -name 'worker-*.json' ! -name '*.*.json' | wc -l) >= workers)); } &&
      "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" 2>/dev/null; then
      return
    fi
    sleep 0.1
  done
  server_failed "$log" "$what did not answer $url within 60 s"
}

server_failed() {
  echo "benchmark.sh: $2; last lines of $1:" >&2
  tail -n 20 "$1" >&2
  exit 1
}

stop_process() { # stop_process PID: graceful for a moment (the snapshot has what we need), then kill its session
  local pid=$1 tries=10
  [[ -n $pid ]] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((tries-- > 0)); do sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_servers() {
  stop_process "$server_pid"
  server_pid=""
  stop_process "$upstream_pid"
  upstream_pid=""
}

stop_countdown() {
  [[ -n $countdown_pid ]] || return 0
  kill "$countdown_pid" 2>/dev/null || true
  wait "$countdown_pid" 2>/dev/null || true
  countdown_pid=""
  printf '\r\033[K'
}

# shellcheck disable=SC2329 # called by the EXIT trap
stop_everything() {
  stop_countdown
  [[ -z $load_pid ]] || kill -TERM "$load_pid" 2>/dev/null || true
  stop_servers
  release_lock
}

# shellcheck disable=SC2329 # called by the INT/TERM trap
on_signal() {
  trap - INT TERM
  stop_countdown
  echo >&2
  echo "benchmark.sh: interrupted; stopping the servers. Partial results kept in ${RUN_DIR:-nothing yet}" >&2
  stop_everything
  [[ -z ${RUN_DIR:-} ]] || report finish "$RUN_DIR" interrupted >/dev/null 2>&1 || true
  exit 130
}

# ------------------------------------------------------------------ one cell

cpus_for() { # cpus_for load|server: taskset's CPU list under PIN=1, else "all"
  if ((!PIN)); then echo all; elif [[ $1 == load ]]; then echo 0; else echo "1-$((CPUS - 1))"; fi
}

countdown() { # countdown SECONDS LABEL: one line, rewritten once a second, until killed
  local end=$((SECONDS + $1)) left
  while :; do
    left=$((end - SECONDS))
    ((left >= 0)) || left=0
    printf '\r\033[K      %s: %ss left in this cell, about %s left in the run' "$2" "$left" \
      "$(minutes $((left + RUN_LEFT)))"
    sleep 1
  done
}

save_command() { # save_command FILE COMMAND...: the exact command line, quoted to be pasted into a shell
  local file=$1
  shift
  printf '%q ' "$@" >"$file"
  echo >>"$file"
}

minutes() { (($1 < 90)) && echo "${1}s" || echo "$((($1 + 30) / 60)) min"; }

run_load() { # run_load CELL_DIR NAME SECONDS COMMAND...: timed, in the background so signals reach our trap
  local cell_dir=$1 name=$2 seconds=$3
  shift 3
  local pin=()
  [[ $(cpus_for load) == all ]] || pin=(taskset -c "$(cpus_for load)")
  save_command "$cell_dir/$name.cmd" "$@"
  # wrk catches SIGINT itself and would let the loop go on to the next cell: we wait for it in
  # the background, so a Ctrl-C reaches our trap at once.
  ${pin[@]+"${pin[@]}"} env PYTHONPATH="$ROOT" "$PY" -P -m report timed "$cell_dir/$name.usage.json" "$@" \
    >"$cell_dir/$name.txt" 2>&1 &
  load_pid=$!
  if [[ -t 1 ]] && ((!QUIET)); then
    countdown "$seconds" "$name" &
    countdown_pid=$!
  fi
  local status=0
  wait "$load_pid" || status=$?
  load_pid=""
  stop_countdown
  if ((status != 0)); then
    echo "benchmark.sh: $name failed (exit $status):" >&2
    cat "$cell_dir/$name.txt" >&2
    exit 1
  fi
}

snapshot() { # snapshot CELL_DIR NAME WORKERS: every worker's counters and the servers' CPU, now
  local cell_dir=$1 name=$2 workers=$3
  if ((STATS)); then
    : >"$cell_dir/stats/snapshot-$name"
    [[ -z $upstream_pid ]] || : >"$cell_dir/upstream-stats/snapshot-$name"
  fi
  report snapshot "$cell_dir" "$name" "$workers" "$STATS" "server=$server_pid" ${upstream_pid:+"upstream=$upstream_pid"}
}

run_cell() { # run_cell INDEX TOTAL ROUND CELL...
  local index=$1 total=$2 round=$3 server=$4 class=$5 workers=$6 threads=$7 limit=$8 pool=$9
  local sleep=${10} endpoint=${11} connections=${12} rate=${13}
  local name warmup
  warmup=$(warmup_for "$sleep" "$endpoint" "$connections" "$rate")
  name=$(printf '%02d-%sw%st-%s' "$index" "$workers" "$threads" "$endpoint")
  [[ $rate == - ]] && name+="-c$connections" || name+="-rate$rate"
  [[ $server == gunicorn ]] || name+="-$server"
  [[ $class == - || $class == uvicorn_worker.UvicornWorker ]] || name+="-${class##*.}"
  [[ $limit == default ]] || name+="-limit$limit"
  [[ $pool == default ]] || name+="-pool$pool"
  [[ $sleep == "$(calc "$SLEEP_SECONDS / $SLEEP_SCALE")" ]] || name+="-sleep$sleep"
  ((REPEAT == 1)) || name+="-r$round"
  local cell_dir=$RUN_DIR/$name
  mkdir -p "$cell_dir"
  printf '%s\t' "$name" "$round" "$server" "$class" "$workers" "$threads" "$limit" "$pool" "$sleep" "$endpoint" \
    "$connections" "$rate" "$WRK_THREADS" "$DURATION_S" "$TIMEOUT_S" "$warmup" "$PIN" "$HTTP_POOL_TIMEOUT" \
    >>"$RUN_DIR/cells.tsv"
  printf '%s\n' "$STATS" >>"$RUN_DIR/cells.tsv"
  local load="c=$connections"
  [[ $rate == - ]] || load="rate=$rate/s"
  note "[$index/$total] $(describe_config "$server" "$class" "$workers" "$threads" "$limit" "$pool")  /$endpoint  $load  sleep=${sleep}s  ${DURATION_S}s"
  local started=$SECONDS

  local env=(SLEEP_SECONDS="$sleep") stats_dir=- upstream_stats=-
  [[ $limit == default ]] || env+=(THREAD_LIMIT="$limit")
  [[ $pool == default ]] || env+=(HTTP_POOL="$pool")
  [[ $HTTP_POOL_TIMEOUT == default ]] || env+=(HTTP_POOL_TIMEOUT="$HTTP_POOL_TIMEOUT")
  if ((STATS)); then
    stats_dir=$cell_dir/stats upstream_stats=$cell_dir/upstream-stats
    mkdir -p "$stats_dir"
    env+=(STATS_DIR="$stats_dir")
  fi
  if [[ $endpoint == *-http* ]]; then # the upstream: the same app's /async, one uvicorn worker
    [[ $upstream_stats == - ]] || mkdir -p "$upstream_stats"
    server_command uvicorn - 1 1 "$UPSTREAM_PORT"
    save_command "$cell_dir/upstream.cmd" "${COMMAND[@]}"
    local upstream_env=(SLEEP_SECONDS="$sleep")
    [[ $upstream_stats == - ]] || upstream_env+=(STATS_DIR="$upstream_stats")
    start_process "$cell_dir/upstream.log" "$(cpus_for server)" "${upstream_env[@]}"
    upstream_pid=$STARTED_PID
    wait_until_ready "$upstream_pid" "$cell_dir/upstream.log" "$upstream_stats" 1 upstream "$UPSTREAM_PORT"
    env+=(UPSTREAM_URL="http://$HOST:$UPSTREAM_PORT/async")
  fi
  server_command "$server" "$class" "$workers" "$threads" "$PORT"
  save_command "$cell_dir/server.cmd" "${COMMAND[@]}"
  start_process "$cell_dir/server.log" "$(cpus_for server)" "${env[@]}"
  server_pid=$STARTED_PID
  wait_until_ready "$server_pid" "$cell_dir/server.log" "$stats_dir" "$workers" "$server" "$PORT"

  local url="http://$HOST:$PORT/$endpoint" load_command
  if [[ $rate == - ]]; then
    load_command=("$WRK" -t"$WRK_THREADS" -c"$connections" -d"${DURATION_S}s" --timeout "${TIMEOUT_S}s")
    ((LATENCY)) && load_command+=(--latency)
    load_command+=("$url")
    if ((warmup > 0)); then # unmeasured: connect storm and first-request costs stay out of the cell
      run_load "$cell_dir" warmup "$warmup" "${load_command[@]/-d${DURATION_S}s/-d${warmup}s}"
      sleep "$(calc "$sleep + 1")" # the warm-up's last requests finish before the measured window
    fi
  else
    load_command=("$HTTPERF" --hog --server "$HOST" --port "$PORT" --uri "/$endpoint" --rate "$rate"
      --num-conns "$(calc "int($rate * $DURATION_S + 0.5)")" --timeout "$TIMEOUT_S")
  fi
  snapshot "$cell_dir" start "$workers"
  local load_name=wrk
  [[ $rate == - ]] || load_name=httperf
  run_load "$cell_dir" "$load_name" "$DURATION_S" "${load_command[@]}"
  snapshot "$cell_dir" stop "$workers"
  stop_servers
  local result
  result=$(report brief "$RUN_DIR" "$name") || exit 1
  echo "[$index/$total] $result"
  OVERHEAD_SEEN=$((OVERHEAD_SEEN + SECONDS - started - DURATION_S - warmup))
}

describe_config() { # describe_config SERVER CLASS WORKERS THREADS LIMIT POOL
  local what="$3 worker x $4 thread"
  (($3 == 1)) || what=${what/worker/workers}
  (($4 == 1)) || what+=s
  case $1 in gunicorn) ;; gunicorn-reuse-port) what+=" gunicorn --reuse-port" ;; *) what="$1 $3 worker"; (($3 == 1)) || what+=s ;; esac
  [[ $2 == - || $2 == uvicorn_worker.UvicornWorker ]] || what+=" ($2)"
  [[ $5 == default ]] || what+=" limit $5"
  [[ $6 == default ]] || what+=" pool $6"
  echo "$what"
}

# ------------------------------------------------------------------ the plan

PER_CELL_OVERHEAD_S=3 # start, readiness, snapshots and stop, as measured here; refined as cells run

cell_seconds() { # cell_seconds CELL...: wall time of one cell
  echo $((DURATION_S + $(warmup_for "$7" "$8" "$9" "${10}") + PER_CELL_OVERHEAD_S))
}

plan_seconds() { # plan_seconds: the whole run
  local line total=0
  for line in ${CELLS[@]+"${CELLS[@]}"}; do
    # shellcheck disable=SC2086 # a cell line is a list of words on purpose
    total=$((total + $(cell_seconds $line)))
  done
  echo $((total * REPEAT))
}

plan_line() {
  local seconds end
  seconds=$(plan_seconds)
  end=$(date -d "@$(($(date +%s) + seconds))" +%H:%M 2>/dev/null || date -r "$(($(date +%s) + seconds))" +%H:%M)
  local load="wrk -t$WRK_THREADS -d${DURATION_S}s --timeout ${TIMEOUT_S}s"
  [[ $SET != openloop ]] || load="httperf --hog, ${DURATION_S}s per rate, --timeout ${TIMEOUT_S}s"
  echo "set $SET: ${#CELLS[@]} cells x $REPEAT run(s), $load; about $(minutes "$seconds") (ends ~$end)"
}

# ------------------------------------------------------------------ every reference run

# Each entry: the knobs it sets, "|", its arguments.
REFERENCE_RUNS=(
  "|--set seed --repeat 3 --label reference"
  "|--set concurrency --repeat 3 --label reference"
  "|--set threads --repeat 3 --label reference"
  "|--set workers --repeat 3 --label reference"
  "|--set overhead --repeat 3 --label reference"
  "|--set servers --repeat 3 --label reference"
  "|--set upstream --repeat 3 --label reference"
  "|--set openloop --repeat 3 --label reference"
  "GUNICORN_CMD_ARGS=--timeout=10 SLEEP_SECONDS=2 DURATION=40s TIMEOUT=10s CONFIGS=1x1 ENDPOINTS=async-blocking CONNECTIONS=20|--repeat 3 --label worker-killed"
)

reference() { # reference [list]: every run the README uses, one at a time, from a clean tree
  local entry knobs args seconds total=0
  if [[ -z ${1:-} ]]; then
    [[ -z $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] ||
      die "reference runs are taken from a committed clean tree: commit or stash first (git status)"
  fi
  for entry in "${REFERENCE_RUNS[@]}"; do
    knobs=${entry%%|*} args=${entry#*|}
    # shellcheck disable=SC2086 # knobs and arguments are lists of words on purpose
    seconds=$(env $knobs "$0" --list $args | sed -n 's/.*; about \([0-9]*\) min.*/\1/p')
    total=$((total + ${seconds:-1}))
    if [[ -n ${1:-} ]]; then
      echo "${knobs:+$knobs }./benchmark.sh $args   # about ${seconds:-1} min"
    else
      echo "== ${knobs:+$knobs }./benchmark.sh $args"
      # shellcheck disable=SC2086
      env $knobs "$0" $args || die "a reference run failed: ${knobs:+$knobs }./benchmark.sh $args"
    fi
  done
  echo "# about $((total / 60)) h $((total % 60)) min in all, one run at a time"
}

# ------------------------------------------------------------------ main

main() {
  SET=seed QUIET=0
  local label="" mode=run arg
  for arg in "$@"; do [[ $arg == --quiet ]] && QUIET=1; done
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --quick) SCALE=10 ;;
      --set) [[ $# -ge 2 ]] || die "--set needs a name"; SET=$2; shift ;;
      --repeat) [[ $# -ge 2 ]] || die "--repeat needs a number"; REPEAT=$2; shift ;;
      --label) [[ $# -ge 2 ]] || die "--label needs a text"; label=$2; shift ;;
      --quiet) ;;
      --setup) mode=setup ;;
      --setup-dev) mode=setup-dev ;;
      --list) [[ $mode == reference ]] && mode=reference-list || mode=list ;;
      --reference) [[ $mode == list ]] && mode=reference-list || mode=reference ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
  done
  [[ $label =~ ^[A-Za-z0-9._-]*$ ]] || die "--label may hold only letters, digits, '.', '_' and '-', got '$label'"
  : "${SCALE:=1}" "${WRK_THREADS:=4}" "${HOST:=127.0.0.1}" "${PORT:=8000}"
  : "${UPSTREAM_PORT:=$((${PORT//[^0-9]/} + 1))}" "${RESULTS_DIR:=$ROOT/results}"
  : "${LOCK:=${TMPDIR:-/tmp}/fastapi-def-vs-async-benchmark.lock}"
  CPUS=$(getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 1)

  case $mode in
    reference) reference; exit ;;
    reference-list) reference list; exit ;;
    setup | setup-dev)
      take_lock "setting up $VENV"
      trap release_lock EXIT
      if [[ $mode == setup ]]; then ensure_venv requirements.txt; else ensure_venv requirements.txt requirements-dev.txt; fi
      ensure_load_generators 1
      exit 0
      ;;
  esac
  set_defaults
  validate
  CELLS=()
  local line needs_httperf=0
  while read -r line; do CELLS+=("$line"); done < <(set_cells)
  for line in ${CELLS[@]+"${CELLS[@]}"}; do
    # shellcheck disable=SC2086 # a cell line is a list of words on purpose
    validate_cell $line
    [[ $line == *" -" ]] || needs_httperf=1
  done
  if [[ $mode == list ]]; then # a plan needs neither .venv nor wrk
    plan_line
    echo "# server worker_class workers threads thread_limit http_pool sleep endpoint connections rate"
    printf '%s\n' ${CELLS[@]+"${CELLS[@]}"}
    exit 0
  fi

  local name
  name="$(date -u +%Y%m%dT%H%M%SZ)-$SET"
  case $SCALE in 1) ;; 10) name+="-quick" ;; *) name+="-scale$SCALE" ;; esac
  [[ -z $label ]] || name+="-$label"
  take_lock "$name"
  trap stop_everything EXIT
  ensure_venv requirements.txt
  ensure_load_generators "$needs_httperf"
  check_port_free "$PORT" PORT
  for line in ${CELLS[@]+"${CELLS[@]}"}; do
    if [[ $line == *-http* ]]; then check_port_free "$UPSTREAM_PORT" UPSTREAM_PORT; break; fi
  done

  RUN_DIR=$RESULTS_DIR/$name
  local suffix=1
  while [[ -e $RUN_DIR ]]; do RUN_DIR=$RESULTS_DIR/$name-$((++suffix)); done
  mkdir -p "$RUN_DIR"
  echo "started $(date -u +%FT%TZ); removed when every cell has run" >"$RUN_DIR/INCOMPLETE"
  trap on_signal INT TERM
  # The run serves this copy, so an edit to app.py while it runs changes nothing.
  cp "$ROOT/app.py" "$RUN_DIR/app.py"
  APP_DIR=$RUN_DIR
  printf '%s\t' cell round server worker_class workers threads thread_limit http_pool sleep endpoint \
    connections rate wrk_threads duration timeout warmup pin pool_timeout >"$RUN_DIR/cells.tsv"
  echo stats >>"$RUN_DIR/cells.tsv"
  report describe "$RUN_DIR" set="$SET" label="$label" scale="$SCALE" repeat="$REPEAT" \
    sleep_seconds="$SLEEP_SECONDS" duration="$DURATION" timeout="$TIMEOUT" connections="$CONNECTIONS" \
    wrk_threads="$WRK_THREADS" configs="$CONFIGS" endpoints="$ENDPOINTS" server="$SERVER" \
    worker_class="$WORKER_CLASS" thread_limit="$THREAD_LIMIT" http_pool="$HTTP_POOL" \
    http_pool_timeout="$HTTP_POOL_TIMEOUT" rates="$RATES" host="$HOST" port="$PORT" \
    upstream_port="$UPSTREAM_PORT" latency="$LATENCY" stats="$STATS" warmup="$WARMUP" pin="$PIN" \
    cpus="$CPUS" wrk="$WRK" httperf="${HTTPERF:-}" gunicorn_cmd_args="${GUNICORN_CMD_ARGS:-}" \
    -- "$0" ${ORIGINAL_ARGS[@]+"${ORIGINAL_ARGS[@]}"}
  export WRK
  note "$(plan_line)"
  note "Run directory: $RUN_DIR"

  local round index=0 total=$((${#CELLS[@]} * REPEAT))
  RUN_LEFT=$(plan_seconds) OVERHEAD_SEEN=0
  for ((round = 1; round <= REPEAT; round++)); do
    for line in ${CELLS[@]+"${CELLS[@]}"}; do
      # shellcheck disable=SC2086 # a cell line is a list of words on purpose
      RUN_LEFT=$((RUN_LEFT - $(cell_seconds $line)))
      # shellcheck disable=SC2086
      run_cell $((++index)) "$total" "$round" $line
      # The estimate for the cells left, with the start/stop time measured so far.
      PER_CELL_OVERHEAD_S=$(((OVERHEAD_SEEN + index - 1) / index))
    done
  done

  rm "$RUN_DIR/INCOMPLETE"
  report finish "$RUN_DIR" complete
  if ((QUIET)); then
    report "$RUN_DIR" >/dev/null
  else
    echo
    report "$RUN_DIR" --compact
  fi
  echo "Full table: $RUN_DIR/summary.md"
  echo "Plot: $RUN_DIR/plot.png"
}

ORIGINAL_ARGS=("$@")
# On one line, so that bash has read all it runs even if this file is edited during a run.
main "$@"; exit
