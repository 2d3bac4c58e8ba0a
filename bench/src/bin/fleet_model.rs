//! The fleet model: how many events a second one Redis carries to K gateway cores.
//!
//! A gateway core holds one Redis subscriber connection. In **pattern** mode (the default
//! design) it `PSUBSCRIBE`s every family's pattern, so Redis writes every event to every core
//! of the fleet: its work per event grows with K. In **channel** mode the unicast families
//! (player streams, private user channels) are subscribed per channel on the core that holds
//! the channel, so Redis writes a unicast event once; the broadcast patterns stay.
//!
//! This binary plays K cores as K light subscriber connections on one thread (a monoio
//! runtime, as a core reads), against a `redis-server` of its own on loopback, and publishes
//! unicast player events (`SSE::1::<player>`, the gateway's player channel) at rising rates:
//! `--start-rate` (in pattern mode scaled by 8/K, at least 50), times `--factor` each step of
//! `--seconds`, until Redis saturates. Each step
//! reports Redis CPU per published event (from `/proc/<pid>/stat`), Redis's share of a core,
//! publish-to-subscriber latency p50/p99 (every message's, from its intended send time, so a
//! publisher that falls behind shows as latency), the publisher's lag, and the subscriber
//! thread's share of a core (when it nears 1.0 the step measured the model, not Redis, and is
//! marked void).
//!
//! A step is **saturated** when Redis used 90% of a core or more, the subscribers had not
//! received every message 10 s after the step ended, the publisher fell more than 100 ms
//! behind, or p99 passed `--p99-ms`. The table's "carries" is the highest rate that was not.
//!
//! ```sh
//! cargo run --release -p bench --bin fleet_model -- --subscribers 8,32,128,512
//! cargo run --release -p bench --bin fleet_model -- --modes channel --subscribers 512
//! ```
//!
//! On this 2-core machine Redis takes one core and the subscribers and publisher share the
//! other: the figures are Redis's single-thread limits (`io-threads 1`, Debian's default).

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bench::redis_local::{
    encode_command, encode_publish, now_ns, process_cpu_ns, thread_cpu_ns, BoxError, RedisServer,
};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::{IoUringDriver, RuntimeBuilder};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;

/// Player channels are `SSE::1::<id>` with ids from here: six digits, so every channel (and
/// every message frame) has the same length.
const FIRST_PLAYER: u64 = 100_000;
/// Channels per `SUBSCRIBE` command.
const SUBSCRIBE_CHUNK: usize = 1_000;
/// Messages written per `write` by the publisher, at most.
const MAX_BATCH: u64 = 256;
/// Largest latency the histograms hold (60 s, in microseconds); larger values are clamped.
const HIST_MAX_US: u64 = 60_000_000;
/// Where the intended send time starts in a payload (after `{"t":"`; quoted, as JSON numbers
/// take no leading zeros), and its width.
const T_AT: usize = 6;
const T_DIGITS: usize = 20;
/// Where the step number starts (after `","s":"`), and its width.
const STEP_AT: usize = T_AT + T_DIGITS + 7;
const STEP_DIGITS: usize = 3;

/// Which subscriptions the K cores hold.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Mode {
    /// Every family's pattern on every core: each event to every core.
    Pattern,
    /// Broadcast patterns on every core, unicast channels on the one core that holds them.
    Channel,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Pattern => "pattern",
            Mode::Channel => "channel",
        }
    }
}

