//! A worker process: opens its share of the streams, parses them, keeps per-stream accounting
//! and answers the parent's commands. One thread, one io_uring ring, one task per stream.
//!
//! The parent talks to it in lines. Parent → worker (stdin): `phase` (start a new latency
//! histogram), `storm` (drop every stream at once; they reconnect with `Last-Event-ID`),
//! `report SENT` (account for SENT events published so far), `quit`. Worker → parent (stdout):
//! `P <progress JSON>` twice a second, `S <second JSON>` once a (wall-clock) second with that
//! second's figures, `O` once every stream has been attempted, `R <report JSON>`.
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use serde::{Deserialize, Serialize};

use crate::chunked::Dechunker;
use crate::http::{self, Framing};
use crate::opts::Opts;
use crate::report::{hist_pairs, new_hist, Failure, Progress, Second, WorkerReport};
use crate::seqs::{expected_on_channel, Seen, SeqSet};
use crate::template::{Template, Vars};
use crate::{now_us, proc, sse};

/// What a worker is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The run's options.
    pub opts: Opts,
    /// First global stream index of this worker.
    pub first: usize,
    /// How many streams.
    pub count: usize,
    /// Worker number.
    pub id: usize,
}

/// Read buffer per stream: an event is about 150 bytes; a broadcast burst or a resume
/// replay takes a few reads.
const READ_BUF: usize = 4096;

/// One stream's state that outlives its connections.
#[derive(Default)]
struct Slot {
    /// Sequence numbers received.
    seqs: SeqSet,
    /// The last `id:` seen, for `Last-Event-ID`.
    last_id: Vec<u8>,
    /// The socket of the open connection, -1 when none (the storm shuts it down).
    fd: i32,
    /// Storm generation in which the current connection was opened.
    gen: u64,
    /// Whether it was ever open.
    opened: bool,
    /// Whether its first attempt is done (open or failed).
    attempted: bool,
    /// loadgen events received on the current connection.
    conn_events: u64,
    /// The server's latest `retry:` (ms) on this stream: failover waits that long.
    retry_ms: Option<u64>,
    /// Failure reasons this stream has met (indices into `Shared::failures`), so a stream
    /// that retries counts once per reason, not once per attempt. Usually empty or one.
    failed_with: Vec<u16>,
}

/// Most distinct failure reasons a worker keeps; later ones are counted under
/// [`OTHER_REASON`]. A reason holds at most [`BODY_PREFIX`] bytes of body, so this bounds the
/// memory at about 5 KiB whatever the server answers.
const MAX_REASONS: usize = 32;

/// The reason failures past [`MAX_REASONS`] are counted under.
const OTHER_REASON: &str = "other (more distinct reasons than loadgen keeps)";

/// How much of a refusal's body names its reason: enough for a gateway's one-line error
/// (`{"error":"missing token"}` is 25 bytes), short enough to aggregate by.
pub const BODY_PREFIX: usize = 100;

/// State shared by the worker's tasks (one thread: `RefCell`).
struct Shared {
    /// Per stream.
    slots: Vec<Slot>,
    /// Latency of this phase, microseconds.
    hist: Histogram<u64>,
    /// Per sequence number, the latest delivery (broadcast rounds).
    round_max: Vec<u64>,
    /// Whether to keep `round_max`.
    track_rounds: bool,
    /// Counters.
    progress: Progress,
    /// Events that carried no readable seq/t although they looked like loadgen's, and
    /// malformed streams.
    errors: u64,
    /// Streams whose first attempt is done.
    attempted: usize,
    /// Storm generation: bumped by `storm`.
    storm_gen: u64,
    /// When the current storm began.
    storm_at: Option<Instant>,
    /// Streams not yet open again since the storm.
    storm_pending: usize,
    /// Reconnect-all time of the last storm.
    storm_ms: Option<f64>,
    /// Why streams failed to open, by reason.
    failures: Vec<Failure>,
    /// When the latest stream opened for the first time (unix microseconds).
    last_first_open_us: Option<u64>,
    /// The wall-clock second being collected (unix seconds).
    sec: u64,
    /// Latency of the deliveries received in `sec` (one histogram reused: about 180 KiB,
    /// cleared each second).
    sec_hist: Histogram<u64>,
    /// Fewest streams open during `sec` (a storm's dip is shorter than a second).
    sec_open_min: u64,
    /// Deliveries received for the first time in `sec`.
    sec_received: u64,
    /// Streams of this worker on each URL (open or trying): failover picks the fewest.
    per_url: Vec<u64>,
    /// Until when each URL counts as down: a connect it refused takes it out of failover's
    /// choice for [`DOWN_FOR`], as a balancer's passive health check does.
    down_until: Vec<Option<Instant>>,
}

