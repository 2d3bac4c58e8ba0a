//! The Redis broker: each core holds one subscriber connection with one `PSUBSCRIBE` of the
//! route table's patterns, and one publisher connection for HTTP publishes (`PUBLISH`),
//! both on the core's own monoio runtime, speaking RESP2 through the `redis-protocol` codec.
//! In channel mode (`SSE_REDIS_SUBSCRIBE=channel`) the same subscriber connection also
//! carries the core's `SUBSCRIBE`s of single channels, sent in batches from
//! [`ChannelSubs`] and confirmed back to it (channel messages arrive as `message`, pattern
//! ones as `pmessage`). In sharded mode (`SSE_REDIS_SUBSCRIBE=sharded`) each core also
//! holds one link per master it needs channels from ([`shard_loop`]: `SSUBSCRIBE`, one
//! command per slot, messages as `smessage`), and publishes those channels with `SPUBLISH` on
//! their master.
//!
//! Why not `fred`: its `monoio` feature is an empty stub, so it would run on a tokio thread
//! and hand every message to the cores through channels: one more thread hop per message
//! and per core, and a second runtime in the process. The codec alone, on each core's
//! socket, keeps the subscriber path on the core that delivers (figures in
//! docs/ARCHITECTURE.md).
//!
//! Faults: a lost link is noticed by a read error, by the server closing it (its pub/sub
//! output-buffer limit does that to slow subscribers), or by silence: the subscriber sends
//! `PING` every [`PING_EVERY`] and gives the link up after [`DEAD_AFTER`] without a byte.
//! Each core then reconnects on its own with capped, jittered exponential backoff and
//! subscribes again; streams stay open meanwhile.
//!
//! What Redis sends is an input like a client's: every frame goes through
//! [`resp::Reader`](crate::broker::resp::Reader) (bounded nesting and size; a frame too
//! deep or too large is skipped as it streams in, counted as a dropped message, and the link
//! stays up) before the codec decodes it. A link that sends bytes that are not RESP at all
//! is dropped and reconnected without the backoff being reset, so a hostile or corrupting
//! peer costs one connection every 5 s, not a loop.
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use redis_protocol::resp2::types::BytesFrame;
use tracing::{debug, warn};

use crate::broker::channels::{Batch, ChannelSubs, MAX_PER_COMMAND};
use crate::broker::cluster::{key_slot, moved_to, Topology};
use crate::broker::durable;
use crate::broker::link::{connect_any, connect_to, read_frame, read_more};
pub use crate::broker::link::{RedisError, CONNECT_TIMEOUT, DEAD_AFTER};
use crate::broker::message::PublishError;
use crate::broker::message::{MAX_CHANNEL, MAX_PAYLOAD, PUBLISH_TIMEOUT};
use crate::broker::resp::{encode_command, Next, Reader};
use crate::broker::sharded::ShardedSubs;
use crate::broker::target::{RedisTarget, Seed};
use crate::util::jitter::{Backoff, Jitter};
use crate::util::wait::{until_clear, wake_all};

/// Idle interval after which the subscriber pings Redis.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// How long the subscriber link gathers channel subscriptions after the first one asks,
/// before it sends them as one command. Measured in a cold reconnect of 3,000 streams at
/// 5,000 connects/s on 2 cores: sending at once made 1,764 `SUBSCRIBE`s (1.7 channels each),
/// with this wait 329 (9.1 each; docs/ARCHITECTURE.md). A stream on a new channel waits for
/// Redis's confirmation anyway; this adds about this much to it.
pub const COALESCE: Duration = Duration::from_millis(1);
/// First and largest reconnect delay (each attempt doubles it, with jitter).
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Cap of the reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Cap of a shard link's reconnect delay (sharded mode): each attempt also asks for the slot
/// map, and a failover (`cluster-node-timeout`, then an election) ends within seconds, so the
/// link that waits for the replica to take over looks again at least every second.
pub const SHARD_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The commands and replies of one kind of channel subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verbs {
    /// Subscribes channels.
    subscribe: &'static [u8],
    /// Unsubscribes them.
    unsubscribe: &'static [u8],
    /// The kind of a message of a channel subscribed by name.
    message: &'static [u8],
    /// Whether one command may name the channels of one slot only, and the slot map rules
    /// (sharded pub/sub).
    by_slot: bool,
}

/// Classic pub/sub: `SUBSCRIBE`, cluster-wide.
pub const CLASSIC: Verbs = Verbs {
    subscribe: b"SUBSCRIBE",
    unsubscribe: b"UNSUBSCRIBE",
    message: b"message",
    by_slot: false,
};

/// Sharded pub/sub (Redis 7): `SSUBSCRIBE` on the master of the channel's slot.
pub const SHARDED: Verbs = Verbs {
    subscribe: b"SSUBSCRIBE",
    unsubscribe: b"SUNSUBSCRIBE",
    message: b"smessage",
    by_slot: true,
};

/// What a core does with what its subscriber link reports. Implemented by the core's shard,
/// so this module knows nothing of cores.
pub trait SubscriberSink {
    /// A published message (channel and payload within the limits above), with the pattern
    /// it matched (`None`: a channel subscribed by name): a channel matching several
    /// subscribed patterns, or a pattern and its own name, arrives once for each.
    fn message(&self, pattern: Option<&[u8]>, channel: Bytes, payload: Bytes, arrived: Instant);
    /// A message dropped here: channel or payload over the limits, a malformed message, or a
    /// frame skipped as nested too deep or too large.
    fn dropped(&self, why: &'static str);
    /// Every pattern is subscribed: live from now on. `after_outage` when a subscription
    /// was lost before (messages published in between are gone).
    fn subscribed(&self, after_outage: bool);
    /// The link was lost (or never came up): with why, for the logs.
    fn lost(&self, why: &RedisError);
    /// Whether to stop for good (the node drains).
    fn stopping(&self) -> bool;
}

/// Runs one core's subscription until the sink says stop: connect, `PSUBSCRIBE` every
/// pattern, `SUBSCRIBE` the channels `channels` wants (channel mode), deliver messages; on any
/// failure back off and do it again (every wanted channel is subscribed again, batched).
/// `first`: the node of `target`'s list to try first (each core starts at its own, so a
/// node's cores spread over the nodes listed).
pub async fn subscribe_loop(
    target: RedisTarget,
    patterns: Vec<String>,
    seed: u64,
    first: usize,
    sink: Rc<dyn SubscriberSink>,
    channels: Option<Rc<RefCell<ChannelSubs>>>,
) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX, Jitter::seeded(seed));
    let next = Cell::new(first);
    // Whether a subscription was live before: the next one then follows an outage.
    let mut ever = false;
    loop {
        if sink.stopping() {
            return;
        }
        let live = Cell::new(false);
        let via = Via::Any(&next);
        let run = run_subscription(
            &target, via, &patterns, CLASSIC, &*sink, ever, &live, &channels,
        );
        let ended = link_ended(run.await, &live, &mut ever, &mut backoff, &channels, &*sink);
        if !ended {
            return;
        }
        monoio::time::sleep(backoff.delay()).await;
    }
}

