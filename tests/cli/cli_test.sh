#!/usr/bin/env bash
# End-to-end checks of the carewatch CLI as a rule author runs it.
# Usage: cli_test.sh PATH/TO/carewatch SOURCE_DIR
set -u
cw=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/check.sh"

# lint points at the right line and column of a broken pack, exit 1.
cat > "$tmp/broken.yaml" <<'YAML'
pack: broken
version: "1"
duties:
  - {id: d, deadline: 24h, actions: [remove_content]}
rules:
  - id: r1
    duty: d
    severity: high
    when:
      any:
        - {field: text, regex: 'ok'}
        - {field: text, regex: 'a(?<=b)'}
YAML
"$cw" lint "$tmp/broken.yaml" > "$tmp/lint.out" 2>&1
rc=$?
check "lint exits 1 on error" test "$rc" -eq 1
check "lint names file:line:col and rule" grep -q "broken.yaml:12:32: error: bad regex 'a(?<=b)'.*\[r1\]" "$tmp/lint.out"

# A pattern Hyperscan accepts alone but cannot build (too large: a literal
# run of 16,000 bytes written in 128) is named at its line and column, and
# so is a second one: lint builds the databases as carewatchd does.
big=$(printf 'a{1000}b%.0s' $(seq 16))
cat > "$tmp/toobig.yaml" <<YAML
pack: toobig
version: "1"
duties:
  - {id: d, deadline: 24h, actions: [remove_content]}
rules:
  - {id: fine, duty: d, severity: high, when: {field: text, regex: 'fine'}}
  - {id: big1, duty: d, severity: high, when: {field: text, regex: '$big'}}
  - {id: big2, duty: d, severity: high, when: {field: caption, regex: 'x$big'}}
YAML
"$cw" lint "$tmp/toobig.yaml" > "$tmp/toobig.out" 2>&1
rc=$?
check "lint exits 1 on a pattern Hyperscan cannot build" test "$rc" -eq 1
check "lint names the first at file:line:col" grep -q "toobig.yaml:7:68: error: Hyperscan cannot build regex 'a{1000}b.*\[big1\]" "$tmp/toobig.out"
check "lint names the second too" grep -q "toobig.yaml:8:71: error: Hyperscan cannot build regex 'xa{1000}b.*\[big2\]" "$tmp/toobig.out"

# lint of the shipped packs is clean.
"$cw" lint "$src/rules" > "$tmp/lint2.out" 2>&1
check "shipped packs lint clean" test $? -eq 0

# test prints N passed, N failed last and fails on a failing test.
sed 's/expect: no_match/expect: match/' "$src/rules/csea-baseline.yaml" > "$tmp/flipped.yaml"
cp -r "$src/rules/lists" "$tmp/lists"
"$cw" test "$tmp/flipped.yaml" > "$tmp/test.out" 2>&1
rc=$?
check "test exits 1 on failures" test "$rc" -eq 1
check "test ends with the counts" bash -c "tail -n 1 '$tmp/test.out' | grep -Eq '^[0-9]+ passed, [1-9][0-9]* failed$'"
check "test names file:line of a failing test" grep -q "flipped.yaml:[0-9]*: csea.hash.known-csam: digest one character off is not a match: expected match" "$tmp/test.out"

# gen-corpus is reproducible by seed.
"$cw" gen-corpus -n 300 --seed 42 --signal-fraction 0.3 -o "$tmp/a.jsonl"
"$cw" gen-corpus -n 300 --seed 42 --signal-fraction 0.3 -o "$tmp/b.jsonl"
"$cw" gen-corpus -n 300 --seed 43 --signal-fraction 0.3 -o "$tmp/c.jsonl"
check "same seed, same corpus" cmp -s "$tmp/a.jsonl" "$tmp/b.jsonl"
check "other seed, other corpus" bash -c "! cmp -s '$tmp/a.jsonl' '$tmp/c.jsonl'"
check "corpus has 300 lines" test "$(wc -l < "$tmp/a.jsonl")" -eq 300