/// How long a URL that refused a connect is left out of failover's choice. A node being
/// restarted refuses connects until it listens again; without this a least-connections
/// choice keeps sending streams to it (it holds the fewest), and each one fails there.
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// Failover: the URL a stream that `from` ended moves to, as a least-connections balancer
/// picks it: of the others, the one holding the fewest of `per_url` (this worker's streams;
/// every worker holds a like share, so all together stay balanced); ties go to the first
/// after `from`, so streams dropped together spread instead of herding on one node.
/// URLs marked in `down` are skipped while any other is up.
pub fn next_url(per_url: &[u64], down: &[bool], from: usize) -> usize {
    let n = per_url.len();
    let others = || (1..n).map(|d| (from + d) % n);
    others()
        .filter(|&u| !down.get(u).copied().unwrap_or(false))
        .min_by_key(|&u| per_url[u])
        .or_else(|| others().min_by_key(|&u| per_url[u]))
        .unwrap_or(from)
}

impl Shared {
    /// A stream closed: one fewer open, and maybe this second's fewest.
    fn one_closed(&mut self) {
        self.progress.open -= 1;
        self.sec_open_min = self.sec_open_min.min(self.progress.open);
    }

    /// Ends the second being collected if the clock has moved on: its figures, and a fresh
    /// second.
    fn end_second(&mut self, now_s: u64) -> Option<Second> {
        if now_s <= self.sec {
            return None;
        }
        let done = Second {
            sec: self.sec,
            open: self.progress.open,
            open_min: self.sec_open_min,
            ok: self.progress.ok,
            failed: self.progress.failed,
            received: self.sec_received,
            hist: hist_pairs(&self.sec_hist),
        };
        self.sec = now_s;
        self.sec_hist.reset();
        self.sec_open_min = self.progress.open;
        self.sec_received = 0;
        Some(done)
    }
}

/// Per-run constants the stream tasks share.
struct Ctx {
    /// Global index of local stream 0.
    first: usize,
    /// Channels.
    players: u64,
    /// Brand.
    brand: u64,
    /// Stream targets: address, host header, path template.
    urls: Vec<(SocketAddr, String, Template)>,
    /// Source addresses; empty = the kernel's choice.
    sources: Vec<Ipv4Addr>,
    /// Channel template.
    channel: Template,
    /// Token claims template, with the secret.
    claims: Template,
    /// HS256 secret.
    secret: String,
    /// Tokens from a file.
    tokens: Vec<String>,
    /// Wait before reopening a stream the server ended.
    reconnect: Duration,
    /// Deploy: a stream the server ended moves to another URL after the server's `retry:`.
    failover: bool,
}

/// Entry point of `loadgen worker SPEC_JSON`.
pub fn main(spec_json: &str) -> i32 {
    let spec: WorkerSpec = match serde_json::from_str(spec_json) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("worker: bad spec: {e}");
            return 2;
        }
    };
    raise_nofile();
    let cmds = Arc::new(Mutex::new(VecDeque::new()));
    {
        let cmds = cmds.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                cmds.lock().unwrap().push_back(line);
            }
            // The parent went away: nobody will read a report.
            cmds.lock().unwrap().push_back("quit".into());
        });
    }
    let mut rt = match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(4096)
        .enable_timer()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("worker: cannot build the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(run(spec, cmds))
}

