//! Replays every input committed under `fuzz/corpus/` (the seeds, and anything the fuzzers
//! found worth keeping) through the fuzz targets' code, so `cargo test` guards against
//! regressions without libFuzzer.
#![expect(
    clippy::expect_used,
    reason = "test code outside #[test] fns (helpers, closures): a panic is the failure report"
)]

use std::path::Path;

use logsaver::testing::fuzz::{decode_target, model_target, recovery_target, seed_corpus};

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read corpus file");
        run(&bytes);
        count += 1;
    }
    count
}

#[test]
fn decode_corpus() {
    assert!(replay("decode", decode_target) >= 3);
}

#[test]
fn recovery_corpus() {
    assert!(replay("recovery", recovery_target) >= 3);
}

#[test]
fn model_corpus() {
    assert!(replay("model", model_target) >= 4);
}

#[test]
fn generated_seeds_are_valid_inputs() {
    // The seeds are real stores: every one must open and pass the consistency checks.
    for (target, _, bytes) in seed_corpus() {
        match target {
            "decode" => decode_target(&bytes),
            "recovery" => recovery_target(&bytes),
            _ => model_target(&bytes),
        }
    }
}
