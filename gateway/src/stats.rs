//! Per-core counters and delivery-latency histograms, rendered as JSON and Prometheus text.
//!
//! Each core owns one [`CoreStats`] and is its only writer, so every update is an uncontended
//! `Relaxed` atomic add on a cache line no other core writes (a few ns). The stats endpoint,
//! on whichever core answers it, reads all cores' counters: a read-only crossing that needs no
//! channel round trip and cannot slow the writers.
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How many route families stats can tell apart (the route table is checked against it).
pub const ROUTE_SLOTS: usize = 16;

/// Buckets of the log-linear histogram: 4 sub-buckets per power of two of microseconds,
/// which bounds the relative error of a quantile to 25% from 4 us up to about 10^12 us.
const BUCKETS: usize = 160;

/// A lock-free log-linear histogram of durations in microseconds.
///
/// Cheap enough to record every delivered event (one `leading_zeros` and two adds) so
/// operators see delivery latency without running a load generator.
pub struct Histogram {
    /// Counts per bucket; see [`Histogram::bucket_of`].
    buckets: [AtomicU64; BUCKETS],
    /// Sum of all recorded values, for Prometheus `_sum` and the mean.
    sum_us: AtomicU64,
    /// Number of recorded values.
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// The bucket a value falls in: values below 4 us have their own bucket, above that each
    /// power of two is split into 4.
    pub fn bucket_of(us: u64) -> usize {
        if us < 4 {
            return us as usize;
        }
        let p = 63 - us.leading_zeros() as usize; // p >= 2
        let sub = ((us >> (p - 2)) & 3) as usize;
        (4 * (p - 1) + sub).min(BUCKETS - 1)
    }

    /// The exclusive upper bound in microseconds of bucket `i`.
    pub fn upper_bound(i: usize) -> u64 {
        let j = i + 1;
        if j < 4 {
            return j as u64;
        }
        let p = j / 4 + 1;
        let sub = (j % 4) as u64;
        (4 + sub) << (p - 2)
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[Self::bucket_of(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy of the counts for rendering (each counter read once).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum_us: self.sum_us.load(Relaxed),
            count: self.count.load(Relaxed),
        }
    }
}

/// A plain copy of a histogram, mergeable across cores.
#[derive(Clone)]
pub struct HistogramSnapshot {
    /// Counts per bucket.
    pub buckets: [u64; BUCKETS],
    /// Sum of values in microseconds.
    pub sum_us: u64,
    /// Number of values.
    pub count: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            buckets: [0; BUCKETS],
            sum_us: 0,
            count: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Adds another core's counts.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum_us += other.sum_us;
        self.count += other.count;
    }

    /// The `q` quantile (0..=1) in microseconds, as the upper bound of its bucket; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Histogram::upper_bound(i);
            }
        }
        Histogram::upper_bound(BUCKETS - 1)
    }

    /// How many values are below `le_us` (counting whole buckets whose upper bound is <= it).
    pub fn count_le(&self, le_us: u64) -> u64 {
        self.buckets
            .iter()
            .enumerate()
            .take_while(|(i, _)| Histogram::upper_bound(*i) <= le_us)
            .map(|(_, c)| c)
            .sum()
    }
}