/// How many events a second one Redis carries to K gateway cores (see the module docs).
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "fleet_model")]
struct Options {
    /// K values: subscriber connections, one per gateway core of the modelled fleet.
    #[arg(long, value_delimiter = ',', default_value = "8,32,128,512",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    subscribers: Vec<usize>,
    /// Modes to run, each for every K.
    #[arg(long, value_delimiter = ',', default_value = "pattern,channel")]
    modes: Vec<Mode>,
    /// First step's rate, events a second (pattern mode: for 8 cores, scaled by 8/K).
    #[arg(long, default_value_t = 1_000.0)]
    start_rate: f64,
    /// Rate factor per step (more than 1).
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// Most steps per (mode, K).
    #[arg(long, default_value_t = 14, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=998))]
    max_steps: usize,
    /// Length of a step, seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Distinct player channels published to (round-robin; six-digit ids).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=900_000))]
    players: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 200, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(64..=65_536))]
    payload: usize,
    /// p99 above this (milliseconds) counts as saturated.
    #[arg(long, default_value_t = 100.0)]
    p99_ms: f64,
    /// The redis-server binary.
    #[arg(long, default_value = "redis-server")]
    redis_server: String,
}

impl Options {
    /// Parses the command line; clap prints usage and exits on a bad one.
    fn parse() -> Result<Options, BoxError> {
        let o = <Options as clap::Parser>::parse();
        if o.start_rate <= 0.0 || o.factor <= 1.0 || o.seconds <= 0.0 {
            return Err("--start-rate and --seconds must be > 0, --factor > 1".into());
        }
        Ok(o)
    }
}

/// A player's channel name.
fn channel(player: u64) -> String {
    format!("SSE::1::{}", FIRST_PLAYER + player)
}

/// A payload of exactly `size` bytes carrying the intended send time and the step.
fn build_payload(out: &mut Vec<u8>, t_ns: u64, step: usize, seq: u64, size: usize) {
    out.clear();
    write!(out, r#"{{"t":"{t_ns:020}","s":"{step:03}","q":{seq},"p":""#).expect("write to Vec");
    while out.len() + 2 < size {
        out.push(b'x');
    }
    out.extend_from_slice(br#""}"#);
}

/// A decimal field of fixed width at `at`.
fn digits(b: &[u8], at: usize, width: usize) -> Option<u64> {
    let field = b.get(at..at + width)?;
    field.iter().try_fold(0u64, |v, &d| {
        d.is_ascii_digit().then(|| v * 10 + u64::from(d - b'0'))
    })
}

// ---------------------------------------------------------------------------------------------
// Subscribers: K connections on one monoio thread
// ---------------------------------------------------------------------------------------------

/// What the subscribers recorded, per step (index = step number).
struct Recorded {
    /// Latency from intended send time, microseconds.
    hist: Vec<Histogram<u64>>,
    /// Messages received.
    received: Vec<u64>,
    /// Frames that were not the expected message (a wrong length or shape): the model's
    /// assumption broke and its figures are void.
    bad: u64,
}

/// Shared between the subscriber thread and the main thread.
struct Shared {
    recorded: Mutex<Recorded>,
    /// Connections whose subscriptions Redis confirmed.
    ready: AtomicUsize,
    /// Connections that ended (Redis closed them, or an error).
    ended: AtomicUsize,
    /// The subscriber thread's CPU time so far, nanoseconds (updated every read).
    cpu_ns: AtomicU64,
}

/// One connection's subscriptions as RESP commands, and how many confirmations they bring.
fn subscribe_commands(mode: Mode, k: usize, i: usize, players: u64) -> (Vec<u8>, usize) {
    // The gateway's own patterns for the mode: in channel mode the unicast families'
    // (players, private user channels) are replaced by per-channel subscriptions.
    let patterns: Vec<String> =
        gateway::internals::RouteTable::builtin().redis_patterns(mode == Mode::Channel);
    let mut out = Vec::new();
    let mut confirms = patterns.len();
    let args: Vec<&[u8]> = std::iter::once(&b"PSUBSCRIBE"[..])
        .chain(patterns.iter().map(|p| p.as_bytes()))
        .collect();
    encode_command(&mut out, &args);
    if mode == Mode::Channel {
        let mine: Vec<String> = (0..players)
            .filter(|p| (*p % k as u64) as usize == i)
            .map(channel)
            .collect();
        for chunk in mine.chunks(SUBSCRIBE_CHUNK) {
            let args: Vec<&[u8]> = std::iter::once(&b"SUBSCRIBE"[..])
                .chain(chunk.iter().map(|c| c.as_bytes()))
                .collect();
            encode_command(&mut out, &args);
        }
        confirms += mine.len();
    }
    (out, confirms)
}

/// The byte length of every message frame a subscriber receives in `mode`, and where the
/// payload starts in it.
fn frame_shape(mode: Mode, payload: usize) -> (usize, usize) {
    let body = vec![b'x'; payload];
    let ch = channel(0);
    let mut frame = Vec::new();
    match mode {
        Mode::Pattern => encode_command(
            &mut frame,
            &[b"pmessage", b"SSE::*::*", ch.as_bytes(), &body],
        ),
        Mode::Channel => encode_command(&mut frame, &[b"message", ch.as_bytes(), &body]),
    }
    (frame.len(), frame.len() - 2 - payload)
}

/// Runs K subscriber connections until Redis closes them.
fn spawn_subscribers(
    port: u16,
    mode: Mode,
    k: usize,
    o: &Options,
    shared: Arc<Shared>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let (players, payload) = (o.players, o.payload);
    thread::Builder::new()
        .name("subscribers".into())
        .spawn(move || {
            let mut rt = match RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(4096)
                .enable_timer()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("subscribers: no io_uring runtime: {e}");
                    shared.ended.store(k, Ordering::Relaxed);
                    return;
                }
            };
            rt.block_on(async move {
                let left = Rc::new(RefCell::new(k));
                let (done_tx, done_rx) = flume_pair();
                for i in 0..k {
                    let shared = shared.clone();
                    let left = left.clone();
                    let done_tx = done_tx.clone();
                    monoio::spawn(async move {
                        if let Err(e) =
                            subscriber(port, mode, k, i, players, payload, &shared).await
                        {
                            eprintln!("subscriber {i}: {e}");
                        }
                        shared.ended.fetch_add(1, Ordering::Relaxed);
                        *left.borrow_mut() -= 1;
                        if *left.borrow() == 0 {
                            let _ = done_tx.send(());
                        }
                    });
                }
                let _ = done_rx.recv_async().await;
            });
        })
}

