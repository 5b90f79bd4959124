# Sourced by the CLI test scripts: `check NAME CONDITION...` counts a
# passed or failed check (in $passed / $failed) and names each failure.
passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}

# `wait_ready PID METRICS LOG`: waits (30 s at most) for the carewatchd of
# PID to answer /readyz on METRICS (HOST:PORT). If it does not, or exits
# first, prints the end of its LOG and returns 1.
wait_ready() {
  local pid=$1 metrics=$2 log=$3
  for _ in $(seq 1 600); do
    curl -sf "http://$metrics/readyz" > /dev/null 2>&1 && return 0
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.05
  done
  echo "carewatchd did not become ready; its log:"
  tail -n 20 "$log"
  return 1
}

# `free_ports`: see tools/bench/ports.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/bench/ports.sh"