# scan writes one verdict a good line, skips and counts bad lines, exit 3.
{ head -n 5 "$tmp/a.jsonl"; echo '{"text": 12}'; echo 'not json'; echo ''; sed -n 6,10p "$tmp/a.jsonl"; } > "$tmp/mixed.jsonl"
"$cw" scan --rules "$src/rules" "$tmp/mixed.jsonl" > "$tmp/verdicts.jsonl" 2> "$tmp/scan.err"
rc=$?
check "scan exits 3 when lines were skipped" test "$rc" -eq 3
check "scan writes 10 verdicts" test "$(wc -l < "$tmp/verdicts.jsonl")" -eq 10
check "scan names the bad line numbers" bash -c "grep -q 'mixed.jsonl:6: error' '$tmp/scan.err' && grep -q 'mixed.jsonl:7: error' '$tmp/scan.err'"
check "scan summary counts" grep -q "^10 reports, [0-9]* flagged, 2 skipped" "$tmp/scan.err"
"$cw" scan --rules "$src/rules" "$tmp/a.jsonl" > "$tmp/all.jsonl" 2> "$tmp/scan2.err"
check "clean scan exits 0" test $? -eq 0
check "some reports flagged" grep -q '"flags"' "$tmp/all.jsonl"
check "scan fails on a missing file" bash -c "! '$cw' scan --rules '$src/rules' '$tmp/nope.jsonl' 2>/dev/null"

# explain shows conditions and spans.
printf '%s' '{"report_id":"x","surface":"direct_message","subject_age_band":"13_to_15","text":"add me on snap"}' > "$tmp/r.json"
"$cw" explain --rules "$src/rules" "$tmp/r.json" > "$tmp/explain.out" 2>&1
check "explain marks the matching rule" grep -q "^MATCH    csea.grooming.off-platform" "$tmp/explain.out"
check "explain quotes the span" grep -q 'text\[0:14\] "add me on snap"' "$tmp/explain.out"
# ...and, for folded conditions, the folded text with the match in brackets.
printf '%s' '{"report_id":"x","surface":"direct_message","subject_age_band":"13_to_15","text":"4re y0u home a l o n e? l3ts m33t up"}' > "$tmp/r2.json"
"$cw" explain --rules "$src/rules" "$tmp/r2.json" > "$tmp/explain2.out" 2>&1
check "explain shows the folded text with the match marked" grep -q 'folded text: "\[are you home alone\]? lets meet up"' "$tmp/explain2.out"

# diff: removing a rule shows as lost flags.
mkdir -p "$tmp/new"
cp "$src/rules/csea-baseline.yaml" "$tmp/new/"
cp -r "$src/rules/lists" "$tmp/new/"
python3 - "$src/rules/csea-grooming.yaml" "$tmp/new/csea-grooming.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("- {field: subject_age_band, in: [under_13, 13_to_15, 16_to_17]}\n        - field: text\n          normalize: true\n          phrases:\n            - our little secret", "- {field: subject_age_band, in: [under_13]}\n        - field: text\n          normalize: true\n          phrases:\n            - our little secret")
open(sys.argv[2], "w").write(s)
PY
"$cw" diff --rules "$src/rules" --rules "$tmp/new" "$tmp/a.jsonl" > "$tmp/diff.out" 2>&1
check "diff reports lost secrecy flags" grep -q -- "-csea.grooming.secrecy" "$tmp/diff.out"
check "diff summary" grep -q "^300 reports, [1-9][0-9]* changed" "$tmp/diff.out"
# ...and against a directory holding only the changed pack: its packs
# replace the old ones of the same name, the rest (and accountability) stay.
mkdir -p "$tmp/only"
cp "$tmp/new/csea-grooming.yaml" "$tmp/only/"
"$cw" diff --rules "$src/rules" --rules "$tmp/only" "$tmp/a.jsonl" > "$tmp/diff-only.out" 2> "$tmp/diff-only.err"
check "diff of one changed pack over the old rules equals the hand-merged diff" \
  bash -c "diff <(grep -v -e '^300 reports' -e '^new rule set' '$tmp/diff.out') <(grep -v '^300 reports' '$tmp/diff-only.out')"
