//! Start-up with a handshake: every core reports that its runtime and listener are up, or
//! why not, before "gateway started" is logged; a core that fails stops the others and the
//! start returns its [`StartError`].
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{info, warn};

use crate::broker::embedded::{EmbeddedBroker, INBOX};
use crate::broker::message::Message;
use crate::config::Config;
use crate::core::node::{Control, Node};
use crate::error::StartError;
use crate::server::fds;
use crate::server::worker::{self, BrokerStart, CoreStart, Driver};
use crate::stats::Stats;
use crate::util::jitter::Jitter;

/// A started node: its threads and actual listen address.
pub struct Running {
    /// The node's shared state.
    node: Arc<Node>,
    /// The address actually bound (port 0 resolved).
    local_addr: SocketAddr,
    /// The admin listener's address, when `SSE_ADMIN_LISTEN` is set (port 0 resolved).
    admin_addr: Option<SocketAddr>,
    /// One thread per core.
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// The node's shared state (to start the drain).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the admin listener, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Waits for every core to finish (after a drain).
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Binds `cores` listeners on `addr` with `SO_REUSEPORT` (the kernel spreads connections
/// over them), all on the port the first one got when `addr`'s port is 0.
pub fn bind(addr: SocketAddr, cores: usize) -> Result<Vec<std::net::TcpListener>, StartError> {
    bind_for(addr, cores, "SSE_LISTEN / --listen")
}

/// [`bind`], naming `setting` in its error.
fn bind_for(
    addr: SocketAddr,
    cores: usize,
    setting: &'static str,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    let bind_error = |addr, source| StartError::Bind {
        addr,
        setting,
        source,
    };
    if addr.port() != 0 {
        // SO_REUSEPORT would let a second gateway share a port another one already serves;
        // a plain bind first turns that into a clear "address in use".
        std::net::TcpListener::bind(addr).map_err(|e| bind_error(addr, e))?;
    }
    let first = bind_one(addr).map_err(|e| bind_error(addr, e))?;
    let local = first.local_addr().map_err(|e| bind_error(addr, e))?;
    let mut listeners = vec![first];
    for _ in 1..cores {
        listeners.push(bind_one(local).map_err(|e| bind_error(local, e))?);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Binds `config.listen` with one listener per core and starts the node on them.
pub fn start(config: Config) -> Result<Running, StartError> {
    let listeners = bind(config.listen, config.cores)?;
    start_on(listeners, config)
}

/// Starts the node on `listeners`, one per core (their number overrides `config.cores`):
/// tests pass listeners bound to port 0. With `SSE_ADMIN_LISTEN` set, binds its listeners
/// here too, one per core like the public ones (see docs/ARCHITECTURE.md, "The admin
/// listener"). Returns once every core is up, or with the first core's [`StartError`] after
/// stopping the others.
pub fn start_on(
    listeners: Vec<std::net::TcpListener>,
    mut config: Config,
) -> Result<Running, StartError> {
    config.cores = listeners.len();
    config.validate()?;
    let fds = fds::prepare(&mut config);
    let routes = Arc::new(config.routes.clone());
    let local_addr = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .ok_or_else(|| {
            StartError::Config(crate::config::ConfigError::Invalid {
                setting: "SSE_LISTEN",
                value: config.listen.to_string(),
                reason: "no listener to serve on".into(),
                file: None,
            })
        })?;
    let cores = config.cores;
    let admin = match config.admin_listen {
        Some(addr) => bind_for(addr, cores, "SSE_ADMIN_LISTEN / --admin-listen")?,
        None => Vec::new(),
    };
    let admin_addr = admin.first().and_then(|l| l.local_addr().ok());
    let mut admin = admin.into_iter();
    let driver = Driver::pick(config.io_driver);
    let redis = config.events_redis_storage.clone();
    // Without Redis, HTTP publishes reach the cores through bounded inboxes; with Redis,
    // every message arrives through each core's own subscription, and there are none.
    let (inboxes, brokers): (Vec<_>, Vec<_>) = match &redis {
        None => {
            let (tx, rx): (Vec<_>, Vec<_>) =
                (0..cores).map(|_| flume::bounded::<Message>(INBOX)).unzip();
            let broker = Arc::new(EmbeddedBroker::new(tx, routes.clone()));
            rx.into_iter()
                .map(|rx| (Some(rx), BrokerStart::Embedded(broker.clone())))
                .unzip()
        }
        Some(target) => (0..cores)
            .map(|_| (None, BrokerStart::Redis(target.clone())))
            .unzip(),
    };
    let (ctl_tx, ctl_rx): (Vec<_>, Vec<_>) =
        (0..cores).map(|_| flume::unbounded::<Control>()).unzip();
    let broker_name = if redis.is_some() { "redis" } else { "embedded" };
    let node = Arc::new(Node::new(
        config,
        routes,
        Stats::new(cores, driver.name(), broker_name),
        ctl_tx,
        run_tag(),
    ));
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::with_capacity(cores);
    let per_core = listeners.into_iter().zip(inboxes).zip(brokers).zip(ctl_rx);
    for (id, (((listener, inbox), broker), control)) in per_core.enumerate() {
        let start = CoreStart {
            node: node.clone(),
            id,
            listener,
            admin: admin.next(),
            inbox,
            control,
            broker,
            ready: ready_tx.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("sse-core-{id}"))
            .spawn(move || worker::run_thread(start, driver));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => return Err(stop(&node, threads, StartError::Thread(e))),
        }
    }
    drop(ready_tx);
    for _ in 0..cores {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(stop(&node, threads, e)),
            // Every core thread ended without a word: it panicked.
            Err(_) => {
                let e = StartError::Thread(std::io::Error::other("a core thread died at start"));
                return Err(stop(&node, threads, e));
            }
        }
    }
    info!(
        listen = %local_addr,
        admin_listen = %admin_addr.map_or_else(|| "-".to_string(), |a| a.to_string()),
        cores,
        connection_limit = node.config().connection_limit,
        pending_limit = node.config().pending_limit,
        open_file_limit = fds.map_or(0, |f| f.soft),
        broker = %node
            .config()
            .events_redis_storage
            .as_ref()
            .map_or_else(|| broker_name.to_string(), |t| t.to_string()),
        driver = %driver.name(),
        run = %node.run_id(),
        "gateway started"
    );
    if let Some(off) = node.config().families_off() {
        info!("{off}");
    }
    if let Some(warning) = node.config().exposure_warning_at(local_addr, admin_addr) {
        warn!("{warning}");
    }
    Ok(Running {
        node,
        local_addr,
        admin_addr,
        threads,
    })
}

/// Stops the cores that did start, waits for them, and gives back `why`.
fn stop(node: &Node, threads: Vec<JoinHandle<()>>, why: StartError) -> StartError {
    for core in 0..node.cores() {
        node.send(core, Control::Drain(Duration::ZERO));
    }
    for t in threads {
        let _ = t.join();
    }
    why
}

/// A short random-enough tag for this run: 8 characters of base 36 (start time and pid).
fn run_tag() -> String {
    let mut v = Jitter::new(u64::MAX).next_u64() & 0x00ff_ffff_ffff; // 40 bits
    let mut s = String::with_capacity(8);
    for _ in 0..8 {
        let d = (v % 36) as u32;
        s.push(char::from_digit(d, 36).unwrap_or('0'));
        v /= 36;
    }
    s
}
