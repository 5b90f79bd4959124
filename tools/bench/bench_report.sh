#!/usr/bin/env bash
# The evidence report at 50 findings: how long `carewatch report` takes
# beside `carewatch verify --ledger` on the same ledger (the report verifies
# the whole ledger and every finding's bundle, then renders), and how long
# headless Chromium takes to render and print it beside an empty page.
# With --screenshots DIR, also writes the example screenshots docs/ shows.
# Usage: tools/bench/bench_report.sh [BUILD_DIR] [--screenshots DIR]
set -euo pipefail
build=${1:-build}
shots=""
if [ "${2:-}" = "--screenshots" ]; then shots=$(cd "${3:?DIR}" && pwd); fi
src=$(cd "$(dirname "$0")/../.." && pwd)
cw="$build/tools/carewatch"
chromium=${CAREWATCH_CHROMIUM:-$(command -v chromium || true)}
[ -n "$chromium" ] || { echo "bench_report: needs chromium (scripts/install-deps.sh --test)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
browse() {
  "$chromium" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --disable-extensions --hide-scrollbars \
    --user-data-dir="$tmp/profile-$RANDOM" "$@" > /dev/null 2>&1
}
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }

# Fifteen months, three services, two missing half their deadlines: 50 findings.
"$cw" gen-scenario --rules "$src/rules" --lines 31000 --report-gap 3600 --services 3 --seed 7 \
  --miss-service example-social,example-games --miss-rate 0.5 --start 2025-01-06 -o "$tmp/s.jsonl" > /dev/null
"$cw" replay --rules "$src/rules" --ledger "sqlite://$tmp/ledger.db" "$tmp/s.jsonl" > /dev/null
vkey=$("$cw" key vkey --ledger "$tmp/ledger.db")
findings=$("$cw" audit findings --ledger "$tmp/ledger.db" --json | grep -c finding_id)
events=$(sqlite3 "$tmp/ledger.db" "SELECT COUNT(*) FROM events")

verify=$(seconds "$cw" verify --ledger "$tmp/ledger.db" --vkey "$vkey")
report=$(seconds "$cw" report --ledger "$tmp/ledger.db" --vkey "$vkey" -o "$tmp/report.html")
size=$(stat -c %s "$tmp/report.html")
echo '<!DOCTYPE html><title>empty</title>' > "$tmp/empty.html"
empty=$(seconds browse --dump-dom "file://$tmp/empty.html")
render=$(seconds browse --dump-dom "file://$tmp/report.html")
empty_pdf=$(seconds browse --no-pdf-header-footer --print-to-pdf="$tmp/empty.pdf" "file://$tmp/empty.html")
pdf=$(seconds browse --no-pdf-header-footer --print-to-pdf="$tmp/report.pdf" "file://$tmp/report.html")
pages=$(grep -ac '/Type /Page$\|/Type /Page[^s]' "$tmp/report.pdf" || true)

printf 'ledger: %d events, %d findings; report.html %.1f MB\n' "$events" "$findings" \
  "$(echo "$size / 1048576" | bc -l)"
printf '%-44s %8.2f s   baseline %-28s %6.2f s   ratio %s\n' \
  "carewatch report (verify + bundles + HTML)" "$report" "carewatch verify --ledger" "$verify" "$(ratio "$report" "$verify")" \
  "Chromium renders the report (DOM)" "$render" "Chromium renders an empty page" "$empty" "$(ratio "$render" "$empty")" \
  "Chromium prints the report to PDF" "$pdf" "Chromium prints an empty page" "$empty_pdf" "$(ratio "$pdf" "$empty_pdf")"
echo "PDF: $(stat -c %s "$tmp/report.pdf") bytes, ${pages:-?} pages"

if [ -n "$shots" ]; then
  # One service's report; the crops are fixed offsets of this seeded scenario.
  "$cw" report --ledger "$tmp/ledger.db" --vkey "$vkey" --service example-social -o "$tmp/social.html" > /dev/null
  browse --window-size=1200,9000 --screenshot="$tmp/page.png" "file://$tmp/social.html"
  python3 "$src/tests/cli/png.py" crop "$tmp/page.png" "$shots/report-cover.png" 0 1000
  python3 "$src/tests/cli/png.py" crop "$tmp/page.png" "$shots/report-trends.png" "${TRENDS_Y:-1000}" 1150
  python3 "$src/tests/cli/png.py" crop "$tmp/page.png" "$shots/report-finding.png" "${FINDING_Y:-5150}" 1180
  echo "screenshots in $shots"
fi
