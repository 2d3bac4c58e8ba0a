//! The unit that flows from a broker to the cores, and the wire limits every path applies to
//! it (HTTP publish and Redis alike).
use bytes::Bytes;
use std::time::Instant;

/// Longest channel name accepted from a publisher (HTTP or Redis).
pub const MAX_CHANNEL: usize = 1024;

/// Largest payload delivered (CONTRACT: a publish body over 64 KiB is `413`; a larger Redis
/// message is dropped and counted).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// One published message, as it arrived (from an HTTP publish or Redis). Cheap to clone: both
/// byte fields are reference-counted, so sending it to every core copies no payload.
#[derive(Debug, Clone)]
pub struct Message {
    /// The channel it was published on, e.g. `SSE::1001::12345`.
    pub channel: Bytes,
    /// The payload, delivered byte for byte.
    pub payload: Bytes,
    /// When it reached the gateway: the start of the delivery-latency measurement.
    pub arrived: Instant,
}
