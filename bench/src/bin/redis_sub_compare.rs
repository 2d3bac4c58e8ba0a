//! Two ways to run the gateway's Redis pattern subscriber, measured side by side.
//!
//! * **A, redis-protocol on monoio**: one OS thread with a monoio (io_uring) runtime holds its own
//!   `PSUBSCRIBE bench:*` connection, decodes RESP with `redis-protocol` (the codec fred itself
//!   uses) and records each `pmessage` on the same thread. This is the gateway's model: every core
//!   holds its own subscription, no thread hop.
//! * **B, fred on tokio + channel**: a current-thread tokio runtime runs a fred `SubscriberClient`
//!   (`psubscribe("bench:*")`); a task forwards each message (channel and payload `Bytes`) through
//!   an unbounded flume channel to a separate "core" thread, a monoio runtime awaiting
//!   `recv_async` (as the gateway's shards await their inbox), which records the same figures.
//!
//! The binary starts its own `redis-server` on a free loopback port, runs a publisher thread that
//! writes pipelined `PUBLISH bench:<n % 1000> <json>` by hand, and for each scenario (fixed rates,
//! then as fast as possible) runs A and B one at a time. Latency is taken from each message's
//! *intended* send time (carried in the payload as nanoseconds of a process-wide monotonic
//! clock), so a publisher that falls behind shows up as latency instead of hiding it.
//!
//! ```sh
//! cargo run --release -p bench --bin redis_sub_compare -- --runs 3
//! ```

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bench::redis_local::{
    encode_publish, now_ns, redis_command, thread_cpu_ns, BoxError, RedisServer,
};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::{IoUringDriver, RuntimeBuilder};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;

/// Pattern both subscribers use.
const PATTERN: &str = "bench:*";
/// Channel of warm-up messages: decoded and counted, never recorded.
const WARM_CHANNEL: &[u8] = b"bench:warm";
/// Channel of the last message of a trial. Redis delivers in order on one connection, so when
/// the subscriber sees it, everything published before it has been delivered or lost for good.
const STOP_CHANNEL: &[u8] = b"bench:stop";
/// Bytes reserved before each read of subscriber A (the gateway reads with 64 KiB buffers).
const READ_RESERVE: usize = 64 * 1024;
/// Messages written per `write` by the publisher, at most.
const MAX_BATCH: u64 = 256;
/// Largest latency the histograms hold (60 s, in microseconds); larger values are clamped.
const HIST_MAX_US: u64 = 60_000_000;

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// Command-line options; every field has a default that keeps a full run under ~3 minutes.
#[derive(Clone, Debug)]
struct Options {
    /// Repetitions of every (scenario, subscriber) pair; the table shows medians.
    runs: usize,
    /// Length of each fixed-rate scenario.
    seconds: f64,
    /// Fixed publish rates, messages per second.
    rates: Vec<u64>,
    /// Messages published in the max-throughput scenario (0 skips it).
    max_messages: u64,
    /// Warm-up messages published before each measured phase (not recorded).
    warmup: u64,
    /// Payload size in bytes (the JSON envelope is padded to it).
    payload: usize,
    /// fred's `broadcast_channel_capacity`: messages its pub/sub broadcast channel holds before a
    /// slow receiver lags (fred's default is 32).
    fred_capacity: usize,
    /// Max-throughput flow control: messages the publisher may be ahead of the subscriber. Kept
    /// below `fred_capacity` so fred's broadcast channel cannot overflow (it drops the oldest
    /// messages when a receiver lags, see the `lagged` count).
    window: u64,
    /// Which subscribers to run.
    only: Option<Client>,
    /// The redis-server binary.
    redis_server: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runs: 3,
            seconds: 5.0,
            rates: vec![10_000, 50_000],
            max_messages: 500_000,
            warmup: 2_000,
            payload: 200,
            fred_capacity: 65_536,
            window: 32_768,
            only: None,
            redis_server: "redis-server".to_string(),
        }
    }
}

const USAGE: &str = "usage: redis_sub_compare [--runs N] [--seconds S] [--rates R1,R2,..] \
[--max-messages N] [--warmup N] [--payload BYTES] [--fred-capacity N] [--window N] \
[--only a|b] [--redis-server PATH]";

