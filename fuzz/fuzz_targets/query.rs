#![no_main]
//! See `fuzz/src/query.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::query::run(data));
