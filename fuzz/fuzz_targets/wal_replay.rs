//! cargo-fuzz target `wal_replay`: the checks live in `ringkv_fuzz::wal_replay` so that
//! `tests/random_bytes.rs` runs exactly the same ones in the normal suite.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringkv_fuzz::wal_replay(data);
});
