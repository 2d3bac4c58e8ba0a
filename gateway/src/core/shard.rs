//! One core's state and its verbs: deliver a message, publish one, place and hand off a
//! stream, count topics, follow the Redis subscription. Opening a stream is in
//! [`crate::core::stream`], housekeeping (keep-alives, sweeps, the drain) in
//! [`crate::core::housekeeping`]; the loops that call these verbs are the server's.
//!
//! Shared-nothing: everything here is `Rc`/`RefCell`, touched only by this core's thread.
//! Messages and handed-off sockets arrive through explicit channels.
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::net::TcpStream;
use slab::Slab;
use tracing::warn;

use crate::broker::channels::ChannelSubs;
use crate::broker::message::Message;
use crate::broker::publish::{Broker, PublishError};
use crate::broker::sharded::{ShardedSubs, Subs};
use crate::config::{Config, RedisSubscribe};
use crate::core::deliver::{deliver, Delivery, Dropped, Place};
use crate::core::hub::Hub;
use crate::core::node::{Control, Handoff, Node};
use crate::core::pending::Pending;
use crate::core::refusal::Refusal;
use crate::core::status::{StatusFeed, Viewer};
use crate::core::subscriber::Subscriber;
use crate::core::wheel::Wheel;
use crate::route::resolve::StreamSpec;
use crate::route::table::{owner_core, Family, Placement, RouteTable};
use crate::stats::{bump, keep_busiest, merge_topics, CoreStats, TopicCounts};
use crate::task::Flag;

/// Write buffers shared by the core's connections: a connection takes one for a write and
/// gives it back when the kernel is done, so idle streams hold none.
#[derive(Default)]
pub struct BufPool {
    /// Free buffers.
    free: RefCell<Vec<BytesMut>>,
}

impl BufPool {
    const KEEP: usize = 256;
    const MAX_CAP: usize = 256 * 1024;

    /// A cleared buffer with at least 4 KiB of room.
    pub fn take(&self) -> BytesMut {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(4096))
    }

    /// Returns a buffer; oversized ones are dropped so a burst does not pin memory.
    pub fn give(&self, mut b: BytesMut) {
        b.clear();
        let mut f = self.free.borrow_mut();
        if b.capacity() <= Self::MAX_CAP && f.len() < Self::KEEP {
            f.push(b);
        }
    }
}

/// Where a stream request is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// On this core.
    Here,
    /// On core `n` (its owner, or the core whose history can resume it).
    Elsewhere(usize),
    /// Not at all: the node is at `SSE_CONNECTION_LIMIT`.
    Refused(Refusal),
}

