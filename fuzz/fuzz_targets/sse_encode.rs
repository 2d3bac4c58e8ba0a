#![no_main]
//! See `fuzz/src/sse_encode.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::sse_encode::run(data));
