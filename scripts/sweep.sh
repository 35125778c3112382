#!/usr/bin/env bash
# How cost grows: runs `ringkv bench --json --allow-errors` for QUORUM puts
# (--reads 0) and QUORUM gets (--reads 1) while varying one parameter, the
# others at bench's defaults (32 connections, 16-byte values, pipeline 1):
#
#   connections   1 4 16 64 256 1024
#   value-size    16 1024 65536 1048576 bytes (--value-bytes)
#   pipeline      1 4 16 64 requests in flight per connection
#
#   scripts/sweep.sh [OUTPUT]     OUTPUT defaults to docs/scaling.jsonl
#   scripts/plot_sweep.py [OUTPUT]  then draws docs/scaling-*.svg from it
#
# It builds ringkv (cargo build --release --locked, unless RINGKV_BIN is
# set), then for each sweep starts a fresh four-replica cluster of its own
# (scripts/run_cluster.sh with its own cluster file and RUN_DIR under a
# temporary directory, on ports PORT_BASE..PORT_BASE+3), runs each point's
# put and then its get (so the gets read what the puts just wrote), and
# stops the cluster. On exit, even when interrupted, it stops every replica
# and bench it started and removes the temporary directory (an interrupt
# during the build takes effect when cargo stops).
#
# Each run appends one line to OUTPUT (the file is appended to, never
# truncated; plot_sweep.py uses the last line for each sweep, op and point):
#   {"sweep": "connections", "op": "put", "x": 64, "run": "<sweep start, UTC>",
#    "time": "<UTC>", "loadavg_before": "1.02 0.98 0.91", "loadavg_after": "...",
#    "replica_args": "", "exit_code": 0, "stderr": "",
#    "wal": {"fdatasyncs": N, "records": N, "checkpoints": N}, "stale_write_retries": N,
#    "replica_rss_kib": [N, N, N, N], "replica_log": {"warnings": N, "errors": N,
#    "first_warning": "...", "first_error": "..."}, "fill": null,
#    "bench": {...bench's --json line...}}
# "wal" and "stale_write_retries" (puts stamped again after a replica
# answered that it held a newer version) are the change over the run
# (warm-up included), summed over the four replicas, from `ringkv status
# --metrics`; "replica_rss_kib" is each
# replica's VmRSS halfway through the measured phase; "replica_log" counts
# the WARN and ERROR lines the replicas logged meanwhile (a full memory
# budget is one) and quotes the first of each. Before each get of the
# value-size sweep, four consoles put one value of that size to every key
# (256 QUORUM puts), so that every get reads a value of the size measured;
# "fill" says how long that took and how many of those puts failed. A bench that printed
# no JSON (it could not connect, say) is recorded with "bench": null, its
# exit code and its last stderr line: errors at the extremes are data.
#
# Environment:
#   SECONDS_EACH    measured seconds per run (default 5)
#   WARMUP_SECONDS  bench's warm-up before each run (default 1)
#   SWEEPS          which sweeps, in order (default "connections value-size pipeline")
#   PORT_BASE       first of the four replica ports (default 7500)
#   RINGKV_BIN      a ringkv binary to use instead of building one
#   REPLICA_ARGS    extra `ringkv replica` flags for every replica (default
#                   none: the replica's defaults serve 1024 connections, 256
#                   per coordinator against a limit of 1024 each, and 1 MiB
#                   values, the default --max-value-bytes)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
case "${1:-}" in
    -h|--help|help) usage; exit 0 ;;
    -*) echo "sweep: unknown option $1 ('$0 --help' says more)" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "usage: $0 [OUTPUT] ('$0 --help' says more)" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/scaling.jsonl}
SECONDS_EACH=${SECONDS_EACH:-5}
WARMUP_SECONDS=${WARMUP_SECONDS:-1}
SWEEPS=${SWEEPS:-connections value-size pipeline}
PORT_BASE=${PORT_BASE:-7500}
replica_args=${REPLICA_ARGS:-}
bin=${RINGKV_BIN:-$root/target/release/ringkv}

command -v python3 >/dev/null || { echo "sweep: python3 is needed to write the JSON lines" >&2; exit 1; }
for sweep in $SWEEPS; do
    case $sweep in
        connections|value-size|pipeline) ;;
        *) echo "sweep: unknown sweep '$sweep' (connections, value-size or pipeline)" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d /tmp/ringkv-sweep.XXXXXX)
config=$work/cluster.conf
run_dir=$work/run
bench_pid='' sampler_pid='' fill_pids=()

