#!/usr/bin/env bash
# Records long concurrent QUORUM histories against a real cluster and
# checks that each key's history is linearizable.
#
#   scripts/history_test.sh [--seconds N]   (default 60)
#
# Runs tests/linearizable.rs in release mode with RINGKV_HISTORY_SECONDS=N:
# eight clients on all four coordinators put, delete and get six keys, with no
# faults, with replicas SIGKILLed and restarted one at a time, and right
# after a restart. Each test prints one summary line; a violation prints the
# operations around it. (The test suite runs 10 s versions of these.)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
        *) echo "usage: $0 [--seconds N]" >&2; exit 2 ;;
    esac
done
case "$seconds" in ''|*[!0-9]*) echo "--seconds needs a whole number" >&2; exit 2 ;; esac

RINGKV_HISTORY_SECONDS=$seconds exec cargo test --release --test linearizable -- --nocapture