/// Counters of one core. Written only by that core.
#[derive(Default)]
pub struct CoreStats {
    /// TCP connections accepted by this core's listener.
    pub accepted: AtomicU64,
    /// Streams open on this core, per route family slot.
    pub streams_open: [AtomicI64; ROUTE_SLOTS],
    /// Streams handed to another core after parsing (player-hash sharding).
    pub handoffs_out: AtomicU64,
    /// Messages that reached this core from the broker.
    pub events_received: AtomicU64,
    /// Event frames written to client sockets (one per subscriber per event).
    pub events_delivered: AtomicU64,
    /// Messages dropped because the payload failed the family's validation.
    pub events_invalid: AtomicU64,
    /// Messages on a channel no route family claims.
    pub events_unrouted: AtomicU64,
    /// Slow consumers cut because their queue reached `SSE_EVENT_BUFFER`.
    pub slow_consumers_cut: AtomicU64,
    /// Streams cut because one write to them took longer than `SSE_WRITE_TIMEOUT`.
    pub write_timeouts: AtomicU64,
    /// Events that replaced a conflating stream's full queue (its older events dropped).
    pub events_conflated: AtomicU64,
    /// Stream requests refused because the node was at `SSE_CONNECTION_LIMIT`.
    pub rejected_limit: AtomicU64,
    /// Channels held by this core (gauge, refreshed every keep-alive tick).
    pub channels: AtomicU64,
    /// Channels without a stream evicted because the core was at `SSE_CHANNEL_LIMIT`.
    pub channels_evicted: AtomicU64,
    /// Bytes of events held in this core's channel histories (gauge, refreshed every tick).
    pub history_bytes: AtomicU64,
    /// Events trimmed from history because the core was at `SSE_HISTORY_BYTES`.
    pub history_trimmed: AtomicU64,
    /// Streams refused because they needed a channel beyond `SSE_CHANNEL_LIMIT` and every
    /// channel had a live stream.
    pub rejected_channel_limit: AtomicU64,
    /// Connections closed because no complete request head arrived in time.
    pub head_timeouts: AtomicU64,
    /// HTTP requests answered with a 4xx or 5xx status.
    pub http_errors: AtomicU64,
    /// Event publishes accepted over HTTP on this core.
    pub publishes: AtomicU64,
    /// Reconnects with `Last-Event-ID` that got the events they missed replayed.
    pub resumes: AtomicU64,
    /// Reconnects with `Last-Event-ID` that got a reset (history did not reach back).
    pub resets: AtomicU64,
    /// Of `resets`: those because the replay would have exceeded `SSE_REPLAY_LIMIT`.
    pub resets_replay_limit: AtomicU64,
    /// Resumes from a durable id this node's memory could not answer, read from Redis's
    /// history (`FCALL_RO ssegw_read`): what a reconnect storm costs Redis.
    pub resume_redis_reads: AtomicU64,
    /// Of those, the ones that first waited for one of the core's `SSE_RESUME_READS`.
    pub resume_redis_waits: AtomicU64,
    /// Resumes that needed Redis's history and could not read it (unreachable, timed out,
    /// no `ssegw` library, or the wait for a read took too long): a reset.
    pub resume_redis_failed: AtomicU64,
    /// 1 while this core's Redis subscription is live (gauge): its pattern link, and in
    /// sharded mode a subscribed link to every master of the slot map.
    pub redis_up: AtomicU64,
    /// Times this core's Redis subscription was lost.
    pub redis_disconnects: AtomicU64,
    /// Milliseconds this core spent without a Redis subscription after having one (messages
    /// published meanwhile are lost to Redis pub/sub itself).
    pub redis_outage_ms: AtomicU64,
    /// Messages and frames from Redis dropped before delivery (over the size or nesting
    /// limits, malformed messages).
    pub redis_dropped: AtomicU64,
    /// Streams refused because this core's Redis subscription was down.
    pub rejected_redis: AtomicU64,
    /// HTTP publishes refused because Redis was unreachable.
    pub publish_failed: AtomicU64,
    /// Non-stream connections open on this core: heads in progress, API answers, idle
    /// keep-alive connections (gauge, kept by `core::pending`).
    pub pending: AtomicU64,
    /// Idle non-stream connections closed to make room for a new one (at the pending limit,
    /// or when the process ran out of descriptors).
    pub pending_evicted: AtomicU64,
    /// New connections closed at once: at the pending limit with none idle to close.
    pub pending_refused: AtomicU64,
    /// Accepts that failed (EMFILE, ENFILE, ENOBUFS...); each pauses this core's accepting.
    pub accept_errors: AtomicU64,
    /// Stats and metrics answers being rendered or written on this core (gauge).
    pub queries_in_flight: AtomicU64,
    /// Stats and metrics requests answered `503` because too many were in flight here.
    pub queries_refused: AtomicU64,
    /// Status page streams (`/status/stream`) open on this core (gauge); the core that takes
    /// the node's snapshot sends it only to cores where this is above 0.
    pub status_viewers: AtomicU64,
    /// Status page streams answered `503` because `SSE_STATUS_VIEWERS` were open.
    pub status_refused: AtomicU64,
    /// HTTP publishes answered `504`: written to Redis, no answer in time (outcome unknown).
    pub publish_unknown: AtomicU64,
    /// Redis links dropped because Redis sent bytes we refuse (malformed, nested too deep,
    /// over a size bound).
    pub redis_protocol_errors: AtomicU64,
    /// Channels this core holds subscribed one by one on Redis, confirmed
    /// (`SSE_REDIS_SUBSCRIBE=channel`; gauge, refreshed with the channel figures).
    pub redis_channels: AtomicU64,
    /// `SUBSCRIBE` commands sent by this core (each names up to 1,024 channels).
    pub redis_subscribe_commands: AtomicU64,
    /// Channels named in them.
    pub redis_subscribe_channels: AtomicU64,
    /// `UNSUBSCRIBE` commands sent by this core.
    pub redis_unsubscribe_commands: AtomicU64,
    /// Channels named in them.
    pub redis_unsubscribe_channels: AtomicU64,
    /// Streams that waited for Redis to confirm their channel's subscription before opening.
    pub redis_subscribe_waits: AtomicU64,
    /// Of those, the ones refused because no confirmation came in time.
    pub redis_subscribe_timeouts: AtomicU64,
    /// Sharded mode: shard links of this core whose live subscription was lost, or whose
    /// first one could not be made.
    pub redis_shard_outages: AtomicU64,
    /// Of those outages, the ones that ended with the channels on another master (a
    /// failover, or their slots moved).
    pub redis_shard_failovers: AtomicU64,
    /// Milliseconds from a shard link's loss until its channels were subscribed again
    /// (summed over outages; events published to them meanwhile are lost).
    pub redis_shard_outage_ms: AtomicU64,
    /// Channels the shard outages left unsubscribed (summed over outages).
    pub redis_shard_outage_channels: AtomicU64,
    /// Time from an event's arrival at the gateway to its write to each socket, per family.
    pub latency: [Histogram; ROUTE_SLOTS],
}

impl CoreStats {
    /// Streams open on this core, all routes together.
    pub fn open_streams(&self) -> i64 {
        self.streams_open.iter().map(|a| a.load(Relaxed)).sum()
    }
}

/// Adds one to a counter (the only way counters are written, so the ordering lives in one place).
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// The node's stats: one block per core plus what is fixed at start-up.
pub struct Stats {
    /// One block per core, indexed by core id.
    pub cores: Box<[CoreStats]>,
    /// When the node started, for `uptime`.
    pub started: Instant,
    /// The I/O driver in use: `io_uring` or `epoll`.
    pub driver: &'static str,
    /// The broker in use: `embedded` or `redis`.
    pub broker: &'static str,
}

impl Stats {
    /// Fresh zeroed stats for `cores` cores.
    pub fn new(cores: usize, driver: &'static str, broker: &'static str) -> Stats {
        Stats {
            cores: (0..cores).map(|_| CoreStats::default()).collect(),
            started: Instant::now(),
            driver,
            broker,
        }
    }

    fn sum(&self, f: impl Fn(&CoreStats) -> &AtomicU64) -> u64 {
        self.cores.iter().map(|c| f(c).load(Relaxed)).sum()
    }

    fn open_route(&self, slot: usize) -> i64 {
        self.cores
            .iter()
            .map(|c| c.streams_open[slot].load(Relaxed))
            .sum()
    }

    fn latency(&self, slot: usize) -> HistogramSnapshot {
        let mut h = HistogramSnapshot::default();
        for c in self.cores.iter() {
            h.merge(&c.latency[slot].snapshot());
        }
        h
    }

    fn figure(&self, source: Source) -> u64 {
        match source {
            Source::One(f) => self.sum(f),
            Source::Sum(f, g) => self.sum(f) + self.sum(g),
        }
    }

