#!/usr/bin/env bash
# `make run`: what the built tree offers today. Checks the shipped rules and
# explains the example report with them.
set -euo pipefail
build=${1:-build}
cw="$build/tools/carewatch"
echo "== carewatch lint rules/"
"$cw" lint rules/
echo "== carewatch test rules/"
"$cw" test rules/
echo "== carewatch explain --rules rules/ examples/report.json"
"$cw" explain --rules rules/ examples/report.json
