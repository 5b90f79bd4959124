#!/usr/bin/env bash
# `make run`: starts carewatchd on loopback with the shipped rules, an
# embedded SQLite ledger under data/, and development tokens it prints.
set -euo pipefail
build=${1:-build}
cw="$build/tools/carewatch"
mkdir -p data
if [ ! -f data/tokens.yaml ] || [ ! -f data/dev-tokens.txt ]; then
  : > data/dev-tokens.txt
  echo "tokens:   # development tokens: digests only; the tokens are in data/dev-tokens.txt" > data/tokens.yaml
  for spec in "dev-platform platform example-social" "dev-regulator regulator" \
              "dev-rule-author rule_author" "dev-admin admin"; do
    set -- $spec
    out=$("$cw" token new --principal "$1" --role "$2" ${3:+--service "$3"})
    echo "$out" | sed -n 's/^token: //p' | sed "s/^/$1 /" >> data/dev-tokens.txt
    echo "$out" | tail -n 1 >> data/tokens.yaml
  done
  chmod 600 data/dev-tokens.txt
fi
tok() { awk -v p="$1" '$1 == p {print $2}' data/dev-tokens.txt; }
cat <<MSG
carewatchd: gRPC on 127.0.0.1:50051, metrics on http://127.0.0.1:9464/metrics
development tokens (data/dev-tokens.txt; never use them in production):
  platform (example-social): $(tok dev-platform)
  regulator:                 $(tok dev-regulator)
  rule_author:               $(tok dev-rule-author)
  admin:                     $(tok dev-admin)
try, from another terminal:
  $cw evaluate --server 127.0.0.1:50051 --token $(tok dev-platform) examples/report.json
  $cw audit findings --server 127.0.0.1:50051 --token $(tok dev-regulator)
  $cw verify --server 127.0.0.1:50051 --token $(tok dev-regulator) --vkey data/deployment.vkey
  curl -s http://127.0.0.1:9464/readyz
Ctrl-C (SIGTERM) drains and stops; SIGHUP reloads rules/.
MSG
exec "$build/tools/carewatchd" --listen 127.0.0.1:50051 --metrics 127.0.0.1:9464 --rules rules \
  --ledger sqlite://data/ledger.db --tokens data/tokens.yaml --cache-dir data/hs-cache
