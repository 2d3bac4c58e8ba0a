//! The node: what all cores share (read-only config, routes, stats, the broker, each core's
//! control channel) and the start-up that binds listeners and spawns one pinned thread per core.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use tracing::{info, warn};

use crate::broker::embedded::EmbeddedBroker;
use crate::broker::message::Message;
use crate::config::{Config, IoDriverChoice};
use crate::core::shard;
use crate::error::StartError;
use crate::route::resolve::StreamSpec;
use crate::route::table::RouteTable;
use crate::stats::Stats;

/// A message to one core from outside it.
pub enum Control {
    /// A stream parsed on another core that this core owns (player-hash sharding).
    Handoff(Handoff),
    /// Stop accepting and close streams spread over the period.
    Drain(Duration),
    /// Report subscriber counts of list families (topics) to the stats endpoint.
    Counts(flume::Sender<Vec<(String, u64)>>),
}

/// A socket moving to its owner core, with what was already decided about it.
pub struct Handoff {
    /// The client socket, detached from the accepting core's runtime.
    pub socket: std::net::TcpStream,
    /// The resolved stream request.
    pub spec: StreamSpec,
}

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
}

/// Shared by every core. Everything here is immutable after start or an atomic.
pub struct Node {
    /// The validated settings.
    pub config: Config,
    /// The route table.
    pub routes: Arc<RouteTable>,
    /// Per-core counters.
    pub stats: Stats,
    /// Where publishes go.
    pub broker: EmbeddedBroker,
    /// Each core's control channel, indexed by core id.
    pub control: Vec<flume::Sender<Control>>,
    /// Open streams across all cores, for `SSE_CONNECTION_LIMIT` and `/readyz`.
    pub open_streams: AtomicUsize,
    /// Set once SIGTERM arrives.
    pub draining: AtomicBool,
    /// Cores whose Redis subscription is live (with Redis configured, `/readyz` needs all).
    pub redis_subscribed: AtomicUsize,
    /// Identifies this run in event ids, so an id from before a restart is never taken for
    /// one of this run's.
    pub run_id: String,
}

impl Node {
    /// Counts a new stream if the node is under its limit; `false` means refuse it.
    pub fn try_open_stream(&self) -> bool {
        let limit = self.config.connection_limit;
        self.open_streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Uncounts a stream that ended (or never started).
    pub fn close_stream(&self) {
        self.open_streams.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether `/readyz` should say yes: not draining and not full.
    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Acquire)
            && self.open_streams.load(Ordering::Acquire) < self.config.connection_limit
            && self.redis_ready()
    }

    /// Whether every core holds its Redis subscription (always, without Redis).
    pub fn redis_ready(&self) -> bool {
        self.config.events_redis_storage.is_none()
            || self.redis_subscribed.load(Ordering::Acquire) == self.config.cores
    }

    /// Starts the drain on every core (idempotent).
    pub fn drain(&self, period: Duration) {
        if !self.draining.swap(true, Ordering::AcqRel) {
            info!(
                period_ms = period.as_millis() as u64,
                "draining: closing streams, then exiting"
            );
            for tx in &self.control {
                let _ = tx.send(Control::Drain(period));
            }
        }
    }
}

/// A started node: its threads and actual listen address.
pub struct Running {
    /// The node's shared state.
    pub node: Arc<Node>,
    /// The address actually bound (port 0 resolved).
    pub local_addr: SocketAddr,
    /// One thread per core.
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits for every core to finish (after a drain).
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn pick_driver(choice: IoDriverChoice) -> Driver {
    match choice {
        IoDriverChoice::Epoll => Driver::Epoll,
        IoDriverChoice::IoUring => Driver::IoUring,
        IoDriverChoice::Auto => {
            if monoio::utils::detect_uring() {
                Driver::IoUring
            } else {
                Driver::Epoll
            }
        }
    }
}

/// A short random-enough tag for this run: start time and pid mixed, base 36.
fn run_tag() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = t ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let mut s = String::new();
    let mut v = x & 0x00ff_ffff_ffff; // 40 bits: 8 chars of base 36
    for _ in 0..8 {
        let d = (v % 36) as u8;
        s.push(if d < 10 {
            (b'0' + d) as char
        } else {
            (b'a' + d - 10) as char
        });
        v /= 36;
    }
    s
}

