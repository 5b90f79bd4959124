#!/usr/bin/env bash
# A live SQLite ledger while a real carewatchd writes it under load:
# `carewatch ledger backup` makes a copy that is one consistent snapshot and
# verifies against the deployment's key; `verify --ledger` and `report
# --ledger` on the live file read one snapshot too, so they pass; the load
# loses nothing meanwhile; a backup refuses what it cannot do without
# touching anything.
# Usage: live_ledger_test.sh PATH/TO/carewatch PATH/TO/carewatchd SOURCE_DIR
set -u
cw=$1
cwd=$2
src=$3
tmp=$(mktemp -d)
pid=""
trap 'if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; rm -rf "$tmp"' EXIT
. "$(dirname "$0")/check.sh"
out=$("$cw" token new --principal loader --role platform --service example-social)
token=$(echo "$out" | sed -n 's/^token: //p')
{ echo "tokens:"; echo "$out" | tail -n 1; } > "$tmp/tokens.yaml"
port=$(free_ports)
metrics="127.0.0.1:$((port + 1))"
start() {
  "$cwd" --listen "127.0.0.1:$port" --metrics "$metrics" --rules "$src/rules" \
    --ledger "sqlite://$tmp/led/ledger.db" --tokens "$tmp/tokens.yaml" \
    --cache-dir "$tmp/hs" > "$tmp/d.log" 2>&1 &
  pid=$!
  wait_ready "$pid" "$metrics" "$tmp/d.log"
}
check "carewatchd starts" start
metric() { curl -s "http://$metrics/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# Load for 8 s; checks, a report and two backups of the live file while it runs.
"$cw" load --server "127.0.0.1:$port" --token "$token" --service example-social \
  --duration 8s --run-id backup -c 16 > "$tmp/load.out" 2> /dev/null &
load=$!
sleep 2
# Before reads of one snapshot, the check read the tables after the events
# and found rows of events it had not read ("has no OBLIGATION_OPENED event").
for i in 1 2 3; do
  "$cw" verify --ledger "sqlite://$tmp/led/ledger.db" --vkey "$tmp/led/deployment.vkey" \
    > "$tmp/live$i.out" 2>&1
  check "verify --ledger of the live file passes ($i)" grep -q "^OK: ledger verifies" "$tmp/live$i.out"
done
"$cw" report --ledger "sqlite://$tmp/led/ledger.db" --vkey "$tmp/led/deployment.vkey" \
  -o "$tmp/live.html" > "$tmp/report.out" 2>&1
check "report --ledger of the live file exits 0" test $? -eq 0
check "report --ledger of the live file finds every check passed" \
  bash -c "! grep -q 'a check failed' '$tmp/report.out' && grep -q 'data-verified=\"all\"' '$tmp/live.html'"
"$cw" ledger backup --ledger "sqlite://$tmp/led/ledger.db" --to "$tmp/copy1.db" \
  --vkey "$tmp/led/deployment.vkey" > "$tmp/b1.out" 2>&1
check "a backup under load exits 0" test $? -eq 0
sleep 1
"$cw" ledger backup --ledger "$tmp/led/ledger.db" --to "$tmp/copy2.db" --no-verify > "$tmp/b2.out" 2>&1
check "a backup of a plain path with --no-verify exits 0" test $? -eq 0
wait "$load"
check "the load lost nothing while the backups ran" grep -q " 0 errors," "$tmp/load.out"
check "the load was served" bash -c "! grep -q ': 0 ok,' '$tmp/load.out'"

check "the backup says what it wrote" \
  grep -Eq "^wrote $tmp/copy1.db: [0-9]+ events, [0-9]+ bytes; root [0-9a-f]{64}$" "$tmp/b1.out"
check "the copy verifies against the deployment's key" \
  grep -q "^OK: ledger verifies: .*; signed by the trusted key$" "$tmp/b1.out"
check "--no-verify only copies" bash -c "grep -q '^wrote ' '$tmp/b2.out' && ! grep -q '^OK' '$tmp/b2.out'"
check "the copy is mode 0600" test "$(stat -c %a "$tmp/copy1.db")" = 600
check "the copy is one file (no WAL beside it)" test ! -e "$tmp/copy1.db-wal"
check "no partial file is left" test ! -e "$tmp/copy1.db.partial"
events1=$(sed -n 's/^wrote .*: \([0-9]*\) events.*/\1/p' "$tmp/b1.out")
events2=$(sed -n 's/^wrote .*: \([0-9]*\) events.*/\1/p' "$tmp/b2.out")
check "the copies hold what the ledger held when each was taken" \
  test "$events1" -gt 0 -a "$events2" -ge "$events1" -a "$events2" -le "$(metric carewatch_ledger_events)"
# Each copy is a ledger of its own, as a regulator's offline check sees it.
"$cw" verify --ledger "sqlite://$tmp/copy2.db" --vkey "$tmp/led/deployment.vkey" > "$tmp/v2.out"
check "the --no-verify copy verifies on its own" grep -q "^OK: ledger verifies" "$tmp/v2.out"
"$cw" audit breaches --ledger "sqlite://$tmp/copy1.db" > /dev/null
check "the copy answers audit queries" test $? -eq 0

# Refusals: nothing overwritten, nothing left behind.
sum=$(sha256sum < "$tmp/copy1.db")
"$cw" ledger backup --ledger "sqlite://$tmp/led/ledger.db" --to "$tmp/copy1.db" > /dev/null 2> "$tmp/over.err"
check "a backup onto an existing file exits 1" test $? -eq 1
check "a backup onto an existing file says so" grep -q "exists: a backup never overwrites a file" "$tmp/over.err"
check "the existing file is untouched" test "$(sha256sum < "$tmp/copy1.db")" = "$sum"
"$cw" ledger backup --ledger "postgresql://cw@127.0.0.1/none" --to "$tmp/pg.db" > /dev/null 2> "$tmp/pg.err"
check "a PostgreSQL ledger is sent to pg_dump" bash -c "grep -q 'pg_dump' '$tmp/pg.err' && test ! -e '$tmp/pg.db'"
head -c 8192 /dev/urandom > "$tmp/noise.db"
"$cw" ledger backup --ledger "$tmp/noise.db" --to "$tmp/noise-copy.db" > /dev/null 2> "$tmp/noise.err"
check "a file that is not a database exits 1 with an error" \
  bash -c "grep -q '^error: ' '$tmp/noise.err' && test ! -e '$tmp/noise-copy.db' && test ! -e '$tmp/noise-copy.db.partial'"

# A ledger that does not verify is still copied (it is what the ledger
# holds), and the backup says it does not verify.
cp "$tmp/copy1.db" "$tmp/damaged.db"
sqlite3 "$tmp/damaged.db" "UPDATE events SET payload = X'00' || payload WHERE seq = 2"
"$cw" ledger backup --ledger "$tmp/damaged.db" --to "$tmp/damaged-copy.db" \
  --vkey "$tmp/led/deployment.vkey" > "$tmp/damaged.out" 2>&1
check "a backup of a damaged ledger exits 1" test $? -eq 1
check "a backup of a damaged ledger names the event" grep -q "^first bad sequence number: 2$" "$tmp/damaged.out"
check "a backup of a damaged ledger keeps the copy" \
  bash -c "test -s '$tmp/damaged-copy.db' && grep -q 'the copy is kept' '$tmp/damaged.out'"

kill -TERM "$pid"
wait "$pid"
check "carewatchd stops cleanly after the backups" test $? -eq 0
pid=""
"$cw" verify --ledger "sqlite://$tmp/led/ledger.db" --vkey "$tmp/led/deployment.vkey" > "$tmp/live.out"
check "the live ledger verifies after the backups" grep -q "^OK: ledger verifies" "$tmp/live.out"

# Restore (docs/operations.md): the copy in the ledger's place, beside the
# deployment's keys; carewatchd resumes from it and goes on appending.
mv "$tmp/led/ledger.db" "$tmp/led/ledger.db.old"
rm -f "$tmp/led/ledger.db-wal" "$tmp/led/ledger.db-shm"
cp "$tmp/copy1.db" "$tmp/led/ledger.db"
chmod 600 "$tmp/led/ledger.db"
check "carewatchd starts on a restored copy" start
check "the restored ledger holds the copy's events" test "$(metric carewatch_ledger_events)" -ge "$events1"
"$cw" load --server "127.0.0.1:$port" --token "$token" --service example-social \
  --duration 1s --run-id restored -c 4 > "$tmp/load2.out" 2> /dev/null
check "the restored ledger takes new reports" grep -q " 0 errors," "$tmp/load2.out"
# The load from gRPC's callback API (no thread per call) waits for every
# call in flight before it counts: the server evaluated exactly what it
# counts as acknowledged.
before=$(metric carewatch_reports_evaluated_total)
"$cw" load --server "127.0.0.1:$port" --token "$token" --service example-social \
  --duration 1s --run-id callback -c 8 --callback > "$tmp/load3.out" 2> /dev/null
acked=$(sed -n 's/.*: \([0-9]*\) ok, 0 errors,.*/\1/p' "$tmp/load3.out")
check "a callback-API load is served without errors" test -n "$acked" -a "${acked:-0}" -gt 0
check "the server evaluated exactly the callback load's acknowledged reports" \
  test "$(($(metric carewatch_reports_evaluated_total) - before))" -eq "${acked:-0}"
# Against a port nothing listens on, every call fails at once: the load
# says so and ends when its time is up.
dead=$(free_ports)
timeout 30 "$cw" load --server "127.0.0.1:$dead" --token "$token" --service example-social \
  --duration 1s --run-id dead -c 8 --callback > "$tmp/load4.out" 2> "$tmp/load4.err"
check "a callback-API load against no server exits 1" test $? -eq 1
check "and says why" grep -q "^error: " "$tmp/load4.err"
check "and counts its failures" grep -Eq ": 0 ok, [1-9][0-9]* errors," "$tmp/load4.out"
kill -TERM "$pid"
wait "$pid"
pid=""
"$cw" verify --ledger "sqlite://$tmp/led/ledger.db" --vkey "$tmp/led/deployment.vkey" > "$tmp/restored.out"
check "the restored ledger verifies after new appends" grep -q "^OK: ledger verifies" "$tmp/restored.out"

echo "live ledger: $passed passed, $failed failed"
test "$failed" -eq 0