/// A one-shot signal between tasks of one runtime.
fn flume_pair() -> (flume::Sender<()>, flume::Receiver<()>) {
    flume::bounded(1)
}

/// One core's subscriber connection: subscribe, say ready, record every message.
async fn subscriber(
    port: u16,
    mode: Mode,
    k: usize,
    i: usize,
    players: u64,
    payload: usize,
    shared: &Shared,
) -> Result<(), BoxError> {
    let mut stream =
        monoio::net::TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    stream.set_nodelay(true)?;
    let (cmd, mut confirms) = subscribe_commands(mode, k, i, players);
    let (res, _) = stream.write_all(cmd).await;
    res?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while confirms > 0 {
        while let Some((frame, _, _)) = decode_bytes_mut(&mut buf)? {
            match frame {
                BytesFrame::Array(a) if a.len() == 3 => confirms -= 1,
                other => return Err(format!("unexpected reply {other:?}").into()),
            }
        }
        if confirms > 0 {
            buf = read_more(&mut stream, buf).await?;
        }
    }
    shared.ready.fetch_add(1, Ordering::Relaxed);
    let (frame_len, payload_at) = frame_shape(mode, payload);
    let mut latencies: Vec<(usize, u64)> = Vec::with_capacity(1024);
    loop {
        while buf.len() >= frame_len {
            let frame = &buf[..frame_len];
            let body = &frame[payload_at..];
            match (
                frame[0] == b'*',
                digits(body, T_AT, T_DIGITS),
                digits(body, STEP_AT, STEP_DIGITS),
            ) {
                (true, Some(t), Some(step)) => {
                    let us = now_ns().saturating_sub(t) / 1_000;
                    latencies.push((step as usize, us.clamp(1, HIST_MAX_US)));
                }
                _ => {
                    shared.recorded.lock().map_err(|_| "poisoned")?.bad += 1;
                    return Err("a frame of another shape: the model's figures are void".into());
                }
            }
            buf.advance(frame_len);
        }
        if !latencies.is_empty() {
            let mut r = shared.recorded.lock().map_err(|_| "poisoned")?;
            for &(step, us) in &latencies {
                if let Some(h) = r.hist.get_mut(step) {
                    h.saturating_record(us);
                }
                if let Some(n) = r.received.get_mut(step) {
                    *n += 1;
                }
            }
            latencies.clear();
        }
        shared.cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
        match read_more(&mut stream, buf).await {
            Ok(b) => buf = b,
            // Redis stopped: the run is over.
            Err(_) => return Ok(()),
        }
    }
}

