#!/usr/bin/env bash
# The regulator's tools against a server run by the party held to account
# whose pages never end (carewatch_lying_server): every listing must stop
# with an error naming the call, not page forever.
# Usage: lying_server_test.sh PATH/TO/carewatch PATH/TO/carewatch_lying_server
set -u
cw=$1
liar=$2
tmp=$(mktemp -d)
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; rm -rf "$tmp"' EXIT
. "$(dirname "$0")/check.sh"

serve() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  port=$(free_ports)
  "$liar" --listen "127.0.0.1:$port" --mode "$1" 2> "$tmp/liar.log" &
  pid=$!
  for _ in $(seq 1 100); do grep -q serving "$tmp/liar.log" && return 0; sleep 0.05; done
  echo "the lying server did not start"; cat "$tmp/liar.log"; exit 1
}

# `expect NAME PATTERN ARGS...`: carewatch ARGS fails (exit 1, within the
# timeout) and says PATTERN.
expect() {
  local name=$1 pattern=$2
  shift 2
  timeout 60 "$cw" "$@" --server "127.0.0.1:$port" --token t > "$tmp/out" 2>&1
  local rc=$?
  check "$name: stops with exit 1 (got $rc)" test "$rc" -eq 1
  check "$name: says why" grep -q "$pattern" "$tmp/out"
  [ "$rc" -eq 1 ] && grep -q "$pattern" "$tmp/out" || cat "$tmp/out"
}

for mode in repeat empty; do
  serve "$mode"
  expect "$mode breaches" "ListBreaches: the server .*do not move on" audit breaches
  expect "$mode findings" "ListFindings: the server .*do not move on" audit findings
  expect "$mode stats" "GetStats: the server .*do not move on" audit stats
  expect "$mode evidence" "GetEvidence: the server .*do not move on" audit evidence fd-1
  expect "$mode entries" "GetEntries: the server's next page .*does not move on" audit entries
done
serve endless
expect "endless evidence" "GetEvidence: the server sent more than the 3 events it announced" \
  audit evidence fd-1

echo "lying server tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