check "diff says which files make the new rule set" \
  bash -c "grep -q 'only/csea-grooming.yaml' '$tmp/diff-only.err' && grep -q 'rules/csea-baseline.yaml' '$tmp/diff-only.err' && ! grep -q 'rules/csea-grooming.yaml' '$tmp/diff-only.err'"

# lint and test take --rules as the other rule commands do.
"$cw" lint --rules "$src/rules" > /dev/null 2>&1
check "lint --rules" test $? -eq 0
"$cw" test --rules "$src/rules" > "$tmp/test-rules.out" 2>&1
check "test --rules" grep -Eq '^[1-9][0-9]* passed, 0 failed$' "$tmp/test-rules.out"
"$cw" lint > /dev/null 2>&1
check "lint without packs is a usage error" test $? -eq 2

# Generators plant signals of any pack: a new pack's rules get hits from
# their own tests, phrases and patterns; the built-in signals give it none.
mkdir -p "$tmp/fresh"
cat > "$tmp/fresh/pack.yaml" <<'YAML'
pack: fresh
version: "1"
duties:
  - {id: fresh.review, deadline: 24h, actions: [escalate_to_specialist]}
rules:
  - id: fresh.payment-pressure
    duty: fresh.review
    severity: medium
    when:
      all:
        - {field: surface, in: [direct_message, game_chat]}
        - field: text
          normalize: true
          regex: '\b(send|pay) (me )?(\d+|some) (coins|tokens) (now|today)\b'
  - id: fresh.account-trade
    duty: fresh.review
    severity: low
    when: {field: text, phrases: [sell me your account, trade accounts with me]}
    tests:
      - name: a trade offer
        report: {text: "wanna trade accounts with me"}
        expect: match
YAML
"$cw" gen-corpus --rules "$tmp/fresh" -n 1000 --seed 3 --signal-fraction 0.3 -o "$tmp/fresh.jsonl"
"$cw" gen-corpus -n 1000 --seed 3 --signal-fraction 0.3 -o "$tmp/plain.jsonl"
"$cw" scan --rules "$tmp/fresh" "$tmp/fresh.jsonl" > /dev/null 2> "$tmp/fresh.err"
"$cw" scan --rules "$tmp/fresh" "$tmp/plain.jsonl" > /dev/null 2> "$tmp/plain.err"
flagged=$(sed -n 's/^1000 reports, \([0-9]*\) flagged.*/\1/p' "$tmp/fresh.err")
check "gen-corpus --rules plants the new pack's signals ($flagged of 1000 flagged)" \
  test "${flagged:-0}" -ge 200
check "both rules of the new pack get hits, the one without tests too" \
  bash -c "grep -Eq 'fresh.payment-pressure: [1-9]' '$tmp/fresh.err' && grep -Eq 'fresh.account-trade: [1-9]' '$tmp/fresh.err'"
check "the built-in signals give the new pack nothing" grep -q "^1000 reports, 0 flagged" "$tmp/plain.err"
# gen-scenario -n counts reports, not lines.
"$cw" gen-scenario --rules "$tmp/fresh" -n 250 --seed 2 -o "$tmp/fresh-scenario.jsonl"
check "gen-scenario -n 250 writes 250 reports" test "$(grep -c '^{"report"' "$tmp/fresh-scenario.jsonl")" -eq 250
check "...and the actions on them besides" test "$(grep -c '^{"action"' "$tmp/fresh-scenario.jsonl")" -gt 0

