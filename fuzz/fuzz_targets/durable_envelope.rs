#![no_main]
//! See `fuzz/src/durable_envelope.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::durable_envelope::run(data));
