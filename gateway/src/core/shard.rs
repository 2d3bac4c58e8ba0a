//! One core: its listener, its hub, its inbox of published messages and its control channel.
//!
//! Shared-nothing: everything here is `Rc`/`RefCell`, touched only by this core's thread.
//! Messages and handed-off sockets arrive through explicit channels.
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::net::{TcpListener, TcpStream};
use slab::Slab;
use tracing::{debug, info, warn};

use crate::broker::message::Message;
use crate::broker::redis::{self, Publisher, RedisError, SubscriberSink};
use crate::conn;
use crate::core::hub::Hub;
use crate::core::node::{Control, Node};
use crate::core::subscriber::Subscriber;
use crate::core::timer;
use crate::route::payload;
use crate::route::table::{owner_core, EventName, Family, Greeting, KeepaliveFormat, Placement};
use crate::sse::encode::{encode_event, Event};
use crate::stats::{bump, CoreStats};

/// What a core thread is started with.
pub struct Start {
    /// The shared node.
    pub node: Arc<Node>,
    /// This core's index.
    pub id: usize,
    /// This core's `SO_REUSEPORT` listener.
    pub listener: std::net::TcpListener,
    /// Published messages for this core.
    pub inbox: flume::Receiver<Message>,
    /// Handoffs and drain.
    pub control: flume::Receiver<Control>,
}

/// A one-shot, many-waiter flag (the drain signal).
#[derive(Default)]
pub struct Flag {
    /// Whether it is set.
    set: Cell<bool>,
    /// Tasks waiting for it.
    waiters: RefCell<Vec<Waker>>,
}