# replay: a service that misses deadlines gets findings naming the managers
# in post by tenure; a service that meets them gets none.
mkdir -p "$tmp/tenure"
cp "$src/rules/csea-baseline.yaml" "$src/rules/csea-grooming.yaml" "$tmp/tenure/"
cp -r "$src/rules/lists" "$tmp/tenure/"
cat > "$tmp/tenure/accountability.yaml" <<'YAML'
accountability:
  - {service_id: example-social, duty: "csea.*", name: A. Example, role: Head of Child Safety,
     from: 2025-03-17, to: 2026-07-02T00:00:00Z}
  - {service_id: example-social, duty: "csea.*", name: B. Sample, role: Head of Child Safety,
     from: 2026-07-02T00:00:00Z}
YAML
"$cw" gen-scenario --rules "$tmp/tenure" --lines 6000 --seed 5 --services 2 --start 2026-07-01T00:00:00Z \
  --miss-service example-social --miss-rate 0.6 -o "$tmp/miss.jsonl"
"$cw" gen-scenario --rules "$tmp/tenure" --lines 6000 --seed 5 --services 2 --start 2026-07-01T00:00:00Z \
  -o "$tmp/met.jsonl"
"$cw" replay --rules "$tmp/tenure" --json "$tmp/met.jsonl" > "$tmp/met.json" 2> "$tmp/met.err"
check "replay of a met scenario exits 0" test $? -eq 0
check "met scenario: no breaches, no findings" grep -q '^{"breaches":\[\],"findings":\[\]}$' "$tmp/met.json"
"$cw" replay --rules "$tmp/tenure" --json --ledger "sqlite://$tmp/led/ledger.db" "$tmp/miss.jsonl" > "$tmp/miss.json"
check "replay of a missing scenario exits 0" test $? -eq 0
python3 - "$tmp/miss.json" > "$tmp/miss.check" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
findings = doc["findings"]
services = {f["service_id"] for f in findings}
names = {p["name"] for f in findings for p in f.get("accountable", [])}
kinds = {b["kind"] for b in doc["breaches"]}
ok = services == {"example-social"} and names == {"A. Example", "B. Sample"} and kinds == {"missed", "late", "late_recorded"}
for f in findings:
    total = sum(p["breaches"] for p in f.get("accountable", [])) + f.get("unattributed_breaches", 0)
    ok = ok and total == f["breaches"] and f["status"] in ("open", "closed")
print("ok" if ok else "bad %s %s %s" % (services, names, kinds))
PY
check "findings only for the missing service, naming both managers by tenure" grep -q '^ok$' "$tmp/miss.check"
check "breaches carry missed or late" grep -q '"kind":"late"' "$tmp/miss.json"
check "actions claimed on time but recorded after the grace are late_recorded" grep -q '"kind":"late_recorded"' "$tmp/miss.json"

# replay into a ledger with the deployment's keys named: they are used (and
# created) where given; a database ledger, which has no directory to find
# them in, needs both.
mkdir -p "$tmp/keyed" "$tmp/keys"
head -n 200 "$tmp/miss.jsonl" > "$tmp/few.jsonl"
"$cw" replay --rules "$tmp/tenure" --ledger "sqlite://$tmp/keyed/ledger.db" \
  --signing-key "$tmp/keys/signing.key" --hmac-key "$tmp/keys/fields.key" "$tmp/few.jsonl" > /dev/null
check "replay --signing-key/--hmac-key: exits 0" test $? -eq 0
check "...the keys are where they were named" test -s "$tmp/keys/signing.key" -a -s "$tmp/keys/fields.key"
check "...and not beside the ledger" test ! -e "$tmp/keyed/ledger.key" -a ! -e "$tmp/keyed/hmac.key"
openssl pkey -in "$tmp/keys/signing.key" -pubout -out "$tmp/keys/pub.pem" 2>/dev/null
"$cw" verify --ledger "sqlite://$tmp/keyed/ledger.db" --pubkey "$tmp/keys/pub.pem" > /dev/null
check "...and the ledger verifies against the named signing key" test $? -eq 0
"$cw" replay --rules "$tmp/tenure" --ledger "postgresql://127.0.0.1:1/none" "$tmp/few.jsonl" \
  > /dev/null 2> "$tmp/pgkeys.err"
