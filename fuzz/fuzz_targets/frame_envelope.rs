//! cargo-fuzz target `frame_envelope`: the checks live in `ringkv_fuzz::frame_envelope` so that
//! `tests/random_bytes.rs` runs exactly the same ones in the normal suite.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringkv_fuzz::frame_envelope(data);
});
