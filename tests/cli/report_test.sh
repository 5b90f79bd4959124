#!/usr/bin/env bash
# `carewatch report`: built from a generated scenario with known findings,
# offline from its ledger and live from a carewatchd, then opened in headless
# Chromium to check what a person sees.
# Usage: report_test.sh PATH/TO/carewatch PATH/TO/carewatchd SOURCE_DIR
set -u
cw=$1
cwd=$2
src=$3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pid=""
trap 'if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; rm -rf "$tmp"' EXIT
. "$here/check.sh"

chromium=${CAREWATCH_CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$chromium" ]; then
  echo "FAIL: headless Chromium is not installed (scripts/install-deps.sh --test installs it)"
  exit 1
fi
# Chromium, headless and offline, with a fresh profile each time.
browse() {
  "$chromium" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --disable-extensions --hide-scrollbars \
    --user-data-dir="$tmp/profile-$RANDOM" "$@" 2> /dev/null
}

# A year and a half of one service missing half its deadlines, one keeping
# them: findings open and close, and months have a year before to compare.
"$cw" gen-scenario --rules "$src/rules" -n 18000 --report-gap 3600 --services 2 --seed 5 \
  --miss-service example-social --miss-rate 0.5 --start 2025-01-06 -o "$tmp/events.jsonl" > /dev/null
"$cw" replay --rules "$src/rules" --ledger "sqlite://$tmp/ledger.db" "$tmp/events.jsonl" > /dev/null
check "the scenario replays into a ledger" test -s "$tmp/ledger.db"
vkey=$("$cw" key vkey --ledger "$tmp/ledger.db")
"$cw" audit findings --ledger "$tmp/ledger.db" --json > "$tmp/findings.jsonl"
findings=$(grep -c finding_id "$tmp/findings.jsonl")
check "the scenario has findings, open and closed" \
  bash -c "test $findings -ge 5 && grep -q '\"status\":\"closed\"' '$tmp/findings.jsonl' && grep -q '\"status\":\"open\"' '$tmp/findings.jsonl'"

# Offline, from the ledger, with the published key and the bundles.
"$cw" report --ledger "$tmp/ledger.db" --vkey "$vkey" --bundles "$tmp/bundles" \
  -o "$tmp/report.html" > "$tmp/report.out"
check "report exits 0" test $? -eq 0
check "report says what it wrote" grep -q "^wrote $tmp/report.html: 2 services, $findings findings ($findings verified)" "$tmp/report.out"
check "one bundle per finding" test "$(ls "$tmp/bundles" | wc -l)" -eq "$findings"
first_bundle=$(ls "$tmp/bundles" | head -n 1)
check "a bundle the report wrote verifies on its own" \
  bash -c "'$cw' verify --evidence '$tmp/bundles/$first_bundle' --vkey '$vkey' | grep -q '^OK: '"
check "the report names the bundle files" grep -q "<code>$first_bundle</code>" "$tmp/report.html"
check "nothing in the file points outside it" \
  bash -c "! grep -Eiq '(src|href)=\"(https?:|//)|url\\((https?:|//)|<script|<link|@import' '$tmp/report.html'"

# The page as Chromium renders it, with a log of every network request.
for s in example-social example-games; do
  "$cw" audit stats --ledger "$tmp/ledger.db" --service $s --period month --json > "$tmp/stats-$s.jsonl"
done
browse --log-net-log="$tmp/net.json" --dump-dom "file://$tmp/report.html" > "$tmp/dom.html"
check "Chromium renders the report" test -s "$tmp/dom.html"
python3 "$here/report_dom.py" "$tmp/dom.html" "$findings" all \
  example-social="$tmp/stats-example-social.jsonl" example-games="$tmp/stats-example-games.jsonl" > "$tmp/dom.out"
check "the rendered page has every finding, its timeline and the audit stats figures" test $? -eq 0
cat "$tmp/dom.out"
check "no request leaves the file" python3 "$here/netlog.py" "$tmp/net.json"
# The check above would see a request: a page that fetches an image does.
echo '<img src="http://127.0.0.1:9/x.png">' > "$tmp/control.html"
browse --log-net-log="$tmp/control-net.json" --dump-dom "file://$tmp/control.html" > /dev/null
check "the network check sees a request when there is one" \
  bash -c "! python3 '$here/netlog.py' '$tmp/control-net.json' > /dev/null"
browse --window-size=1200,2000 --screenshot="$tmp/shot.png" "file://$tmp/report.html" > /dev/null
ink=$(python3 "$here/png.py" ink "$tmp/shot.png")
check "the screenshot is not blank ($ink of pixels inked)" python3 -c "import sys; sys.exit(0 if $ink > 0.02 else 1)"

# One service, a period: only its findings, trends from the period on.
"$cw" report --ledger "$tmp/ledger.db" --vkey "$vkey" --service example-social --from 2026-01-01 \
  --period quarter -o "$tmp/social.html" > /dev/null
social=$(grep -c '"opened_at":"2026' "$tmp/findings.jsonl")
"$cw" audit stats --ledger "$tmp/ledger.db" --service example-social --period quarter \
  --from 2026-01-01 --json > "$tmp/stats-q.jsonl"
python3 "$here/report_dom.py" "$tmp/social.html" "$social" all example-social="$tmp/stats-q.jsonl" > "$tmp/dom-q.out"; rc=$?; cat "$tmp/dom-q.out"; (exit $rc)
check "a report of one service from a date has its findings and its quarters" test $? -eq 0

# PDF through Chromium, and a clear word when there is none.
"$cw" report --ledger "$tmp/ledger.db" --vkey "$vkey" -o "$tmp/r.html" --pdf "$tmp/r.pdf" > /dev/null
check "--pdf prints a PDF" bash -c "head -c 5 '$tmp/r.pdf' | grep -q '%PDF-'"
cwabs=$(cd "$(dirname "$cw")" && pwd)/$(basename "$cw")
env -u CAREWATCH_CHROMIUM PATH=/nonexistent "$cwabs" report --ledger "$tmp/ledger.db" --vkey "$vkey" \
  -o "$tmp/n.html" --pdf "$tmp/n.pdf" > /dev/null 2> "$tmp/nopdf.err"
check "--pdf without Chromium exits 1" test $? -eq 1
check "--pdf without Chromium says so, and that the HTML was written" \
  bash -c "grep -q 'needs headless Chromium' '$tmp/nopdf.err' && grep -q 'the HTML report is $tmp/n.html' '$tmp/nopdf.err' && test -s '$tmp/n.html'"

# Without the published key the cover says it checked the source's own word.
"$cw" report --ledger "$tmp/ledger.db" -o "$tmp/nokey.html" > /dev/null
python3 "$here/report_dom.py" "$tmp/nokey.html" "$findings" partial > /dev/null
check "without --vkey the report does not claim everything was verified" test $? -eq 0
# Another key: the checkpoint is not the deployment's; the report says so and fails.
"$cw" gen-scenario --rules "$src/rules" --lines 50 -o "$tmp/other.jsonl" > /dev/null
mkdir "$tmp/other"  # keys live beside the ledger: another directory, another key
"$cw" replay --rules "$src/rules" --ledger "sqlite://$tmp/other/ledger.db" "$tmp/other.jsonl" > /dev/null
other=$("$cw" key vkey --ledger "$tmp/other/ledger.db")
"$cw" report --ledger "$tmp/ledger.db" --vkey "$other" -o "$tmp/wrongkey.html" > /dev/null 2>&1
check "a report checked against another key exits 1" test $? -eq 1
python3 "$here/report_dom.py" "$tmp/wrongkey.html" "$findings" failed > /dev/null
check "a report checked against another key says a check failed" test $? -eq 0
# A tampered event: the ledger check and the bundle of its finding fail.
cp "$tmp/ledger.db" "$tmp/tampered.db"
seq=$(sqlite3 "$tmp/tampered.db" "SELECT MIN(seq) FROM breaches")
sqlite3 "$tmp/tampered.db" "UPDATE events SET payload = CAST(REPLACE(CAST(payload AS TEXT), 'missed', 'mossed') AS BLOB) WHERE seq = $seq"
"$cw" report --ledger "$tmp/tampered.db" --vkey "$vkey" -o "$tmp/tampered.html" > /dev/null 2>&1
check "a report of a tampered ledger exits 1" test $? -eq 1
python3 "$here/report_dom.py" "$tmp/tampered.html" "$findings" failed > /dev/null
check "a report of a tampered ledger says a check failed" test $? -eq 0

# Live, from a carewatchd, with a regulator's token.
out=$("$cw" token new --principal pusher --role admin)
admin=$(echo "$out" | sed -n 's/^token: //p')
reg=$("$cw" token new --principal auditor --role regulator)
regulator=$(echo "$reg" | sed -n 's/^token: //p')
pl=$("$cw" token new --principal platform --role platform --service example-social)
platform=$(echo "$pl" | sed -n 's/^token: //p')
{ echo "tokens:"; echo "$out" | tail -n 1; echo "$reg" | tail -n 1; echo "$pl" | tail -n 1; } > "$tmp/tokens.yaml"
port=$(free_ports)
metrics="127.0.0.1:$((port + 1))"
"$cwd" --listen "127.0.0.1:$port" --metrics "$metrics" --rules "$src/rules" \
  --ledger "sqlite://$tmp/led/ledger.db" --tokens "$tmp/tokens.yaml" --cache-dir "$tmp/hs" \
  >> "$tmp/d.log" 2>&1 &
pid=$!
ready=1
for _ in $(seq 1 600); do
  curl -sf "http://$metrics/readyz" > /dev/null 2>&1 && ready=0 && break
  sleep 0.05
done
check "carewatchd starts" test $ready -eq 0
# Received four days ago: every deadline has passed on the server's clock
# and falls in the systemic windows that clock slides.
"$cw" gen-scenario --rules "$src/rules" --lines 600 --seed 3 --services 2 --miss-service example-social \
  --miss-rate 0.6 --start "$(date -u -d '-4 days' +%Y-%m-%dT%H:%M:%SZ)" -o "$tmp/live.jsonl" > /dev/null
"$cw" push "$tmp/live.jsonl" --server "127.0.0.1:$port" --token "$admin" > /dev/null 2>&1
# The sweeper (every second) decides the breaches and findings: wait until
# two of its rounds change nothing.
live=-1
for _ in $(seq 1 20); do
  sleep 1.2
  "$cw" audit findings --server "127.0.0.1:$port" --token "$regulator" --json > "$tmp/live-findings.jsonl"
  now=$(grep -c finding_id "$tmp/live-findings.jsonl")
  [ "$now" -ge 1 ] && [ "$now" -eq "$live" ] && break
  live=$now
done
check "the live service has findings" test "$live" -ge 1
# Over the wire too, each breach carries its seq, which the server proves.
"$cw" audit breaches --server "127.0.0.1:$port" --token "$regulator" > "$tmp/live-breaches.txt"
seq=$(sed -n '2p' "$tmp/live-breaches.txt" | awk '{print $1}')
check "audit breaches --server shows each breach's seq ($seq)" test "${seq:-0}" -gt 0
"$cw" audit prove "$seq" --server "127.0.0.1:$port" --token "$regulator" > "$tmp/live-prove.out" 2>&1
check "...and that seq is a DUTY_BREACHED event the server proves" grep -q "DUTY_BREACHED" "$tmp/live-prove.out"
"$cw" report --server "127.0.0.1:$port" --token "$regulator" --vkey "$tmp/led/deployment.vkey" \
  -o "$tmp/live.html" > "$tmp/live.out"
check "report --server exits 0" test $? -eq 0
python3 "$here/report_dom.py" "$tmp/live.html" "$live" partial > /dev/null
check "a live report verifies every finding, and says its trends are the server's word" test $? -eq 0
"$cw" report --server "127.0.0.1:$port" --token "$platform" -o "$tmp/denied.html" > /dev/null 2> "$tmp/denied.err"
check "report --server with a platform's token is refused" \
  bash -c "test $? -eq 1 && grep -q 'PERMISSION_DENIED' '$tmp/denied.err' && ! test -e '$tmp/denied.html'"

echo "report: $passed passed, $failed failed"
test "$failed" -eq 0
