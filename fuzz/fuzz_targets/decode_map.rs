#![no_main]

//! See `invariants::decode_map` for what this target checks.

#[path = "../invariants.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::decode_map(data));