/// Settles a subscriber link's run: its channels count as unconfirmed, a link that worked
/// marks that a subscription was live (`ever`) and earns a quick reconnect (one that ended in
/// bytes we refuse does not, so a hostile peer is retried at most every backoff cap), and
/// the sink hears of the loss. `false`: the link ends for good (the run ended cleanly, or the
/// sink stops).
fn link_ended<S: SubscriberSink + ?Sized>(
    result: Result<(), RedisError>,
    live: &Cell<bool>,
    ever: &mut bool,
    backoff: &mut Backoff,
    channels: &Option<Rc<RefCell<ChannelSubs>>>,
    sink: &S,
) -> bool {
    if let Some(c) = channels {
        c.borrow_mut().link_down();
    }
    let Err(err) = result else {
        return false;
    };
    if live.get() {
        *ever = true;
        if !err.is_hostile() {
            backoff.reset();
        }
    }
    if sink.stopping() {
        return false;
    }
    sink.lost(&err);
    true
}

/// What a sharded link reports besides what every subscriber link does.
pub trait ShardLinkSink: SubscriberSink {
    /// The link ends for good: its master left the slot map (failed over, or its slots
    /// moved), and its channels went to their new masters' links.
    fn retired(&self);
}

/// Runs one core's link to `master` in sharded mode until the sink says stop or the master
/// leaves the slot map: connect, `SSUBSCRIBE` what `channels` wants (one command per slot),
/// deliver messages; on any failure ask for the slot map again (`router` moves the channels
/// whose slot has another master now), back off (at most [`SHARD_BACKOFF_MAX`]) and do it
/// again.
pub async fn shard_loop<S: ShardLinkSink + 'static>(
    target: RedisTarget,
    master: Seed,
    seed: u64,
    router: Rc<ShardedSubs>,
    sink: Rc<S>,
    channels: Rc<RefCell<ChannelSubs>>,
) {
    let mut backoff = Backoff::new(BACKOFF_MIN, SHARD_BACKOFF_MAX, Jitter::seeded(seed));
    let mut ever = false;
    let subs = channels.clone();
    let channels = Some(channels);
    loop {
        if sink.stopping() {
            return;
        }
        if !router.serves(&master, &subs) {
            sink.retired();
            return;
        }
        let live = Cell::new(false);
        let via = Via::Node(&master);
        let run = run_subscription(&target, via, &[], SHARDED, &*sink, ever, &live, &channels);
        if !link_ended(run.await, &live, &mut ever, &mut backoff, &channels, &*sink) {
            return;
        }
        if !router.after_loss(&master, &subs).await {
            sink.retired();
            return;
        }
        monoio::time::sleep(backoff.delay()).await;
    }
}

