//! One core's thread: its runtime, its listener, and the loops that drive the core's verbs:
//! accept, the inbox of published messages, the control channel, the timer, the Redis
//! subscription; then the drain.
use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::{TcpListener, TcpStream};
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use tracing::{debug, info, warn};

use crate::broker::cluster::Topology;
use crate::broker::embedded::EmbeddedBroker;
use crate::broker::message::Message;
use crate::broker::publish::Broker;
use crate::broker::redis::{self, DurableSettings, Publisher};
use crate::broker::sharded::Subs;
use crate::broker::target::RedisTarget;
use crate::config::{IoDriverChoice, RedisSubscribe};
use crate::conn;
use crate::conn::decide::Listener;
use crate::core::node::{Control, Node};
use crate::core::pending::Entry;
use crate::core::shard::Shard;
use crate::error::StartError;
use crate::server::fds;
use crate::server::redis_sink::{RedisSink, ShardSink};
use crate::server::status;
use crate::server::timer;
use crate::stats::bump;
use crate::task::{yield_now, DELIVER_BATCH};
use crate::util::jitter::{Backoff, Jitter};

/// The I/O driver a core runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Linux io_uring: one ring per core.
    IoUring,
    /// epoll, where the kernel or a seccomp profile forbids io_uring.
    Epoll,
}

impl Driver {
    /// The name used in logs and stats.
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }

    /// The driver for `choice`: `auto` is io_uring where a ring can actually be built
    /// (detection can say yes where memlock limits or seccomp still refuse one), else epoll.
    pub fn pick(choice: IoDriverChoice) -> Driver {
        match choice {
            IoDriverChoice::Epoll => Driver::Epoll,
            IoDriverChoice::IoUring => Driver::IoUring,
            IoDriverChoice::Auto => {
                if !monoio::utils::detect_uring() {
                    Driver::Epoll
                } else if RuntimeBuilder::<IoUringDriver>::new().build().is_err() {
                    warn!("io_uring is detected but unusable here; falling back to epoll");
                    Driver::Epoll
                } else {
                    Driver::IoUring
                }
            }
        }
    }
}

/// The broker a core starts with (what crosses to its thread; a Redis link is opened there).
pub enum BrokerStart {
    /// The node's embedded broker.
    Embedded(Arc<EmbeddedBroker>),
    /// Redis: each core publishes through its own link and subscribes on another.
    Redis(RedisTarget),
}

/// What a core thread is started with.
pub struct CoreStart {
    /// The shared node.
    pub node: Arc<Node>,
    /// This core's index.
    pub id: usize,
    /// This core's `SO_REUSEPORT` listener.
    pub listener: std::net::TcpListener,
    /// This core's admin listener (`SSE_ADMIN_LISTEN`), also `SO_REUSEPORT`.
    pub admin: Option<std::net::TcpListener>,
    /// Published messages for this core (embedded broker only).
    pub inbox: Option<flume::Receiver<Message>>,
    /// Handoffs, drain, counts.
    pub control: flume::Receiver<Control>,
    /// Where the core's HTTP publishes go.
    pub broker: BrokerStart,
    /// Where the core reports that it is up, or why it is not.
    pub ready: mpsc::Sender<Result<(), StartError>>,
}

/// The body of a core's thread: pin it, build its runtime, run the core until it drained.
pub fn run_thread(start: CoreStart, driver: Driver) {
    let id = start.id;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Err(e) = monoio::utils::bind_to_cpu_set([id % cpus]) {
        warn!(core = id, error = ?e, "cannot pin core thread to a CPU");
    }
    let ready = start.ready.clone();
    let built = match driver {
        Driver::IoUring => RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(4096)
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(run(start))),
        Driver::Epoll => RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(run(start))),
    };
    if let Err(source) = built {
        let _ = ready.send(Err(StartError::Runtime { core: id, source }));
    }
}

