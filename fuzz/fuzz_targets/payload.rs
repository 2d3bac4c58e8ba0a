#![no_main]
//! See `fuzz/src/payload.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::payload::run(data));