/// Raises the soft open-file limit to the hard one (20,000 here).
pub fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

async fn run(spec: WorkerSpec, cmds: Arc<Mutex<VecDeque<String>>>) -> i32 {
    let o = &spec.opts;
    let mut urls = Vec::new();
    for u in &o.urls {
        match http::parse_url(u) {
            Ok(p) => urls.push((p.addr, p.host, Template::parse(&p.path))),
            Err(e) => {
                eprintln!("worker: {e}");
                return 2;
            }
        }
    }
    let tokens = match &o.token_file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(s) => s
                .lines()
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            Err(e) => {
                eprintln!("worker: {f}: {e}");
                return 2;
            }
        },
        None => Vec::new(),
    };
    let ctx = Rc::new(Ctx {
        first: spec.first,
        players: o.players as u64,
        brand: o.brand,
        urls,
        sources: (0..o.source_count())
            .map(|n| Ipv4Addr::new(127, 0, ((n + 2) / 256) as u8, ((n + 2) % 256) as u8))
            .collect(),
        channel: Template::parse(&o.channel),
        claims: Template::parse(&o.claims),
        secret: o.secret.clone(),
        tokens,
        reconnect: Duration::from_millis(o.reconnect_ms),
        failover: o.failover(),
    });
    let sh = Rc::new(RefCell::new(Shared {
        slots: (0..spec.count)
            .map(|_| Slot {
                fd: -1,
                ..Slot::default()
            })
            .collect(),
        hist: new_hist(),
        round_max: Vec::new(),
        track_rounds: o.scenario == "broadcast",
        progress: Progress::default(),
        errors: 0,
        attempted: 0,
        storm_gen: 0,
        storm_at: None,
        storm_pending: 0,
        storm_ms: None,
        failures: Vec::new(),
        last_first_open_us: None,
        sec: now_us() / 1_000_000,
        sec_hist: new_hist(),
        sec_open_min: 0,
        sec_received: 0,
        per_url: vec![0; o.urls.len()],
        down_until: vec![None; o.urls.len()],
    }));
    // Open the streams at this worker's share of the connect rate, in 10 ms steps.
    {
        let per_tick = (o.connect_rate as f64 / o.workers() as f64 / 100.0).max(1.0);
        let (sh, ctx, count) = (sh.clone(), ctx.clone(), spec.count);
        monoio::spawn(async move {
            let start = Instant::now();
            for i in 0..count {
                let due = start + Duration::from_secs_f64(i as f64 / per_tick / 100.0);
                let now = Instant::now();
                if due > now {
                    monoio::time::sleep(due - now).await;
                }
                monoio::spawn(stream_task(sh.clone(), ctx.clone(), i));
            }
        });
    }
    let mut said_opened = false;
    let mut last_progress = Instant::now();
    loop {
        monoio::time::sleep(Duration::from_millis(20)).await;
        let cmd = cmds.lock().unwrap().pop_front();
        if let Some(cmd) = cmd {
            let mut words = cmd.split_whitespace();
            match words.next() {
                Some("phase") => {
                    let mut s = sh.borrow_mut();
                    s.hist.reset();
                    s.round_max.clear();
                    s.progress.received = 0;
                }
                Some("storm") => storm(&mut sh.borrow_mut()),
                Some("report") => {
                    let sent = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    let r = report(&sh.borrow(), &ctx, sent);
                    out(&format!(
                        "R {}",
                        serde_json::to_string(&r).unwrap_or_default()
                    ));
                }
                Some("quit") | None => return 0,
                Some(other) => eprintln!("worker: unknown command {other}"),
            }
        }
        let second = sh.borrow_mut().end_second(now_us() / 1_000_000);
        if let Some(second) = second {
            out(&format!(
                "S {}",
                serde_json::to_string(&second).unwrap_or_default()
            ));
        }
        let s = sh.borrow();
        if !said_opened && s.attempted >= spec.count {
            said_opened = true;
            drop(s);
            progress(&sh);
            out("O");
            continue;
        }
        drop(s);
        if last_progress.elapsed() >= Duration::from_millis(500) {
            last_progress = Instant::now();
            progress(&sh);
        }
    }
}