impl Flag {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.set.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Waits until the flag is set.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.get() {
                Poll::Ready(())
            } else {
                // A waiter polled again (the accept loop, every accept) is not added twice.
                let mut w = self.waiters.borrow_mut();
                if !w.iter().any(|x| x.will_wake(cx.waker())) {
                    w.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

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

/// A local stream as the timer sees it.
pub struct LocalStream {
    /// Its queue.
    pub sub: Rc<Subscriber>,
}

/// The state of one core.
pub struct Shard {
    /// This core's index.
    pub id: usize,
    /// The shared node.
    pub node: Arc<Node>,
    /// Channels and subscribers of this core.
    pub hub: RefCell<Hub>,
    /// Every stream on this core (keep-alives, drain).
    pub streams: RefCell<Slab<LocalStream>>,
    /// Write buffers.
    pub pool: BufPool,
    /// Set when the drain starts.
    pub draining: Flag,
    /// Encode buffer for events.
    encode_buf: RefCell<BytesMut>,
    /// Next keep-alive slot to hand out, spreading keep-alives over the period.
    next_slot: Cell<usize>,
    /// When an invalid payload was last logged per channel (one line a minute per channel).
    invalid_logged: RefCell<HashMap<Box<str>, Instant>>,
    /// Whether this core's message source is live: always with the embedded broker; with
    /// Redis, while its pattern subscription is. A stream opened while it is not gets the
    /// seed's "Failed to subscribe to events" error instead of a silent stream.
    pub source_up: Cell<bool>,
    /// This core's Redis publisher (HTTP publishes), when Redis is configured.
    pub publisher: Option<Publisher>,
    /// When this core's Redis subscription was lost (for the outage figures).
    redis_lost_at: Cell<Option<Instant>>,
    /// When a still-failing reconnect was last logged (one line a minute while down).
    redis_logged_at: Cell<Option<Instant>>,
}

impl Shard {
    /// This core's counters.
    pub fn stats(&self) -> &CoreStats {
        &self.node.stats.cores[self.id]
    }

    /// The route family `i`.
    pub fn family(&self, i: usize) -> &Family {
        &self.node.routes.families[i]
    }

    /// The keep-alive period of family `i` (the setting overrides the family's own).
    pub fn keepalive_period(&self, i: usize) -> Duration {
        self.node
            .config
            .keepalive_period
            .unwrap_or(self.family(i).keepalive_period)
    }

    /// A keep-alive slot for a new stream: consecutive streams get consecutive slots, so one
    /// timer tick writes to about 1/slots of the streams instead of all at once.
    pub fn take_slot(&self) -> usize {
        let s = self.next_slot.get();
        self.next_slot.set(s.wrapping_add(1));
        s
    }

    /// Delivers one published message to this core's subscribers. `own(family)` tells the
    /// copies to take: a channel matching several Redis patterns (`stream:type:x` matches
    /// `stream:*` too) arrives once per pattern, and only its own family's copy counts. The
    /// family is looked up once, here, for both.
    pub fn deliver(&self, msg: Message, own: impl Fn(usize) -> bool) {
        let stats = self.stats();
        let Ok(channel) = std::str::from_utf8(&msg.channel) else {
            bump(&stats.events_received);
            bump(&stats.events_unrouted);
            return;
        };
        let known = self.hub.borrow().family_of(channel);
        let Some(family) = known.or_else(|| self.node.routes.family_of_channel(channel)) else {
            // Unknown channels are counted so typos show up in stats.
            bump(&stats.events_received);
            bump(&stats.events_unrouted);
            return;
        };
        if !own(family) {
            return;
        }
        bump(&stats.events_received);
        if known.is_none() {
            match family {
                // Owner-placed channels of another core: dropped after one hash.
                f if !self.accepts(f, &msg.channel) => return,
                // Families that greet with the latest message keep their channels on every
                // core from the first message on (streams keep the ones they create).
                f if self.family(f).greeting == Greeting::Latest => {
                    self.hub.borrow_mut().keep(channel, f)
                }
                // A stream here takes every channel of the family (`topics=all`).
                f if self.hub.borrow().watches(f) => self.hub.borrow_mut().create(channel, f),
                // Nobody here subscribes: dropped after one lookup, and remembered, so a
                // client resuming across this point is told it may have missed something.
                f => {
                    self.hub.borrow_mut().note_dropped(f);
                    return;
                }
            }
        }
        let fam = self.family(family);
        let (event, data): (Option<Cow<str>>, &[u8]) = match &fam.event_name {
            EventName::FromPayload => match payload::typed_event(&msg.payload) {
                Ok(ev) => (Some(ev.name), ev.data),
                Err(e) => {
                    bump(&stats.events_invalid);
                    self.log_invalid(channel, e.message());
                    return;
                }
            },
            name => {
                if let Err(e) = payload::check(fam.payload, &msg.payload) {
                    bump(&stats.events_invalid);
                    self.log_invalid(channel, e.message());
                    return;
                }
                match name {
                    EventName::Fixed(n) => (Some(Cow::Borrowed(n.as_str())), &msg.payload),
                    _ => (None, &msg.payload),
                }
            }
        };
        let mut encode_buf = self.encode_buf.borrow_mut();
        let out = self.hub.borrow_mut().publish(
            channel,
            &msg.payload,
            msg.arrived,
            &mut encode_buf,
            |id, out| {
                encode_event(
                    &Event {
                        id: Some(id),
                        event: event.as_deref(),
                        data,
                        retry: None,
                    },
                    out,
                )
            },
        );
        if let Some(out) = out {
            let add = |c: &std::sync::atomic::AtomicU64, n: usize| {
                c.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed)
            };
            add(&stats.slow_consumers_cut, out.cut);
            add(&stats.events_conflated, out.conflated);
        }
    }

    /// Whether this core serves streams of family `f` on `channel` (the owner core only, for
    /// owner-placed families).
    pub fn accepts(&self, f: usize, channel: &[u8]) -> bool {
        match self.family(f).placement {
            Placement::Local => true,
            Placement::Owner => owner_core(channel, self.node.config.cores) == self.id,
        }
    }

    /// Subscribers of each list family's channels on this core, by topic (`all` for the
    /// wildcard); other list families than `topic` are prefixed `<family>/`.
    pub fn topic_counts(&self) -> Vec<(String, u64)> {
        let hub = self.hub.borrow();
        let mut out = Vec::new();
        for (i, f) in self.node.routes.families.iter().enumerate() {
            if f.channel_list_param.is_none() {
                continue;
            }
            let prefix = if f.name == "topic" {
                String::new()
            } else {
                format!("{}/", f.name)
            };
            let (named, wild) = hub.subscriber_counts(i);
            for (channel, n) in named {
                let topic = f
                    .channel
                    .capture(&channel)
                    .and_then(|v| v.first().map(|(_, t)| t.to_string()))
                    .unwrap_or_else(|| channel.to_string());
                out.push((format!("{prefix}{topic}"), n as u64));
            }
            if wild > 0 {
                out.push((format!("{prefix}all"), wild as u64));
            }
        }
        out
    }

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

    /// Encodes one keep-alive block of `format` for time `now`.
    pub fn encode_keepalive(format: KeepaliveFormat, now: u64, out: &mut BytesMut) {
        match format {
            KeepaliveFormat::PlayerKeepalive => {
                crate::sse::system::encode_player_keepalive(now, out)
            }
            KeepaliveFormat::Heartbeat => crate::sse::system::encode_heartbeat(now, out),
        }
    }
}

/// The `retry:` every stream starts with: how long a browser waits before reconnecting.
pub const RETRY_MS: u32 = 2000;

/// Seconds since the Unix epoch (system events carry whole seconds, UTC).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs one core until its drain completes.
pub async fn run(start: Start) {
    let Start {
        node,
        id,
        listener,
        inbox,
        control,
    } = start;
    let history = node.config.history;
    let shard = Rc::new(Shard {
        id,
        hub: RefCell::new(Hub::new(&node.run_id, id, history)),
        streams: RefCell::new(Slab::new()),
        pool: BufPool::default(),
        draining: Flag::default(),
        encode_buf: RefCell::new(BytesMut::with_capacity(64 * 1024)),
        next_slot: Cell::new(0),
        invalid_logged: RefCell::new(HashMap::new()),
        source_up: Cell::new(node.config.events_redis_storage.is_none()),
        publisher: node.config.events_redis_storage.clone().map(Publisher::new),
        redis_lost_at: Cell::new(None),
        redis_logged_at: Cell::new(None),
        node,
    });
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(core = id, error = %e, "cannot register the listener");
            std::process::exit(1);
        }
    };
    monoio::spawn(inbox_loop(shard.clone(), inbox));
    if let Some(target) = shard.node.config.events_redis_storage.clone() {
        let patterns = shard.node.routes.redis_patterns();
        let seed = id as u64 ^ u64::from(std::process::id()) << 16;
        let own: Vec<String> = shard
            .node
            .routes
            .families
            .iter()
            .map(|f| f.channel.redis_pattern())
            .collect();
        let sink = Rc::new(RedisSink(shard.clone(), own));
        monoio::spawn(redis::subscribe_loop(target, patterns, seed, sink));
    }
    let drain_period = Rc::new(Cell::new(Duration::ZERO));
    monoio::spawn(control_loop(shard.clone(), control, drain_period.clone()));
    monoio::spawn(timer::keepalive_loop(shard.clone()));
    accept_loop(&shard, listener).await;
    timer::drain(&shard, drain_period.get()).await;
}

