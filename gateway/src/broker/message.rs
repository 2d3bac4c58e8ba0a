//! The unit that flows from a broker to the cores, the wire limits every path applies to it
//! (HTTP publish and Redis alike), and why a publish can fail.
use std::fmt;
use std::time::Instant;

use bytes::Bytes;

use crate::broker::durable::Durable;

/// Longest channel name accepted from a publisher (HTTP or Redis).
pub const MAX_CHANNEL: usize = 1024;

/// Largest payload delivered (the contract, docs/API.md: a publish body over 64 KiB is `413`;
/// a larger Redis message is dropped and counted).
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
    /// Its durable id, when it came through the durable path (an envelope, opened: `payload`
    /// is then the event's own); `None` for a plain `PUBLISH`.
    pub durable: Option<Durable>,
}

/// How long an HTTP publish waits for Redis's answer.
pub const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a publish was not accepted, or why its outcome is unknown: answered `503` ("not
/// published", safe to retry) or, when [`PublishError::outcome_unknown`], `504` ("may have
/// been published"; a retry may deliver it twice), with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The node is shutting down and its cores no longer take messages.
    Closed,
    /// A core's inbox is full: publishers are faster than it delivers.
    Full,
    /// Redis could not be reached: with why.
    Unreachable(String),
    /// A connect failed a moment ago; publishes are refused at once until the next try.
    Backoff,
    /// The `PUBLISH` was written but Redis did not answer within [`PUBLISH_TIMEOUT`]; the
    /// link is given up. Outcome unknown.
    Timeout,
    /// Redis answered with an error.
    Refused(String),
    /// The link failed before this publish's command was written: with why. Not published.
    Lost(String),
    /// The link failed after this publish's command was written, before its answer: with
    /// why. Outcome unknown.
    Unknown(String),
}

impl PublishError {
    /// Whether the message may have been published all the same (`504`): its command
    /// reached the socket and no answer came. Every other error means it was not (`503`).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, PublishError::Timeout | PublishError::Unknown(_))
    }
}

/// What a `504` body adds to its reason.
const UNKNOWN: &str =
    "the outcome is unknown: it may have been published, and retrying may deliver it twice";

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Closed => f.write_str("the node is shutting down"),
            PublishError::Full => f.write_str(
                "publishers are outrunning delivery (a core's inbox is full); retry later",
            ),
            PublishError::Unreachable(why) => write!(f, "Redis is unreachable: {why}"),
            PublishError::Backoff => f.write_str("Redis is unreachable (retrying)"),
            PublishError::Timeout => write!(
                f,
                "Redis did not answer the PUBLISH within {PUBLISH_TIMEOUT:?}; {UNKNOWN}"
            ),
            PublishError::Refused(why) => write!(f, "Redis refused the PUBLISH: {why}"),
            PublishError::Lost(why) => write!(f, "{why}; the PUBLISH was not sent"),
            PublishError::Unknown(why) => write!(f, "{why} after the PUBLISH was sent; {UNKNOWN}"),
        }
    }
}

impl std::error::Error for PublishError {}
