#![no_main]

//! See `invariants::pack` for what this target checks.

#[path = "../invariants.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::pack(data));
