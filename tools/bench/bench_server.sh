#!/usr/bin/env bash
# carewatchd throughput against a no-op gRPC service of the same shape, in
# one run, server and load generator on this machine.
# Usage: tools/bench/bench_server.sh [SECONDS] [BUILD_DIR] [LEDGER_URL]
# (LEDGER_URL: default an SQLite file in a temporary directory.)
set -euo pipefail
secs=${1:-10}
build=${2:-build}
cw="$build/tools/carewatch"
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
token=$("$cw" token new --principal bench --role platform --service example-social)
tok=$(echo "$token" | sed -n 's/^token: //p')
{ echo "tokens:"; echo "$token" | tail -n 1; } > "$tmp/tokens.yaml"
port=$((20000 + RANDOM % 20000))
ledger=${3:-sqlite://$tmp/ledger.db}
"$build/tools/carewatchd" --listen 127.0.0.1:$port --metrics "" --rules rules \
  --ledger "$ledger" --signing-key "$tmp/ledger.key" --hmac-key "$tmp/hmac.key" \
  --signals-key "$tmp/signals.key" --tokens "$tmp/tokens.yaml" --cache-dir "$tmp/cache" \
  --noop-service 2> "$tmp/log" &
pid=$!
for _ in $(seq 1 100); do grep -q serving "$tmp/log" && break; sleep 0.1; done
run() { "$cw" load --server 127.0.0.1:$port --token "$tok" --service example-social --duration ${secs}s --run-id "$1" "${@:2}"; }
echo "== unary Evaluate, 32 concurrent calls"
a=$(run u-noop --noop -c 32); echo "$a"
b=$(run u-real -c 32); echo "$b"
echo "== EvaluateStream, 4 streams x 64 in flight"
c=$(run s-noop --noop --stream -c 4 --window 64); echo "$c"
d=$(run s-real --stream -c 4 --window 64); echo "$d"
rate() { echo "$1" | sed -n 's/.* \([0-9.]*\) reports\/s.*/\1/p'; }
python3 - "$(rate "$a")" "$(rate "$b")" "$(rate "$c")" "$(rate "$d")" <<'PY'
import sys
a, b, c, d = map(float, sys.argv[1:])
print(f"unary: carewatchd / noop = {b/a:.2f}")
print(f"stream: carewatchd / noop = {d/c:.2f}  [target >= 0.5]")
PY
