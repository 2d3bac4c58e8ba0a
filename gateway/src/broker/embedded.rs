//! The embedded broker: HTTP publishes reach every core's subscribers through cross-core
//! channels, no Redis needed. Used when `EVENTS_REDIS_STORAGE` is unset.
use std::sync::Arc;

use crate::broker::message::Message;
use crate::route::table::{owner_core, Placement, RouteTable};

/// Why a publish could not be handed to the cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The node is shutting down and its cores no longer take messages.
    Closed,
}

/// The in-process broker: one bounded channel into each core.
pub struct EmbeddedBroker {
    /// One sender per core, indexed by core id.
    cores: Vec<flume::Sender<Message>>,
    /// To decide which cores a channel's message must reach.
    routes: Arc<RouteTable>,
}

impl EmbeddedBroker {
    /// A broker feeding `cores` (one sender per core).
    pub fn new(cores: Vec<flume::Sender<Message>>, routes: Arc<RouteTable>) -> Self {
        EmbeddedBroker { cores, routes }
    }

    /// Hands `msg` to the cores that may have subscribers: only the owner core for
    /// owner-placed families, every core otherwise. Returns how many nodes received it (1).
    ///
    /// The channels are unbounded on purpose: a publish never blocks a core, and each core
    /// drains its inbox in one pass per wake-up; back-pressure is applied per connection.
    pub fn publish(&self, msg: Message) -> Result<usize, PublishError> {
        let channel = std::str::from_utf8(&msg.channel).unwrap_or("");
        let owner_only = self
            .routes
            .family_of_channel(channel)
            .map(|f| self.routes.families[f].placement == Placement::Owner)
            .unwrap_or(false);
        if owner_only {
            let core = owner_core(&msg.channel, self.cores.len());
            self.cores[core]
                .send(msg)
                .map_err(|_| PublishError::Closed)?;
        } else {
            for tx in &self.cores {
                tx.send(msg.clone()).map_err(|_| PublishError::Closed)?;
            }
        }
        Ok(1)
    }
}
