//! File descriptors: the soft open-file limit raised to the hard one at start-up, checked
//! against what the settings may open, and the pending limit derived from it.
//!
//! Why at start-up: a process that runs out of descriptors fails where it cannot say why
//! (an accept, a Redis reconnect); one line at start naming the limit and what the settings
//! need says what to fix (`LimitNOFILE=` in systemd, `ulimit -Hn`, the container's
//! `nofile`). Many distributions start services with a soft limit of 1,024 and a hard limit
//! of 524,288 or more: the soft one is ours to raise.
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::warn;

use crate::broker::target::MAX_SEEDS;
use crate::config::{Config, RedisSubscribe};

/// Descriptors every process holds whatever the settings: stdin, stdout, stderr, and room for
/// the odd file (the config file while read, `/proc` reads, the signal pipe, the allocator).
const PROCESS_FDS: u64 = 32;

/// Most non-stream connections the default `SSE_PENDING_LIMIT` allows a node: at 16,384
/// idle connections a core pair spends about 40 MB on their request buffers, and honest
/// clients never need as many waiting at once.
const MAX_AUTO_PENDING: u64 = 16_384;

/// The default pending limit where the open-file limit cannot be read.
const UNKNOWN_LIMIT_PENDING: usize = 1_024;

/// Whether [`check_masters`] warned (once per process).
static MASTERS_WARNED: AtomicBool = AtomicBool::new(false);

/// The open-file limits after start-up, and what the settings need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// The soft limit in force (after raising it).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
    /// Descriptors the node holds besides connections: per core its listener, its ring or
    /// epoll instance and its wake-up eventfd, with Redis its subscriber and publisher links
    /// (and one more while a link reconnects), in sharded mode per master a subscriber and a
    /// publisher link (and one more while either reconnects) and the connection that fetches
    /// the slot map; plus [`PROCESS_FDS`].
    pub headroom: u64,
}

impl FdBudget {
    /// The headroom for `cores` cores, with or without Redis, with links to `masters` shard
    /// masters per core (0 outside sharded mode).
    pub fn headroom(cores: usize, redis: bool, masters: u64) -> u64 {
        let shards = if masters > 0 { 3 * masters + 1 } else { 0 };
        let per_core = 3 + if redis { 3 } else { 0 } + shards;
        PROCESS_FDS + cores as u64 * per_core
    }

    /// The masters the start-up headroom assumes: in sharded mode one per node listed in
    /// `EVENTS_REDIS_STORAGE` (at most [`MAX_SEEDS`], 64, as the setting allows); 0
    /// otherwise.
    ///
    /// Why this bound: the slot map is not known before the cores run, and a list naming
    /// every master, or every node, holds at least the masters; a list of a few seeds of a
    /// larger cluster does not, and that is what [`check_masters`] catches when the map
    /// arrives (one warning naming the numbers). Assuming the most a cluster may have
    /// (`cluster::MAX_MASTERS`, 1,000) would take 3,000 descriptors a core from the default
    /// pending limit for links that almost never exist.
    pub fn assumed_masters(config: &Config) -> u64 {
        match &config.events_redis_storage {
            Some(t) if config.redis_subscribe == RedisSubscribe::Sharded => {
                t.seeds.len().clamp(1, MAX_SEEDS) as u64
            }
            _ => 0,
        }
    }

    /// The default pending limit: a quarter of the descriptors left after the headroom, so
    /// streams keep three quarters, at most [`MAX_AUTO_PENDING`] and at least one per core.
    pub fn auto_pending(&self, cores: usize) -> usize {
        let room = self.soft.saturating_sub(self.headroom) / 4;
        room.clamp(cores as u64, MAX_AUTO_PENDING.max(cores as u64)) as usize
    }

    /// What the settings may open at once: every stream, every pending connection, the
    /// headroom.
    pub fn needed(&self, config: &Config) -> u64 {
        (config.connection_limit + config.pending_limit) as u64 + self.headroom
    }
}

/// The open-file limits in force (soft, hard); `None` where they cannot be read.
fn nofile() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the struct we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    Some(lim)
}

/// Raises the soft open-file limit to the hard one (where the kernel takes it); the limits in
/// force after. `None`: they cannot be read (not on Linux, or a sandbox forbids it).
fn raise_nofile() -> Option<(u64, u64)> {
    let mut lim = nofile()?;
    if lim.rlim_cur < lim.rlim_max {
        // An unlimited hard limit is refused above `fs.nr_open`: try that value then.
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        for want in [Some(lim.rlim_max), nr_open].into_iter().flatten() {
            let raised = libc::rlimit {
                rlim_cur: want.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit(2) reads the struct we own and pass by pointer.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim.rlim_cur = raised.rlim_cur;
                break;
            }
        }
    }
    Some((lim.rlim_cur, lim.rlim_max))
}