impl Options {
    fn parse() -> Result<Options, BoxError> {
        let mut o = Options::default();
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = args
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            match flag.as_str() {
                "--runs" => o.runs = value.parse()?,
                "--seconds" => o.seconds = value.parse()?,
                "--rate" | "--rates" => {
                    o.rates = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::parse)
                        .collect::<Result<_, _>>()?
                }
                "--max-messages" => o.max_messages = value.parse()?,
                "--warmup" => o.warmup = value.parse()?,
                "--payload" => o.payload = value.parse()?,
                "--fred-capacity" => o.fred_capacity = value.parse()?,
                "--window" => o.window = value.parse()?,
                "--only" => {
                    o.only = Some(match value.as_str() {
                        "a" | "A" => Client::Monoio,
                        "b" | "B" => Client::Fred,
                        _ => return Err(format!("--only takes a or b\n{USAGE}").into()),
                    })
                }
                "--redis-server" => o.redis_server = value,
                _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
            }
        }
        if o.runs == 0 || o.seconds <= 0.0 || o.rates.contains(&0) || o.fred_capacity == 0 {
            return Err(
                format!("runs, seconds, rates and fred-capacity must be > 0\n{USAGE}").into(),
            );
        }
        if o.window as usize >= o.fred_capacity {
            eprintln!(
                "warning: --window >= --fred-capacity: fred may drop messages (lagged) under load"
            );
        }
        if o.payload < 120 {
            return Err("--payload must be at least 120 bytes (the envelope)".into());
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------------------------------
// redis-server (bench::redis_local starts it)
// ---------------------------------------------------------------------------------------------

/// Waits (up to 3 s) until Redis has no pattern subscriber left from a previous trial.
fn wait_no_subscribers(port: u16) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let reply = redis_command(port, &["PUBSUB", "NUMPAT"])?;
        if reply.starts_with(b":0\r\n") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("a pattern subscriber is still connected: {reply:?}").into());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Publisher
// ---------------------------------------------------------------------------------------------

/// What the publisher sends in one trial.
#[derive(Clone, Copy, Debug)]
struct PublishPlan {
    /// Warm-up messages on [`WARM_CHANNEL`], sent first at the same pace.
    warmup: u64,
    /// Measured messages.
    total: u64,
    /// Messages per second, or `None` for as fast as possible.
    rate: Option<u64>,
    /// As fast as possible only: how far the publisher may run ahead of the subscriber.
    window: u64,
    /// Payload size in bytes.
    payload: usize,
}

/// What the publisher observed.
#[derive(Clone, Copy, Debug, Default)]
struct PublishReport {
    /// Seconds from the first to the last measured write.
    send_seconds: f64,
    /// Replies read back (one per PUBLISH, including warm-up and stop).
    replies: u64,
}

/// Writes a player envelope carrying the intended send time and sequence number, padded to `size`.
fn build_payload(out: &mut Vec<u8>, t_ns: u64, seq: u64, size: usize) {
    out.clear();
    write!(
        out,
        r#"{{"brand_id":1,"player_id":42,"event_type":"bench","event_data":{{"t":{t_ns},"seq":{seq},"pad":""#
    )
    .expect("write to Vec");
    let tail = br#""}}"#;
    while out.len() + tail.len() < size {
        out.push(b'x');
    }
    out.extend_from_slice(tail);
}