    /// `GET /api/v1/events/stats`: connections (total, per core, per route), events, cuts,
    /// rejections, latency quantiles per route, uptime.
    pub fn render_json(&self, routes: &[&str], extra: &NodeGauges) -> String {
        let mut s = String::with_capacity(2048);
        let total: i64 = self.cores.iter().map(CoreStats::open_streams).sum();
        let _ = write!(
            s,
            "{{\"uptime_seconds\":{},\"driver\":\"{}\",\"broker\":\"{}\",\"draining\":{},",
            self.started.elapsed().as_secs(),
            self.driver,
            self.broker,
            extra.draining
        );
        let _ = write!(
            s,
            "\"connections\":{{\"total\":{total},\"limit\":{},\"per_core\":[",
            extra.connection_limit
        );
        for (i, c) in self.cores.iter().enumerate() {
            let _ = write!(s, "{}{}", if i > 0 { "," } else { "" }, c.open_streams());
        }
        s.push_str("],\"per_route\":{");
        for (i, name) in routes.iter().enumerate() {
            let _ = write!(
                s,
                "{}\"{}\":{}",
                if i > 0 { "," } else { "" },
                name,
                self.open_route(i)
            );
        }
        let _ = write!(
            s,
            "}},\"pending\":{},\"pending_limit\":{}",
            self.sum(|c| &c.pending),
            extra.pending_limit
        );
        if let Some(d) = extra.descriptors {
            if let Some(open) = d.open {
                let _ = write!(s, ",\"open_files\":{open}");
            }
            let _ = write!(s, ",\"open_files_limit\":{}", d.limit);
        }
        s.push_str("},\"topics\":{");
        for (i, (topic, n)) in extra.topics.top.iter().enumerate() {
            let _ = write!(s, "{}\"{}\":{}", if i > 0 { "," } else { "" }, topic, n);
        }
        if extra.topics.other_topics > 0 {
            let comma = if extra.topics.top.is_empty() { "" } else { "," };
            let n = extra.topics.other_subscribers;
            let _ = write!(s, "{comma}\"{OTHER_TOPICS}\":{n}");
        }
        let _ = write!(s, "}},\"topics_aggregated\":{},", extra.topics.other_topics);
        for section in [Section::Events, Section::Top, Section::Redis] {
            if let Some(name) = section.key() {
                let _ = write!(s, "\"{name}\":{{");
            }
            if section == Section::Redis {
                let _ = write!(s, "\"configured\":{},", self.broker == "redis");
                if self.broker == "redis" {
                    s.push_str("\"subscribed_per_core\":[");
                    for (i, c) in self.cores.iter().enumerate() {
                        let up = c.redis_up.load(Relaxed);
                        let _ = write!(s, "{}{up}", if i > 0 { "," } else { "" });
                    }
                    s.push_str("],");
                }
            }
            for f in FIGURES
                .iter()
                .filter(|f| f.json.is_some_and(|(sec, _)| sec == section))
            {
                let Some((_, key)) = f.json else { continue };
                let v = self.figure(f.source);
                let _ = match f.json_unit {
                    JsonUnit::Count => write!(s, "\"{key}\":{v},"),
                    JsonUnit::MillisAsSeconds => write!(s, "\"{key}\":{:.3},", v as f64 / 1000.0),
                };
            }
            if section.key().is_some() {
                s.pop();
                s.push_str("},");
            }
        }
        s.push_str("\"delivery_latency_ms\":{");
        for (i, name) in routes.iter().enumerate() {
            let h = self.latency(i);
            let _ = write!(
                s,
                "{}\"{}\":{{\"count\":{},\"p50\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"mean\":{:.3}}}",
                if i > 0 { "," } else { "" },
                name,
                h.count,
                h.quantile_us(0.5) as f64 / 1000.0,
                h.quantile_us(0.99) as f64 / 1000.0,
                h.quantile_us(0.999) as f64 / 1000.0,
                if h.count > 0 {
                    h.sum_us as f64 / h.count as f64 / 1000.0
                } else {
                    0.0
                },
            );
        }
        s.push_str("}}");
        s
    }

    /// One event of the live status page (`/status/stream`): the stats JSON of
    /// [`Stats::render_json`], the same figures from the same function, with what a page that
    /// plots them live needs on top: `at_ms`, when the snapshot was taken (milliseconds since
    /// the node started, so a viewer computes rates over the snapshots' own interval, not over
    /// when they reached it), `period_ms`, and `latency_histogram`, the delivery-latency
    /// histogram of every family merged, cumulative since start, as `[upper_bound_us, count]`
    /// pairs of its non-empty buckets (at most 160; a viewer takes the difference of two
    /// snapshots for the latency of the interval between them).
    pub fn render_status(&self, routes: &[&str], extra: &NodeGauges, period: Duration) -> String {
        let mut s = self.render_json(routes, extra);
        // The stats object's closing brace, reopened for the status fields.
        s.pop();
        let mut h = HistogramSnapshot::default();
        for i in 0..routes.len() {
            h.merge(&self.latency(i));
        }
        let _ = write!(
            s,
            ",\"at_ms\":{},\"period_ms\":{},\"latency_histogram\":[",
            self.started.elapsed().as_millis(),
            period.as_millis()
        );
        let mut first = true;
        for (i, n) in h.buckets.iter().enumerate().filter(|(_, n)| **n > 0) {
            let comma = if first { "" } else { "," };
            first = false;
            let _ = write!(s, "{comma}[{},{n}]", Histogram::upper_bound(i));
        }
        s.push_str("]}");
        s
    }

