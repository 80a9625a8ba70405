//! Every input kept from the fuzz targets, run through the same invariant checks on stable.
//!
//! `fuzz/invariants.rs` holds the checks the `cargo fuzz` targets run; this harness includes it
//! and runs each check on the files of `tests/fuzz-regressions/<target>/` (inputs that once broke
//! an invariant, kept after the fix) and `fuzz/seeds/<target>/` (the seed corpus). See the
//! README's "Fuzzing" section.

#[path = "../fuzz/invariants.rs"]
mod invariants;

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `check` on every file kept for `target`; returns how many there were.
fn run_kept_inputs(target: &str, check: fn(&[u8])) -> usize {
    let mut files = Vec::new();
    for dir in ["tests/fuzz-regressions", "fuzz/seeds"] {
        let dir = Path::new(ROOT).join(dir).join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.as_encoded_bytes()[0] == b'.');
            if path.is_file() && !hidden {
                files.push(path);
            }
        }
    }
    files.sort();
    for path in &files {
        let input = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The file's name goes with any panic below, through the test's output.
        eprintln!("{target}: {}", path.display());
        check(&input);
    }
    files.len()
}

#[test]
fn decode_map_inputs_keep_their_invariants() {
    assert!(run_kept_inputs("decode_map", invariants::decode_map) > 0);
}

#[test]
fn config_inputs_keep_their_invariants() {
    assert!(run_kept_inputs("config", invariants::config) > 0);
}

#[test]
fn pack_inputs_keep_their_invariants() {
    assert!(run_kept_inputs("pack", invariants::pack) > 0);
}
