#![no_main]

//! See `invariants::config` for what this target checks.

#[path = "../invariants.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::config(data));
