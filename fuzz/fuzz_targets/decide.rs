#![no_main]
//! See `fuzz/src/decide.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::decide::run(data));
