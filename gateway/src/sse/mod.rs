//! SSE framing: pure encoders for application and system events.
pub mod encode;
pub mod system;