check "replay --ledger postgresql:// without keys is a usage error" test $? -eq 2
check "...naming both options" grep -q "needs --signing-key and --hmac-key" "$tmp/pgkeys.err"

# verify: passes on the replayed ledger, names the seq on a tampered copy.
"$cw" verify --ledger "sqlite://$tmp/led/ledger.db" > "$tmp/verify.out"
check "verify passes" grep -q '^OK: ledger verifies' "$tmp/verify.out"
openssl pkey -in "$tmp/led/ledger.key" -pubout -out "$tmp/led/pub.pem" 2>/dev/null
"$cw" verify --ledger "sqlite://$tmp/led/ledger.db" --pubkey "$tmp/led/pub.pem" > /dev/null
check "verify passes with the published key" test $? -eq 0
cp "$tmp/led/ledger.db" "$tmp/tampered.db"
sqlite3 "$tmp/tampered.db" "UPDATE events SET payload = payload || x'00' WHERE seq = 42"
"$cw" verify --ledger "sqlite://$tmp/tampered.db" --pubkey "$tmp/led/pub.pem" > "$tmp/verify2.out"
check "verify fails on a tampered copy" test $? -eq 1
check "verify names the sequence number" grep -q "first bad sequence number: 42" "$tmp/verify2.out"
# The verifier key a deployment publishes; verify says what it proved.
vkey=$("$cw" key vkey --ledger "sqlite://$tmp/led/ledger.db")
check "key vkey prints NAME+KEYID+KEY" bash -c "echo '$vkey' | grep -Eq '^carewatch/[0-9a-f]{16}[+][0-9a-f]{8}[+][A-Za-z0-9+/]{44}$'"
"$cw" verify --ledger "sqlite://$tmp/led/ledger.db" --vkey "$vkey" > "$tmp/verify3.out"
check "verify with the verifier key proves who signed" grep -q "signed by the trusted key" "$tmp/verify3.out"
"$cw" verify --ledger "sqlite://$tmp/led/ledger.db" > "$tmp/verify4.out" 2> "$tmp/verify4.err"
check "verify without a key says integrity only" bash -c "grep -q 'INTEGRITY ONLY' '$tmp/verify4.out' && grep -q WARNING '$tmp/verify4.err'"
"$cw" verify --ledger "sqlite://$tmp/led/ledger.db" --require-key > /dev/null 2>&1
check "verify --require-key without a key fails" test $? -eq 1
# Any event by seq, with its proof.
"$cw" audit entries --start 1 --end 3 --ledger "sqlite://$tmp/led/ledger.db" > "$tmp/entries.out"
check "audit entries lists the events asked for" bash -c "grep -q '^1  RULESET_ACTIVATED' '$tmp/entries.out' && grep -q '^3 entries' '$tmp/entries.out'"
"$cw" audit prove 1 --ledger "sqlite://$tmp/led/ledger.db" > "$tmp/prove.out"
check "audit prove prints the audit path and the signed checkpoint" bash -c "grep -q '^event 1 (RULESET_ACTIVATED)' '$tmp/prove.out' && grep -q '^— carewatch/' '$tmp/prove.out'"
# The tables audit answers from are checked against the log.
cp "$tmp/led/ledger.db" "$tmp/t1.db"
sqlite3 "$tmp/t1.db" "DELETE FROM breaches WHERE seq = (SELECT min(seq) FROM breaches)"
"$cw" verify --ledger "sqlite://$tmp/t1.db" --vkey "$vkey" > "$tmp/t1.out"
check "a deleted breach row is named" bash -c "test \$? -ne 0; grep -q 'table breaches: the row of the DUTY_BREACHED event [0-9]* is missing' '$tmp/t1.out'"
cp "$tmp/led/ledger.db" "$tmp/t2.db"
sqlite3 "$tmp/t2.db" "UPDATE stats SET reports = 0"
"$cw" verify --ledger "sqlite://$tmp/t2.db" --vkey "$vkey" > "$tmp/t2.out"
check "zeroed report counts are named" grep -q "^FAIL: table stats: .* the table says 0 reports" "$tmp/t2.out"
cp "$tmp/led/ledger.db" "$tmp/t3.db"
sqlite3 "$tmp/t3.db" "UPDATE findings SET status = 'closed'"
"$cw" verify --ledger "sqlite://$tmp/t3.db" --vkey "$vkey" > "$tmp/t3.out"
check "an altered finding row is named" grep -q "^FAIL: table findings: finding fd-.* is not found by its own" "$tmp/t3.out"
# A key rotation: the log handed over to a new key, announced beforehand by
# --dry-run, and verifiable from then on with the old key, the new or both.
cp -r "$tmp/led" "$tmp/rot"
rot="sqlite://$tmp/rot/ledger.db"
next=$("$cw" key rotate --ledger "$rot" --dry-run | tail -1)
check "key rotate --dry-run rotates nothing" test "$("$cw" key vkey --ledger "$rot")" = "$vkey"
"$cw" key rotate --ledger "$rot" --reason scheduled > "$tmp/rot.out"
check "key rotate hands the ledger to the key --dry-run announced" bash -c "grep -qF 'OK: the ledger is signed by $next' '$tmp/rot.out' && test \"\$('$cw' key vkey --ledger '$rot')\" = '$next'"
check "the old key is moved aside and the new one installed" bash -c "ls '$tmp/rot/'ledger.key.retired-* > /dev/null && test ! -e '$tmp/rot/ledger.key.next'"
ok=0
for k in "$vkey" "$next" "$vkey,$next"; do
  "$cw" verify --ledger "$rot" --vkey "$k" | grep -q "^OK: .*(1 key rotation)" || ok=1
