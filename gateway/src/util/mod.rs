//! Small primitives with one home each, below every other module (they import none): byte
//! writers shared by the HTTP and SSE encoders, durations as settings write them, and the
//! jitter behind every randomised delay.
pub mod decimal;
pub mod duration;
pub mod jitter;
pub mod json;
