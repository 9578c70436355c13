//! Fuzz target `decode`: see `logsaver::testing::fuzz::decode_target`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| logsaver::testing::fuzz::decode_target(data));