done
check "verify follows the rotation from either key" test $ok -eq 0
stranger=$("$cw" key rotate --ledger "$rot" --new-key "$tmp/stranger.key" --dry-run | tail -1)
"$cw" verify --ledger "$rot" --vkey "$stranger" > "$tmp/rot2.out"
rc=$?
check "verify with a key that never signed the log fails" bash -c "test $rc -ne 0 && grep -q 'none of the 2 keys that signed this ledger is trusted' '$tmp/rot2.out'"
"$cw" key rotate --ledger "$rot" --signing-key "$tmp/rot/"ledger.key.retired-* --new-key "$tmp/stranger.key" > "$tmp/rot3.out" 2>&1
rc=$?
check "the retired key no longer opens the ledger" bash -c "test $rc -ne 0 && grep -qF 'rotated out at event' '$tmp/rot3.out'"
n=$("$cw" audit entries --start 1 --end 100000 --ledger "$rot" | grep -c 'KEY_ROTATED')
check "the rotation is an event of the log" test "$n" -eq 1

# audit from the ledger file.
"$cw" audit breaches --ledger "sqlite://$tmp/led/ledger.db" --service example-social --json > "$tmp/b.jsonl"
check "audit breaches lists the service's breaches" bash -c "test \$(wc -l < '$tmp/b.jsonl') -gt 0 && ! grep -q example-games '$tmp/b.jsonl'"
"$cw" audit findings --ledger "sqlite://$tmp/led/ledger.db" --json > "$tmp/f.jsonl"
fid=$(python3 -c "import json,sys; print(json.loads(open('$tmp/f.jsonl').readline())['finding_id'])")
"$cw" audit evidence "$fid" --ledger "sqlite://$tmp/led/ledger.db" --json > "$tmp/e.json"
python3 - "$tmp/e.json" > "$tmp/e.check" <<'PY'
import json, sys, hashlib, base64
doc = json.load(open(sys.argv[1]))
types = {e["event"]["type"] for e in doc["events"]}
need = {"REPORT_FLAGGED", "OBLIGATION_OPENED", "DUTY_BREACHED", "FINDING_OPENED"}
size = int(doc["checkpoint"]["tree_size"])
root = base64.b64decode(doc["checkpoint"]["root_hash"])
def node(l, r): return hashlib.sha256(b"\x01" + l + r).digest()
def verify(leaf, index, n, proof):  # RFC 9162 2.1.3.2, independent of carewatch
    fn, sn, r = index, n - 1, leaf
    for p in proof:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while fn and not fn & 1: fn >>= 1; sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1; sn >>= 1
    return sn == 0 and r == root
