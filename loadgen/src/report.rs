//! What a run found: the per-worker report that crosses the process boundary as one JSON
//! line, and the run's report, printed as a table and written as JSON.
use serde::{Deserialize, Serialize};

use hdrhistogram::Histogram;

use crate::stalls::Stalls;

/// Progress a worker prints twice a second.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Progress {
    /// Streams open now.
    pub open: u64,
    /// Connection attempts that got a 200 event stream.
    pub ok: u64,
    /// Connection attempts that failed (connect error, non-200, closed before the head).
    pub failed: u64,
    /// Events received for the first time in this phase.
    pub received: u64,
    /// Duplicate events, whole run.
    pub duplicated: u64,
    /// Streams the server ended (not counting the storm's own drops).
    pub closed: u64,
    /// p99 latency of this phase so far, microseconds.
    pub p99_us: u64,
    /// Reset events received (the server could not replay what a stream missed), whole run.
    pub resets: u64,
    /// When every stream of the worker was last open again after one had closed (unix
    /// microseconds; 0: none ever closed): a deploy's "all back" time.
    pub all_open_us: u64,
}

/// A worker's answer to `report`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Progress counters at report time.
    pub progress: Progress,
    /// Streams that were open at least once.
    pub opened_once: u64,
    /// Deliveries expected by those streams, whole run so far.
    pub expected: u64,
    /// Of those, never received.
    pub lost: u64,
    /// Received sequence numbers the publisher never sent to that channel.
    pub unexpected: u64,
    /// Events without a readable `seq`/`t` that looked like loadgen events, or malformed
    /// streams.
    pub errors: u64,
    /// Latency histogram of this phase (microseconds): `(value, count)` pairs.
    pub hist: Vec<(u64, u64)>,
    /// Broadcast: per round (sequence number), the latest delivery in microseconds.
    pub round_max_us: Vec<u64>,
    /// Storm: time from the drop until every stream of this worker was open again.
    pub storm_reconnect_ms: Option<f64>,
    /// CPU seconds of this worker so far.
    pub cpu_s: f64,
    /// Peak RSS of this worker.
    pub peak_rss: u64,
    /// Why streams failed to open, by reason.
    pub failures: Vec<Failure>,
    /// When the latest stream opened for the first time (unix microseconds).
    pub last_first_open_us: Option<u64>,
}

/// One wall-clock second of one worker, sent as it ends (`S` lines): the parent adds the
/// workers' seconds up into the run's per-second series.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Second {
    /// Unix second.
    pub sec: u64,
    /// Streams open at its end.
    pub open: u64,
    /// Fewest streams open during it.
    pub open_min: u64,
    /// Successful opens so far (whole run).
    pub ok: u64,
    /// Failed attempts so far (whole run).
    pub failed: u64,
    /// Deliveries received for the first time during it.
    pub received: u64,
    /// Their latency, microseconds: `(value, count)` pairs.
    pub hist: Vec<(u64, u64)>,
}

/// One second of the run, all workers together: what the HTML report plots over time.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Point {
    /// Seconds since the run started (the end of this second).
    pub t_s: f64,
    /// Workers that reported this second.
    pub workers: u64,
    /// Streams open at its end.
    pub open: u64,
    /// Fewest open during it (the sum of each worker's fewest: a lower bound).
    pub open_min: u64,
    /// Successful opens so far.
    pub ok: u64,
    /// Failed attempts so far.
    pub failed: u64,
    /// Deliveries received for the first time during it.
    pub received: u64,
    /// Median latency of those, ms (0 when none).
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
}

/// The run's per-second series, bounded: seconds still being reported keep their workers'
/// latency pairs (a few hundred distinct values a second); a second older than
/// [`Series::SETTLE_S`] becomes one [`Point`] of 80 bytes. An hour is 3,600 points.
#[derive(Debug, Default)]
pub struct Series {
    /// Unix second of the run's start.
    pub start_s: f64,
    /// Seconds still open to workers' reports: the sum so far, and the merged latency pairs.
    open: std::collections::BTreeMap<u64, (Point, std::collections::BTreeMap<u64, u64>)>,
    /// Settled seconds, in order.
    done: Vec<Point>,
}