/// Which node a subscriber link connects to.
#[derive(Clone, Copy)]
enum Via<'a> {
    /// The first of the target's nodes that takes it (see [`connect_any`]).
    Any(&'a Cell<usize>),
    /// This node (a master, in sharded mode).
    Node(&'a Seed),
}

/// One subscriber connection's life. `Ok` only when the sink asks to stop.
#[allow(clippy::too_many_arguments)]
async fn run_subscription(
    target: &RedisTarget,
    via: Via<'_>,
    patterns: &[String],
    verbs: Verbs,
    sink: &dyn SubscriberSink,
    after_outage: bool,
    live: &Cell<bool>,
    channels: &Option<Rc<RefCell<ChannelSubs>>>,
) -> Result<(), RedisError> {
    let (stream, mut buf) = match via {
        Via::Any(next) => connect_any(target, next).await?,
        Via::Node(node) => connect_to(target, node).await?,
    };
    let fd = stream.as_raw_fd();
    let (mut rd, mut wr) = stream.into_split();
    if !patterns.is_empty() {
        // In channel mode with only unicast families there is no pattern to subscribe.
        let mut cmd = BytesMut::new();
        let args: Vec<&[u8]> = std::iter::once(&b"PSUBSCRIBE"[..])
            .chain(patterns.iter().map(|p| p.as_bytes()))
            .collect();
        encode_command(&args, &mut cmd);
        let (r, _) = wr.write_all(cmd.freeze()).await;
        r.map_err(RedisError::Io)?;
    }
    let mut reader = Reader::new();
    let confirm = async {
        for _ in patterns {
            match read_frame(&mut rd, &mut reader, &mut buf).await? {
                BytesFrame::Array(a) if is_kind(&a, b"psubscribe") => {}
                BytesFrame::Error(e) => return Err(RedisError::Refused(e.to_string())),
                other => return Err(RedisError::Protocol(format!("{other:?}"))),
            }
        }
        Ok(())
    };
    match monoio::time::timeout(CONNECT_TIMEOUT, confirm).await {
        Ok(r) => r?,
        Err(_) => return Err(RedisError::Timeout("PSUBSCRIBE")),
    }
    if let Some(c) = channels {
        // Every channel the core holds is queued (`ChannelSubs::link_down`): subscribe them
        // all, batched, and count the link live only once Redis confirmed them. Until then
        // the core is down for new streams and for resumes (`subscribed` marks the gap
        // after it), so no event a held channel missed meanwhile can be taken for delivered.
        c.borrow_mut().link_up();
        let batch = c.borrow_mut().take_batch();
        let expect = batch.subscribe.len() + batch.unsubscribe.len();
        if expect > 0 {
            let mut out = BytesMut::new();
            let (subs, unsubs) = encode_batch(&batch, verbs, &mut out);
            c.borrow_mut().sent_commands(subs, unsubs);
            let resync = async {
                let (r, _) = wr.write_all(out.freeze()).await;
                r.map_err(RedisError::Io)?;
                let mut confirmed = 0;
                while confirmed < expect {
                    match reader.next(&mut buf).map_err(RedisError::Frame)? {
                        Next::Partial => buf = read_more(&mut rd, std::mem::take(&mut buf)).await?,
                        Next::Skipped(over) => sink.dropped(over.why()),
                        Next::Frame(f) => match take(f, sink, Some(c), verbs) {
                            Taken::Confirmation => confirmed += 1,
                            Taken::Moved(why) => return Err(RedisError::Moved(why)),
                            _ => {}
                        },
                    }
                }
                Ok(())
            };
            match monoio::time::timeout(CONNECT_TIMEOUT, resync).await {
                Ok(r) => r?,
                Err(_) => return Err(RedisError::Timeout("SUBSCRIBE or SSUBSCRIBE")),
            }
        }
    }
    sink.subscribed(after_outage);
    live.set(true);
    // The watchdog pings while the link is quiet and shuts the socket down once it has been
    // silent for DEAD_AFTER, which ends the read below (no read is ever cancelled, so no
    // byte is lost mid-frame); in channel mode it also writes the batches of SUBSCRIBE and
    // UNSUBSCRIBE.
    let heard = Rc::new(Cell::new(Instant::now()));
    let done = Rc::new(Cell::new(false));
    let silent = Rc::new(Cell::new(false));
    monoio::spawn(watchdog(
        wr,
        fd,
        heard.clone(),
        done.clone(),
        silent.clone(),
        channels.clone(),
        verbs,
    ));
    let channels = channels.as_deref();
    let result = read_messages(&mut rd, reader, buf, sink, &heard, channels, verbs).await;
    done.set(true);
    match result {
        Err(_) if silent.get() => Err(RedisError::Silent),
        r => r,
    }
}

fn is_kind(a: &[BytesFrame], kind: &[u8]) -> bool {
    matches!(a.first(), Some(BytesFrame::BulkString(k)) if k.eq_ignore_ascii_case(kind))
}

/// What one frame of a subscriber link was.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Taken {
    /// A published message (delivered, or dropped and counted).
    Message,
    /// Redis's confirmation of one channel of our `SUBSCRIBE` / `UNSUBSCRIBE`.
    Confirmation,
    /// Anything else (`pong`, a refused command): only proof of life.
    Other,
    /// Sharded mode: the node no longer serves a slot of ours (a `MOVED` answer, or a
    /// `sunsubscribe` we did not ask for): with what Redis said.
    Moved(String),
}

/// Hands one frame of a subscriber link to `sink` (messages) or `channels` (confirmations).
fn take(
    frame: BytesFrame,
    sink: &dyn SubscriberSink,
    channels: Option<&RefCell<ChannelSubs>>,
    verbs: Verbs,
) -> Taken {
    match frame {
        BytesFrame::Array(mut a) => {
            let pmessage = a.len() == 4 && is_kind(&a, b"pmessage");
            let message = a.len() == 3 && is_kind(&a, verbs.message);
            let confirmation =
                a.len() == 3 && (is_kind(&a, verbs.subscribe) || is_kind(&a, verbs.unsubscribe));
            if let (true, Some(c)) = (confirmation, channels) {
                // One confirmation per channel of our commands, in order.
                if let Some(BytesFrame::BulkString(name)) = a.get(1) {
                    let asked = c.borrow_mut().confirmed(name);
                    if !asked && verbs.by_slot {
                        // Sharded pub/sub unsubscribes a channel whose slot left the node.
                        let name = String::from_utf8_lossy(name);
                        return Taken::Moved(format!("Redis unsubscribed {name}"));
                    }
                }
                return Taken::Confirmation;
            }
            if !(pmessage || message) {
                return Taken::Other;
            }
            let payload = a.pop();
            let channel = a.pop();
            let pattern = if pmessage { a.pop() } else { None };
            let pattern = match &pattern {
                Some(BytesFrame::BulkString(p)) => Some(Some(&p[..])),
                None => Some(None),
                Some(_) => None,
            };
            match (pattern, channel, payload) {
                (
                    Some(pattern),
                    Some(BytesFrame::BulkString(c)),
                    Some(BytesFrame::BulkString(p)),
                ) => {
                    if c.len() > MAX_CHANNEL {
                        sink.dropped("channel name over 1024 bytes");
                    } else if p.len() > MAX_PAYLOAD {
                        sink.dropped("payload over 64 KiB");
                    } else {
                        sink.message(pattern, c, p, Instant::now());
                    }
                }
                _ => sink.dropped("malformed pub/sub message"),
            }
            Taken::Message
        }
        // Sharded: the node does not serve the slot (`MOVED`), or the cluster cannot serve
        // it now (`CLUSTERDOWN`, during a failover): the link is given up and the slot map
        // asked again, instead of waiting out confirmations that cannot come.
        BytesFrame::Error(e)
            if verbs.by_slot && (moved_to(&e).is_some() || e.starts_with("CLUSTERDOWN")) =>
        {
            Taken::Moved(e.to_string())
        }
        BytesFrame::Error(e) => {
            // A command of ours refused (an ACL that denies a channel, say): its channels
            // stay unconfirmed, and the streams waiting for them are refused in time.
            // Counted and logged once a minute by the sink, not here: a hostile peer could
            // send errors in a loop.
            sink.dropped("Redis refused a subscription command");
            debug!(error = %e, "Redis refused a subscription command");
            Taken::Other
        }
        _ => Taken::Other,
    }
}

