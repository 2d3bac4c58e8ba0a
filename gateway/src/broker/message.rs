//! The unit that flows from a broker to the cores.
use bytes::Bytes;
use std::time::Instant;

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