impl Series {
    /// A worker's second arrives at most this many seconds late (its loop wakes every 20 ms;
    /// lines may queue behind a busy parent).
    pub const SETTLE_S: u64 = 5;

    /// A series for a run that started at `start_us` (unix microseconds).
    pub fn new(start_us: u64) -> Series {
        Series {
            start_s: start_us as f64 / 1e6,
            ..Series::default()
        }
    }

    /// Adds a worker's second.
    pub fn add(&mut self, s: &Second) {
        if self
            .done
            .last()
            .is_some_and(|p| p.t_s >= s.sec as f64 + 1.0 - self.start_s)
        {
            return; // Too late: that second is settled.
        }
        let (p, pairs) = self.open.entry(s.sec).or_default();
        p.workers += 1;
        p.open += s.open;
        p.open_min += s.open_min;
        p.ok += s.ok;
        p.failed += s.failed;
        p.received += s.received;
        for &(v, c) in &s.hist {
            *pairs.entry(v).or_default() += c;
        }
        while let Some((&first, _)) = self.open.first_key_value() {
            if first + Self::SETTLE_S > s.sec {
                break;
            }
            self.settle_first();
        }
    }

    fn settle_first(&mut self) {
        let Some((sec, (mut p, pairs))) = self.open.pop_first() else {
            return;
        };
        p.t_s = sec as f64 + 1.0 - self.start_s;
        let total: u64 = pairs.values().sum();
        let at = |q: f64| -> f64 {
            let want = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (&v, &c) in &pairs {
                seen += c;
                if seen >= want {
                    return v as f64 / 1000.0;
                }
            }
            0.0
        };
        if total > 0 {
            p.p50_ms = at(0.5);
            p.p99_ms = at(0.99);
            p.max_ms = pairs.keys().next_back().map_or(0.0, |&v| v as f64 / 1000.0);
        }
        self.done.push(p);
    }

    /// Every second, settled or not, in order.
    pub fn finish(mut self) -> Vec<Point> {
        while !self.open.is_empty() {
            self.settle_first();
        }
        self.done
    }
}

/// A latency histogram bin for plotting: ten bins a decade.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Bin {
    /// Upper bound, ms.
    pub le_ms: f64,
    /// Deliveries in it.
    pub count: u64,
}

/// The recorded values of `h` in bins of a tenth of a decade (1.26x wide: plenty for a
/// picture, and at most 96 bins from 1 us to 1 h).
pub fn log_bins(h: &Histogram<u64>) -> Vec<Bin> {
    let mut bins: Vec<Bin> = Vec::new();
    for v in h.iter_recorded() {
        let us = v.value_iterated_to().max(1) as f64;
        let k = (us.log10() * 10.0).ceil();
        let le_ms = 10f64.powf(k / 10.0) / 1000.0;
        match bins.last_mut() {
            Some(b) if (b.le_ms - le_ms).abs() < le_ms * 1e-9 => b.count += v.count_at_value(),
            _ => bins.push(Bin {
                le_ms,
                count: v.count_at_value(),
            }),
        }
    }
    bins
}

/// One reason streams failed to open: `HTTP 401: {"error":"missing token"}`,
/// `connect: refused`, `before the response head: reset`, ...
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The HTTP status and the start of the body, or the connect/read error.
    pub reason: String,
    /// Streams that failed this way at least once (a stream that retries counts once).
    pub streams: u64,
    /// Attempts that failed this way (retries included).
    pub attempts: u64,
}

/// Adds `more` into `into`, by reason; the result sorted by streams, most first.
pub fn merge_failures(into: &mut Vec<Failure>, more: &[Failure]) {
    for f in more {
        match into.iter_mut().find(|g| g.reason == f.reason) {
            Some(g) => {
                g.streams += f.streams;
                g.attempts += f.attempts;
            }
            None => into.push(f.clone()),
        }
    }
    into.sort_by(|a, b| {
        b.streams
            .cmp(&a.streams)
            .then(b.attempts.cmp(&a.attempts))
            .then(a.reason.cmp(&b.reason))
    });
}