/// One read into the spare capacity of `buf` (monoio reads from a buffer's start otherwise).
async fn read_more(
    stream: &mut monoio::net::TcpStream,
    mut buf: BytesMut,
) -> Result<BytesMut, BoxError> {
    if buf.capacity() - buf.len() < 16 * 1024 {
        buf.reserve(64 * 1024);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
    let buf = slice.into_inner();
    if res? == 0 {
        return Err("Redis closed the connection".into());
    }
    Ok(buf)
}

// ---------------------------------------------------------------------------------------------
// Publisher
// ---------------------------------------------------------------------------------------------

/// What the publisher saw in one step.
struct Published {
    /// Events sent.
    events: u64,
    /// The most any batch was written after its last event's intended time, microseconds.
    lag_us: u64,
}

/// Publishes `events` events at `rate` a second over `stream`, paced by intended times.
fn publish_step(
    stream: &mut TcpStream,
    step: usize,
    first_seq: u64,
    rate: f64,
    events: u64,
    o: &Options,
) -> Result<Published, BoxError> {
    let interval_ns = 1e9 / rate;
    let t0 = now_ns();
    let intended = |n: u64| t0 + (n as f64 * interval_ns) as u64;
    let mut out = Vec::with_capacity(MAX_BATCH as usize * (o.payload + 64));
    let mut payload = Vec::with_capacity(o.payload + 32);
    let mut n = 0u64;
    let mut lag_us = 0u64;
    while n < events {
        let now = now_ns();
        let due = (((now - t0) as f64 / interval_ns) as u64 + 1).min(events);
        if due <= n {
            thread::sleep(Duration::from_nanos(intended(n).saturating_sub(now)));
            continue;
        }
        let end = due.min(n + MAX_BATCH);
        out.clear();
        for i in n..end {
            let seq = first_seq + i;
            build_payload(&mut payload, intended(i), step, seq, o.payload);
            encode_publish(&mut out, channel(seq % o.players).as_bytes(), &payload);
        }
        stream.write_all(&out)?;
        lag_us = lag_us.max(now_ns().saturating_sub(intended(end - 1)) / 1_000);
        n = end;
    }
    Ok(Published { events, lag_us })
}

// ---------------------------------------------------------------------------------------------
// A run: one mode, one K
// ---------------------------------------------------------------------------------------------

/// One step's figures.
struct Step {
    rate: f64,
    redis_us_per_event: f64,
    redis_core: f64,
    sub_core: f64,
    p50_ms: f64,
    p99_ms: f64,
    lag_ms: f64,
    lost: u64,
    saturated: bool,
    void: bool,
}

/// The first step's rate. In pattern mode Redis writes each event K times, so a fleet of many
/// cores saturates it at a rate a small one barely notices: the start is `start` for 8 cores,
/// scaled by 8/K (at least 50 events a second), so every K gets several steps below its limit.
/// In channel mode a unicast event is written once whatever K, and the start is `start`.
fn first_rate(mode: Mode, k: usize, start: f64) -> f64 {
    match mode {
        Mode::Pattern => (start * 8.0 / k as f64).max(50.0).min(start),
        Mode::Channel => start,
    }
}

fn run(mode: Mode, k: usize, o: &Options) -> Result<Vec<Step>, BoxError> {
    let redis = RedisServer::start(&o.redis_server, &[])?;
    let shared = Arc::new(Shared {
        recorded: Mutex::new(Recorded {
            hist: (0..=o.max_steps)
                .map(|_| Histogram::new_with_bounds(1, HIST_MAX_US, 3))
                .collect::<Result<_, _>>()?,
            received: vec![0; o.max_steps + 1],
            bad: 0,
        }),
        ready: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
        cpu_ns: AtomicU64::new(0),
    });
    let subs = spawn_subscribers(redis.port, mode, k, o, shared.clone())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.ready.load(Ordering::Relaxed) < k {
        if shared.ended.load(Ordering::Relaxed) > 0 || Instant::now() > deadline {
            return Err(format!(
                "only {} of {k} subscribers came up",
                shared.ready.load(Ordering::Relaxed)
            )
            .into());
        }
        thread::sleep(Duration::from_millis(10));
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, redis.port));
    let mut publisher = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    publisher.set_nodelay(true)?;
    // PUBLISH replies (`:<receivers>\r\n`) are read and dropped on their own thread.
    let mut replies = publisher.try_clone()?;
    thread::Builder::new()
        .name("replies".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(replies.read(&mut buf), Ok(n) if n > 0) {}
        })?;
    let per_event = match mode {
        Mode::Pattern => k as u64,
        Mode::Channel => 1,
    };
    let mut steps = Vec::new();
    let mut seq = 0u64;
    // Step 0 warms up (connections, allocations) at the first rate for one second; not reported.
    for step in 0..=o.max_steps {
        let rate = first_rate(mode, k, o.start_rate) * o.factor.powi(step.saturating_sub(1) as i32);
        let seconds = if step == 0 { 1.0 } else { o.seconds };
        let events = (rate * seconds).round().max(1.0) as u64;
        let (redis0, sub0, t0) = (
            process_cpu_ns(redis.pid())?,
            shared.cpu_ns.load(Ordering::Relaxed),
            Instant::now(),
        );
        let published = publish_step(&mut publisher, step, seq, rate, events, o)?;
        seq += events;
        let expected = published.events * per_event;
        let drain_deadline = Instant::now() + Duration::from_secs(10);
        let received = loop {
            let got = shared.recorded.lock().map_err(|_| "poisoned")?.received[step];
            if got >= expected || Instant::now() > drain_deadline {
                break got;
            }
            thread::sleep(Duration::from_millis(5));
        };
        let wall = t0.elapsed().as_secs_f64();
        let redis_cpu = process_cpu_ns(redis.pid())?.saturating_sub(redis0) as f64;
        let sub_cpu = shared.cpu_ns.load(Ordering::Relaxed).saturating_sub(sub0) as f64;
        if step == 0 {
            continue;
        }
        let r = shared.recorded.lock().map_err(|_| "poisoned")?;
        let h = &r.hist[step];
        let s = Step {
            rate,
            redis_us_per_event: redis_cpu / 1e3 / events as f64,
            redis_core: redis_cpu / 1e9 / wall,
            sub_core: sub_cpu / 1e9 / wall,
            p50_ms: h.value_at_quantile(0.5) as f64 / 1e3,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1e3,
            lag_ms: published.lag_us as f64 / 1e3,
            lost: expected.saturating_sub(received),
            saturated: false,
            void: r.bad > 0,
        };
        drop(r);
        let saturated =
            s.redis_core >= 0.9 || s.lost > 0 || s.lag_ms > 100.0 || s.p99_ms > o.p99_ms;
        let s = Step {
            saturated,
            void: s.void || (s.sub_core >= 0.9 && s.redis_core < 0.9),
            ..s
        };
        println!(
            "  {:>7} K={k:<4} {:>9.0} ev/s  redis {:>6.2} us/ev {:>4.2} core  p50 {:>7.2} ms  p99 {:>8.2} ms  lag {:>7.1} ms  subscribers {:>4.2} core  lost {}{}{}",
            mode.name(),
            s.rate,
            s.redis_us_per_event,
            s.redis_core,
            s.p50_ms,
            s.p99_ms,
            s.lag_ms,
            s.sub_core,
            s.lost,
            if s.saturated { "  SATURATED" } else { "" },
            if s.void { "  VOID (subscriber-bound)" } else { "" },
        );
        let stop = s.saturated;
        steps.push(s);
        if stop {
            break;
        }
    }
    drop(publisher);
    drop(redis);
    let _ = subs.join();
    Ok(steps)
}

