//! Publishers: Redis `PUBLISH` or `FCALL ssegw_publish` (raw RESP, pipelined), Redis Cluster
//! `SPUBLISH` on each channel's master ([`crate::cluster`]), or HTTP `POST` (pipelined
//! keep-alive requests, templates for URL and body so the gateway's, nchan's or Pushpin's
//! publish API all work).
//!
//! Pacing: event `k` has an intended send time (`start + k / rate`, or its broadcast round's
//! time). Each connection runs on its own thread: it sleeps until the next event is due and
//! sends in one write every event whose time has come; a second thread reads the replies, so
//! writing never waits for them (open loop). The payload carries the intended time, not the
//! actual one, so a publisher or server that falls behind shows up as latency instead of
//! silently publishing less (coordinated omission).
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::chunked::Dechunker;
use crate::cluster::{self, Shards};
use crate::http::{self, Framing};
use crate::now_us;
use crate::opts::Opts;
use crate::seqs;
use crate::template::{Template, Vars};

/// Most events in one write.
const MAX_BATCH: u64 = 256;

/// When each event of a job is due.
#[derive(Debug, Clone, Copy)]
pub enum Timing {
    /// `rate` events a second, evenly spaced.
    Paced {
        /// Events per second.
        rate: f64,
    },
    /// Rounds of `per_round` events (one per channel), `interval_us` apart.
    Rounds {
        /// Events per round.
        per_round: u64,
        /// Microseconds between rounds.
        interval_us: u64,
    },
}

/// One publishing job: events `first..first + count`.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// First event number (numbers continue across a plan's phases so sequence numbers do).
    pub first: u64,
    /// Events to publish.
    pub count: u64,
    /// Their timing.
    pub timing: Timing,
    /// Intended time of the first event, unix microseconds.
    pub start_us: u64,
}

impl Job {
    /// Intended send time of event `k`.
    pub fn due(&self, k: u64) -> u64 {
        let n = k - self.first;
        match self.timing {
            Timing::Paced { rate } => self.start_us + (n as f64 * 1e6 / rate) as u64,
            Timing::Rounds {
                per_round,
                interval_us,
            } => self.start_us + (n / per_round) * interval_us,
        }
    }
}

/// What a job did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Events published (acknowledged).
    pub sent: u64,
    /// Refused or failed.
    pub errors: u64,
    /// Latest send after the intended time, microseconds.
    pub lag_max_us: u64,
    /// Redis: fewest receivers reported by a PUBLISH.
    pub receivers_min: Option<u64>,
    /// Redis Cluster: of the errors, `MOVED` answers (the slot map changed since it was read).
    pub moved: u64,
    /// Wall time from the first intended send to the last reply, seconds.
    pub seconds: f64,
}

/// Where events go, parsed once.
#[derive(Debug, Clone)]
enum Target {
    /// `PUBLISH channel payload` over RESP, or `FCALL ssegw_publish 1 channel payload`.
    Redis {
        /// The Redis server.
        addr: std::net::SocketAddr,
        /// `FCALL ssegw_publish 1` (the gateway's durable path) instead of `PUBLISH`.
        durable: bool,
    },
    /// `SPUBLISH channel payload` over RESP, on a connection to the channel's master.
    Cluster {
        /// The masters, and which one each channel's events go to.
        shards: Shards,
    },
    /// `POST path` with a templated body.
    Http {
        /// The server.
        addr: std::net::SocketAddr,
        /// Its `Host` header.
        host: String,
        /// Path and query template (nchan: `/pub?id={channel}`).
        path: Template,
        /// Body template.
        body: Template,
    },
}

/// Checks and parses the publish settings. A cluster's slot map is read here, so at the
/// start of each publishing phase.
fn target(o: &Opts) -> Result<Target, String> {
    if let Some(list) = o.publish.strip_prefix("redis-cluster://") {
        let map = cluster::slot_map(&cluster::seeds(list)?)?;
        let shards = Shards::new(
            &map,
            &Template::parse(&o.channel),
            o.players as u64,
            o.brand,
        )?;
        Ok(Target::Cluster { shards })
    } else if let Some(rest) = o.publish.strip_prefix("redis://") {
        let hostport = rest.rsplit('@').next().unwrap_or(rest);
        let hostport = hostport.split('/').next().unwrap_or(hostport);
        let u = http::parse_url(&format!("http://{hostport}/"))?;
        Ok(Target::Redis {
            addr: u.addr,
            durable: o.durable,
        })
    } else {
        let u = http::parse_url(&o.publish)?;
        Ok(Target::Http {
            addr: u.addr,
            host: u.host,
            path: Template::parse(&u.path),
            body: Template::parse(&o.publish_body),
        })
    }
}

/// Counters the parent's progress line reads while a job runs.
#[derive(Debug, Default)]
pub struct Live {
    /// Events acknowledged so far.
    pub sent: AtomicU64,
    /// Set to stop early.
    pub stop: AtomicBool,
    /// Event number to end before, when lower than the job's end (0: the job's end). Unlike
    /// `stop`, every lane ends at the same number, so the events sent stay `first..end` and
    /// the expected deliveries follow from it (deploy ends its publishing this way).
    pub end: AtomicU64,
}