fn progress(sh: &Rc<RefCell<Shared>>) {
    let mut s = sh.borrow_mut();
    s.progress.p99_us = s.hist.value_at_quantile(0.99);
    let line = serde_json::to_string(&s.progress).unwrap_or_default();
    drop(s);
    out(&format!("P {line}"));
}

/// Drops every open stream at once, with a reset (no TIME_WAIT left on the client side, as
/// when a network path or a load balancer fails); each task then reconnects at once.
fn storm(s: &mut Shared) {
    s.storm_gen += 1;
    s.storm_at = Some(Instant::now());
    s.storm_pending = s.slots.len();
    s.storm_ms = None;
    for slot in &s.slots {
        if slot.fd >= 0 {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt and shutdown on a socket this worker owns and that stays
            // open until its task drops it (the task is on this thread, not running now).
            unsafe {
                libc::setsockopt(
                    slot.fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &linger as *const libc::linger as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
                libc::shutdown(slot.fd, libc::SHUT_RDWR);
            }
        }
    }
}

fn report(s: &Shared, ctx: &Ctx, sent: u64) -> WorkerReport {
    let mut r = WorkerReport {
        progress: s.progress,
        errors: s.errors,
        hist: hist_pairs(&s.hist),
        round_max_us: s.round_max.clone(),
        storm_reconnect_ms: s.storm_ms,
        failures: s.failures.clone(),
        last_first_open_us: s.last_first_open_us,
        cpu_s: proc::cpu_seconds(std::process::id()).unwrap_or(0.0),
        peak_rss: proc::peak_rss_bytes(std::process::id()).unwrap_or(0),
        ..WorkerReport::default()
    };
    for (i, slot) in s.slots.iter().enumerate() {
        if !slot.opened {
            continue;
        }
        let channel = ((ctx.first + i) as u64) % ctx.players;
        let expected = expected_on_channel(channel, ctx.players, sent);
        r.opened_once += 1;
        r.expected += expected;
        r.lost += slot.seqs.lost(expected);
        r.unexpected += slot.seqs.unexpected(expected);
    }
    r
}

/// Why a connection ended.
enum End {
    /// Could not connect, or no 200 event stream: why, in words (`HTTP 401: {"error":...}`,
    /// `connect: refused`, ...).
    Failed(String),
    /// It was open and then ended; with a reason when the server ended it before any
    /// loadgen event (a refusal sent in-band, as the gateway does over its connection limit:
    /// a 200 head, `retry:` and an error event).
    Closed(Option<String>),
}

impl Shared {
    /// Counts a failed attempt of stream `idx` under `reason`: the attempt always, the stream
    /// the first time it meets that reason.
    fn count_failure(&mut self, idx: usize, reason: String) {
        let at = match self.failures.iter().position(|f| f.reason == reason) {
            Some(i) => i,
            None if self.failures.len() < MAX_REASONS => {
                self.failures.push(Failure {
                    reason,
                    ..Failure::default()
                });
                self.failures.len() - 1
            }
            None => match self.failures.iter().position(|f| f.reason == OTHER_REASON) {
                Some(i) => i,
                None => {
                    // Keep the bound: the last kept reason's slot becomes "other".
                    let last = self.failures.len() - 1;
                    self.failures[last].reason = OTHER_REASON.into();
                    last
                }
            },
        };
        self.failures[at].attempts += 1;
        let seen = &mut self.slots[idx].failed_with;
        if !seen.contains(&(at as u16)) {
            seen.push(at as u16);
            self.failures[at].streams += 1;
        }
    }
}

/// Names a connect or I/O error the way an operator searches for it.
fn io_reason(stage: &str, e: &std::io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused".to_string(),
        Some(libc::ECONNRESET) | Some(libc::EPIPE) => "reset".to_string(),
        Some(libc::ETIMEDOUT) => "timeout".to_string(),
        Some(libc::EADDRNOTAVAIL) => "no free local port (EADDRNOTAVAIL)".to_string(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => "too many open files".to_string(),
        _ => e.to_string(),
    };
    format!("{stage}: {what}")
}

/// The start of a refusal's body as one printable line: at most [`BODY_PREFIX`] bytes,
/// control characters and invalid UTF-8 replaced, whitespace collapsed.
pub fn body_prefix(body: &[u8]) -> String {
    let cut = &body[..body.len().min(BODY_PREFIX)];
    let text = String::from_utf8_lossy(cut);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end().to_string()
}

/// The `event:` and `data:` lines of the start of an event stream: `retry:` (jittered per
/// connection), `id:` and comments change from one connection to the next and would split
/// one reason into many.
pub fn event_lines(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b"event:") || line.starts_with(b"data:") {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out
}

/// The first [`BODY_PREFIX`] bytes of a non-200 response's body: what came with the head,
/// plus a few more reads (each at most 500 ms) when the server sent the body separately.
async fn refusal_body(stream: &mut TcpStream, mut buf: Vec<u8>, head: &http::Head) -> Vec<u8> {
    let mut raw = buf.split_off(head.len);
    let want = match head.framing {
        Framing::Length(n) => n.min(BODY_PREFIX + 64),
        Framing::Chunked | Framing::Close => BODY_PREFIX + 64,
    };
    for _ in 0..4 {
        if raw.len() >= want {
            break;
        }
        let chunk = Vec::with_capacity(READ_BUF);
        let read = monoio::time::timeout(Duration::from_millis(500), stream.read(chunk)).await;
        match read {
            Ok((Ok(n), b)) if n > 0 => raw.extend_from_slice(&b[..n]),
            _ => break,
        }
    }
    if head.framing != Framing::Chunked {
        return raw;
    }
    let mut body = Vec::new();
    let mut d = Dechunker::default();
    let _ = d.feed(&raw, |b| body.extend_from_slice(b));
    body
}

async fn stream_task(sh: Rc<RefCell<Shared>>, ctx: Rc<Ctx>, idx: usize) {
    let global = ctx.first + idx;
    let player = global as u64 % ctx.players;
    let src = (!ctx.sources.is_empty()).then(|| ctx.sources[global % ctx.sources.len()]);
    let mut vars = Vars {
        i: global as u64,
        player,
        brand: ctx.brand,
        exp: now_us() / 1_000_000 + 86_400,
        ..Vars::default()
    };
    let channel = ctx.channel.render_string(&vars);
    vars.channel = channel.as_bytes();
    let token = if ctx
        .urls
        .iter()
        .any(|u| u.2.uses(crate::template::Var::Token))
    {
        if ctx.tokens.is_empty() {
            gateway::auth::jwt::sign_hs256(&ctx.claims.render_string(&vars), ctx.secret.as_bytes())
        } else {
            ctx.tokens[global % ctx.tokens.len()].clone()
        }
    } else {
        String::new()
    };
    vars.token = token.as_bytes();
    // The request head of URL `u` without its final blank line: `Last-Event-ID` may follow.
    let head_of = |u: usize| {
        let (_, host, path) = &ctx.urls[u];
        format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
            path.render_string(&vars)
        )
    };
    let mut url = global % ctx.urls.len();
    sh.borrow_mut().per_url[url] += 1;
    let mut head = head_of(url);
    loop {
        let end = session(&sh, idx, ctx.urls[url].0, src, &head).await;
        let (wait, moved) = {
            let mut s = sh.borrow_mut();
            let (wait, ended) = match end {
                End::Failed(reason) => {
                    if reason.starts_with("connect: refused") {
                        s.down_until[url] = Some(Instant::now() + DOWN_FOR);
                    }
                    s.progress.failed += 1;
                    s.count_failure(idx, reason);
                    if !s.slots[idx].attempted {
                        s.slots[idx].attempted = true;
                        s.attempted += 1;
                    }
                    (ctx.reconnect, true)
                }
                End::Closed(early) => {
                    s.one_closed();
                    if s.slots[idx].gen < s.storm_gen {
                        (Duration::ZERO, false)
                    } else {
                        s.progress.closed += 1;
                        // In a deploy a stream that came back to a node just before that
                        // node's own drain may be closed before its channel had an event:
                        // that is the deploy, not a refusal; one with an error event is.
                        let refused =
                            early.filter(|r| !ctx.failover || r.contains(r#""type":"error""#));
                        if let Some(reason) = refused {
                            s.count_failure(idx, reason);
                        }
                        let retry = s.slots[idx].retry_ms.filter(|_| ctx.failover);
                        (retry.map_or(ctx.reconnect, Duration::from_millis), true)
                    }
                }
            };
            let mut moved = false;
            if ended && ctx.failover {
                let now = Instant::now();
                let down: Vec<bool> = s
                    .down_until
                    .iter()
                    .map(|d| d.is_some_and(|t| t > now))
                    .collect();
                let to = next_url(&s.per_url, &down, url);
                if to != url {
                    s.per_url[url] -= 1;
                    s.per_url[to] += 1;
                    url = to;
                    moved = true;
                }
            }
            (wait, moved)
        };
        if moved {
            head = head_of(url);
        }
        if !wait.is_zero() {
            monoio::time::sleep(wait).await;
        }
    }
}

async fn session(
    sh: &Rc<RefCell<Shared>>,
    idx: usize,
    addr: SocketAddr,
    src: Option<Ipv4Addr>,
    head: &str,
) -> End {
    let mut stream = match connect(src, addr).await {
        Ok(s) => s,
        Err(e) => return End::Failed(io_reason("connect", &e)),
    };
    let mut req = Vec::with_capacity(head.len() + 64);
    req.extend_from_slice(head.as_bytes());
    {
        let s = sh.borrow();
        let id = &s.slots[idx].last_id;
        if !id.is_empty() {
            req.extend_from_slice(b"Last-Event-ID: ");
            req.extend_from_slice(id);
            req.extend_from_slice(b"\r\n");
        }
    }
    req.extend_from_slice(b"\r\n");
    if let Err(e) = stream.write_all(req).await.0 {
        return End::Failed(io_reason("sending the request", &e));
    }
    // The head.
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let head = loop {
        let len = buf.len();
        if buf.capacity() - len < 1024 {
            buf.reserve(READ_BUF);
        }
        let cap = buf.capacity();
        let (r, b) = stream
            .read(monoio::buf::IoBufMut::slice_mut(buf, len..cap))
            .await;
        buf = b.into_inner();
        match r {
            Ok(n) if n > 0 => {}
            Ok(_) => return End::Failed("closed before the response head".into()),
            Err(e) => return End::Failed(io_reason("before the response head", &e)),
        }
        match http::parse_head(&buf) {
            Ok(Some(h)) => break h,
            Ok(None) => continue,
            Err(_) => {
                sh.borrow_mut().errors += 1;
                return End::Failed("malformed response head".into());
            }
        }
    };
    if head.status != 200 {
        let body = refusal_body(&mut stream, buf, &head).await;
        let body = body_prefix(&body);
        return End::Failed(if body.is_empty() {
            format!("HTTP {}", head.status)
        } else {
            format!("HTTP {}: {body}", head.status)
        });
    }
    {
        let mut s = sh.borrow_mut();
        s.progress.ok += 1;
        s.progress.open += 1;
        let gen = s.storm_gen;
        let slot = &mut s.slots[idx];
        slot.fd = stream.as_raw_fd();
        slot.conn_events = 0;
        let first = !slot.attempted;
        let first_open = !slot.opened;
        slot.opened = true;
        slot.attempted = true;
        slot.retry_ms = None;
        if slot.gen < gen {
            slot.gen = gen;
            s.storm_pending = s.storm_pending.saturating_sub(1);
            if s.storm_pending == 0 {
                s.storm_ms = s.storm_at.map(|t| t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        if first {
            s.attempted += 1;
        }
        if first_open {
            s.last_first_open_us = Some(now_us());
        }
        if !first_open && s.progress.open == s.slots.len() as u64 {
            s.progress.all_open_us = now_us();
        }
    }
    let mut parser = sse::Parser::default();
    let mut dechunk = (head.framing == Framing::Chunked).then(Dechunker::default);
    let body_start = head.len;
    // The start of the body, kept until the first loadgen event: if the server ends the
    // stream before one, this says why.
    let mut start: Vec<u8> = buf[body_start..]
        .iter()
        .take(BODY_PREFIX + 64)
        .copied()
        .collect();
    let mut bad = !feed(sh, idx, &mut parser, &mut dechunk, &buf[body_start..]);
    while !bad {
        buf.clear();
        let (r, b) = stream.read(buf).await;
        buf = b;
        match r {
            Ok(n) if n > 0 => {
                if start.len() < BODY_PREFIX + 64 {
                    let more = (BODY_PREFIX + 64 - start.len()).min(n);
                    start.extend_from_slice(&buf[..more]);
                }
                bad = !feed(sh, idx, &mut parser, &mut dechunk, &buf[..n]);
            }
            _ => break,
        }
    }
    let mut s = sh.borrow_mut();
    if bad {
        s.errors += 1;
    }
    let slot = &mut s.slots[idx];
    slot.fd = -1;
    slot.retry_ms = parser.retry_ms;
    if slot.conn_events > 0 {
        return End::Closed(None);
    }
    if head.framing == Framing::Chunked {
        let mut body = Vec::new();
        let _ = Dechunker::default().feed(&start, |b| body.extend_from_slice(b));
        start = body;
    }
    let body = body_prefix(&event_lines(&start));
    End::Closed(Some(if body.is_empty() {
        "HTTP 200, then closed before any event".into()
    } else {
        format!("HTTP 200, then closed before any event: {body}")
    }))
}

/// Feeds one read to the stream's parser; false when the framing is broken.
fn feed(
    sh: &Rc<RefCell<Shared>>,
    idx: usize,
    parser: &mut sse::Parser,
    dechunk: &mut Option<Dechunker>,
    bytes: &[u8],
) -> bool {
    let mut s = sh.borrow_mut();
    let s = &mut *s;
    let mut on_event = |e: &sse::Event<'_>| on_event(s, idx, e);
    match dechunk {
        None => {
            parser.feed(bytes, &mut on_event);
            true
        }
        Some(d) => match d.feed(bytes, |b| parser.feed(b, &mut on_event)) {
            Ok((_, ended)) => !ended,
            Err(_) => false,
        },
    }
}

fn on_event(s: &mut Shared, idx: usize, e: &sse::Event<'_>) {
    if !e.id.is_empty() {
        let id = &mut s.slots[idx].last_id;
        id.clear();
        id.extend_from_slice(e.id);
    }
    if sse::is_reset(e) {
        s.progress.resets += 1;
        return;
    }
    let (Some(seq), Some(t)) = (sse::json_u64(e.data, b"seq"), sse::json_u64(e.data, b"t")) else {
        return;
    };
    let lat = now_us().saturating_sub(t).max(1);
    s.slots[idx].conn_events += 1;
    match s.slots[idx].seqs.insert(seq) {
        Seen::New => {
            s.hist.saturating_record(lat);
            s.sec_hist.saturating_record(lat);
            s.progress.received += 1;
            s.sec_received += 1;
            if s.track_rounds {
                let r = seq as usize;
                if r < 1 << 20 {
                    if r >= s.round_max.len() {
                        s.round_max.resize(r + 1, 0);
                    }
                    s.round_max[r] = s.round_max[r].max(lat);
                }
            }
        }
        Seen::Duplicate => s.progress.duplicated += 1,
        Seen::OutOfRange => s.errors += 1,
    }
}

/// Opens a TCP connection from `src` (any port: `IP_BIND_ADDRESS_NO_PORT` lets the kernel
/// pick the port at connect time per destination, so each source address has its own ~28k
/// ports towards each server).
async fn connect(src: Option<Ipv4Addr>, dst: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), None)?;
    s.set_nodelay(true)?;
    if let Some(ip) = src {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own with a pointer to a live c_int.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        s.bind(&SocketAddr::new(ip.into(), 0).into())?;
    }
    match s.connect(&dst.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(s.into())?;
    stream.writable(false).await?;
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a live c_int of the given length.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if err != 0 {
        return Err(std::io::Error::from_raw_os_error(err));
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_short_printable_line() {
        for (body, want) in [
            (
                &b"{\"error\":\"missing token\"}\n"[..],
                "{\"error\":\"missing token\"}",
            ),
            (b"  two\r\n\tlines\x00 ", "two lines"),
            (b"\xff\xfe bad utf-8", "\u{fffd}\u{fffd} bad utf-8"),
            (b"", ""),
        ] {
            assert_eq!(body_prefix(body), want, "{body:?}");
        }
        assert_eq!(body_prefix(&[b'x'; 500]).len(), BODY_PREFIX);
    }

    #[test]
    fn failover_picks_the_least_loaded_other_url() {
        // (streams per URL, the URL that ended a stream, where it goes)
        for (per_url, from, to) in [
            (&[5u64, 5, 5][..], 0, 1),
            (&[5, 5, 5], 2, 0),
            (&[0, 9, 3], 1, 0),
            (&[0, 9, 3], 0, 2),
            (&[4, 1, 1, 1], 0, 1),
            (&[4, 1, 1, 1], 1, 2),
            (&[7, 7], 1, 0),
            (&[7], 0, 0),
        ] {
            assert_eq!(next_url(per_url, &[], from), to, "{per_url:?} from {from}");
        }
        // A node's streams, moved one by one, spread evenly over the others.
        let mut per_url = vec![12u64, 12, 12, 12];
        for _ in 0..12 {
            let to = next_url(&per_url, &[], 0);
            per_url[0] -= 1;
            per_url[to] += 1;
        }
        assert_eq!(per_url, vec![0, 16, 16, 16]);
        // A node that refused connects (being restarted) is left out while another is up,
        // however few streams it holds; when every other is down too, least-loaded again.
        let down = [false, true, false, false];
        assert_eq!(next_url(&[9, 0, 5, 6], &down, 0), 2);
        assert_eq!(next_url(&[9, 0, 5, 6], &down, 2), 3);
        assert_eq!(next_url(&[0, 3, 9], &[false, true, true], 0), 1);
    }

    #[test]
    fn an_in_band_refusal_is_named_by_its_event_and_data_lines() {
        let a = b"retry: 2012\r\nid: 7\r\n: hi\r\nevent: error\r\ndata: {\"message\":\"limit\"}\r\n\r\n";
        let b = b"retry: 1873\nevent: error\ndata: {\"message\":\"limit\"}\n\n";
        assert_eq!(event_lines(a), event_lines(b));
        assert_eq!(
            body_prefix(&event_lines(b)),
            "event: error data: {\"message\":\"limit\"}"
        );
    }
}
