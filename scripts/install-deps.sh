#!/usr/bin/env bash
# Installs every Debian 12 package carewatch builds, tests and runs with.
# Idempotent: packages already present are skipped, and apt is only called
# when something is missing.
#   scripts/install-deps.sh          what carewatch builds and runs with
#   scripts/install-deps.sh --test   and what `make test` needs besides:
#                                    headless Chromium, to render the report
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache clang libclang-rt-14-dev
  libhyperscan-dev libre2-dev libyaml-cpp-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev libbenchmark-dev
  libsqlite3-dev sqlite3 libpq-dev openssl python3
  libssl-dev libicu-dev libcli11-dev libspdlog-dev libfmt-dev libcpp-httplib-dev
  libsodium-dev libjemalloc-dev
  xz-utils  # the fuzz targets' grown corpora (tests/fuzz/corpus/grown.tar.xz)
)
if [ "${1:-}" = "--test" ]; then
  # A throwaway PostgreSQL 15 server for the PostgreSQL ledger's tests.
  PACKAGES+=(chromium curl postgresql-15)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