/// Publishes `plan` on its own connection; a second thread reads and discards the replies.
/// `received` is the subscriber's running count of messages (warm-up included), read only for
/// flow control in the as-fast-as-possible mode.
fn publish(
    port: u16,
    plan: PublishPlan,
    received: Arc<AtomicU64>,
) -> Result<PublishReport, BoxError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut replies_stream = stream.try_clone()?;
    replies_stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let expected = plan.warmup + plan.total + 1;
    let reader = thread::Builder::new()
        .name("pub-replies".into())
        .spawn(move || -> u64 {
            // Every reply to PUBLISH is one `:<n>\r\n` line; count line ends.
            let mut buf = vec![0u8; 64 * 1024];
            let mut lines = 0u64;
            while lines < expected {
                match replies_stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
                }
            }
            lines
        })?;

    let mut out = Vec::with_capacity(MAX_BATCH as usize * (plan.payload + 64));
    let mut payload = Vec::with_capacity(plan.payload + 32);
    let mut channel = Vec::with_capacity(16);
    let mut sent_total = 0u64; // warm-up included, for flow control

    // Phase 0: warm-up, phase 1: measured.
    let mut send_seconds = 0.0;
    for (phase, count) in [(0, plan.warmup), (1, plan.total)] {
        let t0 = now_ns();
        let interval_ns = plan.rate.map(|r| 1e9 / r as f64);
        let intended = |n: u64| t0 + interval_ns.map_or(0, |i| (n as f64 * i) as u64);
        let mut n = 0u64;
        while n < count {
            let now = now_ns();
            let end = match interval_ns {
                Some(i) => {
                    let due = (((now - t0) as f64 / i) as u64 + 1).min(count);
                    if due <= n {
                        thread::sleep(Duration::from_nanos(intended(n).saturating_sub(now)));
                        continue;
                    }
                    due.min(n + MAX_BATCH)
                }
                None => {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while sent_total.saturating_sub(received.load(Ordering::Relaxed)) > plan.window
                    {
                        if Instant::now() > deadline {
                            return Err("subscriber made no progress for 30 s".into());
                        }
                        thread::sleep(Duration::from_micros(50));
                    }
                    (n + MAX_BATCH).min(count)
                }
            };
            out.clear();
            for i in n..end {
                // As fast as possible: the intended time is now.
                let t = if interval_ns.is_some() {
                    intended(i)
                } else {
                    now
                };
                build_payload(&mut payload, t, i, plan.payload);
                channel.clear();
                if phase == 0 {
                    channel.extend_from_slice(WARM_CHANNEL);
                } else {
                    write!(channel, "bench:{}", i % 1000).expect("write to Vec");
                }
                encode_publish(&mut out, &channel, &payload);
            }
            stream.write_all(&out)?;
            sent_total += end - n;
            n = end;
        }
        if phase == 1 {
            send_seconds = (now_ns() - t0) as f64 / 1e9;
        }
    }
    out.clear();
    encode_publish(&mut out, STOP_CHANNEL, b"stop");
    stream.write_all(&out)?;
    let replies = reader.join().map_err(|_| "reply reader panicked")?;
    Ok(PublishReport {
        send_seconds,
        replies,
    })
}

// ---------------------------------------------------------------------------------------------
// Recording (runs on the thread that plays the gateway core)
// ---------------------------------------------------------------------------------------------

/// Whether the subscriber loop goes on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flow {
    Continue,
    Stop,
}

/// Per-message bookkeeping of a core: latency histogram, loss/duplicate detection, CPU window.
struct Recorder {
    /// Receive latency from intended send time, microseconds.
    hist: Histogram<u64>,
    /// One bit per measured sequence number, to count unique deliveries and duplicates.
    seen: Vec<u64>,
    /// Measured messages the publisher sends.
    total: u64,
    /// Distinct measured messages received.
    unique: u64,
    /// Measured messages received more than once.
    dups: u64,
    /// Messages whose payload could not be parsed or whose sequence is out of range.
    bad: u64,
    /// Messages seen so far (warm-up included), shared with the publisher for flow control.
    /// fred's thread adds the messages its broadcast channel dropped, so a loss cannot stall
    /// the publisher.
    progress: Arc<AtomicU64>,
    /// Receive time of the first and last measured message (ns since [`EPOCH`]).
    first_ns: u64,
    last_ns: u64,
    /// Thread CPU time at the first measured message and at the stop message.
    cpu_start: u64,
    cpu_end: u64,
    /// Whether the stop message arrived (everything before it was delivered).
    stopped: bool,
}

/// What a core recorded in one trial.
#[derive(Clone, Debug)]
struct RecvStats {
    hist: Histogram<u64>,
    unique: u64,
    dups: u64,
    bad: u64,
    first_ns: u64,
    last_ns: u64,
    cpu_ns: u64,
    stopped: bool,
}