/// The state of one core.
pub struct Shard {
    /// This core's index.
    pub(super) id: usize,
    /// The shared node.
    pub(super) node: Arc<Node>,
    /// The core's channel registry.
    pub(super) hub: RefCell<Hub>,
    /// Every open stream of this core, for keep-alives and the drain.
    pub(super) streams: RefCell<Slab<Rc<Subscriber>>>,
    /// Write buffers lent to connections.
    pool: BufPool,
    /// Non-stream connections: counted, bounded, the oldest idle closed for room.
    pending: Pending,
    /// Set when the drain starts.
    pub(super) draining: Flag,
    /// Scratch buffer events are encoded into before being copied to their exact size.
    encode_buf: RefCell<BytesMut>,
    /// Next keep-alive slot to hand out.
    pub(super) next_slot: Cell<usize>,
    /// Keep-alive ticks so far.
    pub(super) ticks: Cell<u64>,
    /// The keep-alive wheel.
    pub(super) wheel: RefCell<Wheel>,
    /// Where the next slice of the write-deadline scan starts in `streams`.
    pub(super) stall_cursor: Cell<usize>,
    /// When an invalid payload was last logged, per channel (at most once a minute each).
    invalid_logged: RefCell<HashMap<Box<str>, Instant>>,
    /// Whether messages are flowing: always without Redis; with Redis, while this core's
    /// pattern subscription is live. Streams opened while it is down are refused.
    pub(super) source_up: Cell<bool>,
    /// Where this core's HTTP publishes go (and, with Redis, where resumes read history).
    pub(super) broker: Broker,
    /// Redis history reads in flight (at most `SSE_RESUME_READS`).
    pub(super) resume_reads: Cell<usize>,
    /// Resumes waiting for one of those.
    pub(super) resume_waiters: RefCell<Vec<std::task::Waker>>,
    /// The last topic count (see [`Shard::topic_counts`]).
    topics_cache: RefCell<Option<CachedCounts>>,
    /// The live status page's feed on this core.
    status: Rc<StatusFeed>,
    /// Channel and sharded modes: the channels this core subscribes one by one on Redis (see
    /// [`crate::core::by_channel`]); `None` in pattern mode or without Redis.
    pub(super) channel_subs: Option<Subs>,
    /// Sharded mode: the core's shard links that are not subscribed now, by link, with
    /// their master: started and not yet subscribed, or lost and not back (their channels
    /// get no events meanwhile). `/readyz` says `503` while any is, naming their masters.
    /// Every master of the slot map has a link (see `broker::sharded`), so this is "can this
    /// core serve a channel of any master", whatever channels it holds now.
    shard_links_down: RefCell<BTreeMap<u64, Box<str>>>,
    /// The id the next shard link gets (a master that leaves the map and comes back gets a
    /// new link, whose state must not be taken for the old one's).
    next_shard_link: Cell<u64>,
    /// Whether a slot map has been placed (always outside sharded mode): before the first,
    /// the core knows of no master, so it can serve no sharded channel and is not ready.
    slot_map: Cell<bool>,
    /// Whether this core counts as subscribed in the node's readiness: its pattern link is
    /// live.
    pub(super) counted_up: Cell<bool>,
    /// Whether this core counts as waiting for its shards in the node's readiness.
    shards_counted: Cell<bool>,
    /// By family: subscribed one by one (channel mode, unicast families).
    pub(super) per_channel: Vec<bool>,
}

/// A core's topic count and what it cost.
struct CachedCounts {
    /// The hub's subscription changes when it was made.
    changes: u64,
    /// When it was made.
    made: Instant,
    /// How long it took.
    cost: Duration,
    /// The count.
    counts: TopicCounts,
}

impl Shard {
    /// Core `id` of `node`, publishing through `broker`.
    pub fn new(id: usize, node: Arc<Node>, broker: Broker) -> Shard {
        let with_redis = node.config().events_redis_storage.is_some();
        let mut hub = Hub::new(node.run_id(), id, node.config().history);
        hub.limit_replay(node.config().replay_limit);
        hub.limit_channels(node.config().channel_limit);
        hub.limit_history_bytes(node.config().history_bytes);
        hub.keep_idle(node.config().channel_idle);
        let mode = node.config().redis_subscribe;
        let by_channel = with_redis && mode != RedisSubscribe::Pattern;
        // Sharded mode: the publisher holds the slot map, which the subscriptions share.
        let topology = broker.redis().and_then(|p| p.topology());
        let sharded = by_channel && topology.is_some();
        if sharded {
            // No slot map yet: not ready until one is placed (`slot_map_placed`).
            node.shards_waiting(true);
        }
        let subs = match topology {
            Some(t) if by_channel => Some(Subs::Sharded(Rc::new(ShardedSubs::new(t)))),
            _ if by_channel => Some(Subs::One(Rc::new(RefCell::new(ChannelSubs::new())))),
            _ => None,
        };
        let per_channel: Vec<bool> = node
            .routes()
            .families
            .iter()
            .map(|f| by_channel && f.unicast)
            .collect();
        if by_channel {
            // Their subscriptions live as long as the table holds the channel.
            hub.track_drops(per_channel.clone());
        }
        Shard {
            id,
            hub: RefCell::new(hub),
            streams: RefCell::new(Slab::new()),
            pool: BufPool::default(),
            pending: Pending::new(node.config().pending_limit, node.cores()),
            draining: Flag::default(),
            encode_buf: RefCell::new(BytesMut::with_capacity(64 * 1024)),
            next_slot: Cell::new(0),
            ticks: Cell::new(0),
            wheel: RefCell::new(Wheel::new(node.routes(), node.config().keepalive_period)),
            stall_cursor: Cell::new(0),
            invalid_logged: RefCell::new(HashMap::new()),
            source_up: Cell::new(!with_redis),
            broker,
            resume_reads: Cell::new(0),
            resume_waiters: RefCell::new(Vec::new()),
            topics_cache: RefCell::new(None),
            status: Rc::default(),
            channel_subs: subs,
            shard_links_down: RefCell::new(BTreeMap::new()),
            next_shard_link: Cell::new(0),
            slot_map: Cell::new(!sharded),
            counted_up: Cell::new(false),
            shards_counted: Cell::new(sharded),
            per_channel,
            node,
        }
    }

