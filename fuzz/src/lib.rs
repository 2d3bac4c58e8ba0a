//! The fuzz targets' checks, one module each (`fuzz_targets/<name>.rs` are the libFuzzer
//! entry points, `fuzz_targets/all.rs` all of them in one binary), and how an input is split
//! into fields.
//!
//! Inputs are plain bytes with fields separated by `0xFF` (a byte that never occurs in UTF-8),
//! so the committed seeds can be written by hand with `printf` and read in a hex dump, and
//! libFuzzer's mutations (insert, erase, copy a chunk) keep most of an input's structure.

pub mod decide;
pub mod durable_envelope;
pub mod jwt;
pub mod payload;
pub mod query;
pub mod redis_frame;
pub mod request_head;
pub mod sse_encode;

/// Every target by name (the names of `fuzz_targets/*.rs`).
pub const TARGETS: [&str; 8] = [
    "decide",
    "durable_envelope",
    "jwt",
    "payload",
    "query",
    "redis_frame",
    "request_head",
    "sse_encode",
];

/// The target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "decide" => decide::run,
        "durable_envelope" => durable_envelope::run,
        "jwt" => jwt::run,
        "payload" => payload::run,
        "query" => query::run,
        "redis_frame" => redis_frame::run,
        "request_head" => request_head::run,
        "sse_encode" => sse_encode::run,
        _ => return None,
    })
}

/// The separator between fields.
pub const SEP: u8 = 0xFF;

/// Splits `data` into `n` fields; the last one takes the rest, separators included. Missing
/// fields are empty.
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |&b| b == SEP).collect();
    out.resize(n, &[]);
    out
}

/// A field as text, or `None` when it is not UTF-8.
pub fn text(field: &[u8]) -> Option<&str> {
    std::str::from_utf8(field).ok()
}

/// A field as a decimal number (anything else: 0), for instants and delays.
pub fn number(field: &[u8]) -> u64 {
    text(field).and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}
