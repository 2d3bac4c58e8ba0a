#![no_main]
//! See `fuzz/src/request_head.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::request_head::run(data));
