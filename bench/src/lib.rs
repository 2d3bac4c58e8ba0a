//! Benchmarks of the gateway's hot path live in `benches/`; this crate has no library code.
