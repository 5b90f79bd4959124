#!/usr/bin/env bash
# Replay and verify throughput on a generated scenario.
# Usage: tools/bench/bench_replay.sh [EVENTS] [BUILD_DIR]
set -euo pipefail
events=${1:-1000000}
build=${2:-build}
cw="$build/tools/carewatch"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$cw" gen-scenario --rules rules --lines "$events" --seed 11 --services 4 \
  --miss-service example-social --miss-rate 0.2 -o "$tmp/events.jsonl"
lines=$(wc -l < "$tmp/events.jsonl")
t0=$(date +%s.%N)
"$cw" replay --rules rules --json --ledger "sqlite://$tmp/led/ledger.db" "$tmp/events.jsonl" > "$tmp/out.json"
t1=$(date +%s.%N)
"$cw" verify --ledger "sqlite://$tmp/led/ledger.db" > "$tmp/verify.out"
t2=$(date +%s.%N)
ledger_events=$(sqlite3 "$tmp/led/ledger.db" "SELECT count(*) FROM events")
python3 - "$lines" "$ledger_events" "$t0" "$t1" "$t2" <<'PY'
import sys
lines, ledger_events, t0, t1, t2 = int(sys.argv[1]), int(sys.argv[2]), *map(float, sys.argv[3:])
print(f"replay: {lines} input events in {t1-t0:.1f}s = {lines/(t1-t0):,.0f} events/s "
      f"({ledger_events} ledger events written, durable)")
print(f"verify: {ledger_events} ledger events in {t2-t1:.1f}s = {ledger_events/(t2-t1):,.0f} events/s")
PY
cat "$tmp/verify.out"
