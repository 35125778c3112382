#!/usr/bin/env bash
# Syscalls per request of one replica, counted by strace while `ringkv
# bench` runs against a cluster that is already up:
#
#   scripts/syscalls.sh PID [BENCH ARGS...]
#   scripts/syscalls.sh "$(cat run/replica-0.pid)" --coordinators 0 --consistency ONE --reads 1
#
# strace (-c -f) attaches to PID, the bench runs with no warm-up (so every
# request it sends is counted) and --seconds 5 unless given, then strace
# detaches. Prints each syscall's count per request and the total. strace
# slows the traced process, so throughput under it means nothing; the
# counts per request are what this is for. RINGKV_CONFIG or --config in
# the bench arguments names the cluster, as for any ringkv subcommand.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -ge 1 ] && exit 0 || exit 2
fi
pid=$1
shift
command -v strace >/dev/null || { echo "syscalls: strace is not installed (apt-get install strace)" >&2; exit 1; }
bin=${RINGKV_BIN:-target/release/ringkv}
out=$(mktemp /tmp/ringkv-strace.XXXXXX)
trap 'rm -f "$out"' EXIT
strace -c -f -p "$pid" -o "$out" 2>/dev/null &
tracer=$!
sleep 0.5
args=("$@")
[[ " ${args[*]} " == *" --seconds "* || " ${args[*]} " == *" --requests "* ]] || args+=(--seconds 5)
json=$("$bin" bench --warmup-seconds 0 --json --allow-errors "${args[@]}" 2>/dev/null)
kill -INT "$tracer"
wait "$tracer" 2>/dev/null || true
python3 - "$out" "$json" <<'PY'
import json, sys
requests = json.loads(sys.argv[2])["requests"]
print(f"{requests} requests")
rows, total = [], 0
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 5 or not parts[3].isdigit() or parts[-1] == "total":
        continue
    calls = int(parts[3])
    errors = int(parts[4]) if len(parts) == 6 else 0
    rows.append((calls, errors, parts[-1]))
    total += calls
for calls, errors, name in sorted(rows, reverse=True):
    failed = f" ({errors / requests:.2f} failed)" if errors else ""
    print(f"  {name:<16} {calls / requests:6.2f}{failed}")
print(f"  {'total':<16} {total / requests:6.2f} per request")
PY
