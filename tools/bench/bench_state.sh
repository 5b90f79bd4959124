#!/usr/bin/env bash
# Memory and restart time of carewatchd against the length of its ledger.
# For each size: a generated scenario replayed into a SQLite ledger, then
# carewatchd started on it (same rules, same warm Hyperscan cache): time to
# /readyz and RSS when ready. Figures are printed beside the smallest size's.
# Then open work: a fresh ledger loaded for OPEN_SECONDS (default 20; 0 skips)
# with reports received now (`carewatch load`), so that their obligations are
# still open, restarted beside an empty ledger in the same run.
# With LEDGER=postgresql, only the open work is measured, on ledgers in two
# throwaway PostgreSQL servers (scripts/pg-test-server.sh, with fsync).
# With RETAINED_LINES=N, also decided obligations within retention (below).
# RETAINED_ARGS: more gen-scenario options for that ledger (e.g. a denser
# one: "--report-gap 2 --signal-fraction 0.5").
# Usage: [OPEN_SECONDS=20] [RETAINED_LINES=0] [RETAINED_ARGS=] [LEDGER=postgresql]
#   tools/bench/bench_state.sh [BUILD_DIR] [SIZES...]
set -euo pipefail
source "$(dirname "$0")/ports.sh"
build=${1:-build}
shift || true
sizes=("${@:-100000 1000000}")
open_seconds=${OPEN_SECONDS:-20}
[ $# -eq 0 ] && sizes=(100000 1000000)
cw="$build/tools/carewatch"
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
"$cw" token new --principal bench --role admin | tail -n 1 > "$tmp/tok.line"
plat=$("$cw" token new --principal bench-platform --role platform --service example-social)
{ echo "tokens:"; cat "$tmp/tok.line"; echo "$plat" | tail -n 1; } > "$tmp/tokens.yaml"
plat_token=$(echo "$plat" | sed -n 's/^token: //p')
port=$(free_ports)

# The URL of ledger $1: an SQLite file, or a PostgreSQL server's URL.
url_of() { case $1 in postgresql://*) echo "$1" ;; *) echo "sqlite://$1" ;; esac; }
# Keys beside an SQLite ledger; in the temporary directory for PostgreSQL.
keys=(--signing-key "$tmp/ledger.key" --hmac-key "$tmp/hmac.key" --signals-key "$tmp/signals.key")
[ "${LEDGER:-sqlite}" = postgresql ] || keys=()
# Starts carewatchd on ledger $1; prints "seconds_to_ready rss_kb".
start() {
  local ledger=$1
  local t0 t1 pid rss
  t0=$(date +%s.%N)
  "$build/tools/carewatchd" --listen "127.0.0.1:$port" --metrics "127.0.0.1:$((port + 1))" \
    --rules rules --ledger "$(url_of "$ledger")" --tokens "$tmp/tokens.yaml" "${keys[@]}" \
    --cache-dir "$tmp/hs-cache" > "$tmp/d.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 6000); do
    if curl -sf "http://127.0.0.1:$((port + 1))/readyz" > /dev/null 2>&1; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$tmp/d.log" >&2; exit 1; fi
    sleep 0.01
  done
  t1=$(date +%s.%N)
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid" || true
  python3 -c "print(f'{$t1 - $t0:.3f} $rss')"
}

declare -A ready rss events
[ "${LEDGER:-sqlite}" = postgresql ] && sizes=()
for n in "${sizes[@]}"; do
  "$cw" gen-scenario --rules rules --lines "$n" --seed 11 --services 4 \
    --miss-service example-social --miss-rate 0.2 -o "$tmp/events-$n.jsonl" > /dev/null
  "$cw" replay --rules rules --ledger "sqlite://$tmp/led-$n/ledger.db" "$tmp/events-$n.jsonl" \
    > /dev/null
  rm -f "$tmp/events-$n.jsonl"
  events[$n]=$(sqlite3 "$tmp/led-$n/ledger.db" "SELECT max(seq) FROM events")
  start "$tmp/led-$n/ledger.db" > /dev/null   # warms the rule cache; carries the ledger forward
  best_t=""; best_r=""
  for run in 1 2 3; do
    read -r t r < <(start "$tmp/led-$n/ledger.db")
    if [ -z "$best_t" ] || python3 -c "import sys; sys.exit(0 if $t < $best_t else 1)"; then best_t=$t; fi
    if [ -z "$best_r" ] || [ "$r" -lt "$best_r" ]; then best_r=$r; fi
  done
  ready[$n]=$best_t
  rss[$n]=$best_r
done
[ ${#sizes[@]} -gt 0 ] && base=${sizes[0]} &&
printf "%-14s %-14s %-16s %-12s %-10s %-10s\n" "input events" "ledger events" "time to /readyz" "RSS (MB)" "time/base" "RSS/base"
for n in "${sizes[@]}"; do
  python3 - "$n" "${events[$n]}" "${ready[$n]}" "${rss[$n]}" "${ready[$base]}" "${rss[$base]}" <<'PY'
import sys
n, ev, t, r, bt, br = sys.argv[1:]
print(f"{int(n):<14,} {int(ev):<14,} {float(t):<16.3f} {int(r)/1024:<12.1f} {float(t)/float(bt):<10.2f} {int(r)/int(br):<10.2f}")
PY
done

best() {  # best time and lowest RSS of three starts on ledger $1
  local bt="" br="" t r
  for run in 1 2 3; do
    read -r t r < <(start "$1")
    if [ -z "$bt" ] || python3 -c "import sys; sys.exit(0 if $t < $bt else 1)"; then bt=$t; fi
    if [ -z "$br" ] || [ "$r" -lt "$br" ]; then br=$r; fi
  done
  echo "$bt $br"
}

# Decided obligations within retention (what the systemic windows read at
# start): RETAINED_LINES scenario lines (default 0: skipped) whose first
# report was RETAINED_DAYS ago (default 85; a million lines span about 82
# days), so that their decided obligations are within the 90-day retention
# when carewatchd starts; restarted beside an empty ledger in the same run.
retained_lines=${RETAINED_LINES:-0}
if [ "$retained_lines" -gt 0 ] && [ "${LEDGER:-sqlite}" != postgresql ]; then
  since=$(date -u -d "-${RETAINED_DAYS:-85} days" +%Y-%m-%dT%H:%M:%SZ)
  "$cw" gen-scenario --rules rules --lines "$retained_lines" --seed 11 --services 4 \
    --miss-service example-social --miss-rate 0.2 --start "$since" ${RETAINED_ARGS:-} \
    -o "$tmp/retained.jsonl" > /dev/null
  "$cw" replay --rules rules --ledger "sqlite://$tmp/retained/ledger.db" "$tmp/retained.jsonl" \
    > /dev/null
  rm -f "$tmp/retained.jsonl"
  mkdir -p "$tmp/retained-empty"
  start "$tmp/retained-empty/ledger.db" > /dev/null
  start "$tmp/retained/ledger.db" > /dev/null  # carries the ledger forward once
  read -r re_t re_r < <(best "$tmp/retained-empty/ledger.db")
  read -r rd_t rd_r < <(best "$tmp/retained/ledger.db")
  decided=$(sqlite3 "$tmp/retained/ledger.db" "SELECT count(*) FROM obligations WHERE \
    decided_seq > 0 AND deadline > CAST(strftime('%s', 'now') AS INTEGER) - 90 * 86400")
  hours=$(sqlite3 "$tmp/retained/ledger.db" "SELECT count(*) FROM window_hours" 2>/dev/null || echo "-")
  breached=$(sqlite3 "$tmp/retained/ledger.db" "SELECT count(*) FROM obligations WHERE status = 4")
  echo "window_hours rows: $hours; breached obligations: $breached"
  python3 - "$decided" "$re_t" "$re_r" "$rd_t" "$rd_r" <<'PY'
import sys
n, et, er, dt, dr = sys.argv[1:]
n = int(n)
print()
print(f"{'decided, retained':<18} {'time to /readyz':<16} {'RSS (MB)':<10}")
print(f"{0:<18,} {float(et):<16.3f} {int(er)/1024:<10.1f}")
print(f"{n:<18,} {float(dt):<16.3f} {int(dr)/1024:<10.1f}")
if n:
    print(f"per decided obligation within retention: {(float(dt) - float(et)) / n * 1e6:.2f} us "
          f"and {(int(dr) - int(er)) * 1024 / n:.0f} bytes more than an empty ledger")
PY
fi

[ "$open_seconds" -gt 0 ] || exit 0
# Open work: obligations whose deadlines have not passed when carewatchd restarts.
mkdir -p "$tmp/empty" "$tmp/open"
empty="$tmp/empty/ledger.db" opened="$tmp/open/ledger.db"
if [ "${LEDGER:-sqlite}" = postgresql ]; then
  pg_dirs=()
  for which in empty opened; do
    d=$(mktemp -d /tmp/carewatch-pg.XXXXXX)
    pg_dirs+=("$d")
    printf -v "$which" '%s' "$(scripts/pg-test-server.sh start "$d" --fsync)"
  done
  trap 'kill $(jobs -p) 2>/dev/null || true; for d in "${pg_dirs[@]}"; do scripts/pg-test-server.sh remove "$d" > /dev/null 2>&1 || true; done; rm -rf "$tmp"' EXIT
fi
start "$empty" > /dev/null
read -r empty_t empty_r < <(best "$empty")
"$build/tools/carewatchd" --listen "127.0.0.1:$port" --metrics "127.0.0.1:$((port + 1))" \
  --rules rules --ledger "$(url_of "$opened")" --tokens "$tmp/tokens.yaml" "${keys[@]}" \
  --cache-dir "$tmp/hs-cache" > "$tmp/d.log" 2>&1 &
pid=$!
for _ in $(seq 1 6000); do
  curl -sf "http://127.0.0.1:$((port + 1))/readyz" > /dev/null 2>&1 && break
  sleep 0.01
done
"$cw" load --server "127.0.0.1:$port" --token "$plat_token" --service example-social --stream \
  -c 4 --window 64 --duration "${open_seconds}s" --run-id open > /dev/null 2>&1
open=$(curl -s "http://127.0.0.1:$((port + 1))/metrics" |
  awk '$1 == "carewatch_obligations{state=\"open\"}" {print $2}')
kill -TERM "$pid"
wait "$pid" || true
read -r open_t open_r < <(best "$opened")
python3 - "$open" "$empty_t" "$empty_r" "$open_t" "$open_r" <<'PY'
import sys
n, et, er, ot, orr = sys.argv[1:]
n = int(float(n))
print()
print(f"{'open obligations':<18} {'time to /readyz':<16} {'RSS (MB)':<10}")
print(f"{0:<18,} {float(et):<16.3f} {int(er)/1024:<10.1f}")
print(f"{n:<18,} {float(ot):<16.3f} {int(orr)/1024:<10.1f}")
if n:
    print(f"per open obligation: {(float(ot) - float(et)) / n * 1e6:.1f} us and "
          f"{(int(orr) - int(er)) * 1024 / n:.0f} bytes more than an empty ledger")
PY
