#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server on loopback for carewatch's tests and
# benchmarks: a fresh cluster in DIR, owned by a non-root user, listening on
# 127.0.0.1 at a free port, with trust authentication for the user
# `carewatch` (loopback only). Nothing outside DIR is touched, except that
# as root a system user `carewatch-pg` is created to own the cluster
# (PostgreSQL refuses to run as root).
#
#   scripts/pg-test-server.sh start DIR [--fsync]   prints the URL, also in DIR/url
#   scripts/pg-test-server.sh stop DIR              stops it (fast shutdown)
#   scripts/pg-test-server.sh kill DIR              stops it at once (immediate)
#   scripts/pg-test-server.sh restart DIR           starts it again on its port
#   scripts/pg-test-server.sh remove DIR            stops it and deletes DIR
#
# Without --fsync the cluster runs with fsync=off: tests kill carewatchd,
# never the machine, and run faster. Benchmarks pass --fsync.
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
cmd=${1:?usage: pg-test-server.sh start|stop|kill|restart|remove DIR}
dir=${2:?DIR required}
RUNAS=carewatch-pg
source "$(cd "$(dirname "$0")/.." && pwd)/tools/bench/ports.sh"
# Absolute, and run from /: the cluster's owner may not enter the caller's
# working directory.
if [ "$cmd" = start ]; then mkdir -p "$dir"; fi
if [ -d "$dir" ]; then dir=$(cd "$dir" && pwd); fi
cd /

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$RUNAS" -- "$@"; else "$@"; fi
}

pg_start() {
  local port
  port=$(cat "$dir/port")
  as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir $(cat "$dir/options")" start >/dev/null
}

case "$cmd" in
  start)
    if [ ! -x "$PGBIN/initdb" ]; then
      echo "pg-test-server: PostgreSQL 15 is not installed (scripts/install-deps.sh --test)" >&2
      exit 1
    fi
    if [ "$(id -u)" -eq 0 ] && ! id "$RUNAS" >/dev/null 2>&1; then
      useradd --system --no-create-home --shell /usr/sbin/nologin "$RUNAS"
    fi
    mkdir -p "$dir"
    chmod 700 "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown "$RUNAS" "$dir"; fi
    if [ ! -d "$dir/data" ]; then
      as_owner "$PGBIN/initdb" -D "$dir/data" -U carewatch --auth=trust -E UTF8 --no-locale \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # A port below the kernel's ephemeral range (32768-60999 by default),
    # which outgoing connections take: `restart` needs the same port free
    # again after the server has been stopped in the middle of a test.
    free_ports >"$dir/port"
    options="-c max_connections=300 -c shared_buffers=128MB"
    if [ "${3:-}" != "--fsync" ]; then options="$options -c fsync=off -c full_page_writes=off"; fi
    echo "$options" >"$dir/options"
    # The port is free when picked but may be taken before the server binds
    # it (another test's server, a client's connection): a start that
    # fails is retried on a new port, and the server's log is shown.
    for attempt in 1 2 3; do
      if [ "$(id -u)" -eq 0 ]; then chown "$RUNAS" "$dir/port" "$dir/options"; fi
      if pg_start; then break; fi
      echo "pg-test-server: start on port $(cat "$dir/port") failed (attempt $attempt of 3); server log:" >&2
      tail -n 20 "$dir/server.log" >&2 || true
      [ "$attempt" -lt 3 ] || exit 1
      free_ports >"$dir/port"
    done
    echo "postgresql://carewatch@127.0.0.1:$(cat "$dir/port")/postgres" | tee "$dir/url"
    ;;
  stop) as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
  kill) as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null ;;
  restart) pg_start ;;
  remove)
    if [ -d "$dir/data" ]; then
      as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *) echo "pg-test-server: unknown command $cmd" >&2; exit 2 ;;
esac
