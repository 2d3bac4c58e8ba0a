//! The node: what every core shares. Immutable after start-up (settings, routes, the run tag,
//! each core's control channel) or atomic (stream count, drain, Redis readiness, counters).
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::info;

use crate::config::Config;
use crate::core::event_id::EventId;
use crate::route::resolve::StreamSpec;
use crate::route::table::RouteTable;
use crate::stats::{CoreStats, Stats, TopicCounts};

/// A message to one core from outside it.
pub enum Control {
    /// A stream parsed on another core that this core owns (player-hash sharding).
    Handoff(Handoff),
    /// Stop accepting and close streams spread over the period.
    Drain(Duration),
    /// Report subscriber counts of list families (topics) to the stats endpoint.
    Counts(flume::Sender<TopicCounts>),
    /// The node's newest status snapshot (one SSE event, encoded once), for this core's
    /// status page viewers.
    Status(Bytes),
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
    /// Sharded mode, every pattern link up: this many of the cores have a link to a master
    /// of the slot map that is not subscribed (never yet, or lost and not back), or no slot
    /// map yet. Their channels of that master cannot be served, and a load balancer cannot
    /// tell which channels a client will ask for (see `broker::sharded`).
    ShardsDown {
        /// Cores with a shard link down, or without a map.
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
    /// Sharded mode: cores with a shard link not subscribed, or no slot map yet (`/readyz`
    /// needs none).
    shards_waiting: AtomicUsize,
    /// Status page streams open across all cores, for `SSE_STATUS_VIEWERS`.
    status_viewers: AtomicUsize,
    /// Identifies this run in event ids, so an id from before a restart is never taken for
    /// one of this run's.
    run_id: String,
    /// The newest sequence number each core has given out (in an event id or a reset's fresh
    /// id), indexed by core: a `Last-Event-ID` names its core only if that core really gave
    /// it out, so a client cannot pick its core by writing one (seen: 200 streams with forged
    /// ids all on core 1). One store per delivered message on the owning core's thread.
    issued: Vec<AtomicU64>,
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
        let cores = control.len();
        Node {
            config,
            routes,
            stats,
            control,
            open_streams: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            redis_subscribed: AtomicUsize::new(0),
            shards_waiting: AtomicUsize::new(0),
            status_viewers: AtomicUsize::new(0),
            run_id,
            issued: (0..cores).map(|_| AtomicU64::new(0)).collect(),
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

    /// The core that issued `id`: an id of this run, naming an existing core, whose
    /// sequence number that core has given out (1 up to its newest). Anything else (a forged
    /// or future id) names no core, and the stream is placed as if it had no id.
    pub fn core_of_id(&self, id: &str) -> Option<usize> {
        let id = EventId::of_run(id, &self.run_id)?;
        let newest = self.issued.get(id.core)?.load(Ordering::Acquire);
        (1..=newest).contains(&id.seq).then_some(id.core)
    }

    /// Core `core` has given out sequence numbers up to `seq` (called by that core only,
    /// before any id up to `seq` can reach a client).
    pub fn note_issued(&self, core: usize, seq: u64) {
        if let Some(n) = self.issued.get(core) {
            n.store(seq, Ordering::Release);
        }
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

    /// Counts a new status page viewer if the node is under `SSE_STATUS_VIEWERS`; `false`
    /// means refuse it.
    pub fn try_open_viewer(&self) -> bool {
        let limit = self.config.status_viewers;
        self.status_viewers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Uncounts a status page viewer that left.
    pub fn close_viewer(&self) {
        self.status_viewers.fetch_sub(1, Ordering::AcqRel);
    }

    /// Status page viewers open on the node.
    pub fn viewers(&self) -> usize {
        self.status_viewers.load(Ordering::Acquire)
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
        } else if let down @ 1.. = self.shards_waiting.load(Ordering::Acquire) {
            Readiness::ShardsDown { down, cores }
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

    /// Sharded mode: a core now waits for a shard link or the slot map (`true`), or no longer
    /// does (`false`).
    pub fn shards_waiting(&self, waiting: bool) {
        if waiting {
            self.shards_waiting.fetch_add(1, Ordering::AcqRel);
        } else {
            self.shards_waiting.fetch_sub(1, Ordering::AcqRel);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_core_only_once_that_core_gave_it_out() {
        let (control, _rx): (Vec<_>, Vec<_>) = (0..2).map(|_| flume::unbounded()).unzip();
        let node = Node::new(
            Config::default(),
            Arc::new(RouteTable::builtin()),
            Stats::new(2, "epoll", "embedded"),
            control,
            "run".into(),
        );
        node.note_issued(1, 5);
        #[rustfmt::skip]
        let cases: &[(&str, Option<usize>)] = &[
            ("run.1.1", Some(1)),
            ("run.1.5", Some(1)),
            ("run.1.6", None),         // not given out yet: forged
            ("run.1.999999", None),
            ("run.1.0", None),         // never given out
            ("run.0.1", None),         // core 0 has given out nothing
            ("run.2.1", None),         // no such core
            ("old.1.3", None),         // another run
            ("garbage", None),
        ];
        for (id, want) in cases {
            assert_eq!(node.core_of_id(id), *want, "{id}");
        }
        node.note_issued(0, 1);
        assert_eq!(node.core_of_id("run.0.1"), Some(0));
    }
}