    /// `GET /metrics`: the same figures in Prometheus text exposition format.
    pub fn render_prometheus(&self, routes: &[&str], extra: &NodeGauges) -> String {
        let mut s = String::with_capacity(8192);
        let _ = writeln!(
            s,
            "# HELP sse_info Static facts about this node.\n# TYPE sse_info gauge\nsse_info{{driver=\"{}\",broker=\"{}\"}} 1",
            self.driver, self.broker
        );
        for f in FIGURES {
            if let Some((name, help, kind)) = f.prom {
                let v = self.figure(f.source);
                let kind = kind.name();
                let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
            }
        }
        let _ = writeln!(
            s,
            "# HELP sse_uptime_seconds Seconds since start.\n# TYPE sse_uptime_seconds gauge\nsse_uptime_seconds {}",
            self.started.elapsed().as_secs()
        );
        let _ = writeln!(
            s,
            "# HELP sse_connections Open SSE streams.\n# TYPE sse_connections gauge"
        );
        for (i, name) in routes.iter().enumerate() {
            let _ = writeln!(
                s,
                "sse_connections{{route=\"{name}\"}} {}",
                self.open_route(i)
            );
        }
        let _ = writeln!(
            s,
            "# HELP sse_topic_subscribers Streams subscribed to each topic (all: every topic).\n# TYPE sse_topic_subscribers gauge"
        );
        for (topic, n) in &extra.topics.top {
            let _ = writeln!(s, "sse_topic_subscribers{{topic=\"{topic}\"}} {n}");
        }
        if extra.topics.other_topics > 0 {
            let n = extra.topics.other_subscribers;
            let _ = writeln!(s, "sse_topic_subscribers{{topic=\"{OTHER_TOPICS}\"}} {n}");
        }
        let _ = writeln!(
            s,
            "# HELP sse_topics_aggregated Topics summed under topic=\"{OTHER_TOPICS}\" (beyond SSE_METRICS_TOPICS).\n# TYPE sse_topics_aggregated gauge\nsse_topics_aggregated {}",
            extra.topics.other_topics
        );
        let _ = writeln!(
            s,
            "# HELP sse_core_connections Open SSE streams per core.\n# TYPE sse_core_connections gauge"
        );
        for (i, c) in self.cores.iter().enumerate() {
            let _ = writeln!(
                s,
                "sse_core_connections{{core=\"{i}\"}} {}",
                c.open_streams()
            );
        }
        if self.broker == "redis" {
            let _ = writeln!(
                s,
                "# HELP sse_core_redis_subscribed 1 while this core's Redis subscription is live (its pattern link; in sharded mode also a link to every master).\n# TYPE sse_core_redis_subscribed gauge"
            );
            for (i, c) in self.cores.iter().enumerate() {
                let up = c.redis_up.load(Relaxed);
                let _ = writeln!(s, "sse_core_redis_subscribed{{core=\"{i}\"}} {up}");
            }
        }
        if let Some(d) = extra.descriptors {
            if let Some(open) = d.open {
                let _ = writeln!(
                    s,
                    "# HELP process_open_fds Open file descriptors (streams, pending connections, Redis links, listeners, rings).\n# TYPE process_open_fds gauge\nprocess_open_fds {open}"
                );
            }
            let _ = writeln!(
                s,
                "# HELP process_max_fds The soft open-file limit (RLIMIT_NOFILE) in force.\n# TYPE process_max_fds gauge\nprocess_max_fds {}",
                d.limit
            );
        }
        let _ = writeln!(
            s,
            "# HELP sse_connection_limit Configured SSE_CONNECTION_LIMIT.\n# TYPE sse_connection_limit gauge\nsse_connection_limit {}",
            extra.connection_limit
        );
        let _ = writeln!(
            s,
            "# HELP sse_pending_limit Non-stream connections this node keeps (SSE_PENDING_LIMIT, resolved).\n# TYPE sse_pending_limit gauge\nsse_pending_limit {}",
            extra.pending_limit
        );
        let _ = writeln!(
            s,
            "# HELP sse_delivery_latency_seconds Time from an event's arrival at the gateway to its write to a socket.\n# TYPE sse_delivery_latency_seconds histogram"
        );
        const LE_US: [(u64, &str); 16] = [
            (100, "0.0001"),
            (250, "0.00025"),
            (500, "0.0005"),
            (1_000, "0.001"),
            (2_500, "0.0025"),
            (5_000, "0.005"),
            (10_000, "0.01"),
            (25_000, "0.025"),
            (50_000, "0.05"),
            (100_000, "0.1"),
            (250_000, "0.25"),
            (500_000, "0.5"),
            (1_000_000, "1"),
            (2_500_000, "2.5"),
            (5_000_000, "5"),
            (10_000_000, "10"),
        ];
        for (i, name) in routes.iter().enumerate() {
            let h = self.latency(i);
            for (le_us, le) in LE_US {
                let _ = writeln!(
                    s,
                    "sse_delivery_latency_seconds_bucket{{route=\"{name}\",le=\"{le}\"}} {}",
                    h.count_le(le_us)
                );
            }
            let _ = writeln!(
                s,
                "sse_delivery_latency_seconds_bucket{{route=\"{name}\",le=\"+Inf\"}} {}\nsse_delivery_latency_seconds_sum{{route=\"{name}\"}} {}\nsse_delivery_latency_seconds_count{{route=\"{name}\"}} {}",
                h.count,
                h.sum_us as f64 / 1e6,
                h.count
            );
        }
        s
    }
}

/// Where a figure sits in the stats JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// `"events": {...}`
    Events,
    /// The top level.
    Top,
    /// `"redis": {...}`
    Redis,
}

impl Section {
    /// The object's key, `None` for the top level.
    fn key(self) -> Option<&'static str> {
        match self {
            Section::Events => Some("events"),
            Section::Top => None,
            Section::Redis => Some("redis"),
        }
    }
}

/// How a figure is written in the stats JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonUnit {
    /// As counted.
    Count,
    /// A count of milliseconds, written as seconds with three decimals.
    MillisAsSeconds,
}

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// The per-core counter(s) a figure sums over every core.
#[derive(Clone, Copy)]
enum Source {
    /// One counter.
    One(fn(&CoreStats) -> &AtomicU64),
    /// The sum of two.
    Sum(fn(&CoreStats) -> &AtomicU64, fn(&CoreStats) -> &AtomicU64),
}

