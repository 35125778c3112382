#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, one after the
# other, and exits non-zero if any of them found a crash (the failing input
# is then in fuzz/artifacts/TARGET/). See fuzz/README.md.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]
#
# N defaults to 60 seconds per target; with no TARGET, all of them run.
# Works on the stable toolchain (RUSTC_BOOTSTRAP=1, no sanitizer: ringkv is
# safe Rust, and the checks are panics); set FUZZ_NIGHTLY=1 to use
# `cargo +nightly fuzz` with its default AddressSanitizer instead.
set -euo pipefail

seconds=60
targets=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds)
            [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || {
                echo "fuzz.sh: --seconds needs a positive whole number" >&2
                exit 2
            }
            seconds="$2"
            shift 2
            ;;
        -h | --help)
            sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "fuzz.sh: unknown option $1 (try --help)" >&2
            exit 2
            ;;
        *)
            targets+=("$1")
            shift
            ;;
    esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

if [[ "${FUZZ_NIGHTLY:-0}" == 1 ]]; then
    fuzz=(cargo +nightly fuzz run)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz run -s none)
fi

if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi

failed=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    # The committed seeds are read alongside the growing corpus; new inputs
    # are only ever written to the corpus (the first directory).
    dirs=("$corpus")
    if [[ -d "fuzz/seeds/$target" ]]; then
        dirs+=("fuzz/seeds/$target")
    fi
    log="fuzz/artifacts/$target.log"
    mkdir -p fuzz/artifacts
    echo "fuzz.sh: $target for ${seconds}s (log: $log)"
    if "${fuzz[@]}" "$target" "${dirs[@]}" -- -max_total_time="$seconds" >"$log" 2>&1; then
        runs="$(grep -Eo '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)"
        echo "fuzz.sh: $target ok: ${runs:-no summary (see $log)}"
    else
        echo "fuzz.sh: $target FAILED; the panic and the input:" >&2
        grep -E -A2 "panicked at|Test unit written|^Base64" "$log" | head -n 20 >&2 || true
        failed+=("$target")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/TARGET/)" >&2
    exit 1
fi
echo "fuzz.sh: no crashes in ${#targets[@]} target(s)"
