//! The node: what every core shares. Immutable after start-up (settings, routes, the run tag,
//! each core's control channel) or atomic (stream count, drain, Redis readiness, counters).
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::config::Config;
use crate::core::event_id::EventId;
use crate::route::resolve::StreamSpec;
use crate::route::table::RouteTable;
use crate::stats::{CoreStats, Stats};

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

/// Whether the node takes new streams, and if not why (`/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Ready.
    Ready,
    /// SIGTERM started the drain.
    Draining,
    /// With Redis configured: this many of the cores have no pattern subscription.
    RedisDown {
        /// Cores without a subscription.
        down: usize,
        /// All cores.
        cores: usize,
    },
    /// `SSE_CONNECTION_LIMIT` streams are open.
    Full,
}

/// Shared by every core.
pub struct Node {
    /// The validated settings.
    config: Config,
    /// The route table.
    routes: Arc<RouteTable>,
    /// Per-core counters.
    stats: Stats,
    /// Each core's control channel, indexed by core id.
    control: Vec<flume::Sender<Control>>,
    /// Open streams across all cores, for `SSE_CONNECTION_LIMIT` and `/readyz`.
    open_streams: AtomicUsize,
    /// Set once SIGTERM arrives.
    draining: AtomicBool,
    /// Cores whose Redis subscription is live (with Redis configured, `/readyz` needs all).
    redis_subscribed: AtomicUsize,
    /// Identifies this run in event ids, so an id from before a restart is never taken for
    /// one of this run's.
    run_id: String,
}

impl Node {
    /// A node of `control.len()` cores.
    pub fn new(
        config: Config,
        routes: Arc<RouteTable>,
        stats: Stats,
        control: Vec<flume::Sender<Control>>,
        run_id: String,
    ) -> Node {
        Node {
            config,
            routes,
            stats,
            control,
            open_streams: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            redis_subscribed: AtomicUsize::new(0),
            run_id,
        }
    }

    /// The validated settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The route table, shared.
    pub fn routes_arc(&self) -> &Arc<RouteTable> {
        &self.routes
    }

    /// Every core's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Core `core`'s counters.
    pub fn core_stats(&self, core: usize) -> &CoreStats {
        &self.stats.cores[core]
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.control.len()
    }

    /// This run's tag, the first part of every event id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The core that issued `id`, when it is an id of this run naming an existing core.
    pub fn core_of_id(&self, id: &str) -> Option<usize> {
        EventId::of_run(id, &self.run_id)
            .map(|id| id.core)
            .filter(|c| *c < self.cores())
    }

    /// Sends `msg` to core `core`; `false` when that core no longer listens (it stopped).
    pub fn send(&self, core: usize, msg: Control) -> bool {
        self.control
            .get(core)
            .is_some_and(|tx| tx.send(msg).is_ok())
    }

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

    /// Whether SIGTERM started the drain.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Whether `/readyz` says yes, and if not why.
    pub fn readiness(&self) -> Readiness {
        let cores = self.cores();
        let subscribed = self.redis_subscribed.load(Ordering::Acquire);
        if self.draining() {
            Readiness::Draining
        } else if self.config.events_redis_storage.is_some() && subscribed != cores {
            Readiness::RedisDown {
                down: cores.saturating_sub(subscribed),
                cores,
            }
        } else if self.open_streams.load(Ordering::Acquire) >= self.config.connection_limit {
            Readiness::Full
        } else {
            Readiness::Ready
        }
    }

    /// A core's Redis subscription came up (`true`) or went down (`false`).
    pub fn redis_subscription(&self, up: bool) {
        if up {
            self.redis_subscribed.fetch_add(1, Ordering::AcqRel);
        } else {
            self.redis_subscribed.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Starts the drain on every core (idempotent); `false` when it had started already.
    pub fn drain(&self, period: Duration) -> bool {
        if self.draining.swap(true, Ordering::AcqRel) {
            return false;
        }
        info!(
            period_ms = period.as_millis() as u64,
            "draining: closing streams, then exiting"
        );
        for core in 0..self.cores() {
            self.send(core, Control::Drain(period));
        }
        true
    }
}