/// One node-wide figure: where it comes from, and how the stats JSON and the Prometheus text
/// show it (either may leave it out).
struct Figure {
    /// Section and key in the stats JSON.
    json: Option<(Section, &'static str)>,
    /// Its unit there.
    json_unit: JsonUnit,
    /// Name, help and type in Prometheus.
    prom: Option<(&'static str, &'static str, Kind)>,
    /// What it sums.
    source: Source,
}

/// A figure shown as a count in both outputs (`json` and `prom` may be `None`).
const fn figure(
    json: Option<(Section, &'static str)>,
    prom: Option<(&'static str, &'static str, Kind)>,
    source: fn(&CoreStats) -> &AtomicU64,
) -> Figure {
    Figure {
        json,
        json_unit: JsonUnit::Count,
        prom,
        source: Source::One(source),
    }
}

/// Every summed figure of the stats JSON and the Prometheus text, in JSON order: the one
/// table both renderers read, so a counter cannot be added to one and forgotten in the other
/// without it showing here.
const FIGURES: &[Figure] = &[
    figure(
        Some((Section::Events, "received")),
        Some((
            "sse_events_received_total",
            "Messages received from the broker (counted once per core that receives them).",
            Kind::Counter,
        )),
        |c| &c.events_received,
    ),
    figure(
        Some((Section::Events, "delivered")),
        Some((
            "sse_events_delivered_total",
            "Event frames written to client sockets.",
            Kind::Counter,
        )),
        |c| &c.events_delivered,
    ),
    Figure {
        json: Some((Section::Events, "dropped")),
        json_unit: JsonUnit::Count,
        prom: None,
        source: Source::Sum(|c| &c.events_invalid, |c| &c.events_unrouted),
    },
    figure(
        Some((Section::Events, "invalid")),
        Some((
            "sse_events_invalid_total",
            "Messages dropped: payload failed validation.",
            Kind::Counter,
        )),
        |c| &c.events_invalid,
    ),
    figure(
        Some((Section::Events, "unrouted")),
        Some((
            "sse_events_unrouted_total",
            "Messages dropped: no route family claims the channel.",
            Kind::Counter,
        )),
        |c| &c.events_unrouted,
    ),
    figure(
        Some((Section::Events, "published_http")),
        Some((
            "sse_publishes_total",
            "Events accepted by HTTP publish.",
            Kind::Counter,
        )),
        |c| &c.publishes,
    ),
    figure(
        Some((Section::Top, "slow_consumers_cut")),
        Some((
            "sse_slow_consumers_cut_total",
            "Streams cut for not reading.",
            Kind::Counter,
        )),
        |c| &c.slow_consumers_cut,
    ),
    figure(
        Some((Section::Top, "write_timeouts")),
        Some((
            "sse_write_timeouts_total",
            "Streams cut because a write took longer than SSE_WRITE_TIMEOUT.",
            Kind::Counter,
        )),
        |c| &c.write_timeouts,
    ),
    figure(
        Some((Section::Top, "rejected_connection_limit")),
        Some((
            "sse_rejected_connection_limit_total",
            "Stream requests refused at the connection limit.",
            Kind::Counter,
        )),
        |c| &c.rejected_limit,
    ),
    figure(
        Some((Section::Top, "channels")),
        Some((
            "sse_channels",
            "Channels held (every core's sum).",
            Kind::Gauge,
        )),
        |c| &c.channels,
    ),
    figure(
        Some((Section::Top, "channels_evicted")),
        Some((
            "sse_channels_evicted_total",
            "Channels without a stream evicted at SSE_CHANNEL_LIMIT.",
            Kind::Counter,
        )),
        |c| &c.channels_evicted,
    ),
    figure(
        Some((Section::Top, "history_bytes")),
        Some((
            "sse_history_bytes",
            "Bytes of events held in channel histories (every core's sum).",
            Kind::Gauge,
        )),
        |c| &c.history_bytes,
    ),
    figure(
        Some((Section::Top, "history_trimmed")),
        Some((
            "sse_history_trimmed_total",
            "Events trimmed from history at SSE_HISTORY_BYTES.",
            Kind::Counter,
        )),
        |c| &c.history_trimmed,
    ),
    figure(
        Some((Section::Top, "rejected_channel_limit")),
        Some((
            "sse_rejected_channel_limit_total",
            "Stream requests refused at SSE_CHANNEL_LIMIT.",
            Kind::Counter,
        )),
        |c| &c.rejected_channel_limit,
    ),
    figure(
        Some((Section::Top, "head_timeouts")),
        Some((
            "sse_head_timeouts_total",
            "Connections closed for a slow request head.",
            Kind::Counter,
        )),
        |c| &c.head_timeouts,
    ),
    figure(
        Some((Section::Top, "accepted")),
        Some((
            "sse_accepted_total",
            "TCP connections accepted.",
            Kind::Counter,
        )),
        |c| &c.accepted,
    ),
    figure(Some((Section::Top, "handoffs")), None, |c| &c.handoffs_out),
    figure(
        Some((Section::Top, "http_errors")),
        Some((
            "sse_http_errors_total",
            "Requests answered 4xx/5xx.",
            Kind::Counter,
        )),
        |c| &c.http_errors,
    ),
    figure(
        Some((Section::Top, "resumes")),
        Some((
            "sse_resumes_total",
            "Reconnects whose missed events were replayed from history.",
            Kind::Counter,
        )),
        |c| &c.resumes,
    ),
    figure(
        Some((Section::Top, "resets")),
        Some((
            "sse_resets_total",
            "Reconnects told history no longer reaches their Last-Event-ID.",
            Kind::Counter,
        )),
        |c| &c.resets,
    ),
    figure(
        Some((Section::Top, "resets_replay_limit")),
        Some((
            "sse_resets_replay_limit_total",
            "Resets (counted in sse_resets_total too) because the replay would exceed SSE_REPLAY_LIMIT.",
            Kind::Counter,
        )),
        |c| &c.resets_replay_limit,
    ),
    figure(
        Some((Section::Top, "resume_redis_reads")),
        Some((
            "sse_resume_redis_reads_total",
            "Resumes from a durable id answered by reading Redis's history (memory could not).",
            Kind::Counter,
        )),
        |c| &c.resume_redis_reads,
    ),
    figure(
        Some((Section::Top, "resume_redis_waits")),
        Some((
            "sse_resume_redis_waits_total",
            "Redis history reads that waited for one of SSE_RESUME_READS per core.",
            Kind::Counter,
        )),
        |c| &c.resume_redis_waits,
    ),
    figure(
        Some((Section::Top, "resume_redis_failed")),
        Some((
            "sse_resume_redis_failed_total",
            "Resumes that needed Redis's history and could not read it (a reset).",
            Kind::Counter,
        )),
        |c| &c.resume_redis_failed,
    ),
    figure(
        Some((Section::Top, "conflated")),
        Some((
            "sse_events_conflated_total",
            "Events that replaced a conflating stream's full queue.",
            Kind::Counter,
        )),
        |c| &c.events_conflated,
    ),
    figure(
        Some((Section::Redis, "subscribed_cores")),
        Some((
            "sse_redis_subscribed_cores",
            "Cores whose Redis subscription is live (in sharded mode: a link to every master too).",
            Kind::Gauge,
        )),
        |c| &c.redis_up,
    ),
    figure(
        Some((Section::Redis, "disconnects")),
        Some((
            "sse_redis_disconnects_total",
            "Redis subscriptions lost.",
            Kind::Counter,
        )),
        |c| &c.redis_disconnects,
    ),
    Figure {
        json: Some((Section::Redis, "outage_seconds")),
        json_unit: JsonUnit::MillisAsSeconds,
        prom: Some((
            "sse_redis_outage_milliseconds_total",
            "Core-milliseconds without a Redis subscription after having one.",
            Kind::Counter,
        )),
        source: Source::One(|c| &c.redis_outage_ms),
    },
    figure(
        Some((Section::Redis, "channels")),
        Some((
            "sse_redis_channels",
            "Channels subscribed one by one on Redis and confirmed (channel mode).",
            Kind::Gauge,
        )),
        |c| &c.redis_channels,
    ),
    figure(
        Some((Section::Redis, "subscribe_commands")),
        Some((
            "sse_redis_subscribe_commands_total",
            "SUBSCRIBE commands sent (channel mode; up to 1024 channels each).",
            Kind::Counter,
        )),
        |c| &c.redis_subscribe_commands,
    ),
    figure(
        Some((Section::Redis, "subscribe_channels")),
        Some((
            "sse_redis_subscribe_channels_total",
            "Channels named in SUBSCRIBE commands.",
            Kind::Counter,
        )),
        |c| &c.redis_subscribe_channels,
    ),
    figure(
        Some((Section::Redis, "unsubscribe_commands")),
        Some((
            "sse_redis_unsubscribe_commands_total",
            "UNSUBSCRIBE commands sent (channel mode).",
            Kind::Counter,
        )),
        |c| &c.redis_unsubscribe_commands,
    ),
    figure(
        Some((Section::Redis, "unsubscribe_channels")),
        Some((
            "sse_redis_unsubscribe_channels_total",
            "Channels named in UNSUBSCRIBE commands.",
            Kind::Counter,
        )),
        |c| &c.redis_unsubscribe_channels,
    ),
    figure(
        Some((Section::Redis, "subscribe_waits")),
        Some((
            "sse_redis_subscribe_waits_total",
            "Streams that waited for Redis to confirm their channel before opening.",
            Kind::Counter,
        )),
        |c| &c.redis_subscribe_waits,
    ),
    figure(
        Some((Section::Redis, "subscribe_timeouts")),
        Some((
            "sse_redis_subscribe_timeouts_total",
            "Streams refused: their channel's subscription was not confirmed in time.",
            Kind::Counter,
        )),
        |c| &c.redis_subscribe_timeouts,
    ),
    figure(
        Some((Section::Redis, "shard_outages")),
        Some((
            "sse_redis_shard_outages_total",
            "Sharded mode: shard subscriptions lost (a master killed, failed over, or its slots moved) or never made (a master down when its link started).",
            Kind::Counter,
        )),
        |c| &c.redis_shard_outages,
    ),
    figure(
        Some((Section::Redis, "shard_failovers")),
        Some((
            "sse_redis_shard_failovers_total",
            "Shard outages that ended with the channels on another master.",
            Kind::Counter,
        )),
        |c| &c.redis_shard_failovers,
    ),
    Figure {
        json: Some((Section::Redis, "shard_outage_seconds")),
        json_unit: JsonUnit::MillisAsSeconds,
        prom: Some((
            "sse_redis_shard_outage_milliseconds_total",
            "Milliseconds from a shard subscription's loss until its channels were subscribed again, summed.",
            Kind::Counter,
        )),
        source: Source::One(|c| &c.redis_shard_outage_ms),
    },
    figure(
        Some((Section::Redis, "shard_outage_channels")),
        Some((
            "sse_redis_shard_outage_channels_total",
            "Channels left unsubscribed by shard outages, summed (their events meanwhile are lost).",
            Kind::Counter,
        )),
        |c| &c.redis_shard_outage_channels,
    ),
    figure(
        Some((Section::Redis, "dropped")),
        Some((
            "sse_redis_dropped_total",
            "Messages and frames from Redis dropped before delivery (size, nesting, malformed).",
            Kind::Counter,
        )),
        |c| &c.redis_dropped,
    ),
    figure(
        Some((Section::Top, "pending_evicted")),
        Some((
            "sse_pending_evicted_total",
            "Idle non-stream connections closed to make room (pending limit, or out of descriptors).",
            Kind::Counter,
        )),
        |c| &c.pending_evicted,
    ),
    figure(
        Some((Section::Top, "pending_refused")),
        Some((
            "sse_pending_refused_total",
            "New connections closed at once at the pending limit (none idle to close).",
            Kind::Counter,
        )),
        |c| &c.pending_refused,
    ),
    figure(
        None,
        Some((
            "sse_pending_connections",
            "Non-stream connections open (heads in progress, API answers, idle keep-alive).",
            Kind::Gauge,
        )),
        |c| &c.pending,
    ),
    figure(
        Some((Section::Top, "accept_errors")),
        Some((
            "sse_accept_errors_total",
            "Accepts that failed (out of descriptors or buffers); each pauses accepting.",
            Kind::Counter,
        )),
        |c| &c.accept_errors,
    ),
    figure(
        Some((Section::Top, "queries_refused")),
        Some((
            "sse_queries_refused_total",
            "Stats and metrics requests answered 503: too many in flight on a core.",
            Kind::Counter,
        )),
        |c| &c.queries_refused,
    ),
    figure(
        Some((Section::Top, "status_viewers")),
        Some((
            "sse_status_viewers",
            "Live status page streams open (/status/stream).",
            Kind::Gauge,
        )),
        |c| &c.status_viewers,
    ),
    figure(
        Some((Section::Top, "status_viewers_refused")),
        Some((
            "sse_status_viewers_refused_total",
            "Status page streams answered 503: SSE_STATUS_VIEWERS already open.",
            Kind::Counter,
        )),
        |c| &c.status_refused,
    ),
    figure(
        Some((Section::Redis, "rejected_streams")),
        Some((
            "sse_redis_rejected_streams_total",
            "Stream requests refused because this core's Redis subscription was down.",
            Kind::Counter,
        )),
        |c| &c.rejected_redis,
    ),
    figure(
        Some((Section::Redis, "publish_failed")),
        Some((
            "sse_redis_publish_failed_total",
            "HTTP publishes answered 503 because Redis was unreachable (not published).",
            Kind::Counter,
        )),
        |c| &c.publish_failed,
    ),
    figure(
        Some((Section::Redis, "publish_unknown")),
        Some((
            "sse_redis_publish_unknown_total",
            "HTTP publishes answered 504: sent to Redis, no answer in time (outcome unknown).",
            Kind::Counter,
        )),
        |c| &c.publish_unknown,
    ),
    figure(
        Some((Section::Redis, "protocol_errors")),
        Some((
            "sse_redis_protocol_errors_total",
            "Redis links dropped for bytes that are not RESP.",
            Kind::Counter,
        )),
        |c| &c.redis_protocol_errors,
    ),
];

/// Node-wide gauges that live outside the per-core blocks.
pub struct NodeGauges {
    /// `SSE_CONNECTION_LIMIT`.
    pub connection_limit: usize,
    /// `SSE_PENDING_LIMIT`, as resolved at start-up.
    pub pending_limit: usize,
    /// Whether SIGTERM has started the drain.
    pub draining: bool,
    /// Subscribers per topic (filled by the topic family; empty when it has none), the
    /// busiest ones only: see [`top_topics`].
    pub topics: TopicCounts,
    /// Open descriptors and their limit, read at each answer; `None` where `/proc` or
    /// `getrlimit` cannot be read.
    pub descriptors: Option<Descriptors>,
}

/// The process's open file descriptors and its soft `RLIMIT_NOFILE`.
///
/// Why exported: every stream, pending connection and Redis link is a descriptor, and a
/// process at its limit fails accepts (`sse_accept_errors_total`) before it reaches
/// `SSE_CONNECTION_LIMIT` when the limit is set too low (the start-up warning says so once;
/// this says so on every scrape, and an alert can watch the ratio). The Prometheus names are
/// those of the official client libraries' process collector (`process_open_fds`,
/// `process_max_fds`), so existing dashboards and alerts that know them work unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptors {
    /// Descriptors open now; `None` where they cannot be counted cheaply (see
    /// [`Descriptors::read`]).
    pub open: Option<u64>,
    /// The soft `RLIMIT_NOFILE` in force (raised to the hard limit at start-up).
    pub limit: u64,
}

impl Descriptors {
    /// Reads both for this process; `None` where `getrlimit` fails.
    ///
    /// The count is the size of `/proc/self/fd`, which Linux 6.2 and later report as the
    /// number of open descriptors: one `statx`, about 4 us at any count. Older kernels
    /// report 0 there, and counting the directory's entries instead took 30 ms at 20,000
    /// descriptors on the test machine (a Rust `read_dir` count), a stall of the answering
    /// core on every scrape: there the figure is left out, and the shipped rules estimate it
    /// from the streams and pending connections (`deploy/prometheus/gateway-rules.yml`).
    pub fn read() -> Option<Descriptors> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) writes the struct we own and pass by pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        let open = std::fs::metadata("/proc/self/fd")
            .ok()
            .map(|m| m.len())
            .filter(|&n| n > 0);
        Some(Descriptors {
            open,
            limit: lim.rlim_cur,
        })
    }
}

