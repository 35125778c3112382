#!/usr/bin/env bash
# Checks schema/kv.proto as a client in another language would use it: a
# Python client whose classes protoc generates from kv.proto (Google's
# protobuf runtime, not prost) talks to four real replicas run with a
# secret, and every reply is decoded by that runtime.
#
#   scripts/python_client_check.sh
#
# Needs python3 with venv and network access to PyPI: it installs protobuf
# and grpcio-tools (which carries protoc) into a virtualenv under
# $PYTHON_VENV (default /tmp/ringkv-python-venv, kept for the next run).
# Not part of scripts/test.sh, which needs cargo alone. RINGKV_BIN names a
# ringkv binary to use instead of building one. The checks themselves are
# in scripts/python_client_check.py; it exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

venv=${PYTHON_VENV:-/tmp/ringkv-python-venv}
bin=${RINGKV_BIN:-$root/target/release/ringkv}
[ -n "${RINGKV_BIN:-}" ] || cargo build --release --quiet

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import grpc_tools, google.protobuf' 2>/dev/null; then
    echo "python client check: installing protobuf and grpcio-tools into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet protobuf grpcio-tools
fi

work=$(mktemp -d /tmp/ringkv-python.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

"$venv/bin/python" -m grpc_tools.protoc -I"$root/schema" --python_out="$work" "$root/schema/kv.proto"

# Four replicas on ports from 19600 up, all requiring one secret.
base=19600
addrs=()
for id in 0 1 2 3; do
    addrs+=("127.0.0.1:$((base + id))")
    echo "$id 127.0.0.1:$((base + id))" >> "$work/cluster.conf"
done
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secret"
for id in 0 1 2 3; do
    "$bin" replica --config "$work/cluster.conf" --id "$id" --data "$work/data-$id" \
        --secret-file "$work/secret" > "$work/replica-$id.log" 2>&1 &
    pids+=($!)
done
if ! "$bin" status --config "$work/cluster.conf" --secret-file "$work/secret" --wait 30 > /dev/null; then
    echo "python client check: the replicas did not come up; their logs:" >&2
    tail -n 5 "$work"/replica-*.log >&2
    exit 1
fi

PYTHONPATH="$work" "$venv/bin/python" "$root/scripts/python_client_check.py" \
    --secret-file "$work/secret" "${addrs[@]}"
