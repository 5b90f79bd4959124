#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL 15 server on loopback:
#   tests/with_pg.sh COMMAND [ARGS...]
# The server lives in a temporary directory for the command's life; the
# command sees CAREWATCH_TEST_LEDGER=postgresql, CAREWATCH_TEST_PG (the
# server's URL) and CAREWATCH_TEST_PG_DIR (for scripts/pg-test-server.sh
# stop|restart, to take the server away mid-test).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/carewatch-pg.XXXXXX)
trap '"$here/scripts/pg-test-server.sh" remove "$dir" >/dev/null 2>&1 || true' EXIT
url=$("$here/scripts/pg-test-server.sh" start "$dir")
export CAREWATCH_TEST_LEDGER=postgresql CAREWATCH_TEST_PG="$url" CAREWATCH_TEST_PG_DIR="$dir"
"$@"
