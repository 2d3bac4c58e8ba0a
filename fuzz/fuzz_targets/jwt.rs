#![no_main]
//! See `fuzz/src/jwt.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::jwt::run(data));
