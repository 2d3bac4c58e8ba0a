//! What a run found: the per-worker report that crosses the process boundary as one JSON
//! line, and the run's report, printed as a table and written as JSON.
use serde::{Deserialize, Serialize};

use hdrhistogram::Histogram;

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
    /// Memory per stream: PSS after opening minus before, over the streams.
    pub bytes_per_stream: f64,
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
    /// Delivery latency from the intended send time.
    pub latency: Latency,
    /// Broadcast: per round, time until the last stream had it (ms).
    pub round_last_ms: Vec<f64>,
    /// Servers under test during this phase.
    pub procs: Vec<ProcUse>,
    /// Whether p99 held the target with nothing lost or duplicated.
    pub pass: bool,
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
                if p.publish_errors > 0 || p.unexpected > 0 {
                    let _ = writeln!(
                        s,
                        "          publish errors {}  unexpected events {}",
                        p.publish_errors, p.unexpected
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
                        .map(|r| format!(", Redis receivers per PUBLISH >= {r}"))
                        .unwrap_or_default()
                );
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
        }
        let _ = writeln!(s);
        for (label, list) in [("under test", &self.procs), ("loadgen", &self.loadgen)] {
            for u in list {
                let _ = writeln!(
                    s,
                    "{label:<10} pid {:>7} {:<12} CPU {:>7.2} s  peak RSS {:>7.1} MiB  PSS open {:>7.1} MiB  {:>6.0} B/stream",
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
