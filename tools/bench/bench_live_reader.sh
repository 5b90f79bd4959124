#!/usr/bin/env bash
# carewatchd's unary throughput while another process holds one read
# snapshot of its SQLite ledger (as `sqlite3 .backup`, a long query or a
# check of the live file does), against the same load before the snapshot,
# in one run. One-second slices of `carewatch load -c 32`; the reader takes
# its snapshot after BEFORE slices and holds it for HOLD seconds.
# Usage: tools/bench/bench_live_reader.sh [BUILD_DIR] [HOLD] [BEFORE] [AFTER]
set -euo pipefail
source "$(dirname "$0")/ports.sh"
build=${1:-build}
hold=${2:-8}
before=${3:-4}
after=${4:-6}
cw="$build/tools/carewatch"
tmp=$(mktemp -d)
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT
out=$("$cw" token new --principal bench --role platform --service example-social)
tok=$(echo "$out" | sed -n 's/^token: //p')
{ echo "tokens:"; echo "$out" | tail -n 1; } > "$tmp/tokens.yaml"
port=$(free_ports)
"$build/tools/carewatchd" --listen "127.0.0.1:$port" --metrics "" --rules rules \
  --ledger "sqlite://$tmp/ledger.db" --tokens "$tmp/tokens.yaml" --cache-dir "$tmp/cache" \
  2> "$tmp/log" &
pid=$!
for _ in $(seq 1 100); do grep -q serving "$tmp/log" && break; sleep 0.1; done
slice() {
  "$cw" load --server "127.0.0.1:$port" --token "$tok" --service example-social \
    --duration 1s --run-id "s$1-$RANDOM" -c 32 2> /dev/null |
    sed -n 's/.* \([0-9]*\) reports\/s, latency.*/\1/p'
}
rates_before=()
for i in $(seq 1 "$before"); do
  r=$(slice "$i"); rates_before+=("$r"); echo "before   slice $i: $r reports/s"
done
# The reader: one read transaction of another process, held.
python3 - "$tmp/ledger.db" "$hold" > "$tmp/reader.out" 2>&1 <<'PY' &
import sqlite3, sys, time
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, isolation_level=None)
con.execute("BEGIN")
con.execute("SELECT count(*) FROM events").fetchone()
time.sleep(float(sys.argv[2]))
con.execute("ROLLBACK")
PY
reader=$!
start=$(date +%s.%N)
rates_during=()
i=0
while kill -0 "$reader" 2> /dev/null; do
  i=$((i + 1))
  r=$(slice "h$i"); rates_during+=("$r"); echo "held     slice $i: $r reports/s"
done
wait "$reader"
held_for=$(python3 -c "import time; print(round(time.time() - $start, 1))")
rates_after=()
for i in $(seq 1 "$after"); do
  r=$(slice "a$i"); rates_after+=("$r"); echo "after    slice $i: $r reports/s"
done
python3 - "${#rates_before[@]}" "${rates_before[@]}" "${#rates_during[@]}" "${rates_during[@]}" \
  "${rates_after[@]}" "$held_for" <<'PY'
import sys
a = sys.argv[1:]
nb = int(a[0]); b = list(map(float, a[1:1 + nb])); a = a[1 + nb:]
nd = int(a[0]); d = list(map(float, a[1:1 + nd])); rest = a[1 + nd:]
held_for = float(rest[-1]); after = list(map(float, rest[:-1]))
mean = lambda x: sum(x) / len(x) if x else 0.0
print(f"snapshot held {held_for} s over {nd} slices")
print(f"while held / before = {mean(d) / mean(b):.2f}  (held {mean(d):.0f} /s, before {mean(b):.0f} /s, lowest slice {min(d) if d else 0:.0f} /s)")
print(f"after / before = {mean(after) / mean(b):.2f}  (after {mean(after):.0f} /s)")
PY
