//! Channel mode (`SSE_REDIS_SUBSCRIBE=channel`) on one core: the channels of unicast
//! families (`Family::unicast`) are subscribed on Redis one by one, by this core's link, while
//! this core's channel table holds them (from a stream's open until the sweep or eviction
//! drops the idle channel, `SSE_CHANNEL_IDLE` later), so a reconnect storm reuses
//! subscriptions instead of churning them, and history kept for a resume never misses an
//! event. The bookkeeping is `broker::channels::ChannelSubs`; the link sends its batches.
//!
//! **No gap.** A stream on a channel not yet confirmed by Redis waits for the confirmation
//! before it opens (its `200` head and prelude are written after, in the one step of
//! [`Shard::open_stream`]), at most [`SUBSCRIBE_WAIT`]; without one it gets the refusal of a
//! core whose link is down. A channel already live opens at once. The durable resume reads
//! Redis's history after the stream is registered, so after the confirmation too.
use std::future::poll_fn;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::Duration;

use crate::broker::sharded::Subs;
use crate::core::refusal::Refusal;
use crate::core::shard::Shard;
use crate::route::resolve::{Channels, StreamSpec};
use crate::stats::bump;

/// Longest a stream waits for Redis to confirm its channel's subscription: Redis confirms in
/// well under a millisecond when healthy; 2 s is the bound every other Redis wait of the
/// gateway has (a publish, a history read).
pub const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

impl Shard {
    /// By family: whether its channels are subscribed one by one (channel mode and a
    /// unicast family); all `false` in pattern mode.
    pub fn per_channel_families(&self) -> &[bool] {
        &self.per_channel
    }

    /// The channel bookkeeping this core's Redis links send and confirm (channel and
    /// sharded modes).
    pub fn channel_subs(&self) -> Option<Subs> {
        self.channel_subs.clone()
    }

    /// Asks for the Redis subscriptions of `spec`'s channels and answers the ones not
    /// confirmed yet: empty when the stream can open now (pattern mode, a broadcast family,
    /// channels live already, or a core that refuses it anyway). The ones answered are held
    /// for the stream until [`Shard::release_channels`].
    pub fn unconfirmed(&self, spec: &StreamSpec) -> Vec<Box<str>> {
        let Some(subs) = &self.channel_subs else {
            return Vec::new();
        };
        if !self.per_channel.get(spec.family).copied().unwrap_or(false)
            || !self.source_up.get()
            || self.draining.is_set()
        {
            return Vec::new();
        }
        let names: Vec<&str> = match &spec.channels {
            Channels::One(c) => vec![c],
            Channels::Many(list) => list.iter().map(|c| &**c).collect(),
            // Refused by the config: a unicast family has no `all`.
            Channels::All => Vec::new(),
        };
        let mut waits = Vec::new();
        for c in names {
            if !subs.want(c) {
                subs.hold(c);
                waits.push(c.into());
            }
        }
        waits
    }

    /// Waits until Redis confirmed every one of `channels` (at most [`SUBSCRIBE_WAIT`]);
    /// whether it did.
    pub async fn confirmed(&self, channels: &[Box<str>]) -> bool {
        let Some(subs) = self.channel_subs.clone() else {
            return true;
        };
        bump(&self.stats().redis_subscribe_waits);
        let wait = until_live(&subs, channels, false);
        let ok = monoio::time::timeout(SUBSCRIBE_WAIT, wait).await.is_ok();
        if !ok {
            bump(&self.stats().redis_subscribe_timeouts);
        }
        ok
    }

    /// Waits (at most `within`) until every one of `channels` still wanted here is subscribed
    /// and confirmed (sharded mode: after a shard's channels moved to their new masters).
    pub async fn wait_live(&self, channels: &[Box<str>], within: Duration) {
        let Some(subs) = self.channel_subs.clone() else {
            return;
        };
        let _ = monoio::time::timeout(within, until_live(&subs, channels, true)).await;
    }

    /// A stream that waited for `channels` opened or gave up: each stays subscribed while
    /// this core's table holds it.
    pub fn release_channels(&self, channels: &[Box<str>]) {
        let Some(subs) = &self.channel_subs else {
            return;
        };
        for c in channels {
            let held = self.hub.borrow().family_of(c).is_some();
            subs.done(c, held);
        }
    }

    /// The refusal of a stream whose channels Redis did not confirm in time: the one a core
    /// with its link down gives (seed 000's `Failed to subscribe to events`), its place in
    /// the node's count released.
    pub fn refuse_unconfirmed(&self, family: usize) -> Refusal {
        bump(&self.stats().rejected_redis);
        self.node.close_stream();
        Refusal::Unsubscribed {
            named: self.family(family).named_system_events,
        }
    }

    /// Unsubscribes the channels the table dropped (swept, evicted) since the last call.
    pub(super) fn unsubscribe_dropped(&self) {
        let Some(subs) = &self.channel_subs else {
            return;
        };
        let gone = self.hub.borrow_mut().take_gone();
        if gone.is_empty() {
            return;
        }
        for c in gone {
            subs.unwant(&c);
        }
    }

    /// Sharded mode: the masters this core has links to, for the logs.
    pub fn shard_masters(&self) -> String {
        match &self.channel_subs {
            Some(Subs::Sharded(s)) => {
                let masters: Vec<String> = s.masters().iter().map(ToString::to_string).collect();
                masters.join(",")
            }
            _ => String::new(),
        }
    }

    /// Stores channel mode's figures in the core's stats.
    pub(super) fn store_channel_figures(&self) {
        let Some(subs) = &self.channel_subs else {
            return;
        };
        let c = subs.counts();
        let stats = self.stats();
        stats.redis_channels.store(c.live, Relaxed);
        stats
            .redis_subscribe_commands
            .store(c.subscribe_commands, Relaxed);
        stats
            .redis_subscribe_channels
            .store(c.subscribe_channels, Relaxed);
        stats
            .redis_unsubscribe_commands
            .store(c.unsubscribe_commands, Relaxed);
        stats
            .redis_unsubscribe_channels
            .store(c.unsubscribe_channels, Relaxed);
    }
}

/// Ready once every one of `channels` is live in `subs` (with `wanted_only`, every one `subs`
/// still wants: a channel given up meanwhile is not waited for).
async fn until_live(subs: &Subs, channels: &[Box<str>], wanted_only: bool) {
    poll_fn(|cx| {
        let mut all = true;
        for c in channels {
            if (!wanted_only || subs.is_wanted(c)) && !subs.is_live(c) {
                subs.wait(c, cx.waker());
                all = false;
            }
        }
        if all {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
