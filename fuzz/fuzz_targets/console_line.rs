//! cargo-fuzz target `console_line`: the checks live in `ringkv_fuzz::console_line` so that
//! `tests/random_bytes.rs` runs exactly the same ones in the normal suite.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringkv_fuzz::console_line(data);
});
