//! loadgen: opens many SSE streams, publishes events carrying their send time and sequence
//! number, and reports delivery latency, loss and duplicates, and the server's CPU and memory.
//!
//! Scenarios (this milestone): `idle` (memory per idle stream) and `fanout` (publish-to-receive
//! latency of unicast events to every stream). Single process, one thread, io_uring.
mod proc;
mod sse;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

const USAGE: &str = "loadgen SCENARIO [options]

scenarios:
  idle     open --streams player streams, hold them, report the server's RSS per stream
  fanout   open --streams player streams, publish --rounds events to each, report latency

options:
  --target ADDR        gateway address (default 127.0.0.1:8080)
  --streams N          streams to open (default 1000)
  --rounds N           events per stream for fanout (default 20)
  --players N          distinct players the streams belong to (stream i is player i % N;
                       default: one player per stream). --players 1 makes one event fan
                       out to every stream
  --secret S           SSE_AUTH_SECRET of the gateway, to mint player tokens (required)
  --brand N            brand_id of the minted tokens (default 1)
  --pid PID            the server's PID, for its RSS and CPU
  --hold SECS          idle: how long to hold the streams before measuring (default 3)
  --timeout SECS       give up waiting after this long (default 60)
";

#[derive(Clone)]
struct Opts {
    scenario: String,
    target: SocketAddr,
    streams: usize,
    rounds: u64,
    players: usize,
    secret: String,
    brand: u64,
    pid: Option<u32>,
    hold: Duration,
    timeout: Duration,
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().ok_or("missing scenario")?;
    if scenario == "-h" || scenario == "--help" {
        return Err(String::new());
    }
    let mut o = Opts {
        scenario,
        target: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        streams: 1000,
        rounds: 20,
        players: 0,
        secret: String::new(),
        brand: 1,
        pid: None,
        hold: Duration::from_secs(3),
        timeout: Duration::from_secs(60),
    };
    while let Some(flag) = args.next() {
        let v = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--target" => o.target = v.parse().map_err(|e| bad(&e))?,
            "--streams" => o.streams = v.parse().map_err(|e| bad(&e))?,
            "--rounds" => o.rounds = v.parse().map_err(|e| bad(&e))?,
            "--players" => o.players = v.parse().map_err(|e| bad(&e))?,
            "--secret" => o.secret = v,
            "--brand" => o.brand = v.parse().map_err(|e| bad(&e))?,
            "--pid" => o.pid = Some(v.parse().map_err(|e| bad(&e))?),
            "--hold" => o.hold = Duration::from_secs(v.parse().map_err(|e| bad(&e))?),
            "--timeout" => o.timeout = Duration::from_secs(v.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.players == 0 || o.players > o.streams {
        o.players = o.streams;
    }
    if o.secret.is_empty() {
        return Err("--secret is required (the gateway's SSE_AUTH_SECRET)".into());
    }
    Ok(o)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What the streams have seen, shared by the tasks of this thread.
struct Tally {
    connected: usize,
    failed: usize,
    received: u64,
    duplicated: u64,
    /// Next expected sequence number per stream.
    next_seq: Vec<u64>,
    /// Latency in microseconds.
    latency: Histogram<u64>,
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}\n");
            }
            eprint!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("error: cannot build the runtime: {e}");
            std::process::exit(1)
        });
    let code = rt.block_on(run(o));
    std::process::exit(code);
}