/// Binds the listeners, spawns the cores and logs the start-up line.
pub fn start(config: Config) -> Result<Running, StartError> {
    config.validate()?;
    let routes = Arc::new(config.routes.clone());
    let cores = config.cores;
    let mut driver = pick_driver(config.io_driver);
    if driver == Driver::IoUring && config.io_driver == IoDriverChoice::Auto {
        // detect_uring can say yes where building a ring still fails (memlock limits,
        // seccomp): try once here so every core agrees on the driver.
        if RuntimeBuilder::<IoUringDriver>::new().build().is_err() {
            warn!("io_uring is detected but unusable here; falling back to epoll");
            driver = Driver::Epoll;
        }
    }
    if config.listen.port() != 0 {
        // SO_REUSEPORT would let a second gateway share a port another one already serves;
        // a plain bind first turns that into a clear "address in use".
        std::net::TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    }
    let first = bind(config.listen).map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let local_addr = first.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let mut listeners = vec![first];
    for _ in 1..cores {
        listeners.push(bind(local_addr).map_err(|source| StartError::Bind {
            addr: local_addr,
            source,
        })?);
    }
    let (msg_tx, msg_rx): (Vec<_>, Vec<_>) = (0..cores)
        .map(|_| flume::bounded::<Message>(crate::broker::embedded::INBOX))
        .unzip();
    let (ctl_tx, ctl_rx): (Vec<_>, Vec<_>) =
        (0..cores).map(|_| flume::unbounded::<Control>()).unzip();
    let broker_name = if config.events_redis_storage.is_some() {
        "redis"
    } else {
        "embedded"
    };
    let node = Arc::new(Node {
        stats: Stats::new(cores, driver.name(), broker_name),
        broker: EmbeddedBroker::new(msg_tx, routes.clone()),
        routes,
        control: ctl_tx,
        open_streams: AtomicUsize::new(0),
        draining: AtomicBool::new(false),
        redis_subscribed: AtomicUsize::new(0),
        run_id: run_tag(),
        config,
    });
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut threads = Vec::with_capacity(cores);
    for (id, ((listener, inbox), control)) in
        listeners.into_iter().zip(msg_rx).zip(ctl_rx).enumerate()
    {
        let node = node.clone();
        let t = std::thread::Builder::new()
            .name(format!("sse-core-{id}"))
            .spawn(move || {
                if let Err(e) = monoio::utils::bind_to_cpu_set([id % cpus]) {
                    warn!(core = id, error = ?e, "cannot pin core thread to a CPU");
                }
                let ctx = shard::Start {
                    node,
                    id,
                    listener,
                    inbox,
                    control,
                };
                let result = match driver {
                    Driver::IoUring => RuntimeBuilder::<IoUringDriver>::new()
                        .with_entries(4096)
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(shard::run(ctx))),
                    Driver::Epoll => RuntimeBuilder::<LegacyDriver>::new()
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(shard::run(ctx))),
                };
                if let Err(e) = result {
                    tracing::error!(core = id, error = %e, "cannot build the I/O runtime; exiting");
                    std::process::exit(1);
                }
            })
            .map_err(StartError::Thread)?;
        threads.push(t);
    }
    info!(
        listen = %local_addr,
        cores,
        connection_limit = node.config.connection_limit,
        broker = %node
            .config
            .events_redis_storage
            .as_ref()
            .map_or_else(|| broker_name.to_string(), |t| t.to_string()),
        driver = %driver.name(),
        run = %node.run_id,
        "gateway started"
    );
    Ok(Running {
        node,
        local_addr,
        threads,
    })
}