/// Takes over the listener (it must be a listening TCP socket), reports the core ready, runs
/// it until the drain completes.
async fn run(start: CoreStart) {
    let CoreStart {
        node,
        id,
        listener,
        admin,
        inbox,
        control,
        broker,
        ready,
    } = start;
    let listeners =
        take_listener(listener).and_then(|l| Ok((l, admin.map(take_listener).transpose()?)));
    let (listener, admin) = match listeners {
        Ok(l) => l,
        Err(source) => {
            let _ = ready.send(Err(StartError::Listener { core: id, source }));
            return;
        }
    };
    let (broker, redis) = match broker {
        BrokerStart::Embedded(b) => (Broker::Embedded(b), None),
        BrokerStart::Redis(target) => {
            let durable = DurableSettings {
                history: node.config().history,
                ttl_s: node.config().history_ttl.as_secs(),
            };
            let publisher = Publisher::new(target.clone(), Some(durable), id);
            let publisher = match node.config().redis_subscribe {
                RedisSubscribe::Sharded => {
                    publisher.sharded(Rc::new(Topology::new(target.clone(), id)))
                }
                _ => publisher,
            };
            (Broker::Redis(publisher), Some(target))
        }
    };
    let shard = Rc::new(Shard::new(id, node, broker));
    if let Some(inbox) = inbox {
        monoio::spawn(inbox_loop(shard.clone(), inbox));
    }
    if let Some(target) = redis {
        let subs = shard.channel_subs();
        let patterns = shard.routes().redis_patterns(subs.is_some());
        let seed = id as u64 ^ u64::from(std::process::id()) << 16;
        let sink = Rc::new(RedisSink::new(shard.clone()));
        let channels = match &subs {
            Some(Subs::One(c)) => Some(c.clone()),
            _ => None,
        };
        if let Some(Subs::Sharded(router)) = subs {
            // One link per master of the slot map, started as the map is placed (or a
            // channel of a master not seen yet is wanted); each counts as down in the core's
            // readiness until it is subscribed.
            let (target, sink, me) = (target.clone(), sink.clone(), Rc::downgrade(&router));
            router.set_start_link(Box::new(move |master, channels| {
                let Some(router) = me.upgrade() else {
                    return;
                };
                let link_sink = Rc::new(ShardSink::new(
                    sink.clone(),
                    master.clone(),
                    channels.clone(),
                ));
                let seed = seed ^ u64::from(master.port) << 32;
                monoio::spawn(redis::shard_loop(
                    target.clone(),
                    master,
                    seed,
                    router,
                    link_sink,
                    channels,
                ));
            }));
            let backoff = Backoff::new(
                redis::BACKOFF_MIN,
                redis::SHARD_BACKOFF_MAX,
                Jitter::seeded(seed ^ 0x5107),
            );
            let me = shard.clone();
            monoio::spawn(router.follow_map(backoff, move |map| {
                me.slot_map_placed(!map.is_empty());
                if me.id() == 0 && !map.is_empty() {
                    fds::check_masters(me.config(), map.masters().len());
                }
            }));
        }
        monoio::spawn(redis::subscribe_loop(
            target, patterns, seed, id, sink, channels,
        ));
    }
    let drain_period = Rc::new(Cell::new(Duration::ZERO));
    monoio::spawn(control_loop(shard.clone(), control, drain_period.clone()));
    monoio::spawn(timer::keepalive_loop(shard.clone()));
    if id == 0 {
        monoio::spawn(status::snapshot_loop(shard.clone()));
    }
    if let Some(admin) = admin {
        let shard = shard.clone();
        monoio::spawn(async move { accept_loop(&shard, admin, Listener::Admin).await });
    }
    let _ = ready.send(Ok(()));
    drop(ready);
    accept_loop(&shard, listener, Listener::Public).await;
    timer::drain(&shard, drain_period.get()).await;
}

