#!/usr/bin/env bash
# The benchmark programs refuse a numeric flag that is not a whole number in
# its range: by the flag's name, with exit status 2, before doing any work.
# Usage: bench_args_test.sh BENCH_LEDGER BENCH_EVAL BENCH_SIGNALS
set -u
fail=0
check() {
  local want=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne 2 ] || ! grep -qF -- "$want" <<<"$out"; then
    echo "FAIL: $* exited $rc: $out"
    fail=1
  fi
}
check "--rounds must be a whole number from 1 to 1000, not 'x'" "$1" --rounds x
check "--writers must be a whole number from 1 to 4096, not '0'" "$1" --writers 0
check "--events must be a whole number from 1 to 100000000, not '99999999999999999999'" \
  "$1" --events 99999999999999999999
check "--reports must be a whole number from 1 to 100000000, not '12abc'" "$2" --reports 12abc
check "--realistic must be a whole number from 0 to 1000000, not '-1'" "$2" --realistic -1
check "--n must be a whole number from 1 to 10000000, not ''" "$3" --n ""
check "--threads must be a whole number from 1 to 4096, not '1.5'" "$3" --threads 1.5
[ "$fail" -eq 0 ] && echo "bench_args_test: all passed"
exit "$fail"
