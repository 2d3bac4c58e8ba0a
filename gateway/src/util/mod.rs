//! Small primitives with one home each, below every other module (they import none): byte
//! writers shared by the HTTP and SSE encoders, durations as settings write them, the
//! jitter behind every randomised delay, and waiting for a task's flagged work on one core.
pub mod decimal;
pub mod duration;
pub mod jitter;
pub mod json;
pub mod wait;
