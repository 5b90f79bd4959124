#!/usr/bin/env bash
# `carewatch push` against a real carewatchd over loopback, and a restart of
# that carewatchd on the ledger the push wrote.
# Usage: push_test.sh PATH/TO/carewatch PATH/TO/carewatchd SOURCE_DIR
set -u
cw=$1
cwd=$2
src=$3
tmp=$(mktemp -d)
pid=""
trap 'if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; rm -rf "$tmp"' EXIT
. "$(dirname "$0")/check.sh"
out=$("$cw" token new --principal pusher --role admin)
token=$(echo "$out" | sed -n 's/^token: //p')
{ echo "tokens:"; echo "$out" | tail -n 1; } > "$tmp/tokens.yaml"
port=$(free_ports)
metrics="127.0.0.1:$((port + 1))"
start() {
  "$cwd" --listen "127.0.0.1:$port" --metrics "$metrics" --rules "$src/rules" \
    --ledger "sqlite://$tmp/led/ledger.db" --tokens "$tmp/tokens.yaml" \
    --cache-dir "$tmp/hs" >> "$tmp/d.log" 2>&1 &
  pid=$!
  wait_ready "$pid" "$metrics" "$tmp/d.log"
}
stop() {
  kill -TERM "$pid"
  wait "$pid"
  pid=""
}
metric() { curl -s "http://$metrics/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

"$cw" gen-scenario --rules "$src/rules" --lines 400 --seed 3 --services 2 \
  --miss-service example-social --miss-rate 0.3 -o "$tmp/events.jsonl" > /dev/null
lines=$(wc -l < "$tmp/events.jsonl")  # --lines is approximate
reports=$(grep -c '^{"report"' "$tmp/events.jsonl")
actions=$(grep -c '^{"action"' "$tmp/events.jsonl")
check "carewatchd starts" start

"$cw" push "$tmp/events.jsonl" --server "127.0.0.1:$port" --token "$token" -c 8 > "$tmp/push.out"
check "push exits 0" test $? -eq 0
check "push counts every line it sent" \
  grep -q "^pushed $lines lines ($reports reports, $actions actions) in .* 0 refused, 0 unreadable$" "$tmp/push.out"
check "every report was evaluated" test "$(metric carewatch_reports_evaluated_total)" = "$reports"
check "breaches were recorded" test "$(metric 'carewatch_obligations{state="breached"}')" -gt 0

# The same lines again: reports are retries (same verdict, counted once in
# the ledger); a line that is not JSON is named and skipped.
events_before=$(metric carewatch_ledger_events)
{ head -n 5 "$tmp/events.jsonl" | grep '^{"report"'; echo 'not json'; } > "$tmp/again.jsonl"
"$cw" push "$tmp/again.jsonl" --server "127.0.0.1:$port" --token "$token" > "$tmp/again.out" 2> "$tmp/again.err"
check "a retried push exits 0" test $? -eq 0
check "an unreadable line is named and counted" \
  bash -c "grep -q 'again.jsonl:[0-9]*: error: not a scenario line' '$tmp/again.err' && grep -q ' 1 unreadable' '$tmp/again.out'"
check "retried reports add no event" test "$(metric carewatch_ledger_events)" = "$events_before"

# A restart resumes from the state the push left; the ledger verifies.
open_before=$(metric 'carewatch_obligations{state="open"}')
breached_before=$(metric 'carewatch_obligations{state="breached"}')
stop
check "carewatchd restarts on the pushed ledger" start
check "open obligations survive the restart" \
  test "$(metric 'carewatch_obligations{state="open"}')" -le "$open_before"
check "breaches survive the restart" \
  test "$(metric 'carewatch_obligations{state="breached"}')" -ge "$breached_before"
"$cw" evaluate "$src/examples/report.json" --server "127.0.0.1:$port" --token "$token" \
  > "$tmp/example.out" 2> "$tmp/example.err"
check "the example report is evaluated" grep -q '"report_id":"example-1"' "$tmp/example.out"
check "the example is sent as received now" grep -q "^received_at not given: sent as $(date -u +%Y-%m-%d)" "$tmp/example.err"
# Errors from the server name the gRPC code, and an empty token says so.
"$cw" evaluate "$src/examples/report.json" --server "127.0.0.1:$port" --token "" 2> "$tmp/notoken.err"
check "an empty --token is told it is missing" grep -q "no token: send the header" "$tmp/notoken.err"
check "the error names its gRPC code" grep -q "(UNAUTHENTICATED)$" "$tmp/notoken.err"
"$cw" evaluate "$src/examples/report.json" --server "127.0.0.1:$port" --token wrong 2> "$tmp/bad.err"
check "an unknown token is UNAUTHENTICATED by name" grep -q "^error: unknown token (UNAUTHENTICATED)$" "$tmp/bad.err"
stop
"$cw" verify --ledger "sqlite://$tmp/led/ledger.db" --vkey "$tmp/led/deployment.vkey" > "$tmp/verify.out"
check "the pushed ledger verifies against its key" grep -q "^OK: ledger verifies" "$tmp/verify.out"

# No server: the push fails with exit 1 and says why.
"$cw" push "$tmp/again.jsonl" --server "127.0.0.1:$port" --token "$token" > /dev/null 2> "$tmp/down.err"
check "push to a stopped server exits 1" test $? -eq 1
check "push to a stopped server names the error" grep -q "^error: " "$tmp/down.err"

echo "push: $passed passed, $failed failed"
test "$failed" -eq 0
