#!/usr/bin/env bash
# Kills replicas with SIGKILL under load and checks that no acknowledged
# write was lost.
#
#   scripts/crash_test.sh [--seconds N]   (default 30)
#
# Four replicas start on free loopback ports; four writers put at QUORUM
# through all four coordinators and record every acknowledgement; a random
# replica is SIGKILLed and restarted every 0.6 s or so. At the end a QUORUM
# read of every key must return its last acknowledged value or a later one,
# every replica of every key must then hold the same version within 5 s,
# and every replica must have restarted cleanly. Prints one summary line and
# exits non-zero on any loss. (The test suite runs a short version of this.)
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

seconds=30
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "usage: $0 [--seconds N] ('$0 --help' says more)" >&2; exit 2 ;;
    esac
done
case "$seconds" in ''|*[!0-9]*) echo "--seconds needs a whole number" >&2; exit 2 ;; esac

# Build first, with cargo's progress on a terminal (a first build takes
# minutes), so that the run below times only the test.
quiet=--quiet
[ -t 2 ] && quiet=
echo "building the crash test (cargo test --release --no-run)" >&2
cargo test --release $quiet --test crash_recovery --no-run

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
RINGKV_CRASH_SECONDS=$seconds cargo test --release --quiet --test crash_recovery -- --nocapture \
    >"$log" 2>&1 || status=$?
grep -h "^crash test:" "$log" || true
if [ "$status" -ne 0 ]; then
    # The assertion that failed, and what it printed.
    grep -A 30 "panicked at" "$log" >&2 || cat "$log" >&2
    echo "crash test FAILED" >&2
    exit 1
fi