async fn accept_loop(shard: &Rc<Shard>, listener: TcpListener) {
    loop {
        monoio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    bump(&shard.stats().accepted);
                    monoio::spawn(conn::serve::serve(shard.clone(), stream, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(core = shard.id, error = %e, "accept failed");
                    monoio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shard.draining.wait() => return,
        }
    }
}

/// Messages delivered in one go before the core lets its stream writers run. A burst of
/// more than `SSE_EVENT_BUFFER` messages for one channel delivered in a single pass would cut
/// every subscriber of it, even the fast ones, before any had a chance to write.
pub const DELIVER_BATCH: usize = 32;

async fn inbox_loop(shard: Rc<Shard>, inbox: flume::Receiver<Message>) {
    while let Ok(msg) = inbox.recv_async().await {
        shard.deliver(msg, |_| true);
        // Drain what else is queued: one wake-up per burst, not per message, yielding to the
        // writers every DELIVER_BATCH messages.
        let mut n = 1;
        while let Ok(msg) = inbox.try_recv() {
            shard.deliver(msg, |_| true);
            n += 1;
            if n % DELIVER_BATCH == 0 {
                crate::task::yield_now().await;
            }
        }
    }
}

async fn control_loop(
    shard: Rc<Shard>,
    control: flume::Receiver<Control>,
    period: Rc<Cell<Duration>>,
) {
    while let Ok(msg) = control.recv_async().await {
        match msg {
            Control::Handoff(h) => match TcpStream::from_std(h.socket) {
                Ok(stream) => {
                    conn::stream::start(shard.clone(), stream, h.spec);
                }
                Err(e) => {
                    shard.node.close_stream();
                    debug!(core = shard.id, error = %e, "handed-off socket could not be registered");
                }
            },
            Control::Drain(p) => {
                period.set(p);
                shard.draining.set();
            }
            Control::Counts(reply) => {
                let _ = reply.send(shard.topic_counts());
            }
        }
    }
}

/// A core as its Redis subscription sees it, with each family's pattern (by family index).
struct RedisSink(Rc<Shard>, Vec<String>);

impl SubscriberSink for RedisSink {
    fn message(
        &self,
        pattern: &[u8],
        channel: bytes::Bytes,
        payload: bytes::Bytes,
        arrived: Instant,
    ) {
        self.0.deliver(
            Message {
                channel,
                payload,
                arrived,
            },
            |f| self.1[f].as_bytes() == pattern,
        );
    }

    fn dropped(&self, why: &'static str) {
        bump(&self.0.stats().redis_dropped);
        self.0.log_invalid("<from Redis>", why);
    }

    fn subscribed(&self, after_outage: bool) {
        let shard = &self.0;
        shard.source_up.set(true);
        shard
            .node
            .redis_subscribed
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        shard
            .stats()
            .redis_up
            .store(1, std::sync::atomic::Ordering::Relaxed);
        shard.redis_logged_at.set(None);
        if after_outage {
            shard.hub.borrow_mut().mark_gap();
            let outage = shard
                .redis_lost_at
                .take()
                .map(|t| t.elapsed())
                .unwrap_or_default();
            shard.stats().redis_outage_ms.fetch_add(
                outage.as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            info!(
                core = shard.id,
                outage_ms = outage.as_millis() as u64,
                "Redis subscription is back; messages published meanwhile are lost"
            );
        } else {
            info!(core = shard.id, "Redis pattern subscription live");
        }
    }

    fn lost(&self, why: &RedisError) {
        let shard = &self.0;
        if shard.source_up.replace(false) {
            shard
                .node
                .redis_subscribed
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            shard
                .stats()
                .redis_up
                .store(0, std::sync::atomic::Ordering::Relaxed);
            bump(&shard.stats().redis_disconnects);
            shard.redis_lost_at.set(Some(Instant::now()));
            shard.redis_logged_at.set(Some(Instant::now()));
            warn!(core = shard.id, error = %why, "Redis subscription lost; reconnecting");
            return;
        }
        let due = shard
            .redis_logged_at
            .get()
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if due {
            shard.redis_logged_at.set(Some(Instant::now()));
            warn!(core = shard.id, error = %why, "cannot subscribe on Redis; retrying with backoff");
        } else {
            debug!(core = shard.id, error = %why, "Redis reconnect failed");
        }
    }

    fn stopping(&self) -> bool {
        self.0.draining.is_set()
    }
}
