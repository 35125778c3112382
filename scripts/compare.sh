#!/usr/bin/env bash
# ringkv, etcd and Redis side by side, in one run, on loopback, with the
# same shape of load: 32 connections, one request in flight on each, 256
# keys, 16-byte values, SECONDS_EACH (default 10) seconds per measurement.
#
#   scripts/compare.sh            (as root it installs what is missing)
#
# - ringkv: four replicas with the durable WAL (fdatasync before every
#   acknowledgement), driven by `ringkv bench`: QUORUM put, QUORUM get, ONE get.
# - etcd: three members, driven by wrk through etcd's JSON gateway
#   (/v3/kv/put, and /v3/kv/range, linearizable by default). The gateway
#   costs etcd some throughput compared with its gRPC clients.
# - Redis: appendonly with appendfsync always, driven by redis-benchmark.
#
# Prints one table with every figure and the ratios ringkv/etcd and
# ringkv/Redis, then stops everything it started. Beside each throughput it
# gives the servers' CPU time per request (user + system, summed over every
# server process: four replicas, three etcd members, one Redis), read from
# /proc/PID/stat before and after each measurement: on a machine whose
# cores the load generators share, that is the steadier figure.
# RINGKV_ONLY=1 measures ringkv alone (no etcd, no Redis).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${SECONDS_EACH:-10}
CONNECTIONS=32
work=$(mktemp -d /tmp/ringkv-compare.XXXXXX)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -f "$work/cluster.conf" ]; then
        RINGKV_BIN=target/release/ringkv CONFIG="$work/cluster.conf" RUN_DIR="$work/ringkv" \
            scripts/run_cluster.sh stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

RINGKV_ONLY=${RINGKV_ONLY:-0}
need=()
command -v python3 >/dev/null || need+=(python3)
if [ "$RINGKV_ONLY" != 1 ]; then
    command -v redis-server >/dev/null || need+=(redis-server)
    command -v redis-benchmark >/dev/null || need+=(redis-tools)
    command -v etcd >/dev/null || need+=(etcd-server)
    command -v etcdctl >/dev/null || need+=(etcd-client)
    command -v wrk >/dev/null || need+=(wrk)
fi
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "compare: missing ${need[*]}; run as root to install them with apt-get" >&2
        exit 1
    fi
    echo "compare: installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null
fi

echo "compare: building ringkv (release)" >&2
cargo build --release --locked --quiet

field() { # field PATH JSON -> the value at PATH (dots between keys), from bench --json
    python3 -c 'import json, sys
value = json.loads(sys.argv[2])
for part in sys.argv[1].split("."):
    value = value[part]
print(value)' "$1" "$2"
}
cpu_us() { # cpu_us PID... -> user + system microseconds of those processes, summed
    local total=0 pid
    for pid in "$@"; do
        # utime and stime: the 12th and 13th fields after the ")" that ends the name.
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ printf "%d", ($12 + $13) * 10000 }')))
    done
    echo "$total"
}
per_request() { awk -v us="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", us / n; else print "-" }'; }

# --- ringkv ---------------------------------------------------------------
printf '0 127.0.0.1:7300\n1 127.0.0.1:7301\n2 127.0.0.1:7302\n3 127.0.0.1:7303\n' >"$work/cluster.conf"
RINGKV_BIN=target/release/ringkv CONFIG="$work/cluster.conf" RUN_DIR="$work/ringkv" \
    scripts/run_cluster.sh start >/dev/null
bench() {
    target/release/ringkv bench --config "$work/cluster.conf" --connections $CONNECTIONS \
        --seconds "$SECONDS_EACH" --value-bytes 16 --json "$@" 2>/dev/null
}
echo "compare: ringkv" >&2
rk_put=$(bench --consistency QUORUM --reads 0)
rk_get=$(bench --consistency QUORUM --reads 1)
rk_one=$(bench --consistency ONE --reads 1)
RINGKV_BIN=target/release/ringkv CONFIG="$work/cluster.conf" RUN_DIR="$work/ringkv" \
    scripts/run_cluster.sh stop >/dev/null

etcd_put=0 etcd_put_p99=- etcd_put_cpu=- etcd_range=0 etcd_range_p99=- etcd_range_cpu=-
redis_set=0 redis_set_p99=- redis_set_cpu=- redis_get=0 redis_get_p99=- redis_get_cpu=-
if [ "$RINGKV_ONLY" != 1 ]; then
    # --- etcd -------------------------------------------------------------
    echo "compare: etcd" >&2
    cluster="e0=http://127.0.0.1:23800,e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802"
    for i in 0 1 2; do
        etcd --name "e$i" --data-dir "$work/etcd-$i" \
            --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
            --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
            --initial-cluster "$cluster" --initial-cluster-state new --log-level error \
            >"$work/etcd-$i.log" 2>&1 &
        pids+=($!)
    done
    for _ in $(seq 100); do
        ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:23790 put ready yes >/dev/null 2>&1 && break
        sleep 0.1
    done
    keys=$(for i in $(seq 0 255); do printf '"%s",' "$(printf 'key%d' "$i" | base64)"; done)
    value=$(printf '0123456789abcdef' | base64)
    for op in put range; do
        body='{"key":"'"'"'..k..'"'"'"'
        [ "$op" = put ] && body="$body,\"value\":\"$value\""
        cat >"$work/$op.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local keys = { ${keys%,} }
