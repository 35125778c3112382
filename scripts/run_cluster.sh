#!/usr/bin/env bash
# Starts a four-replica ringkv cluster on this machine and opens a console.
#
#   scripts/run_cluster.sh            build, start the replicas, open a console on replica 0
#   scripts/run_cluster.sh start      build and start the replicas in the background only
#   scripts/run_cluster.sh console [N]  open a console on replica N (default 0)
#   scripts/run_cluster.sh status     which replicas this script started are running, and their view
#   scripts/run_cluster.sh stop       stop exactly the replicas this script started (by PID file)
#
# Environment: RUN_DIR (default ./run) holds data-N/, replica-N.log and
# replica-N.pid; CONFIG (default scripts/cluster.conf) is the cluster file;
# RINGKV_BIN, if set, is a ringkv binary to use instead of building one;
# REPLICA_ARGS, if set, holds extra `ringkv replica` flags for every replica;
# they are remembered in RUN_DIR/replica-args and used again for any replica
# started later without REPLICA_ARGS set (set it, even to nothing, to change
# them), so a restarted replica never runs with flags its peers lack.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

root=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${RUN_DIR:-$root/run}
config=${CONFIG:-$root/scripts/cluster.conf}
bin=${RINGKV_BIN:-$root/target/release/ringkv}

replica_ids() { grep -v '^[[:space:]]*#' "$config" | awk 'NF >= 2 { print $1 }'; }

build() {
    [ -n "${RINGKV_BIN:-}" ] && return
    # cargo's own progress on a terminal (a first build takes minutes);
    # quiet when the output is a log.
    local quiet=--quiet
    [ -t 2 ] && quiet=
    echo "building $bin (cargo build --release)" >&2
    (cd "$root" && cargo build --release $quiet)
}

# Prints the PID in replica N's PID file if that process is still the ringkv
# replica this script started on RUN_DIR/data-N (so a PID reused by another
# program, or by another cluster's replica, is never signalled).
live_pid() {
    local pid_file=$run_dir/replica-$1.pid pid
    [ -f "$pid_file" ] || return 1
    pid=$(cat "$pid_file")
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- " replica --config $config --id $1 --data $run_dir/data-$1 " || return 1
    echo "$pid"
}

# Whether LOG has TEXT in what was written after its first OFFSET bytes.
logged_since() {
    local since
    since=$(tail -c +"$(($2 + 1))" "$1")
    [[ $since == *"$3"* ]]
}

# The replica flags for this start: REPLICA_ARGS when set (and remembered),
# else the ones remembered by an earlier start.
replica_args() {
    local remembered=$run_dir/replica-args
    if [ -n "${REPLICA_ARGS+set}" ]; then
        if [ -n "$REPLICA_ARGS" ]; then
            printf '%s\n' "$REPLICA_ARGS" > "$remembered"
        else
            rm -f "$remembered"
        fi
        printf '%s' "$REPLICA_ARGS"
    elif [ -s "$remembered" ]; then
        echo "using the replica flags remembered in $remembered: $(cat "$remembered")" >&2
        cat "$remembered"
    fi
}

start() {
    build
    mkdir -p "$run_dir"
    local args
    args=$(replica_args)
    local started=() offsets=()
    for id in $(replica_ids); do
        if pid=$(live_pid "$id"); then
            echo "replica $id is already running (pid $pid)"
            continue
        fi
        local log=$run_dir/replica-$id.log
        started+=("$id")
        offsets+=("$( [ -f "$log" ] && wc -c <"$log" || echo 0)")
        # setsid: the replicas outlive the terminal that started them.
        # shellcheck disable=SC2086 # the replica flags are a list of words
        setsid "$bin" replica --config "$config" --id "$id" --data "$run_dir/data-$id" $args \
            </dev/null >>"$log" 2>&1 &
        echo $! > "$run_dir/replica-$id.pid"
        echo "started replica $id (pid $!), log $log"
    done
    # Each replica started here must reach its own listening line; one that
    # exits first (its port taken by another cluster, say) fails the start,
    # even though something may answer on its port.
    local failed=0 i
    for i in "${!started[@]}"; do
        local id=${started[$i]} log=$run_dir/replica-${started[$i]}.log
        for _ in $(seq 200); do
            logged_since "$log" "${offsets[$i]}" "listening on" && break
            live_pid "$id" >/dev/null || break
            sleep 0.1
        done
        if ! logged_since "$log" "${offsets[$i]}" "listening on"; then
            echo "replica $id did not start: $(tail -n 1 "$log")" >&2
            failed=1
        fi
    done
    if [ "$failed" -ne 0 ]; then
        stop >/dev/null
        exit 1
    fi
    if ! "$bin" status --config "$config" --wait 20; then
        echo "the cluster did not come up; see the logs in $run_dir" >&2
        exit 1
    fi
    echo "to type ringkv commands against this cluster from any directory:"
    echo "  export PATH=\"$(dirname "$bin"):\$PATH\" RINGKV_CONFIG=\"$config\""
}

stop() {
    local stopped=0
    for id in $(replica_ids); do
        if pid=$(live_pid "$id"); then
            kill -TERM "$pid"
            # live_pid, not kill -0: an exited replica may linger as a zombie
            # until whatever adopted it reaps it.
            for _ in $(seq 50); do live_pid "$id" >/dev/null || break; sleep 0.1; done
            live_pid "$id" >/dev/null && kill -KILL "$pid"
            echo "stopped replica $id (pid $pid)"
            stopped=$((stopped + 1))
        fi
        rm -f "$run_dir/replica-$id.pid"
    done
    [ "$stopped" -gt 0 ] || echo "no replica started by this script is running"
}

status() {
    for id in $(replica_ids); do
        if pid=$(live_pid "$id"); then
            echo "replica $id: running (pid $pid)"
        else
            echo "replica $id: not running"
        fi
    done
    [ -x "$bin" ] && "$bin" status --config "$config" || true
}

console() {
    [ -x "$bin" ] || build
    "$bin" client --config "$config" --coordinator "${1:-0}"
}

case "${1:-}" in
    "")
        start
        console 0
        echo "the cluster is still running: 'scripts/run_cluster.sh stop' stops it"
        ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    console) console "${2:-0}" ;;
    -h|--help|help) usage ;;
    *) echo "usage: $0 [start|stop|status|console [N]] ('$0 --help' says more)" >&2; exit 2 ;;
esac
