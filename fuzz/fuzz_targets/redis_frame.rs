#![no_main]
//! See `fuzz/src/redis_frame.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::redis_frame::run(data));
