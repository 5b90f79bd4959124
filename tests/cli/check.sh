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

# `free_ports`: prints a port P for a server to listen on, with P + 1 free
# too (a metrics port beside it). Below 32768: the kernel's ephemeral
# ports (32768-60999 by default), which outgoing connections and servers
# listening on port 0 take, are never picked, and no listener answers on
# either port now.
free_ports() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null &&
      ! (exec 3<> "/dev/tcp/127.0.0.1/$((p + 1))") 2> /dev/null; then
      break
    fi
  done
  echo "$p"
}