    /// This core's index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The shared node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        self.node.config()
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        self.node.routes()
    }

    /// The route family `i`.
    pub fn family(&self, i: usize) -> &Family {
        &self.routes().families[i]
    }

    /// This core's counters.
    pub fn stats(&self) -> &CoreStats {
        self.node.core_stats(self.id)
    }

    /// The core's write buffers.
    pub fn pool(&self) -> &BufPool {
        &self.pool
    }

    /// The core's non-stream connections.
    pub fn pending(&self) -> &Pending {
        &self.pending
    }

    /// Admits a live status page viewer on this core, if the node has room for one (see
    /// [`Viewer::admit`]).
    pub fn open_viewer(&self) -> Option<Viewer> {
        Viewer::admit(&self.status, &self.node, self.id)
    }

    /// The node's newest status snapshot, for this core's viewers.
    pub fn status_snapshot(&self, frame: bytes::Bytes) {
        self.status.publish(frame);
    }

    /// Whether the drain has started on this core.
    pub fn is_draining(&self) -> bool {
        self.draining.is_set()
    }

    /// Waits until the drain starts.
    pub async fn drain_started(&self) {
        self.draining.wait().await
    }

    /// Starts the drain: no more accepts, no more streams.
    pub fn start_drain(&self) {
        self.draining.set()
    }

    /// Where this core's cut of the node's cores puts owner-placed channels.
    fn place(&self) -> Place {
        Place {
            core: self.id,
            cores: self.node.cores(),
        }
    }

    /// Counts a stream request against the node's limit and decides where it runs: the owner
    /// core of its channel for owner-placed families; for a resuming client, the core that
    /// gave out its id (only that core's history knows what it missed); else here.
    pub fn admit(&self, spec: &StreamSpec) -> Admission {
        if !self.node.try_open_stream() {
            bump(&self.stats().rejected_limit);
            return Admission::Refused(Refusal::OverLimit);
        }
        let core = stream_core(
            self.family(spec.family).placement,
            spec,
            self.node.cores(),
            |id| self.node.core_of_id(id),
        )
        .unwrap_or(self.id);
        if core == self.id {
            Admission::Here
        } else {
            Admission::Elsewhere(core)
        }
    }

    /// Moves an admitted stream's socket to core `core`, which runs it from there.
    pub fn hand_off(&self, core: usize, stream: TcpStream, spec: StreamSpec) {
        bump(&self.stats().handoffs_out);
        // SAFETY: `into_raw_fd` gives up monoio's ownership (and deregisters the fd from this
        // core's driver); no other handle to the socket exists, so the std stream is its only
        // owner from here on.
        let socket = unsafe { std::net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
        let _ = socket.set_nonblocking(true);
        if !self
            .node
            .send(core, Control::Handoff(Handoff { socket, spec }))
        {
            self.node.close_stream();
        }
    }

    /// A handed-off socket that could not be registered here: the stream never starts.
    pub fn handoff_failed(&self) {
        self.node.close_stream();
    }

    /// Delivers one published message to this core's subscribers and counts what happened.
    /// `own(family)`: whether this copy is the family's own (see [`deliver`]).
    pub fn deliver(&self, msg: &Message, own: impl Fn(usize) -> bool) {
        let delivery = {
            let mut hub = self.hub.borrow_mut();
            let mut scratch = self.encode_buf.borrow_mut();
            let d = deliver(
                &mut hub,
                self.routes(),
                self.place(),
                msg,
                own,
                &mut scratch,
            );
            self.node.note_issued(self.id, hub.issued());
            d
        };
        // A message may have made room for its channel by evicting another.
        self.unsubscribe_dropped();
        let stats = self.stats();
        let add = |c: &AtomicU64, n: usize| c.fetch_add(n as u64, Relaxed);
        match delivery {
            Delivery::Delivered(out) => {
                bump(&stats.events_received);
                add(&stats.slow_consumers_cut, out.cut);
                add(&stats.events_conflated, out.conflated);
            }
            Delivery::Dropped(why) => {
                if why.received() {
                    bump(&stats.events_received);
                }
                match why {
                    // Unknown channels are counted so typos show up in stats.
                    Dropped::NotUtf8 | Dropped::Unrouted => bump(&stats.events_unrouted),
                    Dropped::Invalid(e) => {
                        bump(&stats.events_invalid);
                        let channel = String::from_utf8_lossy(&msg.channel);
                        self.log_invalid(&channel, e.message());
                    }
                    Dropped::OtherPattern | Dropped::OtherCore | Dropped::NoSubscriber => {}
                }
            }
        }
    }

    /// Connects this core's Redis publisher link now rather than at the first publish, which
    /// loads the durable path's function library into Redis when it is missing: a service
    /// that publishes with `FCALL ssegw_publish` before any HTTP publish or resume would
    /// otherwise get `Function not found` from a fresh Redis, or from one restarted without
    /// its data. Whether the durable path is on; `false` without Redis.
    pub async fn prepare_durable(&self) -> bool {
        match self.broker.redis() {
            Some(p) => p.durable_ready().await,
            None => false,
        }
    }

    /// Publishes a checked message of route family `family` (unicast families by name in
    /// channel and sharded modes) through this core's broker; the receiver count.
    pub async fn publish(&self, msg: Message, family: usize) -> Result<u64, PublishError> {
        let by_name = self.per_channel.get(family).copied().unwrap_or(false);
        let r = self.broker.publish(msg, by_name).await;
        match &r {
            Ok(_) => bump(&self.stats().publishes),
            // Counted: Redis refusing or unreachable. Not: the node's own back-pressure.
            Err(PublishError::Closed | PublishError::Full) => {}
            Err(e) if e.outcome_unknown() => bump(&self.stats().publish_unknown),
            Err(_) => bump(&self.stats().publish_failed),
        }
        r
    }

    /// Subscribers of each list family's channels on this core, by topic (`all` for the
    /// wildcard; list families other than the topic API's are prefixed `<family>/`): the
    /// `SSE_METRICS_TOPICS` busiest, the rest summed (see [`crate::stats::merge_topics`]).
    ///
    /// Counting visits every subscribed channel (about 3 ms at 100,000), so a count is
    /// reused while no stream joined or left, and otherwise for a hundred times what it took
    /// to make: stats and metrics requests, however many, cost this core at most about 1% of
    /// its time, and a count is never older than that (0.3 s at 100,000 channels; fresh at
    /// the few dozen of a test).
    pub fn topic_counts(&self) -> TopicCounts {
        let changes = self.hub.borrow().subscription_changes();
        if let Some(c) = self.topics_cache.borrow().as_ref() {
            if c.changes == changes || c.made.elapsed() < c.cost * 100 {
                return c.counts.clone();
            }
        }
        let start = Instant::now();
        let counts = self.count_topics();
        *self.topics_cache.borrow_mut() = Some(CachedCounts {
            changes,
            made: Instant::now(),
            cost: start.elapsed(),
            counts: counts.clone(),
        });
        counts
    }

    fn count_topics(&self) -> TopicCounts {
        let hub = self.hub.borrow();
        let families = &self.routes().families;
        // Borrowed names: only the kept ones are turned into topic names.
        let mut all: Vec<((usize, &str), u64)> = Vec::new();
        for (i, f) in families.iter().enumerate() {
            if f.channel_list_param.is_none() {
                continue;
            }
            let (named, wild) = hub.subscriber_counts(i);
            all.extend(named.map(|(c, n)| ((i, c), n as u64)));
            if wild > 0 {
                // "" is no channel's name: the wildcard.
                all.push(((i, ""), wild as u64));
            }
        }
        let (other_topics, other_subscribers) =
            keep_busiest(&mut all, self.config().metrics_topics);
        let top = all
            .into_iter()
            .map(|((i, channel), n)| {
                let f = &families[i];
                let prefix = if f.topic_api {
                    String::new()
                } else {
                    format!("{}/", f.name)
                };
                let topic = if channel.is_empty() {
                    "all".to_string()
                } else {
                    f.channel
                        .capture(channel)
                        .and_then(|v| v.first().map(|(_, t)| t.to_string()))
                        .unwrap_or_else(|| channel.to_string())
                };
                (format!("{prefix}{topic}"), n)
            })
            .collect();
        TopicCounts {
            top,
            other_topics,
            other_subscribers,
        }
    }

    /// Subscriber counts per topic over every core of the node (each other core is asked
    /// through its control channel: cores share no state), merged. A core that does not
    /// answer within a second is left out.
    pub async fn node_topic_counts(&self) -> TopicCounts {
        const WAIT: Duration = Duration::from_secs(1);
        let keep = self.config().metrics_topics;
        let mut topics = Vec::new();
        if !self
            .routes()
            .families
            .iter()
            .any(|f| f.channel_list_param.is_some())
        {
            return TopicCounts::default();
        }
        let cores = self.node.cores();
        let (tx, rx) = flume::bounded(cores);
        let mut asked = 0;
        for core in 0..cores {
            if core == self.id {
                topics.push(self.topic_counts());
            } else if self.node.send(core, Control::Counts(tx.clone())) {
                asked += 1;
            }
        }
        let deadline = Instant::now() + WAIT;
        for _ in 0..asked {
            match monoio::time::timeout_at(deadline.into(), rx.recv_async()).await {
                Ok(Ok(v)) => topics.push(v),
                _ => break,
            }
        }
        merge_topics(topics, keep)
    }

    /// This core's Redis subscription is live. `after_outage`: one was lost before, so
    /// messages published in between never arrived: ids given out so far get a reset.
    pub fn source_restored(&self, after_outage: bool) {
        self.source_up.set(true);
        self.count_readiness();
        if after_outage {
            self.hub.borrow_mut().mark_gap();
        }
    }

    /// This core's Redis subscription is down (or never came up). `true` when it was up
    /// until now (counted as a disconnect).
    pub fn source_lost(&self) -> bool {
        if !self.source_up.replace(false) {
            return false;
        }
        self.count_readiness();
        bump(&self.stats().redis_disconnects);
        true
    }

    /// Tells the node whether this core is subscribed now (its pattern link live) and
    /// whether it waits for its shards (a shard link not subscribed, or no slot map), when
    /// either changed; and sets the core's `redis_up` gauge to whether both hold, so the
    /// metric and the alert on it (`SSERedisSubscriptionDown`) see a shard outage as they see
    /// a lost pattern link: either way some of the core's channels get no events.
    fn count_readiness(&self) {
        let up = self.source_up.get();
        if self.counted_up.replace(up) != up {
            self.node.redis_subscription(up);
        }
        let waiting = !self.slot_map.get() || !self.shard_links_down.borrow().is_empty();
        if self.shards_counted.replace(waiting) != waiting {
            self.node.shards_waiting(waiting);
        }
        self.stats()
            .redis_up
            .store(u64::from(up && !waiting), Relaxed);
    }

    /// Sharded mode: a slot map was placed, a link started to each of its masters; `known`
    /// is `false` for an empty one (none fetched yet, or no slot assigned), which leaves the
    /// core unready: it knows no master of any channel.
    pub fn slot_map_placed(&self, known: bool) {
        self.slot_map.set(known);
        self.count_readiness();
    }

    /// Sharded mode: what this core waits for before it can serve every sharded channel,
    /// for `/readyz`'s reason: the masters whose link is not subscribed (sorted, once each),
    /// or nothing and `false` before the first slot map.
    pub fn shards_waited_for(&self) -> (bool, Vec<Box<str>>) {
        let mut masters: Vec<Box<str>> = self.shard_links_down.borrow().values().cloned().collect();
        masters.sort();
        masters.dedup();
        (self.slot_map.get(), masters)
    }

    /// Sharded mode: a link to `master` starts; the id its later reports name. It counts as
    /// down (`/readyz` `503`) until it is subscribed: a master that never comes up keeps the
    /// core unready, as one that went away does.
    pub fn shard_link_started(&self, master: &str) -> u64 {
        let link = self.next_shard_link.get();
        self.next_shard_link.set(link + 1);
        self.shard_links_down
            .borrow_mut()
            .insert(link, master.into());
        self.count_readiness();
        link
    }

    /// Sharded mode: link `link` to `master` subscribed for the first time.
    pub fn shard_live(&self, link: u64, master: &str) {
        self.shard_links_down.borrow_mut().remove(&link);
        self.count_readiness();
        tracing::debug!(
            core = self.id,
            shard = master,
            "Redis shard subscription live"
        );
    }

    /// Sharded mode: link `link` ends for good without an outage to report (its master left
    /// the slot map before it ever subscribed).
    pub fn shard_link_ended(&self, link: u64) {
        self.shard_links_down.borrow_mut().remove(&link);
        self.count_readiness();
    }

    /// Sharded mode: link `link` to `master` lost its subscription of `channels` channels
    /// (`ever`), or could not make it in the first place (`!ever`: the master is down or
    /// unreachable since the link started). Counted, logged once, and `/readyz` says `503`
    /// naming the master until it is back.
    pub fn shard_lost(
        &self,
        link: u64,
        master: &str,
        channels: usize,
        ever: bool,
        why: &dyn std::fmt::Display,
    ) {
        self.shard_links_down
            .borrow_mut()
            .insert(link, master.into());
        self.count_readiness();
        bump(&self.stats().redis_shard_outages);
        if ever {
            warn!(
                core = self.id,
                shard = master,
                channels,
                error = %why,
                "Redis shard subscription lost: its channels get no events until it, or the replica that takes over, is subscribed"
            );
        } else {
            warn!(
                core = self.id,
                shard = master,
                channels,
                error = %why,
                "Redis shard subscription cannot be made: its channels get no events, and /readyz answers 503, until it is"
            );
        }
    }

    /// Sharded mode: the outage of link `link` that began with [`Shard::shard_lost`] is over
    /// after `outage`, on the same master (`to` is `None`) or with its channels moved to
    /// their new masters (a failover, or its slots moved: `to` names them). The `channels`
    /// channels missed what was published to them meanwhile: counted, logged, and a gap for
    /// resumes.
    pub fn shard_back(
        &self,
        link: u64,
        master: &str,
        to: Option<&str>,
        channels: usize,
        outage: Duration,
    ) {
        self.shard_links_down.borrow_mut().remove(&link);
        self.count_readiness();
        self.hub.borrow_mut().mark_gap();
        let stats = self.stats();
        let ms = outage.as_millis() as u64;
        stats.redis_shard_outage_ms.fetch_add(ms, Relaxed);
        stats
            .redis_shard_outage_channels
            .fetch_add(channels as u64, Relaxed);
        if to.is_some() {
            bump(&stats.redis_shard_failovers);
        }
        tracing::info!(
            core = self.id,
            shard = master,
            now_on = to.unwrap_or(master),
            channels,
            outage_ms = ms,
            "Redis shard subscription back; events published to its channels meanwhile are lost"
        );
    }

    /// A message dropped by the Redis link before delivery (size limits, malformed frame).
    pub fn source_dropped(&self, why: &str) {
        bump(&self.stats().redis_dropped);
        self.log_invalid("<from Redis>", why);
    }

    /// Logs a dropped payload, at most once a minute per channel.
    fn log_invalid(&self, channel: &str, why: &str) {
        let now = Instant::now();
        let mut m = self.invalid_logged.borrow_mut();
        let due = m
            .get(channel)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(60));
        if due {
            warn!(
                channel,
                reason = why,
                "dropped published payload (logged once a minute per channel)"
            );
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(channel.into(), now);
        }
    }
}

