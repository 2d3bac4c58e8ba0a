//! A core as its Redis subscription sees it: messages go to the core's delivery, link state
//! to its verbs and to the log (a failing link is logged once a minute, not per attempt; so
//! is a link that sends bytes we refuse, however often it is reconnected).
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use std::cell::RefCell;

use crate::broker::channels::ChannelSubs;
use crate::broker::durable::{self, Envelope};
use crate::broker::message::Message;
use crate::broker::redis::{RedisError, ShardLinkSink, SubscriberSink};
use crate::broker::target::Seed;
use crate::core::by_channel::SUBSCRIBE_WAIT;
use crate::core::shard::Shard;
use crate::stats::bump;

/// One core's sink for its subscription link.
pub struct RedisSink {
    /// The core.
    shard: Rc<Shard>,
    /// Each family's own pattern, by family index: a channel matching several patterns
    /// arrives once per pattern, and only its family's copy is taken.
    own: Vec<String>,
    /// By family: subscribed channel by channel (channel mode, unicast families). Such a
    /// family's messages are taken only as `message`s of their own channel, never through a
    /// pattern (a broadcast pattern may fit its names too): each arrives once.
    per_channel: Vec<bool>,
    /// When the subscription was lost (for the outage time).
    lost_at: Cell<Option<Instant>>,
    /// When a failed reconnect was last logged (once a minute while down).
    logged_at: Cell<Option<Instant>>,
    /// When a link that sent refused bytes was last logged: a hostile or corrupting peer is
    /// reconnected every few seconds, and each round would otherwise log twice.
    hostile_logged_at: Cell<Option<Instant>>,
}

/// How often the same kind of Redis trouble is logged at `warn`.
const LOG_EVERY: Duration = Duration::from_secs(60);

impl RedisSink {
    /// The sink of `shard`'s subscription.
    pub fn new(shard: Rc<Shard>) -> RedisSink {
        let own = shard
            .routes()
            .families
            .iter()
            .map(|f| f.channel.redis_pattern())
            .collect();
        let per_channel = shard.per_channel_families().to_vec();
        RedisSink {
            shard,
            own,
            per_channel,
            lost_at: Cell::new(None),
            logged_at: Cell::new(None),
            hostile_logged_at: Cell::new(None),
        }
    }
}

impl SubscriberSink for RedisSink {
    fn message(&self, pattern: Option<&[u8]>, channel: Bytes, payload: Bytes, arrived: Instant) {
        let (payload, durable) = match durable::open(&payload) {
            Envelope::Plain => (payload, None),
            Envelope::Durable(tag, inner) => (inner, Some(tag)),
            Envelope::Malformed => {
                self.shard.source_dropped("malformed durable envelope");
                return;
            }
        };
        let msg = Message {
            channel,
            payload,
            arrived,
            durable,
        };
        let by_name = |f: usize| self.per_channel.get(f).copied().unwrap_or(false);
        match pattern {
            Some(p) => self
                .shard
                .deliver(&msg, |f| !by_name(f) && self.own[f].as_bytes() == p),
            None => self.shard.deliver(&msg, by_name),
        }
    }

    fn dropped(&self, why: &'static str) {
        self.shard.source_dropped(why);
    }

    fn subscribed(&self, after_outage: bool) {
        let shard = &self.shard;
        shard.source_restored(after_outage);
        // The node's first core makes sure Redis has the durable path's functions whenever
        // its subscription (re)starts: at start-up, and after an outage, which may have been
        // a Redis restarted without its data (and so without its functions).
        if shard.id() == 0 {
            let shard = shard.clone();
            monoio::spawn(async move { shard.prepare_durable().await });
        }
        self.logged_at.set(None);
        let quiet = self
            .hostile_logged_at
            .get()
            .is_some_and(|t| t.elapsed() < LOG_EVERY);
        if after_outage && quiet {
            let outage = self.lost_at.take().map(|t| t.elapsed()).unwrap_or_default();
            shard
                .stats()
                .redis_outage_ms
                .fetch_add(outage.as_millis() as u64, Relaxed);
            debug!(core = shard.id(), "Redis subscription is back");
        } else if after_outage {
            let outage = self.lost_at.take().map(|t| t.elapsed()).unwrap_or_default();
            shard
                .stats()
                .redis_outage_ms
                .fetch_add(outage.as_millis() as u64, Relaxed);
            info!(
                core = shard.id(),
                outage_ms = outage.as_millis() as u64,
                "Redis subscription is back; messages published meanwhile are lost"
            );
        } else {
            info!(core = shard.id(), "Redis pattern subscription live");
        }
    }

