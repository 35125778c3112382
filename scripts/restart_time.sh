#!/usr/bin/env bash
# Measures how long a replica takes to restart after many writes: fills a
# data directory with WRITES writes logged exactly as a replica logs them
# (examples/fill_wal.rs), then starts one replica on it and times how long
# until its port accepts connections (replay included; its peers are not
# running, and refuse connections at once).
#
#   scripts/restart_time.sh WRITES [CHECKPOINT_BYTES|none]   (default 4194304)
#
# Prints the writes, the log's size on disk, the replay line the replica
# logged, and the time to listening.
set -euo pipefail
cd "$(dirname "$0")/.."
writes=${1:?usage: $0 WRITES [CHECKPOINT_BYTES|none]}
checkpoint=${2:-4194304}
cargo build --release --locked --quiet --bin ringkv --example fill_wal
work=$(mktemp -d /tmp/ringkv-restart.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
printf '0 127.0.0.1:7400\n1 127.0.0.1:7401\n2 127.0.0.1:7402\n3 127.0.0.1:7403\n' >"$work/cluster.conf"
target/release/examples/fill_wal "$work/data" "$writes" "$checkpoint"
size=$(du -sb "$work/data/wal" | cut -f1)
sync
start=$(date +%s%N)
target/release/ringkv replica --config "$work/cluster.conf" --id 0 --data "$work/data" \
    --checkpoint-bytes "$([ "$checkpoint" = none ] && echo 1099511627776 || echo "$checkpoint")" \
    2>"$work/replica.log" &
pid=$!
until (exec 3<>/dev/tcp/127.0.0.1/7400) 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/replica.log" >&2; exit 1; }
    sleep 0.005
done
end=$(date +%s%N)
echo "log on disk: $size bytes"
grep -o 'replayed.*' "$work/replica.log"
echo "restart to listening: $(( (end - start) / 1000000 )) ms"