/// The core a stream of a family with `placement` must run on, when it is not whichever
/// core accepted it: the owner core of an owner-placed family's single channel; else, for a
/// resuming client, the core that issued its `Last-Event-ID` (`core_of_id`).
pub fn stream_core(
    placement: Placement,
    spec: &StreamSpec,
    cores: usize,
    core_of_id: impl Fn(&str) -> Option<usize>,
) -> Option<usize> {
    match (placement, spec.channels.one()) {
        (Placement::Owner, Some(channel)) => Some(owner_core(channel.as_bytes(), cores)),
        _ => spec.last_event_id.as_deref().and_then(core_of_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::resolve::Channels;

    fn spec(channels: Channels, last_event_id: Option<&str>) -> StreamSpec {
        StreamSpec {
            family: 0,
            channels,
            last_event_id: last_event_id.map(Into::into),
            allow_origin: None,
        }
    }

    #[test]
    fn placement() {
        let one = |c: &str| Channels::One(c.into());
        // The ids of this run name cores 0..4; anything else names none.
        let core_of_id = |id: &str| {
            crate::core::event_id::EventId::of_run(id, "run")
                .map(|id| id.core)
                .filter(|c| *c < 4)
        };
        let owner = owner_core(b"SSE::1::2", 4);
        let cases: &[(Placement, StreamSpec, Option<usize>)] = &[
            // An owner-placed channel always goes to its owner, resuming or not.
            (Placement::Owner, spec(one("SSE::1::2"), None), Some(owner)),
            (
                Placement::Owner,
                spec(one("SSE::1::2"), Some("run.3.9")),
                Some(owner),
            ),
            // Elsewhere a resume goes to the core that issued the id...
            (Placement::Local, spec(one("g"), Some("run.3.9")), Some(3)),
            (
                Placement::Local,
                spec(Channels::All, Some("run.2.1")),
                Some(2),
            ),
            (
                Placement::Owner,
                spec(Channels::Many(Box::new([])), Some("run.1.1")),
                Some(1),
            ),
            // ...and anything else stays where it was accepted.
            (Placement::Local, spec(one("g"), None), None),
            (Placement::Local, spec(one("g"), Some("run.4.9")), None),
            (Placement::Local, spec(one("g"), Some("old.3.9")), None),
            (Placement::Local, spec(one("g"), Some("garbage")), None),
        ];
        for (placement, spec, want) in cases {
            assert_eq!(
                stream_core(*placement, spec, 4, core_of_id),
                *want,
                "{placement:?} {spec:?}"
            );
        }
    }
}