    fn lost(&self, why: &RedisError) {
        let core = self.shard.id();
        if why.is_hostile() {
            bump(&self.shard.stats().redis_protocol_errors);
            if self.shard.source_lost() {
                self.lost_at.set(Some(Instant::now()));
            }
            let due = self
                .hostile_logged_at
                .get()
                .is_none_or(|t| t.elapsed() >= LOG_EVERY);
            if due {
                self.hostile_logged_at.set(Some(Instant::now()));
                warn!(
                    core,
                    error = %why,
                    "Redis sent bytes the gateway refuses; link dropped, reconnecting (logged once a minute)"
                );
            } else {
                debug!(core, error = %why, "Redis link dropped for refused bytes");
            }
            return;
        }
        if self.shard.source_lost() {
            self.lost_at.set(Some(Instant::now()));
            self.logged_at.set(Some(Instant::now()));
            warn!(core, error = %why, "Redis subscription lost; reconnecting");
            return;
        }
        let due = self
            .logged_at
            .get()
            .is_none_or(|t| t.elapsed() >= LOG_EVERY);
        if due {
            self.logged_at.set(Some(Instant::now()));
            warn!(core, error = %why, "cannot subscribe on Redis; retrying with backoff");
        } else {
            debug!(core, error = %why, "Redis reconnect failed");
        }
    }

    fn stopping(&self) -> bool {
        self.shard.is_draining()
    }
}

/// One shard link of a core (sharded mode): messages go to the core like its pattern
/// link's; the link's state goes to the core's shard bookkeeping (readiness, the outage's
/// figures and its one log line at each end), never to the pattern link's. The link counts
/// as down from its start until its first subscription, so a master that never comes up
/// keeps the core unready; its first failure is reported like a loss.
pub struct ShardSink {
    /// The core's sink, which delivers.
    core: Rc<RedisSink>,
    /// The master this link subscribes on.
    master: Seed,
    /// This link's id in the core's shard bookkeeping.
    link: u64,
    /// What the link subscribes (for the count of channels an outage cost).
    channels: Rc<RefCell<ChannelSubs>>,
    /// Whether the subscription is live now.
    up: Cell<bool>,
    /// Whether it ever was (its first subscription is not a recovery).
    ever: Cell<bool>,
    /// Since when it is lost (or failing before its first subscription), and the channels it
    /// held then.
    down: RefCell<Option<(Instant, Vec<Box<str>>)>>,
}

impl ShardSink {
    /// The sink of a core's link to `master`, which subscribes `channels`: registered with
    /// the core as a link not subscribed yet.
    pub fn new(core: Rc<RedisSink>, master: Seed, channels: Rc<RefCell<ChannelSubs>>) -> ShardSink {
        let link = core.shard.shard_link_started(&master.to_string());
        ShardSink {
            core,
            master,
            link,
            channels,
            up: Cell::new(false),
            ever: Cell::new(false),
            down: RefCell::new(None),
        }
    }
}

impl SubscriberSink for ShardSink {
    fn message(&self, pattern: Option<&[u8]>, channel: Bytes, payload: Bytes, arrived: Instant) {
        self.core.message(pattern, channel, payload, arrived);
    }

    fn dropped(&self, why: &'static str) {
        self.core.dropped(why);
    }

    fn subscribed(&self, _after_outage: bool) {
        self.up.set(true);
        let first = !self.ever.replace(true);
        let master = self.master.to_string();
        let down = self.down.borrow_mut().take();
        let shard = &self.core.shard;
        match down {
            Some((since, channels)) => {
                shard.shard_back(self.link, &master, None, channels.len(), since.elapsed());
            }
            None if first => shard.shard_live(self.link, &master),
            None => {}
        }
    }

    fn lost(&self, why: &RedisError) {
        if why.is_hostile() {
            bump(&self.core.shard.stats().redis_protocol_errors);
        }
        let was_up = self.up.replace(false);
        if !was_up && self.down.borrow().is_some() {
            debug!(core = self.core.shard.id(), shard = %self.master, error = %why, "Redis shard link failed");
            return;
        }
        // Lost, or the first attempt failed: an outage from now on either way.
        let channels = self.channels.borrow().names();
        let n = channels.len();
        *self.down.borrow_mut() = Some((Instant::now(), channels));
        let master = self.master.to_string();
        self.core
            .shard
            .shard_lost(self.link, &master, n, self.ever.get(), why);
    }

    fn stopping(&self) -> bool {
        self.core.stopping()
    }
}

impl ShardLinkSink for ShardSink {
    fn retired(&self) {
        // Its channels went to the links of their new masters: the outage ends once those
        // confirmed them (or after the wait a stream gets, when they do not).
        let Some((since, channels)) = self.down.borrow_mut().take() else {
            // Never subscribed and never failed: nothing to report.
            self.core.shard.shard_link_ended(self.link);
            return;
        };
        let shard = self.core.shard.clone();
        let master = self.master.to_string();
        let link = self.link;
        monoio::spawn(async move {
            shard.wait_live(&channels, SUBSCRIBE_WAIT).await;
            let to = shard.shard_masters();
            let outage = since.elapsed();
            shard.shard_back(link, &master, Some(to.as_str()), channels.len(), outage);
        });
    }
}
