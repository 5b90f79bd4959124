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
grpc=127.0.0.1:${CAREWATCH_GRPC_PORT:-50051}
metrics=127.0.0.1:${CAREWATCH_METRICS_PORT:-9464}
cat <<MSG
carewatchd: gRPC on $grpc, metrics on http://$metrics/metrics
development tokens (data/dev-tokens.txt; never use them in production):
  platform (example-social): $(tok dev-platform)
  regulator:                 $(tok dev-regulator)
  rule_author:               $(tok dev-rule-author)
  admin:                     $(tok dev-admin)
the deployment's public keys, written by carewatchd once it starts:
  data/deployment.vkey (verifier key, for --vkey) and data/deployment.pub (PEM, for --pubkey)
try, from another terminal (each works as printed):
  curl -s http://$metrics/readyz
  $cw evaluate --server $grpc --token $(tok dev-platform) examples/report.json
  $cw audit breaches --server $grpc --token $(tok dev-regulator)
  $cw audit findings --server $grpc --token $(tok dev-regulator)
  $cw audit stats --server $grpc --token $(tok dev-regulator)
  $cw verify --server $grpc --token $(tok dev-regulator) --vkey data/deployment.vkey
  $cw report --server $grpc --token $(tok dev-regulator) --vkey data/deployment.vkey -o data/report.html
Ctrl-C (SIGTERM) drains and stops; SIGHUP reloads rules/.
MSG
exec "$build/tools/carewatchd" --listen "$grpc" --metrics "$metrics" --rules rules \
  --ledger sqlite://data/ledger.db --tokens data/tokens.yaml --cache-dir data/hs-cache
