//! Benchmarks of the gateway's per-event hot path, and the instruction-count gate CI runs.
//!
//! - [`cases`]: the table of measured operations (request-head parsing, route matching and
//!   channel derivation, SSE encoding, payload validation, in-process fan-out, JWT
//!   verification), shared by the criterion suite (`benches/hot_path.rs`) and the gate.
//! - [`fixtures`]: their inputs: the seeds' real payloads, request heads, tokens.
//! - [`validate`]: each JSON library's version of the payload checks, for the comparison.
//! - [`fanout`]: one core's hub with N idle streams, delivering one event to all of them.
//! - [`gate`]: instruction counts under callgrind, compared with `baseline/instructions.txt`.
//! - [`redis_local`]: a `redis-server` of its own on loopback, RESP commands and CPU clocks for
//!   the Redis benchmarks (`redis_sub_compare`, `fleet_model`).
//!
//! The gateway's internals are reached through its `#[doc(hidden)] internals` module only.
#![warn(missing_docs)]
pub mod cases;
pub mod fanout;
pub mod fixtures;
pub mod gate;
pub mod redis_local;
pub mod validate;