impl Recorder {
    fn new(total: u64, progress: Arc<AtomicU64>) -> Recorder {
        Recorder {
            hist: Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("histogram bounds"),
            seen: vec![0; total.div_ceil(64) as usize],
            total,
            unique: 0,
            dups: 0,
            bad: 0,
            progress,
            first_ns: 0,
            last_ns: 0,
            cpu_start: 0,
            cpu_end: 0,
            stopped: false,
        }
    }

    /// Handles one `pmessage`: records it, or says stop.
    fn on_message(&mut self, channel: &[u8], payload: &[u8]) -> Flow {
        let now = now_ns();
        self.progress.fetch_add(1, Ordering::Relaxed);
        if channel == STOP_CHANNEL {
            self.cpu_end = thread_cpu_ns();
            self.stopped = true;
            return Flow::Stop;
        }
        if channel == WARM_CHANNEL {
            return Flow::Continue;
        }
        if self.first_ns == 0 {
            self.first_ns = now;
            self.cpu_start = thread_cpu_ns();
        }
        self.last_ns = now;
        let (Some(t), Some(seq)) = (json_u64(payload, b"\"t\":"), json_u64(payload, b"\"seq\":"))
        else {
            self.bad += 1;
            return Flow::Continue;
        };
        if seq >= self.total {
            self.bad += 1;
            return Flow::Continue;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.dups += 1;
        } else {
            self.seen[word] |= bit;
            self.unique += 1;
        }
        let us = now.saturating_sub(t) / 1_000;
        self.hist.saturating_record(us.clamp(1, HIST_MAX_US));
        Flow::Continue
    }

    fn finish(mut self) -> RecvStats {
        if !self.stopped {
            self.cpu_end = thread_cpu_ns();
        }
        RecvStats {
            hist: self.hist,
            unique: self.unique,
            dups: self.dups,
            bad: self.bad,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            cpu_ns: self.cpu_end.saturating_sub(self.cpu_start),
            stopped: self.stopped,
        }
    }
}

/// The unsigned integer that follows `key` in a small JSON payload (no full parse: both
/// subscribers do exactly this, so it does not bias the comparison).
fn json_u64(payload: &[u8], key: &[u8]) -> Option<u64> {
    let at = payload.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value = 0u64;
    let mut any = false;
    for &d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

// ---------------------------------------------------------------------------------------------
// Subscriber A: redis-protocol on monoio
// ---------------------------------------------------------------------------------------------

/// Which subscriber implementation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    /// A: redis-protocol on a monoio socket, recording on the same thread.
    Monoio,
    /// B: fred on tokio, forwarding through flume to a monoio core thread.
    Fred,
}

impl Client {
    fn label(self) -> &'static str {
        match self {
            Client::Monoio => "A redis-protocol/monoio",
            Client::Fred => "B fred/tokio + flume",
        }
    }
}

/// What a subscriber hands back after a trial.
struct SubReport {
    /// The core's recording.
    stats: RecvStats,
    /// B only: CPU time of the fred/tokio thread over the same window.
    helper_cpu_ns: u64,
    /// B only: messages fred's broadcast channel dropped because the forwarding task lagged.
    lagged: u64,
}

/// A subscriber running in the background: the thread that returns its report (B's joins its
/// core thread before returning).
type RunningSub = JoinHandle<Result<SubReport, BoxError>>;

/// Starts subscriber A; `ready` gets a message once `PSUBSCRIBE` is confirmed.
fn spawn_monoio(port: u16, recorder: Recorder, ready: mpsc::Sender<()>) -> io::Result<RunningSub> {
    thread::Builder::new().name("sub-monoio".into()).spawn(
        move || -> Result<SubReport, BoxError> {
            let mut rt = RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(4096)
                .enable_timer()
                .build()?;
            let stats = rt.block_on(monoio_subscriber(port, recorder, ready))?;
            Ok(SubReport {
                stats,
                helper_cpu_ns: 0,
                lagged: 0,
            })
        },
    )
}