/// The label value the topics beyond `SSE_METRICS_TOPICS` are summed under. It is a valid
/// topic name, so a topic really called `_other` is always summed there too: one series per
/// label value, whatever clients name their topics.
pub const OTHER_TOPICS: &str = "_other";

/// Subscriber counts of the busiest topics, and the rest summed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TopicCounts {
    /// The topics with the most subscribers (ties: by name), sorted by name.
    pub top: Vec<(String, u64)>,
    /// How many topics were summed under [`OTHER_TOPICS`].
    pub other_topics: u64,
    /// Their subscribers, summed.
    pub other_subscribers: u64,
}

/// Keeps the `keep` entries with the most subscribers (ties: the first by name) in `all`,
/// unordered, and removes the rest; returns how many were removed and their subscribers.
/// Linear in the number of entries: a partial selection, not a sort of all of them.
pub fn keep_busiest<N: Ord>(all: &mut Vec<(N, u64)>, keep: usize) -> (u64, u64) {
    if all.len() <= keep {
        return (0, 0);
    }
    if keep > 0 {
        all.select_nth_unstable_by(keep - 1, |a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    all.drain(keep..)
        .fold((0, 0), |(topics, subs), (_, n)| (topics + 1, subs + n))
}

/// Keeps the `keep` topics with the most subscribers and sums the rest.
///
/// Why: topic names are chosen by clients, and every name is a Prometheus series (300
/// streams of 64 topics each were 19,200 series, and megabytes per scrape). Keeping the
/// busiest is what an operator looks at; the sum keeps totals right. Linear in the number of
/// topics (see [`keep_busiest`]).
pub fn top_topics(mut all: Vec<(String, u64)>, keep: usize) -> TopicCounts {
    let mut out = TopicCounts::default();
    all.retain(|(t, n)| {
        let named_other = t == OTHER_TOPICS;
        if named_other {
            out.other_topics += 1;
            out.other_subscribers += n;
        }
        !named_other
    });
    let (topics, subs) = keep_busiest(&mut all, keep);
    out.other_topics += topics;
    out.other_subscribers += subs;
    all.sort_unstable();
    out.top = all;
    out
}

/// The node's topic counts from each core's: counts of the same topic are added, then the
/// `keep` busiest kept and the rest summed, with what each core had summed already.
///
/// Each core sends only its own `keep` busiest (see `Shard::topic_counts`), so a stats
/// request costs the same at 10 topics or 200,000. The price: a topic among a core's busiest
/// but summed on another core shows only the first core's count, the rest being in
/// `_other`; totals stay right, and `topics_aggregated` counts (topic, core) pairs.
pub fn merge_topics(cores: Vec<TopicCounts>, keep: usize) -> TopicCounts {
    let (mut other_topics, mut other_subscribers) = (0, 0);
    let mut all = Vec::new();
    for c in cores {
        all.extend(c.top);
        other_topics += c.other_topics;
        other_subscribers += c.other_subscribers;
    }
    all.sort_unstable();
    all.dedup_by(|b, a| {
        let same = a.0 == b.0;
        if same {
            a.1 += b.1;
        }
        same
    });
    let mut out = top_topics(all, keep);
    out.other_topics += other_topics;
    out.other_subscribers += other_subscribers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_contain_their_values() {
        let mut prev = 0;
        for us in [0u64, 1, 3, 4, 5, 7, 8, 9, 15, 16, 100, 1000, 12345, 1 << 30] {
            let b = Histogram::bucket_of(us);
            assert!(b >= prev, "bucket of {us} went backwards");
            prev = b;
            assert!(Histogram::upper_bound(b) > us, "{us} above its bucket {b}");
            if b > 0 {
                assert!(
                    Histogram::upper_bound(b - 1) <= us,
                    "{us} below its bucket {b}"
                );
            }
        }
    }

    #[test]
    fn quantiles_within_a_quarter() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 1000);
        let p50 = s.quantile_us(0.5);
        assert!((500..=640).contains(&p50), "p50 {p50}");
        let p99 = s.quantile_us(0.99);
        assert!((990..=1280).contains(&p99), "p99 {p99}");
        assert_eq!(s.count_le(u64::MAX), 1000);
    }

    #[test]
    fn json_and_prometheus_show_the_same_figures() {
        let stats = Stats::new(2, "io_uring", "redis");
        bump(&stats.cores[0].events_invalid);
        bump(&stats.cores[1].events_unrouted);
        bump(&stats.cores[1].handoffs_out);
        stats.cores[0].redis_outage_ms.fetch_add(1500, Relaxed);
        stats.cores[1].redis_up.fetch_add(1, Relaxed);
        stats.cores[0].streams_open[1].fetch_add(3, Relaxed);
        let gauges = NodeGauges {
            connection_limit: 9,
            pending_limit: 7,
            draining: false,
            topics: top_topics(vec![("a".into(), 2), ("b".into(), 1), ("c".into(), 1)], 1),
            descriptors: Some(Descriptors {
                open: Some(40),
                limit: 1024,
            }),
        };
        let json: serde_json::Value =
            serde_json::from_str(&stats.render_json(&["p", "q"], &gauges)).expect("valid JSON");
        let at = |path: &str| path.split('.').fold(&json, |v, k| &v[k]).clone();
        assert_eq!(at("events.dropped"), 2);
        assert_eq!(at("events.invalid"), 1);
        assert_eq!(at("handoffs"), 1);
        assert_eq!(at("redis.configured"), true);
        assert_eq!(at("redis.subscribed_cores"), 1);
        assert_eq!(at("redis.outage_seconds"), 1.5);
        assert_eq!(at("connections.total"), 3);
        assert_eq!(at("connections.per_route.q"), 3);
        assert_eq!(at("connections.limit"), 9);
        assert_eq!(at("topics.a"), 2);
        assert_eq!(at("topics._other"), 2);
        assert_eq!(at("topics_aggregated"), 2);
        assert_eq!(at("connections.pending_limit"), 7);
        assert_eq!(at("delivery_latency_ms.p.count"), 0);
        assert_eq!(at("connections.open_files"), 40);
        assert_eq!(at("connections.open_files_limit"), 1024);
        assert_eq!(at("redis.subscribed_per_core"), serde_json::json!([0, 1]));
        let prom = stats.render_prometheus(&["p", "q"], &gauges);
        for line in [
            "sse_events_invalid_total 1",
            "sse_events_unrouted_total 1",
            "sse_redis_subscribed_cores 1",
            "# TYPE sse_redis_subscribed_cores gauge",
            "sse_redis_outage_milliseconds_total 1500",
            "sse_connections{route=\"q\"} 3",
            "sse_topic_subscribers{topic=\"a\"} 2",
            "sse_topic_subscribers{topic=\"_other\"} 2",
            "sse_topics_aggregated 2",
            "sse_pending_limit 7",
            "sse_delivery_latency_seconds_count{route=\"p\"} 0",
            "sse_core_redis_subscribed{core=\"0\"} 0",
            "sse_core_redis_subscribed{core=\"1\"} 1",
            "process_open_fds 40",
            "process_max_fds 1024",
        ] {
            assert!(prom.lines().any(|l| l == line), "{line} in\n{prom}");
        }
        // Every figure of the table is in the JSON; every exported one once in Prometheus.
        for f in FIGURES {
            if let Some((section, key)) = f.json {
                let v = match section.key() {
                    Some(obj) => &json[obj][key],
                    None => &json[key],
                };
                assert!(!v.is_null(), "{key}");
            }
            if let Some((name, _, _)) = f.prom {
                let samples = prom.lines().filter(|l| l.split(' ').next() == Some(name));
                assert_eq!(samples.count(), 1, "{name}");
            }
        }
    }

    #[test]
    fn the_status_event_is_the_stats_json_with_a_histogram() {
        let stats = Stats::new(2, "epoll", "embedded");
        stats.cores[0].latency[0].record(Duration::from_micros(5));
        stats.cores[1].latency[0].record(Duration::from_micros(5));
        stats.cores[1].latency[1].record(Duration::from_micros(1000));
        bump(&stats.cores[1].status_refused);
        let gauges = NodeGauges {
            connection_limit: 9,
            pending_limit: 7,
            draining: false,
            topics: TopicCounts::default(),
            descriptors: None,
        };
        let names = ["p", "q"];
        let stats_json: serde_json::Value =
            serde_json::from_str(&stats.render_json(&names, &gauges)).expect("stats JSON");
        let status: serde_json::Value =
            serde_json::from_str(&stats.render_status(&names, &gauges, Duration::from_millis(250)))
                .expect("status JSON");
        // Every key of the stats answer, with the same value (uptime aside: it may tick).
        for (k, v) in stats_json.as_object().unwrap() {
            if k != "uptime_seconds" {
                assert_eq!(&status[k], v, "{k}");
            }
        }
        assert_eq!(status["status_viewers_refused"], 1);
        assert_eq!(status["period_ms"], 250);
        assert!(status["at_ms"].is_u64());
        // Buckets of both families merged: 5 us (twice) in [5, 6), 1000 us in [896, 1024).
        assert_eq!(
            status["latency_histogram"],
            serde_json::json!([[6, 2], [1024, 1]])
        );
    }

    #[test]
    fn core_counts_merge_into_the_busiest_and_the_rest_summed() {
        let t = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(a, n)| (a.to_string(), *n)).collect()
        };
        let core = |top: &[(&str, u64)], other_topics, other_subscribers| TopicCounts {
            top: t(top),
            other_topics,
            other_subscribers,
        };
        // `a` is on both cores: added. `c` is kept on no core, `b` on one: summed.
        let got = merge_topics(
            vec![
                core(&[("a", 5), ("b", 1)], 2, 3),
                core(&[("a", 2), ("c", 4)], 0, 0),
            ],
            2,
        );
        assert_eq!(got, core(&[("a", 7), ("c", 4)], 3, 4));
        assert_eq!(merge_topics(vec![], 2), TopicCounts::default());
    }

    #[test]
    fn topics_beyond_the_limit_are_summed() {
        type Counts<'a> = &'a [(&'a str, u64)];
        let t = |v: &[(&str, u64)]| v.iter().map(|(a, n)| (a.to_string(), *n)).collect();
        #[rustfmt::skip]
        let cases: &[(Counts, usize, Counts, u64, u64)] = &[
            // (topics, keep, kept (by name), topics summed, their subscribers)
            (&[], 3, &[], 0, 0),
            (&[("b", 1), ("a", 5)], 3, &[("a", 5), ("b", 1)], 0, 0),
            (&[("b", 1), ("a", 5), ("c", 3)], 2, &[("a", 5), ("c", 3)], 1, 1),
            (&[("b", 1), ("a", 5), ("c", 3)], 0, &[], 3, 9),
            // Ties go to the first name, so a scrape is stable.
            (&[("z", 2), ("y", 2), ("x", 2)], 2, &[("x", 2), ("y", 2)], 1, 2),
            // A topic named like the sum is summed, never a second `_other` series.
            (&[("_other", 9), ("a", 1)], 5, &[("a", 1)], 1, 9),
        ];
        for (all, keep, kept, n, subs) in cases {
            let got = top_topics(t(all), *keep);
            assert_eq!(got.top, t(kept), "{all:?} keep {keep}");
            assert_eq!(
                (got.other_topics, got.other_subscribers),
                (*n, *subs),
                "{all:?}"
            );
        }
    }
}