/// A new latency histogram: 1 us to 1 hour, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// The recorded values of `h` as `(value, count)` pairs.
pub fn hist_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Deliveries measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |v: u64| v as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// A process under test, or one of loadgen's own.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ProcUse {
    /// Process id.
    pub pid: u32,
    /// Its command name.
    pub name: String,
    /// CPU seconds used during the measured phase(s).
    pub cpu_s: f64,
    /// That as percent of one core over the phase's wall time.
    pub cpu_pct: f64,
    /// Peak RSS (VmHWM).
    pub peak_rss: u64,
    /// Proportional set size once the streams were open (shared pages split between
    /// processes: the honest sum for nginx's workers and shared memory).
    pub pss_open: u64,
    /// This process's PSS after opening minus before, over all the run's streams (not only
    /// the ones it holds: with several servers, their sum is `bytes_per_stream_total`).
    pub bytes_per_stream: f64,
}

/// One node's restart in a rolling deploy.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Restart {
    /// The node: its index in the URL list.
    pub node: usize,
    /// Its stream URL template.
    pub url: String,
    /// Seconds since the run started when the restart command started (the SIGTERM).
    pub at_s: f64,
    /// Seconds the restart command took: the node's drain, exit and start until ready.
    pub restart_s: f64,
    /// Whether the command exited 0.
    pub command_ok: bool,
    /// Seconds from the restart's start until every stream was open again (`None`: not
    /// within `--back-timeout` after the command finished).
    pub back_s: Option<f64>,
    /// Streams the server ended meanwhile (the node's drain).
    pub closed: u64,
    /// Failed reconnect attempts meanwhile.
    pub failed: u64,
    /// Reset events received meanwhile.
    pub resets: u64,
}

/// One publishing phase (a plan has several).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Phase {
    /// Target rate, events/s (broadcast: events per round / interval).
    pub rate: f64,
    /// Rate achieved by the publisher.
    pub achieved_rate: f64,
    /// Publishing seconds.
    pub seconds: f64,
    /// Events published.
    pub sent: u64,
    /// Publish requests refused or failed.
    pub publish_errors: u64,
    /// Of those, Redis Cluster `MOVED` answers (the slot map changed after it was read).
    #[serde(default)]
    pub publish_moved: u64,
    /// Latest a publish went out after its intended time, ms (latency counts from the
    /// intended time, so a late publisher shows up in the latency too).
    pub publish_lag_max_ms: f64,
    /// Redis: fewest receivers a PUBLISH reported (pattern subscriptions reached).
    pub redis_receivers_min: Option<u64>,
    /// Deliveries expected (events × streams of their channel).
    pub expected: u64,
    /// Deliveries received for the first time.
    pub received: u64,
    /// Deliveries never received (whole run up to this phase's end).
    pub lost: u64,
    /// Deliveries received more than once (whole run so far).
    pub duplicated: u64,
    /// Events on a stream that were never sent to its channel.
    pub unexpected: u64,
    /// Reset events received (whole run up to this phase's end).
    pub resets: u64,
    /// Delivery latency from the intended send time.
    pub latency: Latency,
    /// Broadcast: per round, time until the last stream had it (ms).
    pub round_last_ms: Vec<f64>,
    /// Servers under test during this phase.
    pub procs: Vec<ProcUse>,
    /// Seconds since the run started when publishing began.
    pub start_s: f64,
    /// The latency histogram, ten bins a decade.
    pub histogram: Vec<Bin>,
    /// Whether p99 held the target with nothing lost or duplicated.
    pub pass: bool,
    /// The machine's own stalls meanwhile: which latency percentiles are the server's.
    #[serde(default)]
    pub stalls: Stalls,
}

