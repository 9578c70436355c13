//! Fuzz target `recovery`: see `logsaver::testing::fuzz::recovery_target`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| logsaver::testing::fuzz::recovery_target(data));
