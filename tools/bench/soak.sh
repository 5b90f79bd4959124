#!/usr/bin/env bash
# A bounded soak: a generated scenario (reports and the actions taken on
# them, four services, one missing 20% of its deadlines) pushed through a
# real carewatchd in rounds; after each round carewatchd is sampled (RSS,
# open obligations, ledger size) and restarted (time to /readyz, RSS when
# ready). Ends with an offline `carewatch verify` of the ledger.
# Usage: tools/bench/soak.sh [BUILD_DIR] [EVENTS] [ROUNDS]
set -euo pipefail
source "$(dirname "$0")/ports.sh"
build=${1:-build}
events=${2:-3000000}
rounds=${3:-6}
cw="$build/tools/carewatch"
tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
out=$("$cw" token new --principal soak --role admin)
token=$(echo "$out" | sed -n 's/^token: //p')
{ echo "tokens:"; echo "$out" | tail -n 1; } > "$tmp/tokens.yaml"
port=$(free_ports)
metrics="127.0.0.1:$((port + 1))"

start() {  # sets ready (seconds to /readyz) and rss_ready (kB)
  local t0 t1
  t0=$(date +%s.%N)
  "$build/tools/carewatchd" --listen "127.0.0.1:$port" --metrics "$metrics" --rules rules \
    --ledger "sqlite://$tmp/ledger/ledger.db" --tokens "$tmp/tokens.yaml" \
    --cache-dir "$tmp/hs-cache" >> "$tmp/carewatchd.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 12000); do
    curl -sf "http://$metrics/readyz" > /dev/null 2>&1 && break
    if ! kill -0 "$pid" 2>/dev/null; then tail -n 20 "$tmp/carewatchd.log" >&2; exit 1; fi
    sleep 0.01
  done
  t1=$(date +%s.%N)
  ready=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
  rss_ready=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
}
stop() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
}
metric() { curl -s "http://$metrics/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

echo "generating $events scenario lines..."
"$cw" gen-scenario --rules rules --lines "$events" --seed 7 --services 4 \
  --miss-service example-social --miss-rate 0.2 -o "$tmp/events.jsonl" > /dev/null
split -n "l/$rounds" -d "$tmp/events.jsonl" "$tmp/round-"
rm "$tmp/events.jsonl"
start  # compiles the rules into the cache once
stop
start
ready0=$ready
rss0=$rss_ready
printf "%-6s %-11s %-13s %-9s %-14s %-9s %-9s %-16s %-13s\n" round lines "ledger events" \
  "lines/s" "RSS loaded MB" open findings "time to /readyz" "RSS ready MB"
printf "%-6s %-11s %-13s %-9s %-14s %-9s %-9s %-16s %-13s\n" 0 0 0 - - 0 0 "$ready0" \
  "$(python3 -c "print(f'{$rss0/1024:.1f}')")"
total=0
r=0
for chunk in "$tmp"/round-*; do
  r=$((r + 1))
  n=$(wc -l < "$chunk")
  total=$((total + n))
  rate=$("$cw" push "$chunk" --server "127.0.0.1:$port" --token "$token" -c 64 |
    sed -n 's/.* = \([0-9]*\) lines\/s.*/\1/p')
  rm "$chunk"
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  open=$(metric 'carewatch_obligations{state="open"}')
  findings=$(metric carewatch_findings_open)
  ledger_events=$(metric carewatch_ledger_events)
  stop
  start
  printf "%-6s %-11s %-13s %-9s %-14s %-9s %-9s %-16s %-13s\n" "$r" "$total" "$ledger_events" \
    "$rate" "$(python3 -c "print(f'{$rss/1024:.1f}')")" "$open" "$findings" "$ready" \
    "$(python3 -c "print(f'{$rss_ready/1024:.1f}')")"
done
stop
echo "last restart / first restart: $(python3 -c "print(f'{$ready / $ready0:.2f}')") (time), $(python3 -c "print(f'{$rss_ready / $rss0:.2f}')") (RSS when ready)"
"$cw" verify --ledger "sqlite://$tmp/ledger/ledger.db" --vkey "$tmp/ledger/deployment.vkey" | tail -n 1