checked = 0
for e in doc["events"]:
    if e["seq"] <= size:
        leaf = hashlib.sha256(b"\x00" + base64.b64decode(e["event_bytes"])).digest()
        assert leaf.hex() == e["leaf_hash"], e["seq"]
        assert verify(leaf, e["seq"] - 1, size, [bytes.fromhex(h) for h in e["inclusion_proof"]]), e["seq"]
        checked += 1
print("ok" if need <= types and checked > 0 else "bad %s %d" % (types, checked))
PY
check "evidence holds the chain with inclusion proofs that verify" grep -q '^ok$' "$tmp/e.check"
# A self-contained bundle, checked offline with the published key alone.
"$cw" audit evidence "$fid" --ledger "sqlite://$tmp/led/ledger.db" --bundle "$tmp/bundle.json" > /dev/null
"$cw" verify --evidence "$tmp/bundle.json" --vkey "$vkey" > "$tmp/bundle.out"
check "verify --evidence recomputes the finding from the bundle" grep -q "^OK: evidence for $fid verifies" "$tmp/bundle.out"
python3 - "$tmp/bundle.json" "$tmp/bundle-bad.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
b["finding"]["breaches"] = b["finding"].get("breaches", 0) + 1
json.dump(b, open(sys.argv[2], "w"))
PY
"$cw" verify --evidence "$tmp/bundle-bad.json" --vkey "$vkey" > "$tmp/bundle-bad.out"
check "a bundle whose finding counter was changed fails, naming it" bash -c "test \$? -ne 0; grep -q '^FAIL: finding breaches: the bundle states' '$tmp/bundle-bad.out'"
"$cw" audit stats --ledger "sqlite://$tmp/led/ledger.db" --period month --json > "$tmp/s.jsonl"
check "audit stats counts reports per period" grep -q '"period":"2026-07","reports":' "$tmp/s.jsonl"
# Audit tables: headers, seq, time order, --status, changes from 0 as "new".
"$cw" audit breaches --ledger "sqlite://$tmp/led/ledger.db" > "$tmp/b.txt"
check "audit breaches has a header" grep -q '^ *SEQ  AT (UTC) *SERVICE *DUTY *RULE *KIND *REPORT *MISSING *LATE$' "$tmp/b.txt"
check "audit breaches rows carry their seq and come in time order" python3 - "$tmp/b.txt" "$tmp/b.jsonl" <<'PY'
import json, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:-1]]
assert rows and all(int(r[0]) > 0 for r in rows), "a seq is 0"
times = [r[1] for r in rows]
assert times == sorted(times), "not in time order"
seqs = {json.loads(l)["ledger_seq"] for l in open(sys.argv[2])}
assert all(str(r[0]) in seqs for r in rows if r[2] == "example-social")
PY
"$cw" audit findings --ledger "sqlite://$tmp/led/ledger.db" --status closed --json > "$tmp/fc.jsonl"
"$cw" audit findings --ledger "sqlite://$tmp/led/ledger.db" --status open --json > "$tmp/fo.jsonl"
check "audit findings --status splits open from closed" bash -c \
  "test \$(( \$(wc -l < '$tmp/fc.jsonl') + \$(wc -l < '$tmp/fo.jsonl') )) -eq \$(wc -l < '$tmp/f.jsonl') && ! grep -q '\"status\":\"open\"' '$tmp/fc.jsonl' && ! grep -q '\"status\":\"closed\"' '$tmp/fo.jsonl'"