/// The gateway-style subscriber loop: read into a `BytesMut`, split complete RESP frames off it
/// (zero-copy `Bytes`), record each `pmessage` right here.
async fn monoio_subscriber(
    port: u16,
    mut recorder: Recorder,
    ready: mpsc::Sender<()>,
) -> Result<RecvStats, BoxError> {
    let mut stream =
        monoio::net::TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    stream.set_nodelay(true)?;
    let mut cmd = Vec::new();
    write!(
        cmd,
        "*2\r\n$10\r\nPSUBSCRIBE\r\n${}\r\n{PATTERN}\r\n",
        PATTERN.len()
    )?;
    let (res, _) = stream.write_all(cmd).await;
    res?;
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    loop {
        while let Some((frame, _, _)) = decode_bytes_mut(&mut buf)? {
            let BytesFrame::Array(mut parts) = frame else {
                continue;
            };
            let kind = match parts.first() {
                Some(BytesFrame::BulkString(k)) => k.clone(),
                _ => continue,
            };
            if &kind[..] == b"pmessage" && parts.len() == 4 {
                let payload = frame_bytes(parts.pop());
                let channel = frame_bytes(parts.pop());
                if recorder.on_message(&channel, &payload) == Flow::Stop {
                    return Ok(recorder.finish());
                }
            } else if &kind[..] == b"psubscribe" {
                let _ = ready.send(());
            }
        }
        buf.reserve(READ_RESERVE);
        // monoio reads into a `BytesMut` from its *start*: read into the spare capacity only,
        // or a partial frame left from the previous read is overwritten.
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, spare) = stream.read(buf.slice_mut(len..cap)).await;
        buf = spare.into_inner();
        if res? == 0 {
            // Redis went away (e.g. killed after a deadline): report what we have.
            return Ok(recorder.finish());
        }
    }
}

fn frame_bytes(frame: Option<BytesFrame>) -> Bytes {
    match frame {
        Some(BytesFrame::BulkString(b)) | Some(BytesFrame::SimpleString(b)) => b,
        _ => Bytes::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriber B: fred on tokio, flume to a monoio core
// ---------------------------------------------------------------------------------------------

/// A message crossing from the fred thread to the core thread.
type Forwarded = (Bytes, Bytes);

/// Starts subscriber B: the fred/tokio thread and the monoio core thread it feeds.
fn spawn_fred(
    port: u16,
    recorder: Recorder,
    capacity: usize,
    deadline: Duration,
    ready: mpsc::Sender<()>,
) -> io::Result<RunningSub> {
    let progress = recorder.progress.clone();
    let (tx, rx) = flume::unbounded::<Forwarded>();
    let core = thread::Builder::new().name("sub-core".into()).spawn(
        move || -> Result<RecvStats, BoxError> {
            let mut rt = RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(4096)
                .enable_timer()
                .build()?;
            Ok(rt.block_on(async move {
                let mut recorder = recorder;
                while let Ok((channel, payload)) = rx.recv_async().await {
                    if recorder.on_message(&channel, &payload) == Flow::Stop {
                        break;
                    }
                }
                recorder.finish()
            }))
        },
    )?;
    thread::Builder::new()
        .name("sub-fred".into())
        .spawn(move || -> Result<SubReport, BoxError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let fred_side = rt.block_on(fred_subscriber(
                port, capacity, deadline, tx, ready, progress,
            ));
            // The sender is dropped by now, so the core thread ends even if fred failed.
            let stats = core.join().map_err(|_| "core thread panicked")??;
            let (helper_cpu_ns, lagged) = fred_side?;
            Ok(SubReport {
                stats,
                helper_cpu_ns,
                lagged,
            })
        })
}

/// fred's side: subscribe, then forward every message to the core until the stop message.
/// Returns this thread's CPU time over the measured window and the lagged (dropped) count.
async fn fred_subscriber(
    port: u16,
    capacity: usize,
    deadline: Duration,
    tx: flume::Sender<Forwarded>,
    ready: mpsc::Sender<()>,
    progress: Arc<AtomicU64>,
) -> Result<(u64, u64), BoxError> {
    use fred::prelude::*;
    use tokio::sync::broadcast::error::RecvError;

    let config = Config::from_url(&format!("redis://127.0.0.1:{port}"))?;
    let client = Builder::from_config(config)
        .with_performance_config(|perf| perf.broadcast_channel_capacity = capacity)
        .build_subscriber_client()?;
    // Take the receiver before subscribing so no message can be missed.
    let mut messages = client.message_rx();
    let connection = client.init().await?;
    client.psubscribe(PATTERN).await?;
    let _ = ready.send(());

    let end = tokio::time::Instant::now() + deadline;
    let (mut cpu_start, mut cpu_end, mut lagged) = (0u64, 0u64, 0u64);
    loop {
        let message = match tokio::time::timeout_at(end, messages.recv()).await {
            Err(_) => break, // deadline
            Ok(Err(RecvError::Lagged(n))) => {
                lagged += n;
                progress.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Ok(Err(RecvError::Closed)) => break,
            Ok(Ok(message)) => message,
        };
        let channel = message.channel.into_inner();
        let payload = message.value.into_bytes().unwrap_or_default();
        let stop = &channel[..] == STOP_CHANNEL;
        if cpu_start == 0 && !stop && &channel[..] != WARM_CHANNEL {
            cpu_start = thread_cpu_ns();
        }
        if stop {
            cpu_end = thread_cpu_ns();
        }
        if tx.send((channel, payload)).is_err() || stop {
            break;
        }
    }
    if cpu_end == 0 {
        cpu_end = thread_cpu_ns();
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), client.quit()).await;
    connection.abort();
    Ok((cpu_end.saturating_sub(cpu_start), lagged))
}

// ---------------------------------------------------------------------------------------------
// Trials
// ---------------------------------------------------------------------------------------------

/// One scenario of the comparison.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    /// Messages per second, `None` for as fast as possible.
    rate: Option<u64>,
    /// Measured messages.
    total: u64,
}