fn main() -> Result<(), BoxError> {
    let o = Options::parse()?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "fleet model: {} players, payload {} B, {} s steps from {} ev/s (x{}), load average before: {}",
        o.players,
        o.payload,
        o.seconds,
        o.start_rate,
        o.factor,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let mut rows = Vec::new();
    for &mode in &o.modes {
        for &k in &o.subscribers {
            let steps = run(mode, k, &o)?;
            rows.push((mode, k, steps));
        }
    }
    println!("\n| mode | K subscriber cores | carries (ev/s) | Redis us/event there | p50 / p99 there (ms) | saturates at (ev/s) |");
    println!("|---|---|---|---|---|---|");
    for (mode, k, steps) in &rows {
        let held = steps.iter().rev().find(|s| !s.saturated && !s.void);
        let sat = steps.iter().find(|s| s.saturated);
        let void = steps.iter().any(|s| s.void);
        println!(
            "| {} | {k} | {} | {} | {} | {}{} |",
            mode.name(),
            held.map_or("-".into(), |s| format!("{:.0}", s.rate)),
            held.map_or("-".into(), |s| format!("{:.2}", s.redis_us_per_event)),
            held.map_or("-".into(), |s| format!("{:.2} / {:.2}", s.p50_ms, s.p99_ms)),
            sat.map_or("not reached".into(), |s| format!("{:.0}", s.rate)),
            if void {
                " (a step was subscriber-bound: void)"
            } else {
                ""
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_their_size_and_fixed_fields() {
        let mut p = Vec::new();
        build_payload(&mut p, 123_456_789, 7, 42, 200);
        assert_eq!(p.len(), 200);
        assert_eq!(digits(&p, T_AT, T_DIGITS), Some(123_456_789));
        assert_eq!(digits(&p, STEP_AT, STEP_DIGITS), Some(7));
        assert!(serde_json::from_slice::<serde_json::Value>(&p).is_ok());
    }

    #[test]
    fn every_message_frame_of_a_mode_has_one_length() {
        for mode in [Mode::Pattern, Mode::Channel] {
            let (len, at) = frame_shape(mode, 200);
            assert_eq!(len - at, 202, "{mode:?}");
        }
        assert_eq!(channel(0).len(), channel(899_999).len());
    }

    #[test]
    fn channel_mode_gives_each_player_to_one_core() {
        let (_, c0) = subscribe_commands(Mode::Channel, 4, 0, 10);
        let (_, c3) = subscribe_commands(Mode::Channel, 4, 3, 10);
        let (_, p) = subscribe_commands(Mode::Pattern, 4, 0, 10);
        let patterns = p;
        // Players 0, 4, 8 on core 0; 3, 7 on core 3; pattern mode subscribes only patterns,
        // channel mode two fewer (the unicast ones).
        assert_eq!(c0, patterns - 2 + 3);
        assert_eq!(c3, patterns - 2 + 2);
    }
}