cluster() { # cluster start|stop
    RINGKV_BIN=$bin CONFIG=$config RUN_DIR=$run_dir REPLICA_ARGS=$replica_args \
        "$root/scripts/run_cluster.sh" "$1"
}
cleanup() {
    local pid
    for pid in $bench_pid $sampler_pid "${fill_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in $bench_pid $sampler_pid "${fill_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -f "$config" ]; then cluster stop >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "sweep: interrupted" >&2; exit 130' INT
trap 'echo "sweep: terminated" >&2; exit 143' TERM

if [ -z "${RINGKV_BIN:-}" ]; then
    # In the foreground, with cargo's progress: an interrupt stops the
    # script (and its trap runs) once cargo has stopped.
    echo "sweep: building ringkv (cargo build --release --locked)" >&2
    (cd "$root" && cargo build --release --locked)
fi
[ -x "$bin" ] || { echo "sweep: no ringkv binary at $bin" >&2; exit 1; }

for i in 0 1 2 3; do
    echo "$i 127.0.0.1:$((PORT_BASE + i))"
done >"$config"
mkdir -p "$(dirname "$out")"

# Counters summed over the replicas: "fdatasyncs records checkpoints
# stale-write-retries" (a put stamped again after a replica answered that
# it holds a newer version of the key).
wal_totals() {
    "$bin" status --config "$config" --metrics 2>/dev/null | awk '
        $1 == "wal:" { syncs += $2; records += $5; checkpoints += $(NF - 1) }
        $1 == "clock:" { stale += $2 }
        END { printf "%d %d %d %d\n", syncs, records, checkpoints, stale }'
}
# Each replica's VmRSS in KiB, comma-separated (0 for one not running).
replica_rss() {
    local id pid rss list=
    for id in 0 1 2 3; do
        rss=0
        if pid=$(cat "$run_dir/replica-$id.pid" 2>/dev/null); then
            rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        fi
        list=$list${list:+,}${rss:-0}
    done
    echo "$list"
}

# Each replica log's size in bytes, comma-separated, to read what a run added.
log_sizes() {
    local id list=
    for id in 0 1 2 3; do
        list=$list${list:+,}$(wc -c <"$run_dir/replica-$id.log" 2>/dev/null || echo 0)
    done
    echo "$list"
}

# fill BYTES: one put of a BYTES-byte value to every key (k<key>-fill...,
# so bench's gets accept it), by four consoles at once, one per coordinator,
# 64 keys each; prints "seconds failed". The value-size sweep fills before
# each get, so that every get reads a value of the size measured, not one
# an earlier, smaller point left on a key the put run did not reach.
fill() {
    local started id failed=0 n
    started=$(date +%s.%N)
    fill_pids=()
    for id in 0 1 2 3; do
        python3 -c '
import sys
first, size = int(sys.argv[1]), int(sys.argv[2])
for key in range(first, 256, 4):
    value = "k%d-fill-" % key
    print("put %d %s" % (key, value + "." * max(0, size - len(value))))
' "$id" "$1" | "$bin" client --config "$config" --coordinator "$id" --consistency QUORUM \
            >"$work/fill-$id.out" 2>&1 &
        fill_pids+=($!)
    done
    for id in "${fill_pids[@]}"; do wait "$id" || true; done
    fill_pids=()
    for id in 0 1 2 3; do
        n=$(grep -c '^OK' "$work/fill-$id.out" || true)
        failed=$((failed + 64 - n))
    done
    echo "$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') $failed"
}

# run_point SWEEP OP X BENCH_FLAGS...: one bench run, one line appended.
run_point() {
    local sweep=$1 op=$2 x=$3
    shift 3
    local reads=0
    [ "$op" = get ] && reads=1
    local load_before wal_before wal_after logs_before json code=0 filled=
    if [ "$sweep" = value-size ] && [ "$op" = get ]; then
        filled=$(fill "$x")
    fi
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    logs_before=$(log_sizes)
    read -r -a wal_before <<<"$(wal_totals)"
    # VmRSS halfway through the measured phase, by a sampler in the background.
    ( sleep "$(awk -v w="$WARMUP_SECONDS" -v s="$SECONDS_EACH" 'BEGIN { print w + s / 2 }')"
      replica_rss >"$work/rss" ) &
    sampler_pid=$!
    # In the background so that an interrupt reaches the trap at once; the
    # timeout guards against a bench that never finishes.
    timeout $((WARMUP_SECONDS + SECONDS_EACH + 120)) \
        "$bin" bench --config "$config" --consistency QUORUM --reads "$reads" \
        --seconds "$SECONDS_EACH" --warmup-seconds "$WARMUP_SECONDS" \
        --json --allow-errors "$@" >"$work/bench.out" 2>"$work/bench.err" &
    bench_pid=$!
    wait "$bench_pid" || code=$?
    bench_pid=
    wait "$sampler_pid" || true
    sampler_pid=
    read -r -a wal_after <<<"$(wal_totals)"
    json=$(python3 - "$sweep" "$op" "$x" "$RUN_STARTED" "$load_before" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" "$replica_args" "$code" \
        "$((wal_after[0] - wal_before[0]))" "$((wal_after[1] - wal_before[1]))" \
        "$((wal_after[2] - wal_before[2]))" "$((wal_after[3] - wal_before[3]))" \
        "$(cat "$work/rss" 2>/dev/null || echo)" \
        "$work/bench.out" "$work/bench.err" "$run_dir" "$logs_before" "$filled" <<'EOF'
import json, sys, time
(sweep, op, x, run, load_before, load_after, replica_args, code,
 syncs, records, checkpoints, stale, rss, out_path, err_path, run_dir, logs_before, filled) = sys.argv[1:]
bench = None
with open(out_path) as f:
    for line in f:
        line = line.strip()
        if line.startswith("{"):
            bench = json.loads(line)
with open(err_path, errors="replace") as f:
    err = [l.strip() for l in f if l.strip()]
# WARN and ERROR lines the replicas logged during the run (a full memory
# budget, say): how many, and the first of each, without its timestamp.
log = {"warnings": 0, "errors": 0, "first_warning": "", "first_error": ""}
for replica, offset in enumerate(int(v) for v in logs_before.split(",")):
    try:
        with open("%s/replica-%d.log" % (run_dir, replica), "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        continue
    for line in lines:
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in ("WARN", "ERROR"):
            kind = "warning" if parts[2] == "WARN" else "error"
            log[kind + "s"] += 1
            if not log["first_" + kind]:
                log["first_" + kind] = "replica %d: %s" % (replica, parts[3])
record = {
    "sweep": sweep, "op": op, "x": int(x), "run": run,
    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "loadavg_before": load_before, "loadavg_after": load_after,
    "replica_args": replica_args, "exit_code": int(code),
    "stderr": "" if bench is not None or not err else err[-1],
    "wal": {"fdatasyncs": int(syncs), "records": int(records), "checkpoints": int(checkpoints)},
    "stale_write_retries": int(stale),
    "replica_rss_kib": [int(v) for v in rss.split(",") if v],
    "replica_log": log,
    "fill": ({"seconds": float(filled.split()[0]), "failed": int(filled.split()[1])}
             if filled else None),
    "bench": bench,
}
print(json.dumps(record, separators=(", ", ": ")))
EOF
)
    printf '%s\n' "$json" >>"$out"
    python3 -c '
import json, sys
r = json.loads(sys.argv[1]); b = r["bench"]
if b is None:
    print("  %-11s %-3s %8s  no result (exit %d): %s" % (r["sweep"], r["op"], r["x"], r["exit_code"], r["stderr"]))
else:
    o = b["operations"][r["op"]]; lat = o["latency_us"]
    errors = sum(o["errors"].values())
    print("  %-11s %-3s %8s  %9.0f/s  p50 %7d us  p99 %8d us  cpu %7.1f us/req  errors %d  wal %.1f rec/sync  %d ckpt  %d warn  %d stale"
          % (r["sweep"], r["op"], r["x"], o["ops_per_sec"], lat["p50"], lat["p99"],
             b["cpu"]["cluster"]["us_per_request"] or 0, errors,
             r["wal"]["records"] / max(r["wal"]["fdatasyncs"], 1), r["wal"]["checkpoints"],
             r["replica_log"]["warnings"] + r["replica_log"]["errors"], r["stale_write_retries"]))
if r["fill"]:
    print("  %-11s     %8s  (filled every key first: %.1f s, %d failed)" % ("", "", r["fill"]["seconds"], r["fill"]["failed"]))
' "$json" >&2
}

RUN_STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo "sweep: load average before: $(cut -d' ' -f1-3 /proc/loadavg); writing to $out" >&2
for sweep in $SWEEPS; do
    echo "sweep: $sweep: starting a fresh cluster on ports $PORT_BASE-$((PORT_BASE + 3))" >&2
    rm -rf "$run_dir"
    cluster start >/dev/null
    case $sweep in
        connections)
            for n in 1 4 16 64 256 1024; do
                for op in put get; do run_point "$sweep" "$op" "$n" --connections "$n"; done
            done ;;
        value-size)
            for bytes in 16 1024 65536 1048576; do
                for op in put get; do run_point "$sweep" "$op" "$bytes" --value-bytes "$bytes"; done
            done ;;
        pipeline)
            for depth in 1 4 16 64; do
                for op in put get; do run_point "$sweep" "$op" "$depth" --pipeline "$depth"; done
            done ;;
    esac
    cluster stop >/dev/null
done
echo "sweep: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
