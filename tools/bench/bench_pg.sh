#!/usr/bin/env bash
# The PostgreSQL ledger's figures, each beside its baseline in the same run,
# on a throwaway PostgreSQL 15 on loopback with fsync on:
#   1. Ledger.Append on postgresql:// against a plain libpq loop inserting
#      the same rows in the same transaction sizes (and the SQLite pair);
#   2. carewatchd's unary and streamed Evaluate on an SQLite ledger and on a
#      PostgreSQL ledger, each against the no-op service of the same run;
#   3. streamed Evaluate split across two replicas on one PostgreSQL ledger
#      (the second queueing for the first), beside the figures of 2.
# Usage: tools/bench/bench_pg.sh [SECONDS] [BUILD_DIR]
set -euo pipefail
secs=${1:-10}
build=${2:-build}
here=$(cd "$(dirname "$0")/../.." && pwd)
pgdir=$(mktemp -d /tmp/carewatch-bench-pg.XXXXXX)
trap '"$here/scripts/pg-test-server.sh" remove "$pgdir" >/dev/null 2>&1 || true' EXIT
url=$("$here/scripts/pg-test-server.sh" start "$pgdir" --fsync)
echo "== ledger appends (16 writers)"
"$build/tools/carewatch_bench_ledger" --events 20000 --writers 16 --pg "$url"
schema="bench_server_$$"
psql -q "$url" -c "CREATE SCHEMA $schema"
pg_ledger="$url?options=-csearch_path%3D$schema"
echo "== carewatchd on SQLite"
sq=$("$here/tools/bench/bench_server.sh" "$secs" "$build"); echo "$sq"
echo "== carewatchd on PostgreSQL"
pq=$("$here/tools/bench/bench_server.sh" "$secs" "$build" "$pg_ledger"); echo "$pq"
schema2="bench_replicas_$$"
psql -q "$url" -c "CREATE SCHEMA $schema2"
echo "== carewatchd on PostgreSQL, two replicas (the second queues for the first)"
p2=$("$here/tools/bench/bench_server.sh" "$secs" "$build" "$url?options=-csearch_path%3D$schema2" 2); echo "$p2"
python3 - "$sq" "$pq" "$p2" <<'PY'
import re, sys
# bench_server.sh's summary lines: "unary: carewatchd / noop = R ...
# (carewatchd N /s, noop M /s)" and the same for "stream:".
def summary(text, load):
    m = re.search(r"^" + load + r": carewatchd / noop = [0-9.]+.*\(carewatchd ([0-9.]+) /s, noop ([0-9.]+) /s\)",
                  text, re.M)
    return float(m.group(1)), float(m.group(2))
(s_unary, _), (s_stream, _) = summary(sys.argv[1], "unary"), summary(sys.argv[1], "stream")
(p_unary, p_unary_noop), (p_stream, p_stream_noop) = summary(sys.argv[2], "unary"), summary(sys.argv[2], "stream")
two = float(re.search(r"([0-9.]+) reports/s in all", sys.argv[3]).group(1))
alone = sys.argv[3].split("through the queueing replica alone", 1)[1]
queued = float(re.search(r" ([0-9.]+) reports/s", alone).group(1))
print(f"stream on PostgreSQL / stream on SQLite = {p_stream/s_stream:.2f}; unary {p_unary/s_unary:.2f}")
print(f"stream on PostgreSQL / its noop = {p_stream/p_stream_noop:.2f}; unary {p_unary/p_unary_noop:.2f}")
print(f"stream through the queueing replica alone / through the writer = {queued/p_stream:.2f}")
print(f"stream on two PostgreSQL replicas / one = {two/p_stream:.2f}; / its noop = {two/p_stream_noop:.2f}; / SQLite = {two/s_stream:.2f}")
PY