impl Live {
    /// Where `job` ends now: its own end, or `end` when that was set lower.
    pub fn end_of(&self, job: &Job) -> u64 {
        let own = job.first + job.count;
        match self.end.load(Ordering::Relaxed) {
            0 => own,
            e => e.clamp(job.first, own),
        }
    }
}

/// The RESP command for `FCALL_RO ssegw_version 0`.
const VERSION_CMD: &[u8] = b"*3\r\n$8\r\nFCALL_RO\r\n$13\r\nssegw_version\r\n$1\r\n0\r\n";

/// Makes sure the Redis at `addr` holds the gateway's `ssegw` function library, as the
/// gateway does (`ensure_library` in `gateway/src/broker/redis.rs`): absent, loaded; older
/// than this build's, replaced; newer (a newer gateway's), left alone. Retries (at most
/// `timeout`) while Redis does not answer.
///
/// Why loadgen loads it rather than waiting for a node to: a node loads the library when its
/// publisher link first connects, which is at its first HTTP publish or Redis history read;
/// a run that publishes straight to Redis may never cause either before its first event. The
/// text is the gateway crate's own (`gateway::broker::durable::LIBRARY`), so loadgen and the
/// nodes it measures load the same library.
pub fn ensure_library(addr: std::net::SocketAddr, timeout: Duration) -> Result<i64, String> {
    use gateway::broker::durable::{LIBRARY, VERSION};
    let end = std::time::Instant::now() + timeout;
    loop {
        let last = match version_once(addr) {
            Ok(v) if v >= VERSION => return Ok(v),
            Ok(_) => load_once(addr, LIBRARY, true),
            Err(e) if e.contains("not found") => load_once(addr, LIBRARY, false),
            Err(e) => Err(e),
        };
        let last = match last {
            Ok(()) => continue,
            Err(e) => e,
        };
        if std::time::Instant::now() >= end {
            return Err(format!(
                "cannot find or load the ssegw function library in Redis at {addr} within {timeout:?}: {last}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One request on a fresh connection; the first line of the answer (RESP: enough for an
/// integer, a simple string, an error or a bulk string's length).
fn request_once(addr: std::net::SocketAddr, cmd: &[u8]) -> Result<Vec<u8>, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    s.write_all(cmd).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        if buf.len() > 4096 {
            return Err("an answer line over 4 KiB".into());
        }
        match s.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return Err("closed".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(buf)
}

/// `FUNCTION LOAD [REPLACE] <library>`; another process loading it first is as good.
fn load_once(addr: std::net::SocketAddr, library: &str, replace: bool) -> Result<(), String> {
    let mut cmd = Vec::with_capacity(library.len() + 64);
    let args: &[&[u8]] = if replace {
        &[b"FUNCTION", b"LOAD", b"REPLACE", library.as_bytes()]
    } else {
        &[b"FUNCTION", b"LOAD", library.as_bytes()]
    };
    cmd.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        cmd.extend_from_slice(a);
        cmd.extend_from_slice(b"\r\n");
    }
    load_reply(&request_once(addr, &cmd)?)
}

/// The answer to `FUNCTION LOAD`: the library's name, or "already exists" (a gateway node
/// loaded it meanwhile), or why not.
fn load_reply(b: &[u8]) -> Result<(), String> {
    let line = b.split(|&c| c == b'\r').next().unwrap_or(b);
    match line.first() {
        Some(b'$') | Some(b'+') => Ok(()),
        _ if line.windows(14).any(|w| w == b"already exists") => Ok(()),
        _ => Err(format!("FUNCTION LOAD: {}", String::from_utf8_lossy(line))),
    }
}

fn version_once(addr: std::net::SocketAddr) -> Result<i64, String> {
    version_reply(&request_once(addr, VERSION_CMD)?)
}

/// The answer to `FCALL_RO ssegw_version 0`: `:N`, or why not.
fn version_reply(b: &[u8]) -> Result<i64, String> {
    let line = b.split(|&c| c == b'\r').next().unwrap_or(b);
    match line.split_first() {
        Some((b':', n)) => std::str::from_utf8(n)
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("unexpected answer {}", String::from_utf8_lossy(line))),
        _ => Err(String::from_utf8_lossy(line).into_owned()),
    }
}

/// Runs `job` on its own thread; join the handle for the outcome.
pub fn spawn(
    o: &Opts,
    job: Job,
    live: Arc<Live>,
) -> Result<std::thread::JoinHandle<Outcome>, String> {
    let t = target(o)?;
    if let Target::Redis {
        addr,
        durable: true,
    } = t
    {
        ensure_library(addr, Duration::from_secs(10))?;
    }
    let conns = o.publish_conns;
    let channel = Template::parse(&o.channel);
    let payload = Template::parse(&o.payload);
    let (players, brand, tick) = (o.players as u64, o.brand, o.tick_us);
    let enc = Arc::new(Encoder {
        target: t,
        channel,
        payload,
        players,
        brand,
    });
    let shards = enc.shards();
    Ok(std::thread::spawn(move || {
        // `conns` lanes; on a cluster, each lane has a connection to every master.
        let lanes: Vec<_> = (0..conns as u64)
            .flat_map(|lane| (0..shards).map(move |shard| (lane, shard)))
            .map(|(lane, shard)| {
                let (enc, live) = (enc.clone(), live.clone());
                let lanes = conns as u64;
                std::thread::spawn(move || lane_run(&enc, job, lane, lanes, shard, tick, &live))
            })
            .collect();
        let mut total = Outcome::default();
        for h in lanes {
            let o = h.join().unwrap_or_default();
            total.sent += o.sent;
            total.errors += o.errors;
            total.moved += o.moved;
            total.lag_max_us = total.lag_max_us.max(o.lag_max_us);
            total.receivers_min = match (total.receivers_min, o.receivers_min) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        total.seconds = now_us().saturating_sub(job.start_us) as f64 / 1e6;
        total
    }))
}

/// Encodes events for one target.
struct Encoder {
    /// Redis or HTTP, and where.
    target: Target,
    /// Channel name template (`{player}`, `{brand}`).
    channel: Template,
    /// Payload template (`{seq}`, `{t}` and the rest).
    payload: Template,
    /// Channels: event `k` goes to `k % players`.
    players: u64,
    /// Brand id for the templates.
    brand: u64,
}

impl Encoder {
    /// Appends event `k` (intended time `t`) to `out`; `scratch` is reused.
    fn encode(&self, k: u64, t: u64, out: &mut Vec<u8>, scratch: &mut [Vec<u8>; 3]) {
        let (player, seq) = seqs::target(k, self.players);
        let [ch, pl, body] = scratch;
        ch.clear();
        pl.clear();
        body.clear();
        let mut v = Vars {
            player,
            brand: self.brand,
            seq,
            t,
            ..Vars::default()
        };
        self.channel.render(&v, ch);
        v.channel = ch;
        self.payload.render(&v, pl);
        v.payload = pl;
        match &self.target {
            Target::Redis { .. } | Target::Cluster { .. } => {
                match self.target {
                    Target::Redis { durable: true, .. } => out.extend_from_slice(
                        b"*5\r\n$5\r\nFCALL\r\n$13\r\nssegw_publish\r\n$1\r\n1\r\n",
                    ),
                    Target::Cluster { .. } => out.extend_from_slice(b"*3\r\n$8\r\nSPUBLISH\r\n"),
                    _ => out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n"),
                }
                for part in [&ch[..], &pl[..]] {
                    out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
                    out.extend_from_slice(part);
                    out.extend_from_slice(b"\r\n");
                }
            }
            Target::Http {
                host,
                path,
                body: b,
                ..
            } => {
                b.render(&v, body);
                out.extend_from_slice(b"POST ");
                path.render(&v, out);
                out.extend_from_slice(
                    format!(
                        " HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(body);
            }
        }
    }

    /// How many shards the events are split over: a cluster's masters, else one.
    fn shards(&self) -> usize {
        match &self.target {
            Target::Cluster { shards } => shards.masters.len(),
            _ => 1,
        }
    }

    /// Where shard `shard`'s connections go.
    fn addr(&self, shard: usize) -> Option<std::net::SocketAddr> {
        match &self.target {
            Target::Redis { addr, .. } | Target::Http { addr, .. } => Some(*addr),
            Target::Cluster { shards } => shards.masters.get(shard).copied(),
        }
    }

    /// Whether event `k` goes out on shard `shard`'s connections: always, but on a cluster,
    /// where it goes to its channel's master only.
    fn owns(&self, shard: usize, k: u64) -> bool {
        match &self.target {
            Target::Cluster { shards } => shards.of_event(k, self.players) == shard,
            _ => true,
        }
    }
}

/// The events one connection sends: every `lanes`-th event from its lane's first, those of
/// its shard, before `end` (the job's own end).
#[derive(Clone, Copy)]
struct Share<'a> {
    /// The encoder, which knows each event's shard.
    enc: &'a Encoder,
    /// Lanes (connections per shard): the step between a lane's events.
    lanes: u64,
    /// This connection's shard.
    shard: usize,
    /// The job's end: no event at or past it is anyone's.
    end: u64,
}

impl Share<'_> {
    /// The first event of this share at or after `k` (an event of this lane), or one at or
    /// past `end` when none is left. On one server that is `k` itself; on a cluster of M
    /// masters it skips about M - 1 of every M events (a table lookup each).
    fn next_from(&self, mut k: u64) -> u64 {
        while k < self.end && !self.enc.owns(self.shard, k) {
            k += self.lanes;
        }
        k
    }

    /// The event `n` events of this share after `k` (one of its events).
    fn skip(&self, mut k: u64, n: u64) -> u64 {
        for _ in 0..n {
            k = self.next_from(k + self.lanes);
        }
        k
    }

    /// How many events of this share lie in `k..upto` (`k` one of its events or past its end).
    fn count(&self, mut k: u64, upto: u64) -> u64 {
        if self.enc.shards() == 1 {
            return upto.saturating_sub(k).div_ceil(self.lanes);
        }
        let mut n = 0;
        while k < upto {
            n += 1;
            k = self.next_from(k + self.lanes);
        }
        n
    }
}

/// One publishing connection on its own thread, with blocking I/O: a thread's sleep wakes
/// within about 60 us of the due time, where an async runtime's millisecond timer wheel would
/// add up to a millisecond or two to every event's latency.
///
/// Open loop: this thread writes every event at its due time whether or not the replies to
/// earlier ones have come; a second thread ([`read_replies`]) reads them. A server slow to
/// answer then shows as delivery latency (the payload carries the due time), not as publisher
/// lag: lag is this thread's own delay only. A lane that waited for each batch's replies before
/// writing the next measured the server's reply time as its own lag (nchan at 10,000 events/s
/// on 6 connections: 241 ms).
///
/// On a cluster, lane `lane` has one connection per master (`shard`), each sending the lane's
/// events whose channel that master owns.
fn lane_run(
    enc: &Encoder,
    job: Job,
    lane: u64,
    lanes: u64,
    shard: usize,
    tick: u64,
    live: &Live,
) -> Outcome {
    let mut o = Outcome::default();
    let share = Share {
        enc,
        lanes,
        shard,
        end: job.first + job.count,
    };
    let Some(addr) = enc.addr(shard) else {
        o.errors = share.count(share.next_from(job.first + lane), live.end_of(&job));
        return o;
    };
    let redis = !matches!(enc.target, Target::Http { .. });
    let connect = || -> Option<(TcpStream, TcpStream)> {
        let s = TcpStream::connect(addr)
            .and_then(|s| {
                let _ = s.set_nodelay(true);
                let r = s.try_clone()?;
                r.set_read_timeout(Some(REPLY_POLL))?;
                Ok((s, r))
            })
            .map_err(|e| eprintln!("publisher: cannot connect to {addr}: {e}"));
        s.ok()
    };
    // Reconnects in a row without an acknowledged event in between.
    let mut reconnects = 0;
    let mut k = share.next_from(job.first + lane);
    let mut end = live.end_of(&job);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut scratch = [Vec::new(), Vec::new(), Vec::new()];
    while k < end && !live.stop.load(Ordering::Relaxed) {
        let Some((mut stream, rstream)) = connect() else {
            break;
        };
        let conn_first = k;
        let shared = Shared::default();
        let r = std::thread::scope(|scope| {
            let reader = scope.spawn(|| read_replies(rstream, redis, &shared, live));
            while k < end
                && !live.stop.load(Ordering::Relaxed)
                && !shared.dead.load(Ordering::Relaxed)
            {
                end = live.end_of(&job);
                let now = now_us();
                out.clear();
                let mut n: u64 = 0;
                while k < end && n < MAX_BATCH {
                    let due = job.due(k);
                    if due > now {
                        break;
                    }
                    o.lag_max_us = o.lag_max_us.max(now - due);
                    enc.encode(k, due, &mut out, &mut scratch);
                    k = share.next_from(k + lanes);
                    n += 1;
                }
                if n == 0 {
                    let wait = job.due(k).saturating_sub(now).max(tick);
                    std::thread::sleep(Duration::from_micros(wait.clamp(50, 100_000)));
                    continue;
                }
                // Counted before the write so the reader never sees more replies than requests.
                shared.written.fetch_add(n, Ordering::Relaxed);
                if stream.write_all(&out).is_err() {
                    shared.dead.store(true, Ordering::Relaxed);
                }
            }
            shared.done.store(true, Ordering::Relaxed);
            reader.join().unwrap_or_default()
        });
        let n_written = shared.written.load(Ordering::Relaxed);
        o.sent += r.ok;
        o.errors += r.errors;
        o.moved += r.moved;
        o.receivers_min = match (o.receivers_min, r.receivers_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if r.got > 0 {
            reconnects = 0;
        }
        if r.got < n_written || shared.dead.load(Ordering::Relaxed) {
            // A server may end a keep-alive connection after so many requests (nginx:
            // `keepalive_requests`), answering the last one with `Connection: close` and
            // ignoring what was pipelined after it: reconnect and send those again.
            k = share.skip(conn_first, r.got);
            reconnects += 1;
            if reconnects > 3 {
                eprintln!("publisher: connection to {addr} lost or answered garbage");
                break;
            }
        }
    }
    o.errors += share.count(k, end);
    o
}

/// How often a reply reader that has nothing to read checks whether its writer is done.
const REPLY_POLL: Duration = Duration::from_millis(20);

/// A reply reader gives a connection up when it has waited this long for an owed reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What one connection's writer and reply reader share.
#[derive(Debug, Default)]
struct Shared {
    /// Requests written so far.
    written: AtomicU64,
    /// The writer has written its last request.
    done: AtomicBool,
    /// The connection failed: ended, answered garbage, or an owed reply was too late.
    dead: AtomicBool,
}

/// What one connection's reply reader counted.
#[derive(Debug, Default)]
struct Replies {
    /// Replies read.
    got: u64,
    /// Successful ones.
    ok: u64,
    /// Refusals.
    errors: u64,
    /// Of the refusals, `MOVED` answers (Redis Cluster).
    moved: u64,
    /// Redis: fewest receivers reported.
    receivers_min: Option<u64>,
}

/// Reads one connection's replies in order until the writer is done and every request is
/// answered, or the connection dies (it ends, answers garbage, or an owed reply is
/// [`REPLY_TIMEOUT`] late).
fn read_replies(mut stream: TcpStream, redis: bool, shared: &Shared, live: &Live) -> Replies {
    let mut r = Replies::default();
    let mut rbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut pos = 0;
    // Since when the oldest owed reply has been owed (or the last reply came).
    let mut waiting_since = std::time::Instant::now();
    loop {
        let step = if redis {
            redis_reply(&rbuf[pos..])
        } else {
            http_reply(&rbuf[pos..])
        };
        match step {
            Reply::Done {
                len,
                ok,
                moved,
                receivers,
            } => {
                if moved && r.moved == 0 {
                    let line = rbuf[pos..pos + len].trim_ascii_end();
                    eprintln!(
                        "publisher: Redis answered {} to an SPUBLISH: the cluster's slot map changed after loadgen read it (a failover or a resharding during the run). loadgen does not follow MOVED: every such event counts as a publish error (the report says how many)",
                        String::from_utf8_lossy(&line[1..])
                    );
                }
                pos += len;
                r.got += 1;
                live.sent.fetch_add(1, Ordering::Relaxed);
                if ok {
                    r.ok += 1;
                } else {
                    r.errors += 1;
                    r.moved += u64::from(moved);
                }
                if let Some(n) = receivers {
                    r.receivers_min = Some(r.receivers_min.map_or(n, |m| m.min(n)));
                }
                waiting_since = std::time::Instant::now();
                continue;
            }
            Reply::Partial => {}
            Reply::Bad => {
                shared.dead.store(true, Ordering::Relaxed);
                return r;
            }
        }
        let done = shared.done.load(Ordering::Relaxed);
        let owed = shared.written.load(Ordering::Relaxed) > r.got;
        if (done && !owed) || shared.dead.load(Ordering::Relaxed) {
            return r;
        }
        if !owed {
            waiting_since = std::time::Instant::now();
        }
        rbuf.drain(..pos);
        pos = 0;
        match stream.read(&mut chunk) {
            Ok(m) if m > 0 => rbuf.extend_from_slice(&chunk[..m]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if owed && waiting_since.elapsed() > REPLY_TIMEOUT {
                    shared.dead.store(true, Ordering::Relaxed);
                    return r;
                }
            }
            _ => {
                shared.dead.store(true, Ordering::Relaxed);
                return r;
            }
        }
    }
}

/// One reply parsed from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// A whole reply of `len` bytes.
    Done {
        /// Bytes of the reply.
        len: usize,
        /// Success (Redis integer, HTTP 2xx).
        ok: bool,
        /// A Redis Cluster's `MOVED` (a failure): the channel's slot is on another master.
        moved: bool,
        /// Redis: how many subscribers the message reached.
        receivers: Option<u64>,
    },
    /// Not all there yet.
    Partial,
    /// Not a reply this publisher understands.
    Bad,
}

/// A RESP reply to `PUBLISH` or `SPUBLISH`: `:N` (receivers), `-MOVED ...` (said once per
/// connection by the reader) or another error (said here).
fn redis_reply(b: &[u8]) -> Reply {
    let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
        return Reply::Partial;
    };
    let line = &b[..end];
    match line.first() {
        Some(b':') => Reply::Done {
            len: end + 2,
            ok: true,
            moved: false,
            receivers: std::str::from_utf8(&line[1..])
                .ok()
                .and_then(|s| s.parse().ok()),
        },
        Some(b'-') => {
            let moved = line.starts_with(b"-MOVED ");
            if !moved {
                eprintln!("publisher: Redis: {}", String::from_utf8_lossy(line));
            }
            Reply::Done {
                len: end + 2,
                ok: false,
                moved,
                receivers: None,
            }
        }
        _ => Reply::Bad,
    }
}

/// An HTTP response: 2xx is success.
fn http_reply(b: &[u8]) -> Reply {
    let head = match http::parse_head(b) {
        Ok(Some(h)) => h,
        Ok(None) => return Reply::Partial,
        Err(_) => return Reply::Bad,
    };
    let body = &b[head.len..];
    let len = match head.framing {
        Framing::Length(n) if body.len() >= n => head.len + n,
        Framing::Length(_) => return Reply::Partial,
        Framing::Chunked => match Dechunker::default().feed(body, |_| {}) {
            Ok((used, true)) => head.len + used,
            Ok((_, false)) => return Reply::Partial,
            Err(_) => return Reply::Bad,
        },
        // A publish reply must be framed: a keep-alive connection cannot end it by closing.
        Framing::Close => head.len,
    };
    let ok = (200..300).contains(&head.status);
    if !ok {
        eprintln!(
            "publisher: answered {}",
            String::from_utf8_lossy(&b[..len.min(b.len())])
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    Reply::Done {
        len,
        ok,
        moved: false,
        receivers: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(
            redis_reply(b":3\r\n:1\r\n"),
            Reply::Done {
                len: 4,
                ok: true,
                moved: false,
                receivers: Some(3)
            }
        );
        assert_eq!(redis_reply(b":3\r"), Reply::Partial);
        assert!(matches!(
            redis_reply(b"-ERR x\r\n"),
            Reply::Done { ok: false, .. }
        ));
        assert_eq!(redis_reply(b"+OK\r\n"), Reply::Bad);
        let h = b"HTTP/1.1 202 Accepted\r\nContent-Length: 24\r\n\r\n{\"delivered_to_nodes\":1}HTTP/1.1";
        assert_eq!(
            http_reply(h),
            Reply::Done {
                len: h.len() - 8,
                ok: true,
                moved: false,
                receivers: None
            }
        );
        assert_eq!(http_reply(&h[..50]), Reply::Partial);
        let c = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(
            http_reply(c),
            Reply::Done {
                len: c.len(),
                ok: true,
                moved: false,
                receivers: None
            }
        );
        assert!(matches!(
            http_reply(b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n"),
            Reply::Done { ok: false, .. }
        ));
    }

    #[test]
    fn encodes_redis_and_http() {
        let o = Opts::parse(&[
            "steady".into(),
            "--secret".into(),
            "s".into(),
            "--players".into(),
            "10".into(),
        ])
        .unwrap();
        let mut enc = Encoder {
            target: Target::Redis {
                addr: "127.0.0.1:6379".parse().unwrap(),
                durable: false,
            },
            channel: Template::parse(&o.channel),
            payload: Template::parse(&o.payload),
            players: 10,
            brand: 1,
        };
        let mut out = Vec::new();
        let mut scratch = [Vec::new(), Vec::new(), Vec::new()];
        enc.encode(23, 1000, &mut out, &mut scratch);
        let payload = r#"{"brand_id":1,"player_id":3,"event_type":"loadgen","event_data":{"seq":2,"t":1000}}"#;
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n$9\r\nSSE::1::3\r\n${}\r\n{payload}\r\n",
                payload.len()
            )
        );
        enc.target = Target::Redis {
            addr: "127.0.0.1:6379".parse().unwrap(),
            durable: true,
        };
        out.clear();
        enc.encode(23, 1000, &mut out, &mut scratch);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            format!(
                "*5\r\n$5\r\nFCALL\r\n$13\r\nssegw_publish\r\n$1\r\n1\r\n$9\r\nSSE::1::3\r\n${}\r\n{payload}\r\n",
                payload.len()
            )
        );
        enc.target = target(&o).unwrap();
        out.clear();
        enc.encode(23, 1000, &mut out, &mut scratch);
        let body = format!(r#"{{"channel":"SSE::1::3","data":{payload}}}"#);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("POST /api/v1/publish HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        );
    }

    #[test]
    fn library_version_replies() {
        assert_eq!(version_reply(b":1\r\n"), Ok(1));
        assert!(version_reply(b"-ERR Function not found\r\n")
            .unwrap_err()
            .contains("Function not found"));
        assert!(version_reply(b"$1\r\nx\r\n").is_err());
        assert!(VERSION_CMD.starts_with(b"*3\r\n$8\r\nFCALL_RO\r\n"));
        assert_eq!(load_reply(b"$5\r\nssegw\r\n"), Ok(()));
        assert_eq!(
            load_reply(b"-ERR Library 'ssegw' already exists\r\n"),
            Ok(())
        );
        assert!(load_reply(b"-ERR Error compiling function\r\n").is_err());
    }

    #[test]
    fn a_lowered_end_ends_every_lane_at_the_same_event() {
        let j = Job {
            first: 10,
            count: 100,
            timing: Timing::Paced { rate: 1000.0 },
            start_us: 0,
        };
        let live = Live::default();
        assert_eq!(live.end_of(&j), 110);
        live.end.store(50, Ordering::Relaxed);
        assert_eq!(live.end_of(&j), 50);
        live.end.store(500, Ordering::Relaxed);
        assert_eq!(live.end_of(&j), 110);
        live.end.store(3, Ordering::Relaxed);
        assert_eq!(live.end_of(&j), 10);
    }

    /// An HTTP encoder for a server at `addr`: body `{seq}`.
    fn http_encoder(addr: std::net::SocketAddr) -> Encoder {
        Encoder {
            target: Target::Http {
                addr,
                host: addr.to_string(),
                path: Template::parse("/pub"),
                body: Template::parse("{seq}"),
            },
            channel: Template::parse("c"),
            payload: Template::parse("p"),
            players: 1,
            brand: 1,
        }
    }

    /// A server on a free loopback port that runs `serve` on each accepted connection (and
    /// its number), one after another, and returns what they returned once `conns`
    /// connections have ended.
    fn server<T: Send + 'static>(
        conns: usize,
        serve: impl Fn(TcpStream, usize) -> T + Send + 'static,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<T>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            (0..conns)
                .map(|i| serve(l.accept().unwrap().0, i))
                .collect::<Vec<_>>()
        });
        (addr, h)
    }

    /// Reads whole `POST`s (bodies of digits) from `s` until `n` have come or it ends.
    fn read_requests(s: &mut TcpStream, n: usize, buf: &mut Vec<u8>) -> Vec<u64> {
        let mut seqs = Vec::new();
        let mut chunk = [0u8; 4096];
        while seqs.len() < n {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end]).unwrap();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .expect("a publish without Content-Length")
                    .parse()
                    .unwrap();
                let start = end + 4;
                if buf.len() >= start + len {
                    let body = std::str::from_utf8(&buf[start..start + len]).unwrap();
                    seqs.push(body.parse().unwrap());
                    buf.drain(..start + len);
                    continue;
                }
            }
            match s.read(&mut chunk) {
                Ok(m) if m > 0 => buf.extend_from_slice(&chunk[..m]),
                _ => break,
            }
        }
        seqs
    }

    const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn requests_are_written_without_waiting_for_earlier_replies() {
        // The server answers nothing until all 20 requests are in: a publisher that waited
        // for a batch's replies before writing the next one would stall here until its
        // reply timeout, then give the connection up.
        let (addr, server) = server(1, |mut s, _| {
            let seqs = read_requests(&mut s, 20, &mut Vec::new());
            for _ in &seqs {
                s.write_all(ACCEPTED).unwrap();
            }
            seqs
        });
        let job = Job {
            first: 0,
            count: 20,
            timing: Timing::Paced { rate: 400.0 },
            start_us: now_us(),
        };
        let live = Live::default();
        let o = lane_run(&http_encoder(addr), job, 0, 1, 0, 100, &live);
        assert_eq!((o.sent, o.errors), (20, 0));
        assert_eq!(live.sent.load(Ordering::Relaxed), 20);
        let seqs = server.join().unwrap();
        assert_eq!(
            seqs[0].len(),
            20,
            "not every request came before the first reply"
        );
    }

    #[test]
    fn requests_a_server_ignored_after_closing_are_sent_again_once() {
        // Like nginx at `keepalive_requests`: the first connection's 5th reply says
        // `Connection: close`, and what was pipelined after it is dropped unanswered.
        let (addr, server) = server(2, |mut s, conn| {
            let mut buf = Vec::new();
            let mut answered = Vec::new();
            loop {
                let seqs = read_requests(&mut s, 1, &mut buf);
                let Some(&seq) = seqs.first() else {
                    return answered;
                };
                answered.push(seq);
                if conn == 0 && answered.len() == 5 {
                    let _ = s.write_all(
                        b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return answered;
                }
                let _ = s.write_all(ACCEPTED);
                if seq == 19 {
                    return answered;
                }
            }
        });
        let job = Job {
            first: 0,
            count: 20,
            timing: Timing::Rounds {
                per_round: 20,
                interval_us: 1,
            },
            start_us: now_us(),
        };
        let o = lane_run(&http_encoder(addr), job, 0, 1, 0, 100, &Live::default());
        assert_eq!((o.sent, o.errors), (20, 0));
        let answered: Vec<u64> = server.join().unwrap().concat();
        assert_eq!(answered, (0..20).collect::<Vec<_>>());
    }

    /// Reads whole RESP commands of three bulk strings from `s` until `n` have come or it
    /// ends; each as (command, channel), and answers each with `answer`.
    fn serve_commands(s: &mut TcpStream, n: usize, answer: &[u8]) -> Vec<(String, String)> {
        let mut got = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.len() < n {
            // `*3`, then three `$len` bulk strings.
            let mut at = 0;
            let mut parts = Vec::new();
            let line = |at: usize| {
                buf[at..]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .map(|e| (&buf[at..at + e], at + e + 2))
            };
            if let Some((head, next)) = line(0) {
                assert_eq!(head, b"*3");
                at = next;
                while parts.len() < 3 {
                    let Some((len, next)) = line(at) else { break };
                    let len: usize = std::str::from_utf8(&len[1..]).unwrap().parse().unwrap();
                    if buf.len() < next + len + 2 {
                        break;
                    }
                    parts.push(String::from_utf8_lossy(&buf[next..next + len]).into_owned());
                    at = next + len + 2;
                }
            }
            if parts.len() == 3 {
                buf.drain(..at);
                got.push((parts[0].clone(), parts[1].clone()));
                s.write_all(answer).unwrap();
                continue;
            }
            match s.read(&mut chunk) {
                Ok(m) if m > 0 => buf.extend_from_slice(&chunk[..m]),
                _ => break,
            }
        }
        got
    }

    #[test]
    fn on_a_cluster_each_event_goes_to_its_channels_master_and_moved_is_counted() {
        use gateway::broker::cluster::{key_slot, SlotMap, SlotRange};
        use gateway::broker::target::Seed;
        // Two masters: the first serves slots 0-8191 and answers; the second serves the rest
        // and answers MOVED (its slots went elsewhere after the map was read).
        let players = 20;
        let name = |p: u64| format!("SSE::1::{p}");
        let on_first = |p: u64| key_slot(name(p).as_bytes()) < 8192;
        let first: Vec<u64> = (0..40).filter(|k| on_first(k % players)).collect();
        let second = 40 - first.len();
        assert!(first.len() > 5 && second > 5, "{first:?}");
        let n = first.len();
        let (a, served_a) = server(1, move |mut s, _| serve_commands(&mut s, n, b":1\r\n"));
        let (b, served_b) = server(1, move |mut s, _| {
            serve_commands(&mut s, second, b"-MOVED 9000 127.0.0.1:7777\r\n")
        });
        let master = |addr: std::net::SocketAddr| Seed::new("127.0.0.1", addr.port());
        let map = SlotMap::from_ranges(vec![
            SlotRange {
                first: 0,
                last: 8191,
                master: master(a),
            },
            SlotRange {
                first: 8192,
                last: 16383,
                master: master(b),
            },
        ])
        .unwrap();
        let channel = Template::parse("SSE::{brand}::{player}");
        let enc = Encoder {
            target: Target::Cluster {
                shards: Shards::new(&map, &channel, players, 1).unwrap(),
            },
            channel,
            payload: Template::parse(r#"{"seq":{seq},"t":{t}}"#),
            players,
            brand: 1,
        };
        let job = Job {
            first: 0,
            count: 40,
            timing: Timing::Paced { rate: 2000.0 },
            start_us: now_us(),
        };
        let live = Live::default();
        let (oa, ob) = std::thread::scope(|s| {
            let a = s.spawn(|| lane_run(&enc, job, 0, 1, 0, 100, &live));
            let b = s.spawn(|| lane_run(&enc, job, 0, 1, 1, 100, &live));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!((oa.sent, oa.errors, oa.moved), (n as u64, 0, 0));
        assert_eq!(oa.receivers_min, Some(1));
        let s = second as u64;
        assert_eq!((ob.sent, ob.errors, ob.moved), (0, s, s));
        let want = |ks: Vec<u64>| -> Vec<(String, String)> {
            ks.into_iter()
                .map(|k| ("SPUBLISH".to_string(), name(k % players)))
                .collect()
        };
        assert_eq!(served_a.join().unwrap().concat(), want(first.clone()));
        let rest = (0..40).filter(|k| !first.contains(k)).collect();
        assert_eq!(served_b.join().unwrap().concat(), want(rest));
    }

    #[test]
    fn a_connection_sends_every_lanes_th_event_of_its_shard() {
        use gateway::broker::cluster::{key_slot, SlotMap, SlotRange};
        use gateway::broker::target::Seed;
        let range = |first, last, port| SlotRange {
            first,
            last,
            master: Seed::new("127.0.0.1", port),
        };
        let map =
            SlotMap::from_ranges(vec![range(0, 8191, 7000), range(8192, 16383, 7001)]).unwrap();
        let channel = Template::parse("c{player}");
        let enc = Encoder {
            target: Target::Cluster {
                shards: Shards::new(&map, &channel, 7, 1).unwrap(),
            },
            channel,
            payload: Template::parse(""),
            players: 7,
            brand: 1,
        };
        let on = |k: u64| usize::from(key_slot(format!("c{}", k % 7).as_bytes()) >= 8192);
        for (lanes, lane, shard) in [(1, 0, 0), (1, 0, 1), (3, 1, 0), (3, 2, 1)] {
            let share = Share {
                enc: &enc,
                lanes,
                shard,
                end: 50,
            };
            let want: Vec<u64> = (lane..50)
                .step_by(lanes as usize)
                .filter(|&k| on(k) == shard)
                .collect();
            let mut got = Vec::new();
            let mut k = share.next_from(lane);
            while k < 50 {
                got.push(k);
                k = share.next_from(k + lanes);
            }
            assert_eq!(got, want, "lanes {lanes} lane {lane} shard {shard}");
            // Resending after a reconnect: the event `n` events on; what is left to count.
            for (i, &k) in want.iter().enumerate() {
                assert_eq!(share.skip(want[0], i as u64), k);
                assert_eq!(share.count(k, 50), (want.len() - i) as u64);
            }
            assert_eq!(share.count(50, 50), 0);
        }
        // One server: every lanes-th event.
        let one = http_encoder("127.0.0.1:1".parse().unwrap());
        let share = Share {
            enc: &one,
            lanes: 3,
            shard: 0,
            end: 10,
        };
        assert_eq!(
            (share.next_from(4), share.skip(1, 2), share.count(1, 10)),
            (4, 7, 3)
        );
    }

    #[test]
    fn intended_times() {
        let j = Job {
            first: 100,
            count: 10,
            timing: Timing::Paced { rate: 1000.0 },
            start_us: 5_000,
        };
        assert_eq!((j.due(100), j.due(101), j.due(109)), (5_000, 6_000, 14_000));
        let r = Job {
            first: 0,
            count: 9,
            timing: Timing::Rounds {
                per_round: 3,
                interval_us: 1_000_000,
            },
            start_us: 0,
        };
        assert_eq!((r.due(2), r.due(3), r.due(8)), (0, 1_000_000, 2_000_000));
    }
}
