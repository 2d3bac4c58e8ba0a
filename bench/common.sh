# Shared by bench/run-50k and bench/peers/*: free ports, readiness waits, and stopping exactly
# the processes a script started (by PID, never by name). Source it; do not run it.

# Processes this script started; stopped by stop_all (installed as the EXIT trap).
STARTED_PIDS=()

# free_port BASE: the first port from BASE up that nothing on 127.0.0.1 accepts on.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
    p=$((p + 1))
  done
  echo "$p"
}

# wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT.
wait_port() {
  local port=$1 left=$(( ${2:-20} * 10 ))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    left=$((left - 1))
    if [ "$left" -le 0 ]; then
      echo "nothing listens on 127.0.0.1:$port" >&2
      return 1
    fi
    sleep 0.1
  done
}

# wait_ready URL PID [SECONDS]: until URL answers 200 (curl); fails at once if PID exits.
wait_ready() {
  local url=$1 pid=$2 left=$(( ${3:-20} * 10 ))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "process $pid exited before $url was ready" >&2
      return 1
    fi
    left=$((left - 1))
    if [ "$left" -le 0 ]; then
      echo "$url never answered 200" >&2
      return 1
    fi
    sleep 0.1
  done
}

# stop_all: TERM then (after 10 s) KILL every process in STARTED_PIDS, newest first.
stop_all() {
  local i pid
  for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${STARTED_PIDS[$i]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]}"; do
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  STARTED_PIDS=()
}

# need_pkg CMD PKG...: installs the Debian packages when CMD is missing.
need_pkg() {
  local cmd=$1
  shift
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -e "$cmd" ]; then
    echo "installing $*" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}

# machine_line: one line naming the machine, for the record next to the figures.
machine_line() {
  echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), open files $(ulimit -Hn)"
}

# cpu_per_event REPORT PIDS: for each publishing phase of a loadgen JSON report, the CPU per
# published event of the processes PIDS (comma-separated: one Redis, or every server of a
# Redis Cluster, summed) and of the other watched processes (the gateways), in microseconds.
# loadgen reads each process's /proc/<pid>/stat at the start and end of the phase, so the
# connect phase (and, in channel and sharded mode, its SUBSCRIBE churn) is not in it.
cpu_per_event() {
  jq -r --argjson r "[$2]" '.phases[] | select(.sent > 0) | . as $p |
    ([.procs[] | select(.pid as $x | $r | index($x)) | .cpu_s] | add // 0) as $redis |
    ([.procs[] | select(.pid as $x | $r | index($x) | not) | .cpu_s] | add // 0) as $gw |
    (if ($r | length) > 1 then " (\($r | length) servers together)" else "" end) as $n |
    "cpu per event: redis \($redis / $p.sent * 1e8 | round / 100) us\($n), gateways \($gw / $p.sent * 1e8 | round / 100) us (\($p.sent) events in \($p.seconds * 10 | round / 10) s; redis \($redis * 100 | round / 100) s, gateways \($gw * 100 | round / 100) s of CPU)"' "$1"
}

# settle: waits (at most SETTLE seconds, default 20) for the 1-minute load average to fall
# under LOAD_MAX (default 2.0) after the previous run; prints the load average it starts at,
# to be recorded beside the run (a run that started above LOAD_MAX is void on this 2-core
# machine: the previous run's tail or something else running).
settle() {
  local i
  for i in $(seq "${SETTLE:-20}"); do
    awk -v max="${LOAD_MAX:-2.0}" '{ exit !($1 < max) }' /proc/loadavg && break
    sleep 1
  done
  cut -d' ' -f1 /proc/loadavg
}
