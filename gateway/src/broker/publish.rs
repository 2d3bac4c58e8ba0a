//! The publish side of a core: one [`Broker`], embedded or Redis, chosen once at start-up,
//! with one error type for both ([`PublishError`]).
use std::sync::Arc;

use crate::broker::embedded::EmbeddedBroker;
use crate::broker::message::Message;
pub use crate::broker::message::PublishError;
use crate::broker::redis::Publisher;

/// Where one core's HTTP publishes go.
pub enum Broker {
    /// Straight to the cores' inboxes (no Redis configured): this node only.
    Embedded(Arc<EmbeddedBroker>),
    /// `PUBLISH` through the core's own Redis connection: every node's subscription (this
    /// one's too) delivers it.
    Redis(Publisher),
}

impl Broker {
    /// The Redis publisher, when Redis is the broker (it also reads durable history).
    pub fn redis(&self) -> Option<&Publisher> {
        match self {
            Broker::Embedded(_) => None,
            Broker::Redis(p) => Some(p),
        }
    }

    /// Publishes `msg`; the number of receivers (`delivered_to_nodes`): 1 for the embedded
    /// broker, Redis's receiver count (one per core of every node) for Redis. `by_name`:
    /// its family is subscribed channel by channel (channel and sharded modes; in sharded
    /// mode it goes out with `SPUBLISH`).
    pub async fn publish(&self, msg: Message, by_name: bool) -> Result<u64, PublishError> {
        match self {
            Broker::Embedded(b) => b.publish(msg),
            Broker::Redis(p) => p.publish(&msg.channel, &msg.payload, by_name).await,
        }
    }
}