request = function()
  local k = keys[math.random(#keys)]
  return wrk.format(nil, "/v3/kv/$op", nil, '$body}')
end
EOF
    done
    wrk_run() { # wrk_run SCRIPT -> "rps p99_ms cpu_us_per_request"
        local out before after requests rps p99
        before=$(cpu_us "${pids[@]}")
        out=$(wrk -t2 -c$CONNECTIONS -d"${SECONDS_EACH}s" --latency -s "$work/$1.lua" http://127.0.0.1:23790)
        after=$(cpu_us "${pids[@]}")
        rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
        p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
        requests=$(awk '$2 == "requests" && $3 == "in" { print $1 }' <<<"$out")
        echo "$rps $p99 $(per_request $((after - before)) "$requests")"
    }
    read -r etcd_put etcd_put_p99 etcd_put_cpu < <(wrk_run put)
    read -r etcd_range etcd_range_p99 etcd_range_cpu < <(wrk_run range)
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()

    # --- Redis ------------------------------------------------------------
    echo "compare: redis" >&2
    redis-server --port 6399 --dir "$work" --appendonly yes --appendfsync always --save '' \
        --daemonize no >"$work/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do redis-cli -p 6399 ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis_run() { # redis_run TEST REQUESTS -> "rps p99_ms cpu_us_per_request"
        local before after out
        before=$(cpu_us "${pids[@]}")
        out=$(redis-benchmark -p 6399 -c $CONNECTIONS -n "$2" -r 256 -d 16 -t "$1" --csv 2>/dev/null |
            awk -F, 'NR == 2 { gsub(/"/, ""); print $2, $7 }')
        after=$(cpu_us "${pids[@]}")
        echo "$out $(per_request $((after - before)) "$2")"
    }
    read -r redis_set redis_set_p99 redis_set_cpu < <(redis_run set 200000)
    read -r redis_get redis_get_p99 redis_get_cpu < <(redis_run get 1000000)
fi

# --- the table --------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "-" && b != "-") printf "%.2fx", a / b; else print "-" }'; }
ops() { printf '%.0f/s' "$1"; }
p99() { awk -v us="$1" 'BEGIN { printf "%.1f ms", us / 1000 }'; }
rk_put_ops=$(field ops_per_sec "$rk_put"); rk_get_ops=$(field ops_per_sec "$rk_get"); rk_one_ops=$(field ops_per_sec "$rk_one")
rk_put_cpu=$(field cpu.cluster.us_per_request "$rk_put")
rk_get_cpu=$(field cpu.cluster.us_per_request "$rk_get")
rk_one_cpu=$(field cpu.cluster.us_per_request "$rk_one")
echo
echo "Server CPU per request (us, user + system, all server processes); lower is better:"
echo
echo "| | ringkv | etcd | Redis | ringkv/etcd | ringkv/Redis |"
echo "|---|---|---|---|---|---|"
echo "| durable put (QUORUM; etcd put; Redis SET) | $rk_put_cpu | $etcd_put_cpu | $redis_set_cpu | $(ratio "$rk_put_cpu" "$etcd_put_cpu") | $(ratio "$rk_put_cpu" "$redis_set_cpu") |"
echo "| QUORUM get (etcd linearizable range; Redis GET) | $rk_get_cpu | $etcd_range_cpu | $redis_get_cpu | $(ratio "$rk_get_cpu" "$etcd_range_cpu") | $(ratio "$rk_get_cpu" "$redis_get_cpu") |"
echo "| ONE get (Redis GET) | $rk_one_cpu | | $redis_get_cpu | | $(ratio "$rk_one_cpu" "$redis_get_cpu") |"
echo
echo "Throughput and p99; higher throughput is better:"
echo
echo "| | ringkv | etcd | Redis | ringkv/etcd | ringkv/Redis |"
echo "|---|---|---|---|---|---|"
echo "| durable put (QUORUM; etcd put; Redis SET) | $(ops "$rk_put_ops"), p99 $(p99 "$(field latency_us.p99 "$rk_put")") | $(ops "$etcd_put"), p99 $etcd_put_p99 | $(ops "$redis_set"), p99 ${redis_set_p99} ms | $(ratio "$rk_put_ops" "$etcd_put") | $(ratio "$rk_put_ops" "$redis_set") |"
echo "| QUORUM get (etcd linearizable range; Redis GET) | $(ops "$rk_get_ops"), p99 $(p99 "$(field latency_us.p99 "$rk_get")") | $(ops "$etcd_range"), p99 $etcd_range_p99 | $(ops "$redis_get"), p99 ${redis_get_p99} ms | $(ratio "$rk_get_ops" "$etcd_range") | $(ratio "$rk_get_ops" "$redis_get") |"
echo "| ONE get (Redis GET) | $(ops "$rk_one_ops"), p99 $(p99 "$(field latency_us.p99 "$rk_one")") | | $(ops "$redis_get") | | $(ratio "$rk_one_ops" "$redis_get") |"