"$cw" audit stats --ledger "sqlite://$tmp/led/ledger.db" --period month > "$tmp/s.txt"
check "audit stats shows the breakdowns" bash -c "grep -q '^ *by reason: ' '$tmp/s.txt' && grep -q '^ *by surface: ' '$tmp/s.txt'"
check "audit stats --json is the PeriodStats JSON mapping" python3 - "$tmp/s.jsonl" <<'PY'
import json, sys
allowed = {"period", "reports", "flagged", "by_reason", "by_surface", "breaches", "findings",
           "has_previous", "reports_change_percent", "flagged_change_percent",
           "breaches_change_percent", "findings_change_percent", "breaches_by_kind",
           "obligations", "obligations_change_percent", "has_year_ago",
           "reports_year_change_percent", "flagged_year_change_percent",
           "obligations_year_change_percent", "breaches_year_change_percent",
           "findings_year_change_percent", "previous_counts", "year_ago_counts"}
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert set(d) <= allowed, set(d) - allowed
    if d.get("has_previous"):
        assert "previous_counts" in d
PY

# bad replay input: skipped and counted, named by line.
printf '%s\n' '{"report":{"report_id":"x","service_id":"s","received_at":"2026-01-01T00:00:00Z"}}' 'garbage' \
  '{"report":{"report_id":"y","service_id":"s","received_at":"2025-01-01T00:00:00Z"}}' > "$tmp/bad.jsonl"
"$cw" replay --rules "$src/rules" --json "$tmp/bad.jsonl" > /dev/null 2> "$tmp/bad.err"
check "replay exits 3 on skipped lines" test $? -eq 3
check "replay names the out-of-order line" grep -q "bad.jsonl:3: error: out of time order" "$tmp/bad.err"

# replay: a finding that the old denominator (pending obligations counted)
# closed whenever a batch of new reports arrived stays one open finding.
mkdir -p "$tmp/flicker"
cat > "$tmp/flicker/pack.yaml" <<'YAML'
pack: flicker
version: "1"
duties:
  - {id: d, deadline: 1h, record_grace: 0s, actions: [remove_content],
     systemic: {window: 1d, min_breaches: 2, min_breach_rate: 0.5}}
rules:
  - id: r
    duty: d
    severity: high
    when: {field: text, phrases: [signal]}
    tests:
      - {name: t, report: {text: a signal}, expect: match}
YAML
{
  for i in 1 2 3; do
    printf '{"report":{"report_id":"b%s","service_id":"s","received_at":"2026-01-05T10:0%s:00Z","text":"a signal"}}\n' "$i" "$i"
  done
  for i in $(seq 10 29); do
    printf '{"report":{"report_id":"n%s","service_id":"s","received_at":"2026-01-05T11:%s:00Z","text":"a signal"}}\n' "$i" "$i"
  done
  for i in $(seq 10 29); do
    printf '{"action":{"service_id":"s","report_id":"n%s","action":"remove_content","taken_at":"2026-01-05T11:59:00Z"}}\n' "$i"
  done
} > "$tmp/flicker.jsonl"
"$cw" replay --rules "$tmp/flicker" --json --until 2026-01-05T12:00:00Z "$tmp/flicker.jsonl" > "$tmp/flicker.json"
python3 - "$tmp/flicker.json" > "$tmp/flicker.check" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
f = doc["findings"]
ok = len(f) == 1 and f[0]["status"] == "open" and f[0]["breaches"] == 3 and f[0]["obligations"] == 3
print("ok" if ok else "bad %s" % f)
PY
check "replay: new reports neither dilute nor close a finding" grep -q '^ok$' "$tmp/flicker.check"

# bad command line: usage error, exit 2.
"$cw" scan > /dev/null 2>&1
check "usage error exits 2" test $? -eq 2

echo "cli: $passed passed, $failed failed"
test "$failed" -eq 0