/// The whole run.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Streams asked for.
    pub streams: u64,
    /// Channels.
    pub players: u64,
    /// Worker processes.
    pub workers: u64,
    /// Source addresses used.
    pub sources: u64,
    /// Stream URL templates.
    pub urls: Vec<String>,
    /// Publish target.
    pub publish: String,
    /// Successful stream opens (reconnects included).
    pub connects_ok: u64,
    /// Failed attempts to open a stream (retries included: see `streams_never_opened` and
    /// `failures` for streams).
    pub connects_failed: u64,
    /// Seconds until every stream had been attempted once (opened or failed).
    pub connect_seconds: f64,
    /// Streams that opened at least once.
    pub streams_opened: u64,
    /// Streams that never opened during the run.
    pub streams_never_opened: u64,
    /// Seconds from the start until the last stream opened for the first time (`None`: none
    /// opened). Equals the time to open all only when `streams_opened == streams`.
    pub last_open_s: Option<f64>,
    /// Why streams failed to open, by reason, most streams first.
    pub failures: Vec<Failure>,
    /// Streams the server ended.
    pub closed_by_server: u64,
    /// Storm: seconds from the drop until the last stream was open again.
    pub storm_reconnect_s: Option<f64>,
    /// Storm: seconds since the run started when every stream was dropped.
    pub storm_at_s: Option<f64>,
    /// Deploy: each node's restart, in order.
    pub restarts: Vec<Restart>,
    /// The latency p99 target, ms.
    pub target_p99_ms: f64,
    /// Per second of the run: streams open, deliveries, latency percentiles.
    pub series: Vec<Point>,
    /// Connections the kernel dropped because a listen queue was full, over the run
    /// (machine-wide `ListenOverflows`): a client retries them on its SYN timer (1 s, 3 s, ...).
    pub listen_overflows: u64,
    /// Publishing phases.
    pub phases: Vec<Phase>,
    /// Plan: the highest rate that held the target.
    pub plan_knee_rate: Option<f64>,
    /// Servers under test over the whole run (memory per stream measured at open).
    pub procs: Vec<ProcUse>,
    /// Memory per stream of all processes under test together (PSS, measured at open).
    pub bytes_per_stream_total: f64,
    /// CPU seconds of all processes under test together, whole run.
    pub cpu_s_total: f64,
    /// loadgen's own processes (the parent first).
    pub loadgen: Vec<ProcUse>,
    /// Every phase passed, every stream opened and none failed.
    pub pass: bool,
}

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

