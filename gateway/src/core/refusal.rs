//! Why a stream is turned away after its `200` head, and what it is told.
use bytes::BytesMut;

use crate::sse::encode::encode_retry;
use crate::sse::system::encode_error;
use crate::util::jitter::{retry_ms, Jitter};

/// The `retry:` every stream starts with: how long a browser waits before reconnecting.
pub const RETRY_MS: u32 = 2000;

/// Why a stream request is turned away after its `200` head: an EventSource that got a
/// non-200 would stop for good, so it gets a `retry:` and comes back later by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node is at `SSE_CONNECTION_LIMIT`: a jittered `retry:` and an error event.
    OverLimit,
    /// The core is at `SSE_CHANNEL_LIMIT` and every channel has a live stream: the same
    /// answer as [`Refusal::OverLimit`], naming the channel limit.
    ChannelLimit,
    /// The node drains: a jittered `retry:` only.
    Draining,
    /// This core's Redis subscription is down: `retry:` and seed 000's
    /// `{"type":"error","message":"Failed to subscribe to events"}` (an `error` event on
    /// families whose system events are named).
    Unsubscribed {
        /// Whether the family names its system events.
        named: bool,
    },
}

impl Refusal {
    /// Appends the refusal's SSE body (after the stream head); `core` seeds the jitter.
    pub fn encode(self, core: usize, out: &mut BytesMut) {
        let jitter = || retry_ms(&mut Jitter::new(core as u64));
        match self {
            Refusal::OverLimit => {
                encode_retry(jitter(), out);
                encode_error("connection limit reached", None, out);
            }
            Refusal::ChannelLimit => {
                encode_retry(jitter(), out);
                encode_error("channel limit reached", None, out);
            }
            Refusal::Draining => encode_retry(jitter(), out),
            Refusal::Unsubscribed { named } => {
                encode_retry(RETRY_MS, out);
                encode_error(
                    "Failed to subscribe to events",
                    named.then_some("error"),
                    out,
                );
            }
        }
    }
}