/// At start-up: raises the soft limit, resolves `SSE_PENDING_LIMIT=0` from it, and warns
/// once, naming both numbers, when the limit cannot hold what the settings may open.
pub fn prepare(config: &mut Config) -> Option<FdBudget> {
    let Some((soft, hard)) = raise_nofile() else {
        if config.pending_limit == 0 {
            config.pending_limit = UNKNOWN_LIMIT_PENDING;
        }
        return None;
    };
    let redis = config.events_redis_storage.is_some();
    let masters = FdBudget::assumed_masters(config);
    let budget = FdBudget {
        soft,
        hard,
        headroom: FdBudget::headroom(config.cores, redis, masters),
    };
    if config.pending_limit == 0 {
        config.pending_limit = budget.auto_pending(config.cores);
    }
    let needed = budget.needed(config);
    if soft < needed {
        warn!(
            open_file_limit = soft,
            hard_limit = hard,
            needed,
            connection_limit = config.connection_limit,
            pending_limit = config.pending_limit,
            headroom = budget.headroom,
            "the open-file limit {soft} cannot hold SSE_CONNECTION_LIMIT + SSE_PENDING_LIMIT + \
             headroom = {needed}: accepts will fail before the connection limit is reached; \
             raise the hard limit (systemd LimitNOFILE=, ulimit -Hn, the container's nofile) \
             or lower SSE_CONNECTION_LIMIT"
        );
    }
    Some(budget)
}

/// Sharded mode, once the slot map is known (called by one core, on every map it places):
/// when the map names more masters than the start-up check assumed and the open-file limit
/// cannot hold what the settings may open with links to all of them, warns once, naming the
/// numbers. Nothing is resized at run time: the pending limit stays what start-up made it.
pub fn check_masters(config: &Config, masters: usize) {
    let masters = masters as u64;
    if masters <= FdBudget::assumed_masters(config) || MASTERS_WARNED.load(Ordering::Relaxed) {
        return;
    }
    let Some(lim) = nofile() else {
        return;
    };
    let budget = FdBudget {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
        headroom: FdBudget::headroom(config.cores, true, masters),
    };
    let needed = budget.needed(config);
    if budget.soft < needed && !MASTERS_WARNED.swap(true, Ordering::Relaxed) {
        let soft = budget.soft;
        warn!(
            open_file_limit = soft,
            needed,
            masters,
            assumed_masters = FdBudget::assumed_masters(config),
            headroom = budget.headroom,
            "the Redis Cluster has {masters} masters, more than EVENTS_REDIS_STORAGE lists: \
             with a subscriber and a publisher link to each per core, the open-file limit \
             {soft} cannot hold SSE_CONNECTION_LIMIT + SSE_PENDING_LIMIT + headroom = {needed}; \
             raise the hard limit or list every master"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pending_limit_follows_the_descriptors() {
        #[rustfmt::skip]
        let cases: &[(u64, usize, bool, usize)] = &[
            // (soft limit, cores, Redis, default pending limit)
            (1_024, 2, false, (1_024 - 38) / 4),
            (1_024, 4, true, (1_024 - 56) / 4),
            (1_048_576, 2, true, 16_384),
            (40, 2, false, 2), // less than the headroom: one per core
        ];
        for &(soft, cores, redis, want) in cases {
            let budget = FdBudget {
                soft,
                hard: soft,
                headroom: FdBudget::headroom(cores, redis, 0),
            };
            assert_eq!(budget.auto_pending(cores), want, "{soft} {cores} {redis}");
        }
    }

    #[test]
    fn shard_links_are_in_the_headroom() {
        use crate::broker::target::parse;
        let config = |list: &str, mode: RedisSubscribe| Config {
            cores: 4,
            events_redis_storage: Some(parse(list).expect("a list")),
            redis_subscribe: mode,
            ..Config::default()
        };
        let many: Vec<String> = (0..64).map(|i| format!("10.0.0.{i}:6379")).collect();
        let many = many.join(",");
        #[rustfmt::skip]
        let cases: &[(&str, RedisSubscribe, u64)] = &[
            // (EVENTS_REDIS_STORAGE, mode, masters assumed)
            ("h1:7000,h2:7001,h3:7002", RedisSubscribe::Sharded, 3),
            ("redis://one:6379", RedisSubscribe::Sharded, 1),   // one Redis 7: every slot on it
            (&many, RedisSubscribe::Sharded, 64),                // the longest list allowed
            ("h1:7000,h2:7001,h3:7002", RedisSubscribe::Channel, 0),
            ("h1:7000,h2:7001,h3:7002", RedisSubscribe::Pattern, 0),
        ];
        for (list, mode, masters) in cases {
            let c = config(list, *mode);
            assert_eq!(FdBudget::assumed_masters(&c), *masters, "{list} {mode:?}");
        }
        assert_eq!(FdBudget::assumed_masters(&Config::default()), 0);
        // Per core: listener, ring, eventfd; pattern subscriber, publisher, one reconnecting;
        // per master a subscriber, a publisher and one reconnecting; the slot map's fetch.
        assert_eq!(FdBudget::headroom(4, true, 0), 32 + 4 * 6);
        assert_eq!(FdBudget::headroom(4, true, 3), 32 + 4 * (6 + 3 * 3 + 1));
        assert_eq!(FdBudget::headroom(64, true, 64), 32 + 64 * (6 + 64 * 3 + 1));
        // The default pending limit leaves them their room.
        let budget = FdBudget {
            soft: 1_024,
            hard: 1_024,
            headroom: FdBudget::headroom(2, true, 3),
        };
        assert_eq!(budget.auto_pending(2), (1_024 - (32 + 2 * 16)) / 4);
    }
}
