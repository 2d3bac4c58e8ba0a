//! The embedded broker: HTTP publishes reach every core's subscribers through cross-core
//! channels, no Redis needed. Used when `EVENTS_REDIS_STORAGE` is unset.
use std::sync::Arc;

use crate::broker::message::Message;
use crate::broker::message::PublishError;
use crate::route::table::{owner_core, Placement, RouteTable};

/// Messages that may wait in one core's inbox. Past it, publishes are refused (`503`) rather
/// than queued without bound: memory and latency stay bounded when publishers outrun a core.
pub const INBOX: usize = 65_536;

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
    /// A publish never blocks a core: a full inbox refuses it ([`PublishError::Full`]); each
    /// core drains its inbox in batches per wake-up; back-pressure on slow clients is applied
    /// per connection.
    pub fn publish(&self, msg: Message) -> Result<u64, PublishError> {
        let channel = std::str::from_utf8(&msg.channel).unwrap_or("");
        let owner_only = self
            .routes
            .family_of_channel(channel)
            .map(|f| self.routes.families[f].placement == Placement::Owner)
            .unwrap_or(false);
        let send = |tx: &flume::Sender<Message>, msg| {
            tx.try_send(msg).map_err(|e| match e {
                flume::TrySendError::Full(_) => PublishError::Full,
                flume::TrySendError::Disconnected(_) => PublishError::Closed,
            })
        };
        if owner_only {
            let core = owner_core(&msg.channel, self.cores.len());
            send(&self.cores[core], msg)?;
        } else {
            if self.cores.iter().any(|tx| tx.is_full()) {
                return Err(PublishError::Full);
            }
            for tx in &self.cores {
                send(tx, msg.clone())?;
            }
        }
        Ok(1)
    }
}