impl Report {
    /// The human table.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n== loadgen {}: {} streams, {} channels, {} workers, {} source addresses",
            self.scenario, self.streams, self.players, self.workers, self.sources
        );
        let _ = writeln!(s, "streams  {}", self.urls.join("  "));
        let _ = writeln!(s, "publish  {}", self.publish);
        let opened = match self.last_open_s {
            Some(t) if self.streams_opened == self.streams => format!("all opened in {t:.1} s"),
            Some(t) => format!(
                "{} of {} opened, the last at {t:.1} s; {} never opened",
                self.streams_opened, self.streams, self.streams_never_opened
            ),
            None => format!("none of {} opened", self.streams),
        };
        let _ = writeln!(
            s,
            "streams  {opened}  (attempts ok {}, failed {})  closed by server {}",
            self.connects_ok, self.connects_failed, self.closed_by_server
        );
        for f in &self.failures {
            let _ = writeln!(
                s,
                "failed   {:>7} streams {:>8} attempts  {}",
                f.streams, f.attempts, f.reason
            );
        }
        if self.listen_overflows > 0 {
            let _ = writeln!(
                s,
                "listen   {} connection attempts dropped on a full listen queue (machine-wide), retried by the clients' SYN timer",
                self.listen_overflows
            );
        }
        if let Some(t) = self.storm_reconnect_s {
            let _ = writeln!(
                s,
                "storm    every stream dropped; all open again after {t:.2} s"
            );
        }
        if !self.restarts.is_empty() {
            let _ = writeln!(
                s,
                "deploy   {:>4} {:>8} {:>10} {:>9} {:>8} {:>7} {:>7}  url",
                "node", "at s", "restart s", "back s", "closed", "failed", "resets"
            );
            for r in &self.restarts {
                let _ = writeln!(
                    s,
                    "deploy   {:>4} {:>8.1} {:>10.2} {:>9} {:>8} {:>7} {:>7}  {}{}",
                    r.node,
                    r.at_s,
                    r.restart_s,
                    r.back_s
                        .map_or_else(|| "never".to_string(), |b| format!("{b:.2}")),
                    r.closed,
                    r.failed,
                    r.resets,
                    r.url,
                    if r.command_ok {
                        ""
                    } else {
                        "  (restart command failed)"
                    }
                );
            }
        }
        if !self.phases.is_empty() {
            let _ = writeln!(
                s,
                "\n{:>9} {:>9} {:>9} {:>10} {:>10} {:>6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5}",
                "rate/s",
                "achieved",
                "sent",
                "expected",
                "received",
                "lost",
                "dup",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "pass"
            );
            for p in &self.phases {
                let l = &p.latency;
                let _ = writeln!(
                    s,
                    "{:>9.0} {:>9.0} {:>9} {:>10} {:>10} {:>6} {:>5} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>5}",
                    p.rate, p.achieved_rate, p.sent, p.expected, p.received, p.lost, p.duplicated,
                    l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, if p.pass { "yes" } else { "NO" }
                );
                if p.publish_errors > 0 || p.unexpected > 0 || p.resets > 0 {
                    let _ = writeln!(
                        s,
                        "          publish errors {}  unexpected events {}  resets received {}",
                        p.publish_errors, p.unexpected, p.resets
                    );
                }
                if p.publish_moved > 0 {
                    let _ = writeln!(
                        s,
                        "          of which MOVED {}: the cluster's slot map changed after the publisher read it (not followed)",
                        p.publish_moved
                    );
                }
                if !p.round_last_ms.is_empty() {
                    let r: Vec<String> =
                        p.round_last_ms.iter().map(|v| format!("{v:.1}")).collect();
                    let _ = writeln!(
                        s,
                        "          time to the last stream per round (ms): {}",
                        r.join(" ")
                    );
                }
                let _ = writeln!(
                    s,
                    "          publisher lag max {:.2} ms{}",
                    p.publish_lag_max_ms,
                    p.redis_receivers_min
                        .map(|r| format!(", Redis receivers per publish >= {r}"))
                        .unwrap_or_default()
                );
                let _ = writeln!(s, "          {}", p.stalls.line());
                for u in &p.procs {
                    let _ = writeln!(
                        s,
                        "          pid {} {}: CPU {:.2} s ({:.0}% of a core)",
                        u.pid, u.name, u.cpu_s, u.cpu_pct
                    );
                }
            }
        }
        if let Some(k) = self.plan_knee_rate {
            let _ = writeln!(
                s,
                "\nplan: knee at {k:.0} events/s (last step that held p99 and lost nothing)"
            );
            let fleet = crate::fleet::advice(crate::fleet::MEASURED, k);
            if !fleet.is_empty() {
                let _ = writeln!(s, "{fleet}");
            }
        }
        let _ = writeln!(s);
        for (label, list) in [("under test", &self.procs), ("loadgen", &self.loadgen)] {
            for u in list {
                let _ = writeln!(
                    s,
                    "{label:<10} pid {:>7} {:<12} CPU {:>7.2} s  peak RSS {:>7.1} MiB  PSS open {:>7.1} MiB  {:>6.0} B per stream of the run",
                    u.pid, u.name, u.cpu_s, mib(u.peak_rss), mib(u.pss_open), u.bytes_per_stream
                );
            }
        }
        if self.procs.len() > 1 {
            let _ = writeln!(
                s,
                "under test, all together: CPU {:.2} s, {:.0} B/stream",
                self.cpu_s_total, self.bytes_per_stream_total
            );
        }
        let _ = writeln!(s, "result: {}", if self.pass { "PASS" } else { "FAIL" });
        s
    }
}