impl Scenario {
    fn label(&self, seconds: f64) -> String {
        match self.rate {
            Some(r) => format!("{} msg/s for {} s", thousands(r), seconds),
            None => format!("max, {} msgs", thousands(self.total)),
        }
    }
}

/// The figures of one (scenario, client, run).
#[derive(Clone, Debug, Default)]
struct Trial {
    received: u64,
    lost: u64,
    dups: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    recv_rate: f64,
    cpu_us_per_msg: f64,
    core_cpu_us_per_msg: f64,
    helper_cpu_us_per_msg: f64,
    lagged: u64,
    send_rate: f64,
}

fn run_trial(
    server: &RedisServer,
    opts: &Options,
    scenario: Scenario,
    client: Client,
) -> Result<Trial, BoxError> {
    wait_no_subscribers(server.port)?;
    let progress = Arc::new(AtomicU64::new(0));
    let recorder = Recorder::new(scenario.total, progress.clone());
    let (ready_tx, ready_rx) = mpsc::channel();
    // Generous bound for the whole trial: the publishing time at the planned rate plus slack.
    let planned = match scenario.rate {
        Some(r) => (scenario.total + opts.warmup) as f64 / r as f64,
        None => 60.0,
    };
    let trial_limit = Duration::from_secs_f64(planned + 30.0);
    let sub = match client {
        Client::Monoio => spawn_monoio(server.port, recorder, ready_tx)?,
        Client::Fred => spawn_fred(
            server.port,
            recorder,
            opts.fred_capacity,
            trial_limit,
            ready_tx,
        )?,
    };
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        return Err(format!("{}: not subscribed within 10 s", client.label()).into());
    }
    let plan = PublishPlan {
        warmup: opts.warmup,
        total: scenario.total,
        rate: scenario.rate,
        window: opts.window,
        payload: opts.payload,
    };
    let port = server.port;
    let publisher = thread::Builder::new()
        .name("publisher".into())
        .spawn(move || publish(port, plan, progress).map_err(|e| e.to_string()))?;
    let published = publisher.join().map_err(|_| "publisher panicked")??;
    if published.replies != opts.warmup + scenario.total + 1 {
        eprintln!("  warning: {} PUBLISH replies read back", published.replies);
    }

    // The stop message follows everything else; wait for the subscriber to see it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sub.is_finished() {
        if Instant::now() > deadline {
            return Err(format!(
                "{}: no stop message 30 s after publishing ended",
                client.label()
            )
            .into());
        }
        thread::sleep(Duration::from_millis(5));
    }
    let report = sub.join().map_err(|_| "subscriber panicked")??;
    let s = &report.stats;
    if !s.stopped {
        eprintln!(
            "  warning: {} ended without the stop message",
            client.label()
        );
    }
    let msgs = (s.unique + s.dups).max(1) as f64;
    let secs = s.last_ns.saturating_sub(s.first_ns) as f64 / 1e9;
    Ok(Trial {
        received: s.unique,
        lost: scenario.total - s.unique,
        dups: s.dups + s.bad,
        p50_us: s.hist.value_at_quantile(0.50) as f64,
        p99_us: s.hist.value_at_quantile(0.99) as f64,
        p999_us: s.hist.value_at_quantile(0.999) as f64,
        max_us: s.hist.max() as f64,
        recv_rate: if secs > 0.0 { (msgs - 1.0) / secs } else { 0.0 },
        cpu_us_per_msg: (s.cpu_ns + report.helper_cpu_ns) as f64 / 1e3 / msgs,
        core_cpu_us_per_msg: s.cpu_ns as f64 / 1e3 / msgs,
        helper_cpu_us_per_msg: report.helper_cpu_ns as f64 / 1e3 / msgs,
        lagged: report.lagged,
        send_rate: if published.send_seconds > 0.0 {
            scenario.total as f64 / published.send_seconds
        } else {
            0.0
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Field-wise medians of several trials.
fn medians(trials: &[Trial]) -> Trial {
    let m = |f: fn(&Trial) -> f64| median(trials.iter().map(f).collect());
    Trial {
        received: m(|t| t.received as f64) as u64,
        lost: m(|t| t.lost as f64) as u64,
        dups: m(|t| t.dups as f64) as u64,
        p50_us: m(|t| t.p50_us),
        p99_us: m(|t| t.p99_us),
        p999_us: m(|t| t.p999_us),
        max_us: m(|t| t.max_us),
        recv_rate: m(|t| t.recv_rate),
        cpu_us_per_msg: m(|t| t.cpu_us_per_msg),
        core_cpu_us_per_msg: m(|t| t.core_cpu_us_per_msg),
        helper_cpu_us_per_msg: m(|t| t.helper_cpu_us_per_msg),
        lagged: m(|t| t.lagged as f64) as u64,
        send_rate: m(|t| t.send_rate),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(us: f64) -> String {
    format!("{:.3}", us / 1e3)
}

fn cpu_cell(t: &Trial, client: Client) -> String {
    match client {
        Client::Monoio => format!("{:.2}", t.cpu_us_per_msg),
        Client::Fred => format!(
            "{:.2} ({:.2} fred + {:.2} core)",
            t.cpu_us_per_msg, t.helper_cpu_us_per_msg, t.core_cpu_us_per_msg
        ),
    }
}

fn print_trial(run: usize, label: &str, client: Client, t: &Trial) {
    eprintln!(
        "  run {run} | {label} | {} | recv {} lost {} dup {} lagged {} | p50 {} p99 {} p99.9 {} max {} ms | {:.0} msg/s recv, {:.0} msg/s sent | cpu {} us/msg",
        client.label(),
        t.received,
        t.lost,
        t.dups,
        t.lagged,
        ms(t.p50_us),
        ms(t.p99_us),
        ms(t.p999_us),
        ms(t.max_us),
        t.recv_rate,
        t.send_rate,
        cpu_cell(t, client)
    );
}

fn main() -> Result<(), BoxError> {
    now_ns(); // the clock starts here, before any thread reads it
    let opts = Options::parse()?;
    let mut scenarios: Vec<Scenario> = opts
        .rates
        .iter()
        .map(|&r| Scenario {
            rate: Some(r),
            total: (r as f64 * opts.seconds).round() as u64,
        })
        .collect();
    if opts.max_messages > 0 {
        scenarios.push(Scenario {
            rate: None,
            total: opts.max_messages,
        });
    }
    let clients: Vec<Client> = match opts.only {
        Some(c) => vec![c],
        None => vec![Client::Monoio, Client::Fred],
    };

    let server = RedisServer::start(&opts.redis_server, &[])?;
    eprintln!(
        "redis-server pid {} on 127.0.0.1:{} ({} runs, payload {} B, fred broadcast capacity {})",
        server.pid(),
        server.port,
        opts.runs,
        opts.payload,
        opts.fred_capacity
    );

    let started = Instant::now();
    let mut results: Vec<Vec<Vec<Trial>>> = vec![vec![Vec::new(); clients.len()]; scenarios.len()];
    for run in 1..=opts.runs {
        for (si, scenario) in scenarios.iter().enumerate() {
            // Alternate which client goes first, so drift in machine load does not favour one.
            let mut order: Vec<usize> = (0..clients.len()).collect();
            if run % 2 == 0 {
                order.reverse();
            }
            for ci in order {
                let client = clients[ci];
                let trial = run_trial(&server, &opts, *scenario, client)?;
                print_trial(run, &scenario.label(opts.seconds), client, &trial);
                results[si][ci].push(trial);
            }
        }
    }
    eprintln!("total time {:.0} s", started.elapsed().as_secs_f64());

    println!(
        "\nMedians of {} runs (latency from intended send time; CPU = subscriber thread(s) per received message)\n",
        opts.runs
    );
    println!("| scenario | subscriber | received | lost | p50 ms | p99 ms | p99.9 ms | max ms | recv msg/s | CPU us/msg |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (si, scenario) in scenarios.iter().enumerate() {
        let label = scenario.label(opts.seconds);
        let meds: Vec<Trial> = results[si].iter().map(|t| medians(t)).collect();
        for (ci, client) in clients.iter().enumerate() {
            let t = &meds[ci];
            let lost = if t.lagged > 0 {
                format!("{} ({} lagged)", thousands(t.lost), thousands(t.lagged))
            } else {
                thousands(t.lost)
            };
            println!(
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                client.label(),
                thousands(t.received),
                lost,
                ms(t.p50_us),
                ms(t.p99_us),
                ms(t.p999_us),
                ms(t.max_us),
                thousands(t.recv_rate.round() as u64),
                cpu_cell(t, *client),
            );
        }
        if clients.len() == 2 {
            // Ratios within each run, then their median: robust to load drifting between runs.
            let ratio = |f: fn(&Trial) -> f64| {
                median(
                    results[si][0]
                        .iter()
                        .zip(&results[si][1])
                        .map(|(a, b)| if f(a) > 0.0 { f(b) / f(a) } else { 0.0 })
                        .collect(),
                )
            };
            println!(
                "| {label} | **B / A** | | | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
                ratio(|t| t.p50_us),
                ratio(|t| t.p99_us),
                ratio(|t| t.p999_us),
                ratio(|t| t.max_us),
                ratio(|t| t.recv_rate),
                ratio(|t| t.cpu_us_per_msg),
            );
        }
    }
    drop(server);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_time_and_sequence() {
        let mut p = Vec::new();
        build_payload(&mut p, 123_456_789, 42, 200);
        assert_eq!(p.len(), 200);
        assert_eq!(json_u64(&p, b"\"t\":"), Some(123_456_789));
        assert_eq!(json_u64(&p, b"\"seq\":"), Some(42));
        assert_eq!(json_u64(b"{}", b"\"t\":"), None);
    }

    #[test]
    fn publish_is_valid_resp() {
        let mut out = Vec::new();
        encode_publish(&mut out, b"bench:7", b"hi");
        let (frame, used) = redis_protocol::resp2::decode::decode(&out)
            .unwrap()
            .unwrap();
        assert_eq!(used, out.len());
        assert_eq!(format!("{frame:?}").matches("BulkString").count(), 3);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(500_000), "500,000");
        assert_eq!(thousands(999), "999");
    }
}
