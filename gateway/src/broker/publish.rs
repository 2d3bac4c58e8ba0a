//! The publish side of a core: one [`Broker`], embedded or Redis, chosen once at start-up,
//! with one error type for both.
use std::fmt;
use std::sync::Arc;

use crate::broker::embedded::EmbeddedBroker;
use crate::broker::message::Message;
use crate::broker::redis::Publisher;

/// Why a publish was not accepted (answered `503` with this text).
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
    /// Redis did not answer in time; the link is given up.
    Timeout,
    /// Redis answered with an error.
    Refused(String),
    /// The link failed while the publish waited: with why.
    Lost(String),
}

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
                "Redis did not answer within {:?}",
                crate::broker::redis::PUBLISH_TIMEOUT
            ),
            PublishError::Refused(why) => write!(f, "Redis refused the PUBLISH: {why}"),
            PublishError::Lost(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for PublishError {}

/// Where one core's HTTP publishes go.
pub enum Broker {
    /// Straight to the cores' inboxes (no Redis configured): this node only.
    Embedded(Arc<EmbeddedBroker>),
    /// `PUBLISH` through the core's own Redis connection: every node's subscription (this
    /// one's too) delivers it.
    Redis(Publisher),
}

impl Broker {
    /// Publishes `msg`; the number of receivers (`delivered_to_nodes`): 1 for the embedded
    /// broker, Redis's receiver count (one per core of every node) for Redis.
    pub async fn publish(&self, msg: Message) -> Result<u64, PublishError> {
        match self {
            Broker::Embedded(b) => b.publish(msg),
            Broker::Redis(p) => p.publish(&msg.channel, &msg.payload).await,
        }
    }
}
