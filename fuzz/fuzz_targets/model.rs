//! Fuzz target `model`: see `logsaver::testing::fuzz::model_target`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| logsaver::testing::fuzz::model_target(data));