async fn read_messages(
    rd: &mut OwnedReadHalf<TcpStream>,
    mut reader: Reader,
    mut buf: BytesMut,
    sink: &dyn SubscriberSink,
    heard: &Cell<Instant>,
    channels: Option<&RefCell<ChannelSubs>>,
    verbs: Verbs,
) -> Result<(), RedisError> {
    let mut delivered = 0usize;
    loop {
        loop {
            let frame = match reader.next(&mut buf).map_err(RedisError::Frame)? {
                Next::Partial => break,
                Next::Frame(f) => f,
                Next::Skipped(over) => {
                    // Read and discarded as it streamed in; the link stays up.
                    sink.dropped(over.why());
                    continue;
                }
            };
            match take(frame, sink, channels, verbs) {
                Taken::Message => delivered += 1,
                Taken::Moved(why) => return Err(RedisError::Moved(why)),
                _ => continue,
            }
            // Let the stream writers run between bursts.
            if delivered % crate::task::DELIVER_BATCH == 0 {
                // Working through a backlog is proof of life too.
                heard.set(Instant::now());
                crate::task::yield_now().await;
            }
        }
        if sink.stopping() {
            return Ok(());
        }
        buf = read_more(rd, buf).await?;
        heard.set(Instant::now());
    }
}

/// Encodes `batch` as commands of at most [`MAX_PER_COMMAND`] channels each, and with
/// sharded `verbs` of one slot each (Redis refuses an `SSUBSCRIBE` whose channels span slots:
/// the commands are pipelined in one write instead): unsubscribes first (their channels were
/// dropped before the newer wants were made). The subscribe and unsubscribe commands written.
pub fn encode_batch(batch: &Batch, verbs: Verbs, out: &mut BytesMut) -> (u64, u64) {
    let mut commands = [0u64; 2];
    for (i, verb, names) in [
        (0, verbs.unsubscribe, &batch.unsubscribe),
        (1, verbs.subscribe, &batch.subscribe),
    ] {
        let mut names: Vec<(u16, &str)> = names
            .iter()
            .map(|c| {
                (
                    if verbs.by_slot {
                        key_slot(c.as_bytes())
                    } else {
                        0
                    },
                    &**c,
                )
            })
            .collect();
        // Stable: a slot's channels keep the order they were wanted in.
        names.sort_by_key(|(slot, _)| *slot);
        for group in names.chunk_by(|a, b| a.0 == b.0) {
            for chunk in group.chunks(MAX_PER_COMMAND) {
                let args: Vec<&[u8]> = std::iter::once(verb)
                    .chain(chunk.iter().map(|(_, c)| c.as_bytes()))
                    .collect();
                encode_command(&args, out);
                commands[i] += 1;
            }
        }
    }
    (commands[1], commands[0])
}

/// Whether a batch of channel commands is due (never, outside channel mode).
fn batch_due(
    channels: &Option<Rc<RefCell<ChannelSubs>>>,
) -> impl std::future::Future<Output = ()> + '_ {
    poll_fn(move |cx| match channels {
        Some(c) if c.borrow_mut().poll_due(cx.waker()) => Poll::Ready(()),
        _ => Poll::Pending,
    })
}

/// Shuts the link's socket down: the read of [`read_messages`] ends, and the link with it.
fn end_link(fd: RawFd, silent: &Cell<bool>) {
    silent.set(true);
    // SAFETY: `fd` is the socket of this link, still open: the caller (the watchdog) holds
    // its write half, so the descriptor cannot have been closed and reused. shutdown(2)
    // only ends the connection; the halves still close the descriptor when dropped.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

async fn watchdog(
    mut wr: OwnedWriteHalf<TcpStream>,
    fd: std::os::fd::RawFd,
    heard: Rc<Cell<Instant>>,
    done: Rc<Cell<bool>>,
    silent: Rc<Cell<bool>>,
    channels: Option<Rc<RefCell<ChannelSubs>>>,
    verbs: Verbs,
) {
    let mut ping = BytesMut::new();
    encode_command(&[b"PING"], &mut ping);
    let ping = ping.freeze();
    loop {
        if done.get() {
            return;
        }
        // Half a ping period, or sooner when a batch of channel commands is due: all the
        // channels wanted since the last turn go out together, pipelined.
        if monoio::time::timeout(PING_EVERY / 2, batch_due(&channels))
            .await
            .is_ok()
        {
            // Let the streams being opened on this core in the same burst ask too, so they
            // share the command (see COALESCE).
            monoio::time::sleep(COALESCE).await;
        }
        if done.get() {
            return;
        }
        let batch = channels.as_ref().map(|c| (c, c.borrow_mut().take_batch()));
        if let Some((c, batch)) = batch.filter(|(_, b)| !b.is_empty()) {
            let mut out = BytesMut::new();
            let (subs, unsubs) = encode_batch(&batch, verbs, &mut out);
            c.borrow_mut().sent_commands(subs, unsubs);
            let w = monoio::time::timeout(CONNECT_TIMEOUT, wr.write_all(out.freeze())).await;
            if !matches!(w, Ok((Ok(_), _))) {
                // Redis does not take our commands: the link is not healthy.
                end_link(fd, &silent);
                return;
            }
        }
        let quiet = heard.get().elapsed();
        if quiet >= DEAD_AFTER {
            end_link(fd, &silent);
            return;
        }
        if quiet >= PING_EVERY {
            let w = monoio::time::timeout(PING_EVERY, wr.write_all(ping.clone())).await;
            if !matches!(w, Ok((Ok(_), _))) {
                // Redis does not take a 14-byte PING within a second (and part of one may be
                // on the wire): the link is not healthy. End it like a silent one.
                end_link(fd, &silent);
                return;
            }
        }
    }
}

/// One core's publisher: a pipelined connection for `PUBLISH`, opened on first use and again
/// after a failure (not sooner than [`BACKOFF_MIN`] after the last failed attempt, so a Redis
/// outage answers publishers `503` at once instead of piling up connects).
///
/// **Outcome.** A publish that gets no answer is one of two things, and the publisher is told
/// which: its command never left this process (still queued behind a write when the link
/// failed: certainly not published, [`PublishError::Lost`], `503`), or it was handed to the
/// kernel (Redis may have executed it, and a frozen Redis that wakes up does:
/// [`PublishError::Timeout`] or [`PublishError::Unknown`], `504`). Answering `503` for the
/// second kind made retrying publishers deliver events twice.
///
/// **Descriptors.** A link given up is shut down (`shutdown(2)`), which ends its reader's
/// read and any stuck write, so both tasks end and the socket is closed at once. Marking it
/// dead alone left the read pending until Redis spoke again: against a frozen Redis, one
/// more descriptor per timed-out publish (16 → 25 in 20 s).
pub struct Publisher {
    /// Where Redis is.
    target: RedisTarget,
    /// The node of `target`'s list the next connect tries first.
    next: Cell<usize>,
    /// The durable path's settings; `None`: plain `PUBLISH` only.
    durable: Option<DurableSettings>,
    /// The live link, if any.
    link: RefCell<Option<Rc<PubLink>>>,
    /// When the last connect failed.
    failed_at: Cell<Option<Instant>>,
    /// A connect in progress (publishers arriving meanwhile wait for it).
    connecting: Cell<bool>,
    /// Publishers waiting for the connect in progress.
    waiting: RefCell<Vec<Waker>>,
    /// Sharded mode: the slot map and a publisher per master, for `SPUBLISH`.
    shards: Option<Box<ShardPublishers>>,
}

/// A core's `SPUBLISH` links (sharded mode): one [`Publisher`] per master, each with the
/// outcome rules above, made on first use and dropped when its master leaves the map.
struct ShardPublishers {
    /// The slot map, shared with the core's sharded subscriptions.
    topology: Rc<Topology>,
    /// By master.
    by_master: RefCell<HashMap<Seed, Rc<Publisher>>>,
    /// The map version `by_master` was last pruned at.
    pruned: Cell<u64>,
}

/// What a durable publish passes to `ssegw_publish` besides channel and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableSettings {
    /// Events kept per channel in Redis (`SSE_HISTORY`).
    pub history: usize,
    /// Seconds an idle channel's history lives (`SSE_HISTORY_TTL`).
    pub ttl_s: u64,
}

