#!/usr/bin/env bash
# `carewatch signal` and `carewatch audit linkage` against a real carewatchd
# over loopback: two services link one account through the blinded path,
# one reviews its alert, the regulator counts it, and the identifier is in
# no file carewatchd wrote. Identifiers are synthetic.
# Usage: signal_test.sh PATH/TO/carewatch PATH/TO/carewatchd SOURCE_DIR
set -u
cw=$1
cwd=$2
src=$3
tmp=$(mktemp -d)
pid=""
trap 'if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; rm -rf "$tmp"' EXIT
. "$(dirname "$0")/check.sh"
tok() { "$cw" token new --principal "$1" --role "$2" ${3:+--service "$3"}; }
a=$(tok tns-a platform svc-a)
b=$(tok tns-b platform svc-b)
r=$(tok auditor regulator)
{ echo "tokens:"; for t in "$a" "$b" "$r"; do echo "$t" | tail -n 1; done; } > "$tmp/tokens.yaml"
ta=$(echo "$a" | sed -n 's/^token: //p')
tb=$(echo "$b" | sed -n 's/^token: //p')
tr=$(echo "$r" | sed -n 's/^token: //p')
port=$(free_ports)
metrics="127.0.0.1:$((port + 1))"
"$cwd" --listen "127.0.0.1:$port" --metrics "$metrics" --rules "$src/rules" \
  --ledger "sqlite://$tmp/led/ledger.db" --tokens "$tmp/tokens.yaml" \
  --cache-dir "$tmp/hs" >> "$tmp/d.log" 2>&1 &
pid=$!
ready=1
for _ in $(seq 1 600); do
  curl -sf "http://$metrics/readyz" > /dev/null 2>&1 && { ready=0; break; }
  sleep 0.05
done
check "carewatchd starts" test $ready -eq 0
srv="--server 127.0.0.1:$port"

token_a=$("$cw" signal token $srv --token "$ta" --service svc-a --kind email 'Carol.Example@Example.TEST' 2> "$tmp/ta.err")
token_b=$("$cw" signal token $srv --token "$tb" --service svc-b --kind email ' carol.example@example.test ' 2> /dev/null)
check "a token is 64 bytes of hex" test "${#token_a}" -eq 128
check "one account, one token, whatever the spelling" test "$token_a" = "$token_b"
check "the quota left is shown" grep -q "^quota left today: 9999$" "$tmp/ta.err"
"$cw" signal token $srv --token "$ta" --service svc-a --kind phone '07700 900123' > /dev/null 2> "$tmp/bad.err"
check "a bad identifier is refused with its rule" grep -q "needs its country code" "$tmp/bad.err"
check "... without repeating it" bash -c "! grep -q 900123 '$tmp/bad.err'"

"$cw" signal submit $srv --token "$ta" --service svc-a --report a-1 --kind email \
  --category csea.grooming-response --signal-token "$token_a" > "$tmp/sa.out"
check "one service alone raises no alert" grep -q "^accepted 1 signal(s); 0 alert(s)" "$tmp/sa.out"
"$cw" signal submit $srv --token "$tb" --service svc-b --report b-1 --kind email \
  --category csea.grooming-response --signal-token "$token_b" > "$tmp/sb.out"
check "the second service is alerted at once" grep -q "^accepted 1 signal(s); 1 alert(s)" "$tmp/sb.out"

"$cw" signal alerts $srv --token "$ta" --service svc-a > "$tmp/alerts.out"
check "svc-a lists its alert with its own report" grep -q " open  email  reports a-1  other services 1 " "$tmp/alerts.out"
alert=$(awk '{print $1; exit}' "$tmp/alerts.out")
timeout 3 "$cw" signal alerts $srv --token "$ta" --service svc-a --follow --json > "$tmp/follow.out"
check "--follow delivers the alert as JSON" grep -q "\"alert_id\":\"$alert\"" "$tmp/follow.out"
"$cw" signal feedback $srv --token "$ta" --service svc-a "$alert" --opinion confirmed --actor mod-1 > "$tmp/fb.out"
check "feedback meets the review obligation" grep -q "(csea.cross-platform-review): OBLIGATION_STATUS_MET" "$tmp/fb.out"
"$cw" signal feedback $srv --token "$tb" --service svc-b "$alert" --opinion confirmed > /dev/null 2> "$tmp/other.err"
check "another service cannot answer it" grep -q "NOT_FOUND" "$tmp/other.err"

"$cw" audit linkage $srv --token "$tr" > "$tmp/linkage.out"
check "the regulator sees counts per service" grep -qE "^[0-9]{4}-[0-9]{2} +svc-a +csea.grooming-response +1 +1 +0 +0 " "$tmp/linkage.out"
check "... and never a token" bash -c "! grep -q '$token_a' '$tmp/linkage.out'"
"$cw" signal withdraw $srv --token "$tb" --service svc-b --report b-1 > "$tmp/wd.out"
check "withdrawal deletes the signal" grep -q "^withdrew 1 signal(s); 1 of this service's alert(s) withdrawn" "$tmp/wd.out"

kill -TERM "$pid"
wait "$pid"
pid=""
"$cw" audit linkage --ledger "sqlite://$tmp/led/ledger.db" --period day > "$tmp/linkage2.out"
check "audit linkage reads a ledger file too" grep -qE "^[0-9]{4}-[0-9]{2}-[0-9]{2} +svc-b .* 1 +0 +1 +0 " "$tmp/linkage2.out"
check "no file carewatchd wrote holds the identifier" \
  bash -c "! grep -rqai 'carol' '$tmp/led' '$tmp/d.log'"
"$cw" verify --ledger "sqlite://$tmp/led/ledger.db" --vkey "$tmp/led/deployment.vkey" > "$tmp/verify.out" 2>&1
check "the ledger verifies" test $? -eq 0
"$cw" report --ledger "sqlite://$tmp/led/ledger.db" --vkey "$tmp/led/deployment.vkey" \
  -o "$tmp/report.html" > "$tmp/report.out" 2>&1
check "the evidence report is written over signal events" test $? -eq 0
check "... and holds no identifier" bash -c "! grep -qai 'carol' '$tmp/report.html'"

echo "signal: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
