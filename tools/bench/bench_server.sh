#!/usr/bin/env bash
# carewatchd throughput against a no-op gRPC service of the same shape, in
# one run, server and load generator on this machine.
# Usage: tools/bench/bench_server.sh [SECONDS] [BUILD_DIR] [LEDGER_URL] [REPLICAS]
# (LEDGER_URL: default an SQLite file in a temporary directory. REPLICAS 2,
# PostgreSQL only: a second carewatchd with --standby queues for the first,
# and the streamed load is split between the two.)
set -euo pipefail
source "$(dirname "$0")/ports.sh"
secs=${1:-10}
build=${2:-build}
replicas=${4:-1}
cw="$build/tools/carewatch"
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; wait $p 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
token=$("$cw" token new --principal bench --role platform --service example-social)
tok=$(echo "$token" | sed -n 's/^token: //p')
{ echo "tokens:"; echo "$token" | tail -n 1; } > "$tmp/tokens.yaml"
ledger=${3:-sqlite://$tmp/ledger.db}
ports=()
for i in $(seq 1 "$replicas"); do
  port=$(free_ports)
  extra=()
  [ "$i" -gt 1 ] && extra=(--standby)
  "$build/tools/carewatchd" --listen 127.0.0.1:$port --metrics "" --rules rules \
    --ledger "$ledger" --signing-key "$tmp/ledger.key" --hmac-key "$tmp/hmac.key" \
    --signals-key "$tmp/signals.key" --tokens "$tmp/tokens.yaml" --cache-dir "$tmp/cache$i" \
    --noop-service "${extra[@]}" 2> "$tmp/log$i" &
  pids+=($!)
  ports+=($port)
  for _ in $(seq 1 100); do grep -q serving "$tmp/log$i" && break; sleep 0.1; done
done
port=${ports[0]}
run() { "$cw" load --server 127.0.0.1:$port --token "$tok" --service example-social --duration ${secs}s --run-id "$1" "${@:2}"; }
rate() { echo "$1" | sed -n 's/.* \([0-9.]*\) reports\/s.*/\1/p'; }
if [ "$replicas" -gt 1 ]; then
  last=${ports[$((replicas - 1))]}
  # One call at a time: what a queued report adds to a call's latency (its
  # push, the writer's sequencer, its answer) beside the writer's own.
  p50() { echo "$1" | sed -n 's/.* p50 \([0-9.]*\) .*/\1/p'; }
  echo "== unary Evaluate, one call at a time, through the writer, then the queueing replica"
  w1=$(run w1 -c 1); echo "$w1"
  q1=$("$cw" load --server 127.0.0.1:$last --token "$tok" --service example-social \
    --duration ${secs}s --run-id q1 -c 1); echo "$q1"
  python3 -c "print(f'one call at a time: p50 through the queueing replica / through the writer = {float(\"$(p50 "$q1")\") / float(\"$(p50 "$w1")\"):.2f}')"
  # 32 unary calls in flight through each (none holds a thread on either).
  echo "== unary Evaluate, 32 concurrent calls, through the writer, then the queueing replica"
  w32=$(run w32 -c 32); echo "$w32"
  q32=$("$cw" load --server 127.0.0.1:$last --token "$tok" --service example-social \
    --duration ${secs}s --run-id q32 -c 32); echo "$q32"
  python3 -c "print(f'32 calls in flight: through the queueing replica / through the writer = {float(\"$(rate "$q32")\") / float(\"$(rate "$w32")\"):.2f}')"
  echo "== EvaluateStream through the queueing replica alone, 4 streams x 64 in flight"
  "$cw" load --server 127.0.0.1:$last --token "$tok" --service example-social \
    --duration ${secs}s --run-id q --stream -c 4 --window 64
  # The same streamed load as one replica gets (4 streams x 64), split
  # across the replicas; the figure is the sum of what they acknowledged.
  echo "== EvaluateStream on $replicas replicas, 4 streams x 64 in flight in all"
  per=$((4 / replicas)); [ "$per" -lt 1 ] && per=1
  loads=()
  for i in "${!ports[@]}"; do
    "$cw" load --server 127.0.0.1:${ports[$i]} --token "$tok" --service example-social \
      --duration ${secs}s --run-id "r$i" --stream -c $per --window 64 > "$tmp/load$i" &
    loads+=($!)
  done
  for l in "${loads[@]}"; do wait "$l"; done
  total=0
  for i in "${!ports[@]}"; do
    cat "$tmp/load$i"
    total=$(python3 -c "print($total + float('$(rate "$(cat "$tmp/load$i")")'))")
  done
  echo "stream on $replicas replicas: $total reports/s in all"
  exit 0
fi
# Each load runs four times, in the order noop, carewatchd, carewatchd,
# noop, and the ratio is of the sums: back-to-back runs on this machine are
# not alike (docs/performance.md), so one fixed order would bias it.
abba() {
  local name=$1 out
  shift
  out=$(run "$name-noop1" --noop "$@"); echo "$out" >&2; a1=$(rate "$out")
  out=$(run "$name-real1" "$@"); echo "$out" >&2; b1=$(rate "$out")
  out=$(run "$name-real2" "$@"); echo "$out" >&2; b2=$(rate "$out")
  out=$(run "$name-noop2" --noop "$@"); echo "$out" >&2; a2=$(rate "$out")
}
echo "== unary Evaluate, 32 concurrent calls (noop, carewatchd, carewatchd, noop)"
abba u -c 32 2>&1
ua1=$a1 ub1=$b1 ub2=$b2 ua2=$a2
# The same calls from gRPC's callback API, no client thread per call: not a
# target, but it shows how much of the noop figure is the client's cost.
echo "== unary Evaluate, 32 concurrent calls from the callback API (--callback)"
abba y -c 32 --callback 2>&1
ya1=$a1 yb1=$b1 yb2=$b2 ya2=$a2
echo "== EvaluateStream, 4 streams x 64 in flight (noop, carewatchd, carewatchd, noop)"
abba s --stream -c 4 --window 64 2>&1
python3 - "$ua1" "$ub1" "$ub2" "$ua2" "$a1" "$b1" "$b2" "$a2" "$ya1" "$yb1" "$yb2" "$ya2" <<'PY'
import sys
ua1, ub1, ub2, ua2, sa1, sb1, sb2, sa2, ya1, yb1, yb2, ya2 = map(float, sys.argv[1:])
print(f"unary: carewatchd / noop = {(ub1 + ub2) / (ua1 + ua2):.2f}  [target >= 0.61]"
      f"  (carewatchd {(ub1 + ub2) / 2:.0f} /s, noop {(ua1 + ua2) / 2:.0f} /s)")
print(f"unary, callback client: carewatchd / noop = {(yb1 + yb2) / (ya1 + ya2):.2f}"
      f"  (carewatchd {(yb1 + yb2) / 2:.0f} /s, noop {(ya1 + ya2) / 2:.0f} /s)")
print(f"stream: carewatchd / noop = {(sb1 + sb2) / (sa1 + sa2):.2f}  [target >= 0.54]"
      f"  (carewatchd {(sb1 + sb2) / 2:.0f} /s, noop {(sa1 + sa2) / 2:.0f} /s)")
PY