/// Whether "Redis has no functions: the durable path is off" was logged (once per process).
static NO_FUNCTIONS_LOGGED: AtomicBool = AtomicBool::new(false);

/// One publisher connection: commands go out in order, replies come back in order.
struct PubLink {
    /// Commands not written yet.
    out: RefCell<BytesMut>,
    /// The write half, when no write is in flight.
    wr: RefCell<Option<OwnedWriteHalf<TcpStream>>>,
    /// Publishers waiting for replies, oldest first.
    pending: RefCell<VecDeque<Rc<Reply>>>,
    /// How many of the newest `pending` publishes are still in `out`, not yet handed to the
    /// kernel: when the link fails, exactly these were certainly not sent.
    unsent: Cell<usize>,
    /// Set when the link failed: every pending and later publish fails.
    dead: Cell<bool>,
    /// The socket, shut down when the link fails (see [`Publisher`]).
    fd: RawFd,
    /// Whether this Redis has the `ssegw` library (checked, and loaded if need be, when the
    /// link was made: a Redis restarted without persistence has lost it).
    durable: bool,
}

/// Where one command's answer lands.
#[derive(Default)]
struct Reply {
    /// Redis's answer, or why none came.
    result: RefCell<Option<Result<BytesFrame, PublishError>>>,
    /// The waiting task.
    waker: RefCell<Option<Waker>>,
}

