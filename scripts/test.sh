#!/usr/bin/env bash
# Runs every test: the wal crate's recovery tests, the unit tests, and the
# integration tests that start real replica processes on loopback ports.
# A few minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --workspace --all-targets
cargo test --locked --workspace "$@"
