//! Small primitives with one home each, below every other module: byte writers shared by the
//! HTTP and SSE encoders, and the jitter behind every randomised delay.
pub mod decimal;
pub mod jitter;
pub mod json;