impl Reply {
    fn set(&self, r: Result<BytesFrame, PublishError>) {
        *self.result.borrow_mut() = Some(r);
        let w = self.waker.borrow_mut().take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// Makes sure the Redis behind `stream` has the `ssegw` library at [`durable::VERSION`] or
/// newer, loading it when absent or older; `false` when this Redis has no functions (< 7),
/// refuses the library, or is a node of a Redis Cluster (said once per process).
///
/// A cluster node is asked first (`INFO cluster`): the library keeps one counter key, which
/// lives in one slot, and `ssegw_publish` touches the channel's list in another, so on a
/// cluster every durable publish whose channel is not in the seed node's slots would be
/// refused (`MOVED`) and answered `503`. Classic `PUBLISH` is cluster-wide, so HTTP publish
/// keeps working there, with per-node ids and history.
async fn ensure_library(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<bool, RedisError> {
    let mut reader = Reader::new();
    let mut cmd = BytesMut::new();
    encode_command(&[b"INFO", b"cluster"], &mut cmd);
    encode_command(&[b"FCALL_RO", b"ssegw_version", b"0"], &mut cmd);
    let (r, _) = stream.write_all(cmd.freeze()).await;
    r.map_err(RedisError::Io)?;
    let cluster = matches!(
        read_frame(stream, &mut reader, buf).await?,
        BytesFrame::BulkString(info) if contains_bytes(&info, b"cluster_enabled:1")
    );
    let version = read_frame(stream, &mut reader, buf).await?;
    let why = match version {
        _ if cluster => Some(
            "Redis Cluster: the durable path keeps its counter in one slot and is not built \
             for a cluster"
                .to_string(),
        ),
        BytesFrame::Integer(v) if v >= durable::VERSION => return Ok(true),
        BytesFrame::Integer(_) => None,
        BytesFrame::Error(e) if e.contains("nknown command") => {
            Some(format!("this Redis has no functions (Redis 7 has): {e}"))
        }
        BytesFrame::Error(_) => None,
        other => Some(format!(
            "unexpected answer to FCALL_RO ssegw_version: {other:?}"
        )),
    };
    let why = match why {
        Some(why) => why,
        None => {
            let mut cmd = BytesMut::new();
            encode_command(
                &[
                    b"FUNCTION",
                    b"LOAD",
                    b"REPLACE",
                    durable::LIBRARY.as_bytes(),
                ],
                &mut cmd,
            );
            let (r, _) = stream.write_all(cmd.freeze()).await;
            r.map_err(RedisError::Io)?;
            match read_frame(stream, &mut reader, buf).await? {
                BytesFrame::BulkString(_) | BytesFrame::SimpleString(_) => return Ok(true),
                other => format!("FUNCTION LOAD of the ssegw library failed: {other:?}"),
            }
        }
    };
    if !NO_FUNCTIONS_LOGGED.swap(true, Ordering::Relaxed) {
        warn!(
            reason = %why,
            "the durable path is off (plain PUBLISH; event ids and history per node)"
        );
    }
    Ok(false)
}

/// Whether `needle` occurs in `hay`.
fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl Publisher {
    /// A publisher for `target`, publishing through the durable path with `durable` when
    /// Redis has functions; connects on first use, to the node `first` of the list first.
    pub fn new(target: RedisTarget, durable: Option<DurableSettings>, first: usize) -> Publisher {
        Publisher {
            target,
            next: Cell::new(first),
            durable,
            link: RefCell::new(None),
            failed_at: Cell::new(None),
            connecting: Cell::new(false),
            waiting: RefCell::new(Vec::new()),
            shards: None,
        }
    }

    /// Sharded mode: channels subscribed by name are published with `SPUBLISH` on their
    /// slot's master (by `topology`), the others with `PUBLISH` as before; the durable path
    /// is off (its function publishes with `PUBLISH`, which sharded subscribers never see).
    pub fn sharded(mut self, topology: Rc<Topology>) -> Publisher {
        self.durable = None;
        self.shards = Some(Box::new(ShardPublishers {
            topology,
            by_master: RefCell::new(HashMap::new()),
            pruned: Cell::new(0),
        }));
        self
    }

    /// The slot map (sharded mode).
    pub fn topology(&self) -> Option<Rc<Topology>> {
        self.shards.as_ref().map(|s| s.topology.clone())
    }

    /// `SPUBLISH channel payload` on the master of `channel`'s slot: the receiver count (one
    /// per gateway node holding the channel). A `MOVED` answer (the slot moved, nothing was
    /// published) fetches the map again and tries once more; a master that cannot be reached
    /// fetches the map (for the next publish: a failover may have promoted its replica) and
    /// answers `503`.
    async fn spublish(
        &self,
        shards: &ShardPublishers,
        channel: &[u8],
        payload: &[u8],
    ) -> Result<u64, PublishError> {
        let topology = &shards.topology;
        // One more try when the answer says the map was stale: a `MOVED` (to the address it
        // names, or the master of a map fetched since), or a master that cannot be reached
        // while a fetched map names another (its replica took over).
        let mut again = true;
        let mut to: Option<Seed> = None;
        loop {
            let map = topology
                .ensure()
                .await
                .map_err(|e| PublishError::Unreachable(e.to_string()))?;
            if shards.pruned.replace(topology.version()) != topology.version() {
                shards.by_master.borrow_mut().retain(|m, _| map.serves(m));
            }
            let master = match to
                .take()
                .or_else(|| map.master_of_channel(channel).cloned())
            {
                Some(m) => m,
                None => {
                    if std::mem::take(&mut again) && topology.refresh().await.unwrap_or(false) {
                        continue;
                    }
                    let slot = key_slot(channel);
                    return Err(PublishError::Unreachable(format!(
                        "no master serves slot {slot} now"
                    )));
                }
            };
            let one = |master: Seed| {
                let mut target = self.target.clone();
                target.seeds = vec![master];
                Rc::new(Publisher::new(target, None, 0))
            };
            // Links are kept for the masters of the map only: a `MOVED` to an address the
            // map does not name (what Redis sends is an input) gets a link for this publish.
            let publisher = if map.serves(&master) {
                shards
                    .by_master
                    .borrow_mut()
                    .entry(master.clone())
                    .or_insert_with(|| one(master))
                    .clone()
            } else {
                one(master)
            };
            let r = publisher.command(&[b"SPUBLISH", channel, payload]).await;
            let moved = match &r {
                Ok(BytesFrame::Error(e)) => moved_to(e),
                _ => None,
            };
            let unreachable = matches!(
                r,
                Err(PublishError::Unreachable(_) | PublishError::Backoff | PublishError::Lost(_))
            );
            if (moved.is_some() || unreachable) && std::mem::take(&mut again) {
                let changed = topology.refresh().await.unwrap_or(false);
                if changed || moved.is_some() {
                    to = if changed { None } else { moved };
                    continue;
                }
            }
            return match r? {
                BytesFrame::Integer(n) => Ok(u64::try_from(n).unwrap_or(0)),
                BytesFrame::Error(e) => Err(PublishError::Refused(e.to_string())),
                other => Err(PublishError::Unknown(format!(
                    "unexpected reply to SPUBLISH: {other:?}"
                ))),
            };
        }
    }

    /// Sends one command and waits for its answer (see [`Publisher::roundtrip`]).
    async fn command(&self, args: &[&[u8]]) -> Result<BytesFrame, PublishError> {
        let link = self.link().await?;
        self.roundtrip(link, args).await
    }

    /// Publishes `payload` on `channel`: through `ssegw_publish` (history kept in Redis, the
    /// event's durable id in its envelope) when this Redis has the library, else `PUBLISH`.
    /// Redis's receiver count (subscriber connections, one per core of every node), or why
    /// it could not be published, or that nobody knows ([`PublishError::outcome_unknown`]).
    ///
    /// In sharded mode a channel subscribed by name (`by_name`) goes with `SPUBLISH` to its
    /// slot's master instead (see [`Publisher::sharded`]).
    pub async fn publish(
        &self,
        channel: &[u8],
        payload: &[u8],
        by_name: bool,
    ) -> Result<u64, PublishError> {
        if let (Some(shards), true) = (&self.shards, by_name) {
            return self.spublish(shards, channel, payload).await;
        }
        let link = self.link().await?;
        let frame = match self.durable.filter(|_| link.durable) {
            Some(d) => {
                let history = d.history.to_string();
                let ttl = d.ttl_s.to_string();
                let args: [&[u8]; 7] = [
                    b"FCALL",
                    b"ssegw_publish",
                    b"1",
                    channel,
                    payload,
                    history.as_bytes(),
                    ttl.as_bytes(),
                ];
                self.roundtrip(link.clone(), &args).await?
            }
            None => {
                self.roundtrip(link.clone(), &[b"PUBLISH", channel, payload])
                    .await?
            }
        };
        match frame {
            BytesFrame::Integer(n) => Ok(u64::try_from(n).unwrap_or(0)),
            BytesFrame::Error(e) => Err(PublishError::Refused(e.to_string())),
            other => {
                let why = format!("unexpected reply to PUBLISH: {other:?}");
                link.fail(&why);
                Err(PublishError::Unknown(why))
            }
        }
    }

    /// Whether a durable history read can be tried: Redis reachable (a link made now if
    /// need be) and holding the library.
    pub async fn durable_ready(&self) -> bool {
        self.durable.is_some() && self.link().await.is_ok_and(|l| l.durable)
    }

    /// `FCALL_RO ssegw_read` of the histories `keys`: what they hold after `after`, within
    /// `max_bytes` (see `ssegw.lua`). An error when the durable path is unavailable.
    ///
    /// A connect that failed a moment ago is waited out (at most `5 * BACKOFF_MIN`) and tried
    /// again, where a publish is refused at once: a refused publish is a `503` its publisher
    /// retries, a refused read is a reset that costs the client its history. Without the
    /// wait, a resume in the first 500 ms after Redis came back (the subscription up again,
    /// `/readyz` 200) was reset whenever a publish had failed just before.
    pub async fn read_history(
        &self,
        keys: &[Vec<u8>],
        after: u64,
        max_bytes: usize,
    ) -> Result<BytesFrame, PublishError> {
        if let Some(t) = self.failed_at.get() {
            let left = (BACKOFF_MIN * 5).saturating_sub(t.elapsed());
            if !left.is_zero() {
                monoio::time::sleep(left).await;
            }
        }
        let link = self.link().await?;
        if !link.durable {
            return Err(PublishError::Refused("the durable path is off".into()));
        }
        let n = keys.len().to_string();
        let after = after.to_string();
        let max = max_bytes.to_string();
        let mut args: Vec<&[u8]> = vec![b"FCALL_RO", b"ssegw_read", n.as_bytes()];
        args.extend(keys.iter().map(|k| &k[..]));
        args.push(after.as_bytes());
        args.push(max.as_bytes());
        self.roundtrip(link, &args).await
    }

    /// Sends one command on `link` and waits (at most [`PUBLISH_TIMEOUT`]) for its answer.
    async fn roundtrip(
        &self,
        link: Rc<PubLink>,
        args: &[&[u8]],
    ) -> Result<BytesFrame, PublishError> {
        let reply = Rc::new(Reply::default());
        encode_command(args, &mut link.out.borrow_mut());
        link.pending.borrow_mut().push_back(reply.clone());
        link.unsent.set(link.unsent.get() + 1);
        // The write goes out from a task of its own: no publish waits on another's write,
        // and a stalled socket holds no HTTP answer beyond the timeout below.
        if !link.wr.borrow().is_none() {
            monoio::spawn(flush(link.clone()));
        }
        let wait = poll_fn(|cx| {
            if let Some(r) = reply.result.borrow_mut().take() {
                return Poll::Ready(r);
            }
            *reply.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        });
        if let Ok(r) = monoio::time::timeout(PUBLISH_TIMEOUT, wait).await {
            return r;
        }
        if let Some(r) = reply.result.borrow_mut().take() {
            // Answered as the timer fired.
            return r;
        }
        // A link that does not answer is not trusted again, and the next publishes are
        // refused at once for a moment instead of piling up connects.
        self.failed_at.set(Some(Instant::now()));
        link.fail("Redis did not answer within 2s");
        let r = reply.result.borrow_mut().take();
        match r {
            // Sent and unanswered: say so with the timeout's own words.
            Some(Err(PublishError::Unknown(_))) | None => Err(PublishError::Timeout),
            Some(r) => r,
        }
    }

    async fn link(&self) -> Result<Rc<PubLink>, PublishError> {
        loop {
            if let Some(l) = self.link.borrow().as_ref().filter(|l| !l.dead.get()) {
                return Ok(l.clone());
            }
            if !self.connecting.get() {
                break;
            }
            // Another publish is connecting: wait for it.
            until_clear(&self.connecting, &self.waiting).await;
        }
        if self
            .failed_at
            .get()
            .is_some_and(|t| t.elapsed() < BACKOFF_MIN * 5)
        {
            return Err(PublishError::Backoff);
        }
        self.connecting.set(true);
        let r = match connect_any(&self.target, &self.next).await {
            Ok((mut stream, mut buf)) if self.durable.is_some() => {
                let check = ensure_library(&mut stream, &mut buf);
                match monoio::time::timeout(CONNECT_TIMEOUT, check).await {
                    Ok(Ok(durable)) => Ok((stream, buf, durable)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(RedisError::Timeout("loading the ssegw library")),
                }
            }
            Ok((stream, buf)) => Ok((stream, buf, false)),
            Err(e) => Err(e),
        };
        self.connecting.set(false);
        wake_all(&self.waiting);
        match r {
            Ok((stream, buf, durable)) => {
                self.failed_at.set(None);
                let fd = stream.as_raw_fd();
                let (rd, wr) = stream.into_split();
                let link = Rc::new(PubLink {
                    out: RefCell::new(BytesMut::new()),
                    wr: RefCell::new(Some(wr)),
                    pending: RefCell::new(VecDeque::new()),
                    unsent: Cell::new(0),
                    dead: Cell::new(false),
                    fd,
                    durable,
                });
                monoio::spawn(read_replies(link.clone(), rd, buf));
                *self.link.borrow_mut() = Some(link.clone());
                Ok(link)
            }
            Err(e) => {
                self.failed_at.set(Some(Instant::now()));
                Err(PublishError::Unreachable(e.to_string()))
            }
        }
    }
}

impl PubLink {
    /// Gives the link up: every pending publish learns whether it was sent, the socket is
    /// shut down and the write half dropped, so the descriptor closes as soon as the reader
    /// task (ended by the shutdown) drops its half.
    fn fail(&self, why: &str) {
        if self.dead.replace(true) {
            return;
        }
        // SAFETY: `fd` is this link's socket and still open: this is the first failure, and
        // until it both halves are held (the reader task ends only after calling `fail`, the
        // write half lives in `wr` or in a `flush` that puts it back before failing), so the
        // descriptor cannot have been closed and reused. shutdown(2) only ends the
        // connection; the halves still close the descriptor when dropped.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
        drop(self.wr.borrow_mut().take());
        self.out.borrow_mut().clear();
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let sent = pending.len().saturating_sub(self.unsent.replace(0));
        for (i, r) in pending.into_iter().enumerate() {
            r.set(Err(if i < sent {
                PublishError::Unknown(why.to_string())
            } else {
                PublishError::Lost(why.to_string())
            }));
        }
    }
}

/// Writes what is queued until nothing is; holds the write half meanwhile, so a publish that
/// finds it taken knows this task will write its command too.
async fn flush(link: Rc<PubLink>) {
    loop {
        let Some(mut wr) = link.wr.borrow_mut().take() else {
            return;
        };
        if link.dead.get() {
            return;
        }
        let out = std::mem::take(&mut *link.out.borrow_mut());
        if out.is_empty() {
            *link.wr.borrow_mut() = Some(wr);
            return;
        }
        // From here on these commands may reach Redis.
        link.unsent.set(0);
        let (r, _) = wr.write_all(out.freeze()).await;
        if link.dead.get() {
            // Failed meanwhile: dropping the half lets the descriptor close.
            return;
        }
        *link.wr.borrow_mut() = Some(wr);
        if let Err(e) = r {
            link.fail(&format!("writing to Redis failed: {e}"));
            return;
        }
    }
}

async fn read_replies(link: Rc<PubLink>, mut rd: OwnedReadHalf<TcpStream>, mut buf: BytesMut) {
    let mut reader = Reader::new();
    loop {
        let frame = match read_frame(&mut rd, &mut reader, &mut buf).await {
            Ok(f) => f,
            Err(e) => {
                link.fail(&format!("Redis link lost: {e}"));
                return;
            }
        };
        if link.dead.get() {
            return;
        }
        // Only a publish whose command was written can be answered.
        let answered = link.pending.borrow().len() > link.unsent.get();
        let reply = answered
            .then(|| link.pending.borrow_mut().pop_front())
            .flatten();
        let Some(reply) = reply else {
            link.fail("Redis sent a reply nobody asked for");
            return;
        };
        reply.set(Ok(frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::link::next_frame;
    use crate::broker::resp::FrameError;

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&[b"PUBLISH", b"SSE::1::2", b"{\"a\":1}"], &mut out);
        assert_eq!(
            &out[..],
            b"*3\r\n$7\r\nPUBLISH\r\n$9\r\nSSE::1::2\r\n$7\r\n{\"a\":1}\r\n"
        );
    }

    #[test]
    fn sharded_batches_are_one_command_per_slot_pipelined() {
        let names = |v: &[&str]| -> Vec<Box<str>> { v.iter().map(|&c| c.into()).collect() };
        let batch = Batch {
            subscribe: names(&["{a}1", "{b}1", "{a}2", "{b}2", "{c}1"]),
            unsubscribe: names(&["{c}2", "{a}3"]),
        };
        let mut out = BytesMut::new();
        assert_eq!(encode_batch(&batch, CLASSIC, &mut out), (1, 1));
        let mut want = BytesMut::new();
        encode_command(&[b"UNSUBSCRIBE", b"{c}2", b"{a}3"], &mut want);
        encode_command(
            &[b"SUBSCRIBE", b"{a}1", b"{b}1", b"{a}2", b"{b}2", b"{c}1"],
            &mut want,
        );
        assert_eq!(out, want);
        // Sharded: one command per slot, in slot order, each slot's channels in the order
        // they were wanted; all of them in one buffer (one write).
        let mut out = BytesMut::new();
        assert_eq!(encode_batch(&batch, SHARDED, &mut out), (3, 2));
        let mut unsubs: Vec<(u16, Vec<&[u8]>)> = vec![
            (key_slot(b"a"), vec![b"{a}3"]),
            (key_slot(b"c"), vec![b"{c}2"]),
        ];
        let mut subs: Vec<(u16, Vec<&[u8]>)> = vec![
            (key_slot(b"a"), vec![b"{a}1", b"{a}2"]),
            (key_slot(b"b"), vec![b"{b}1", b"{b}2"]),
            (key_slot(b"c"), vec![b"{c}1"]),
        ];
        unsubs.sort_by_key(|(s, _)| *s);
        subs.sort_by_key(|(s, _)| *s);
        let mut want = BytesMut::new();
        for (verb, groups) in [(&b"SUNSUBSCRIBE"[..], unsubs), (&b"SSUBSCRIBE"[..], subs)] {
            for (_, names) in groups {
                let args: Vec<&[u8]> = std::iter::once(verb).chain(names).collect();
                encode_command(&args, &mut want);
            }
        }
        assert_eq!(out, want);
    }

    #[test]
    fn frames_split_anywhere_decode_once_complete() {
        let wire = b"*4\r\n$8\r\npmessage\r\n$5\r\nSSE:*\r\n$7\r\nSSE:1:2\r\n$2\r\nhi\r\n";
        for cut in 0..wire.len() {
            let mut reader = Reader::new();
            let mut buf = BytesMut::from(&wire[..cut]);
            assert!(
                next_frame(&mut reader, &mut buf).unwrap().is_none(),
                "cut at {cut}"
            );
            buf.extend_from_slice(&wire[cut..]);
            let f = next_frame(&mut reader, &mut buf)
                .unwrap()
                .expect("complete");
            let BytesFrame::Array(a) = f else {
                panic!("{f:?}")
            };
            assert!(is_kind(&a, b"pmessage"));
            assert!(buf.is_empty());
        }
        let mut junk = BytesMut::from(&b"?what\r\n"[..]);
        assert!(matches!(
            next_frame(&mut Reader::new(), &mut junk),
            Err(RedisError::Frame(FrameError::BadType(b'?')))
        ));
    }
}
