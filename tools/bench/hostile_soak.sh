#!/usr/bin/env bash
# The hostile soak: a real carewatchd under normal load, first alone and
# then beside hostile clients (huge ids and values, large unauthenticated
# bodies, 300 idle streams, 1 MB URLs, repeated slow rule compiles, a new
# reason in every report), sampling its RSS and threads
# (tools/bench/hostile.cc). Then carewatchd must still be ready, stop
# cleanly, and `carewatch verify` must pass on its ledger.
# Usage: tools/bench/hostile_soak.sh [BUILD_DIR] [SECONDS_PER_PHASE] [ATTACKS]
set -euo pipefail
source "$(dirname "$0")/ports.sh"
build=${1:-build}
secs=${2:-60}
attacks=${3:-ids,noauth,streams,urls,compile,reasons}
cw="$build/tools/carewatch"
tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
token() {  # principal role [service] -> the token; its line goes to tokens.yaml
  local out
  out=$("$cw" token new --principal "$1" --role "$2" ${3:+--service "$3"})
  echo "$out" | tail -n 1 >> "$tmp/tokens.yaml"
  echo "$out" | sed -n 's/^token: //p'
}
echo "tokens:" > "$tmp/tokens.yaml"
platform=$(token soak-platform platform example-social)
regulator=$(token soak-regulator regulator)
author=$(token soak-author rule_author)
port=$(free_ports)
metrics="127.0.0.1:$((port + 1))"
"$build/tools/carewatchd" --listen "127.0.0.1:$port" --metrics "$metrics" --rules rules \
  --ledger "sqlite://$tmp/ledger.db" --tokens "$tmp/tokens.yaml" \
  --cache-dir "$tmp/hs-cache" > "$tmp/carewatchd.log" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
  curl -sf "http://$metrics/readyz" > /dev/null 2>&1 && break
  if ! kill -0 "$pid" 2>/dev/null; then tail -n 20 "$tmp/carewatchd.log" >&2; exit 1; fi
  sleep 0.01
done
rc=0
"$build/tools/carewatch_hostile" --server "127.0.0.1:$port" --pid "$pid" \
  --platform "$platform" --service example-social --regulator "$regulator" --author "$author" \
  --seconds "$secs" --attacks "$attacks" || rc=1
if ! curl -sf "http://$metrics/readyz" > /dev/null; then
  echo "FAIL: carewatchd is not ready after the attacks"
  tail -n 20 "$tmp/carewatchd.log"
  rc=1
fi
kill -TERM "$pid"
if ! wait "$pid"; then echo "FAIL: carewatchd did not stop cleanly"; rc=1; fi
pid=""
"$cw" verify --ledger "sqlite://$tmp/ledger.db" --vkey "$tmp/deployment.vkey" | tail -n 1 || rc=1
exit $rc
