#!/usr/bin/env bash
# `make run` as a newcomer meets it: scripts/run.sh in a fresh directory
# starts carewatchd, writes the deployment's keys to data/, and every
# command it prints under "try" works exactly as printed.
# Usage: quickstart_test.sh BUILD_DIR SOURCE_DIR
set -u
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
tmp=$(mktemp -d)
. "$(dirname "$0")/check.sh"
cp -r "$src/rules" "$src/examples" "$tmp/"
mkdir -p "$tmp/build/tools"
ln -s "$build/tools/carewatch" "$build/tools/carewatchd" "$tmp/build/tools/"
port=$(free_ports)
cd "$tmp"
CAREWATCH_GRPC_PORT=$port CAREWATCH_METRICS_PORT=$((port + 1)) \
  bash "$src/scripts/run.sh" build > run.out 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; [ "$failed" -eq 0 ] && rm -rf "$tmp" || { echo "run.sh said:"; cat "$tmp/run.out"; }' EXIT
ready=1
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$((port + 1))/readyz" > /dev/null 2>&1 && ready=0 && break
  sleep 0.05
done
check "make run's carewatchd becomes ready" test $ready -eq 0
check "the verifier key is in data/" grep -Eq '^carewatch/[0-9a-f]{16}[+][0-9a-f]{8}[+]' data/deployment.vkey
check "the PEM public key is in data/" grep -q "BEGIN PUBLIC KEY" data/deployment.pub
sed -n '/^try, from another terminal/,/^Ctrl-C/p' run.out | sed -n 's/^  //p' > commands.txt
check "run prints commands to try" test "$(wc -l < commands.txt)" -ge 5
n=0
while IFS= read -r cmd; do
  n=$((n + 1))
  bash -c "$cmd" > "out-$n.txt" 2>&1
  rc=$?
  check "printed command works verbatim (exit $rc): $cmd" test $rc -eq 0
done < commands.txt
check "the printed verify checks the published key" grep -q "^OK" out-*.txt
echo "quickstart: $passed passed, $failed failed"
test "$failed" -eq 0
