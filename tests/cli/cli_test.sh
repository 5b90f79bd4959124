#!/usr/bin/env bash
# End-to-end checks of the carewatch CLI as a rule author runs it.
# Usage: cli_test.sh PATH/TO/carewatch SOURCE_DIR
set -u
cw=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
check() {  # check NAME CONDITION...
  local name=$1
  shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}

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

# bad command line: usage error, exit 2.
"$cw" scan > /dev/null 2>&1
check "usage error exits 2" test $? -eq 2

echo "cli: $passed passed, $failed failed"
test "$failed" -eq 0