/// The listener on this core's runtime, once checked to be listening.
fn take_listener(listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
    if !socket2::SockRef::from(&listener).is_listener()? {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the socket is not listening (bind and listen before passing it)",
        ));
    }
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// How long a connection must have waited for its request head before a failed accept may
/// close it for room. A reconnect storm runs the node out of descriptors while it still holds
/// the old streams whose resets it has not read yet, and its newcomers, who sent their heads
/// at once, wait only because the core is busy: closing them failed 271 of 50,000 streams in
/// `bench/run-50k`'s storm (each then waited for its retry). An idle flood's sockets are older
/// than this by the time they are in anyone's way. While the core's streams are closing (a
/// storm's old streams going), nothing is closed for room at all: descriptors are coming back.
const IDLE_BEFORE_CLOSE: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` until the drain starts, each counted against the core's pending limit (the
/// oldest idle one is closed for room; with none idle the newcomer is closed at once).
///
/// A failed accept (out of descriptors: EMFILE, ENFILE; or of kernel memory) pauses this
/// core's accepting for a delay that doubles from 10 ms to 1 s while failures go on, and
/// closes the core's oldest idle connection to give a descriptor back if it has waited for
/// its head at least [`IDLE_BEFORE_CLOSE`]; the connections wait in the kernel's backlog
/// meanwhile. One warning starts an episode and one line ends it
/// with its count: with a 50 ms retry and a line per failure, 1,100 idle sockets under a
/// 1,024 limit wrote 158 lines in 4 s.
///
/// `kind` says which of the node's listeners it is (the admin one serves only the admin API).
async fn accept_loop(shard: &Rc<Shard>, listener: TcpListener, kind: Listener) {
    const FIRST_PAUSE: Duration = Duration::from_millis(10);
    const LONGEST_PAUSE: Duration = Duration::from_secs(1);
    // An episode ends at the first accept two seconds or more after its last failure (more
    // than the longest pause, so a shortage that goes on is one episode).
    const QUIET: Duration = Duration::from_secs(2);
    // The episode in progress: its failures and when the last one was.
    let mut episode: Option<(u64, Instant)> = None;
    let mut pause = FIRST_PAUSE;
    // Streams open on this core at the last failed accept: fewer now means they are closing.
    let mut open_at_failure = i64::MAX;
    loop {
        monoio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    pause = FIRST_PAUSE;
                    if let Some((failures, last)) = episode {
                        if last.elapsed() >= QUIET {
                            info!(core = shard.id(), failures, "accepting again after failed accepts");
                            episode = None;
                        }
                    }
                    bump(&shard.stats().accepted);
                    match shard.pending().enter(shard.stats()) {
                        Entry::Admitted => {
                            monoio::spawn(conn::serve::serve(shard.clone(), stream, peer, kind));
                        }
                        Entry::Refused => drop(stream),
                    }
                }
                Err(e) if is_transient(&e) => {
                    // The peer left before its connection was taken: nothing to wait for.
                    debug!(core = shard.id(), error = %e, "accept failed");
                }
                Err(e) => {
                    bump(&shard.stats().accept_errors);
                    let (failures, _) = episode.get_or_insert_with(|| {
                        warn!(core = shard.id(), error = %e, "accept failed: pausing accepts, closing idle connections (logged once until accepts succeed again)");
                        (0, Instant::now())
                    });
                    *failures += 1;
                    episode = episode.map(|(n, _)| (n, Instant::now()));
                    let open = shard.stats().open_streams();
                    if open >= open_at_failure {
                        shard
                            .pending()
                            .evict_oldest(shard.stats(), IDLE_BEFORE_CLOSE);
                    }
                    open_at_failure = open;
                    monoio::time::sleep(pause).await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
            },
            _ = shard.drain_started() => return,
        }
    }
}

/// An accept error that is about one connection, not about this process's resources.
fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM | libc::EINTR | libc::EAGAIN)
    )
}

/// Delivers what the embedded broker sends this core: one wake-up per burst, not per
/// message, yielding to the stream writers every [`DELIVER_BATCH`] messages.
async fn inbox_loop(shard: Rc<Shard>, inbox: flume::Receiver<Message>) {
    while let Ok(msg) = inbox.recv_async().await {
        shard.deliver(&msg, |_| true);
        let mut n = 1;
        while let Ok(msg) = inbox.try_recv() {
            shard.deliver(&msg, |_| true);
            n += 1;
            if n % DELIVER_BATCH == 0 {
                yield_now().await;
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
                Ok(stream) => conn::stream::start(shard.clone(), stream, h.spec),
                Err(e) => {
                    shard.handoff_failed();
                    debug!(core = shard.id(), error = %e, "handed-off socket could not be registered");
                }
            },
            Control::Drain(p) => {
                period.set(p);
                shard.start_drain();
            }
            Control::Counts(reply) => {
                let _ = reply.send(shard.topic_counts());
            }
            Control::Status(frame) => shard.status_snapshot(frame),
        }
    }
}