async fn run(o: Opts) -> i32 {
    let tally = Rc::new(RefCell::new(Tally {
        connected: 0,
        failed: 0,
        received: 0,
        duplicated: 0,
        next_seq: vec![0; o.streams],
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
    }));
    let rss0 = o.pid.and_then(proc::rss_bytes);
    let cpu0 = o.pid.and_then(proc::cpu_seconds);
    let started = Instant::now();
    for i in 0..o.streams {
        let token = gateway::auth::jwt::sign_hs256(
            &format!(
                "{{\"brand_id\":{},\"player_id\":{},\"exp\":{}}}",
                o.brand,
                i % o.players,
                now_ns() / 1_000_000_000 + 86_400
            ),
            o.secret.as_bytes(),
        );
        monoio::spawn(stream(o.target, i, token, tally.clone()));
        if i % 250 == 249 {
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let deadline = started + o.timeout;
    while {
        let t = tally.borrow();
        t.connected + t.failed < o.streams
    } && Instant::now() < deadline
    {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_time = started.elapsed();
    let (ok, failed) = {
        let t = tally.borrow();
        (t.connected, t.failed)
    };
    println!(
        "connected {ok}/{} streams in {:.2}s ({failed} failed)",
        o.streams,
        connect_time.as_secs_f64()
    );
    match o.scenario.as_str() {
        "idle" => {
            monoio::time::sleep(o.hold).await;
            if let (Some(pid), Some(r0)) = (o.pid, rss0) {
                let r1 = proc::rss_bytes(pid).unwrap_or(0);
                let per = (r1.saturating_sub(r0)) as f64 / ok.max(1) as f64;
                println!(
                    "server RSS {:.1} MiB -> {:.1} MiB: {:.0} bytes per idle stream ({} streams)",
                    r0 as f64 / 1048576.0,
                    r1 as f64 / 1048576.0,
                    per,
                    ok
                );
            }
        }
        "fanout" => {
            let code = fanout(&o, &tally).await;
            if code != 0 {
                return code;
            }
        }
        other => {
            eprintln!("error: unknown scenario {other}\n{USAGE}");
            return 2;
        }
    }
    if let (Some(pid), Some(c0)) = (o.pid, cpu0) {
        let c1 = proc::cpu_seconds(pid).unwrap_or(c0);
        println!(
            "server CPU {:.2}s over {:.1}s; peak RSS {:.1} MiB",
            c1 - c0,
            started.elapsed().as_secs_f64(),
            proc::peak_rss_bytes(pid).unwrap_or(0) as f64 / 1048576.0
        );
    }
    if let Some(me) = proc::rss_bytes(std::process::id()) {
        println!(
            "loadgen CPU {:.2}s, RSS {:.1} MiB",
            proc::cpu_seconds(std::process::id()).unwrap_or(0.0),
            me as f64 / 1048576.0
        );
    }
    i32::from(failed > 0)
}

async fn fanout(o: &Opts, tally: &Rc<RefCell<Tally>>) -> i32 {
    let mut publ = match TcpStream::connect(o.target).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: publisher cannot connect to {}: {e}", o.target);
            return 1;
        }
    };
    let _ = publ.set_nodelay(true);
    let mut rbuf = Vec::with_capacity(4096);
    for round in 0..o.rounds {
        for i in 0..o.players {
            let body = format!(
                "{{\"channel\":\"SSE::{b}::{i}\",\"data\":{{\"brand_id\":{b},\"player_id\":{i},\"event_type\":\"loadgen\",\"event_data\":{{\"seq\":{round},\"sent_ns\":{t}}}}}}}",
                b = o.brand,
                t = now_ns()
            );
            let req = format!(
                "POST /api/v1/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                o.target,
                body.len()
            );
            let (r, _) = publ.write_all(req.into_bytes()).await;
            if let Err(e) = r {
                eprintln!("error: publish failed: {e}");
                return 1;
            }
            // One response per request: read until its head and body are in.
            loop {
                if let Some(end) = find(&rbuf, b"\r\n\r\n") {
                    let len = content_length(&rbuf[..end]).unwrap_or(0);
                    if rbuf.len() >= end + 4 + len {
                        if !rbuf.starts_with(b"HTTP/1.1 202") {
                            eprintln!(
                                "error: publish answered {}",
                                String::from_utf8_lossy(&rbuf[..end + 4 + len])
                            );
                            return 1;
                        }
                        rbuf.drain(..end + 4 + len);
                        break;
                    }
                }
                rbuf.reserve(4096);
                let (r, b) = publ.read(rbuf).await;
                rbuf = b;
                if !matches!(r, Ok(n) if n > 0) {
                    eprintln!("error: publisher connection closed");
                    return 1;
                }
            }
        }
        monoio::time::sleep(Duration::from_millis(50)).await;
    }
    let expected = o.rounds * tally.borrow().connected as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tally.borrow().received < expected && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = tally.borrow();
    let h = &t.latency;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "events expected {expected} received {} lost {} duplicated {}",
        t.received,
        expected.saturating_sub(t.received),
        t.duplicated
    );
    println!(
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    );
    i32::from(t.received < expected || t.duplicated > 0)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn content_length(head: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(head).ok()?;
    s.lines()
        .find_map(|l| {
            l.strip_prefix("Content-Length: ")
                .or_else(|| l.strip_prefix("content-length: "))
        })
        .and_then(|v| v.trim().parse().ok())
}

async fn stream(target: SocketAddr, i: usize, token: String, tally: Rc<RefCell<Tally>>) {
    let fail = |t: &Rc<RefCell<Tally>>| t.borrow_mut().failed += 1;
    let Ok(mut s) = TcpStream::connect(target).await else {
        return fail(&tally);
    };
    let req = format!(
        "GET /sse?token={token} HTTP/1.1\r\nHost: {target}\r\nAccept: text/event-stream\r\n\r\n"
    );
    if s.write_all(req.into_bytes()).await.0.is_err() {
        return fail(&tally);
    }
    let mut buf = Vec::with_capacity(2048);
    let mut parser = sse::Parser::default();
    let mut in_body = false;
    let mut connected = false;
    loop {
        buf.clear();
        let (r, b) = s.read(buf).await;
        buf = b;
        let n = match r {
            Ok(n) if n > 0 => n,
            _ => {
                if !connected {
                    fail(&tally);
                } else {
                    tally.borrow_mut().connected -= 1;
                }
                return;
            }
        };
        let mut chunk = &buf[..n];
        if !in_body {
            if !chunk.starts_with(b"HTTP/1.1 200") {
                return fail(&tally);
            }
            let Some(end) = find(chunk, b"\r\n\r\n") else {
                return fail(&tally);
            };
            chunk = &chunk[end + 4..];
            in_body = true;
        }
        let mut t = tally.borrow_mut();
        parser.feed(chunk, |e| {
            if !connected {
                connected = true;
                t.connected += 1;
                return;
            }
            let (Some(seq), Some(sent)) = (
                sse::json_u64(e.data, b"seq"),
                sse::json_u64(e.data, b"sent_ns"),
            ) else {
                return;
            };
            let lat_us = now_ns().saturating_sub(sent) / 1000;
            let _ = t.latency.record(lat_us.max(1));
            if seq < t.next_seq[i] {
                t.duplicated += 1;
            } else {
                t.next_seq[i] = seq + 1;
                t.received += 1;
            }
        });
    }
}
