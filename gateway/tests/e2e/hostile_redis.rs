//! Redis as an input (issue 13, items 9-11), against a real gateway process: a fake Redis
//! that sends a frame nested 100,000 deep (skipped, the link kept), a real `redis-server`
//! carrying 16 MiB messages, and a real `redis-server` frozen with SIGSTOP while publishes
//! time out.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

fn node(redis: &str) -> Gateway {
    Gateway::start(&[("EVENTS_REDIS_STORAGE", redis)])
}

/// Open descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A RESP array of bulk strings, written by the gateway's own RESP writer.
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    gateway::internals::resp::encode_command(args, &mut out);
    out.to_vec()
}

/// A Redis impostor on a loopback port: it confirms each `PSUBSCRIBE` pattern, answers
/// `PING`s (so the gateway's watchdog keeps the link), and sends what the test tells it.
/// Every subscriber connection it accepted is kept, in order (other connections get errors);
/// its threads stop when it drops.
struct FakeRedis {
    port: u16,
    conns: Arc<Mutex<Vec<Arc<Mutex<TcpStream>>>>>,
    stop: Arc<AtomicBool>,
}

impl FakeRedis {
    fn start() -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().unwrap().port();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let _ = sock.set_nonblocking(false);
                        let (c, s) = (c.clone(), s.clone());
                        std::thread::spawn(move || serve(sock, c, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeRedis { port, conns, stop }
    }

    fn accepted(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Writes `bytes` on every connection (dead ones fail silently).
    fn send_all(&self, bytes: &[u8]) {
        let conns = self.conns.lock().unwrap().clone();
        for c in conns {
            let _ = c.lock().unwrap().write_all(bytes);
        }
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.conns.lock().unwrap().iter() {
            let _ = c.lock().unwrap().shutdown(std::net::Shutdown::Both);
        }
    }
}

/// One connection of the impostor: the `PSUBSCRIBE` confirmed, then pongs.
fn serve(sock: TcpStream, conns: Arc<Mutex<Vec<Arc<Mutex<TcpStream>>>>>, stop: Arc<AtomicBool>) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut rd = sock.try_clone().expect("clone");
    let wr = Arc::new(Mutex::new(sock));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // The command: `*<n>\r\n` then n bulk strings, 2 lines each.
    let patterns = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match rd.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        let text = String::from_utf8_lossy(&buf).to_string();
        let Some(args) = text
            .strip_prefix('*')
            .and_then(|t| t.split("\r\n").next())
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        // The header line, then 2 lines per argument.
        if text.matches("\r\n").count() > 2 * args {
            break args - 1;
        }
    };
    // Not a subscriber (a node's publisher link: `INFO`, `FCALL_RO ...`): every command is
    // refused, as by a Redis without those commands, and the connection is not one of the
    // links the test writes to.
    if !String::from_utf8_lossy(&buf).contains("PSUBSCRIBE") {
        let commands = |b: &[u8]| {
            let t = String::from_utf8_lossy(b);
            usize::from(t.starts_with('*')) + t.matches("\r\n*").count()
        };
        let mut seen = commands(&buf);
        let _ = wr
            .lock()
            .unwrap()
            .write_all(b"-ERR unknown command\r\n".repeat(seen).as_slice());
        while !stop.load(Ordering::Relaxed) {
            match rd.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => return,
            }
            let now = commands(&buf);
            let _ = wr
                .lock()
                .unwrap()
                .write_all(b"-ERR unknown command\r\n".repeat(now - seen).as_slice());
            seen = now;
        }
        return;
    }
    {
        let mut w = wr.lock().unwrap();
        for i in 1..=patterns {
            let c = format!("*3\r\n$10\r\npsubscribe\r\n$1\r\nx\r\n:{i}\r\n");
            let _ = w.write_all(c.as_bytes());
        }
    }
    conns.lock().unwrap().push(wr.clone());
    while !stop.load(Ordering::Relaxed) {
        match rd.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                let pings = String::from_utf8_lossy(&chunk[..n]).matches("PING").count();
                let mut w = wr.lock().unwrap();
                for _ in 0..pings {
                    let _ = w.write_all(&resp(&[b"pong", b""]));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// Item 9: ~10,000 nested `*1\r\n` (here 100,000, 400 KB) overflowed a core's stack and
/// aborted the process; then the link was dropped, which lost every other message's
/// subscribers for a reconnect. Now the frame is skipped as it streams in and counted as a
/// dropped message; the link stays up and the message right behind it is delivered.
#[test]
fn a_deeply_nested_frame_is_skipped_and_the_link_stays_up() {
    let fake = FakeRedis::start();
    let mut gw = node(&format!("127.0.0.1:{}", fake.port));
    assert!(
        eventually(10 * SEC, || ready(&gw) == 200),
        "{}",
        gw.log_text()
    );
    assert_eq!(fake.accepted(), 2, "one subscriber per core");
    let mut s = Sse::player(gw.addr, 9, 9);
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 1));
    let event = |n| {
        resp(&[
            b"pmessage",
            b"SSE::*::*",
            b"SSE::9::9",
            player_event(9, 9, n).as_bytes(),
        ])
    };
    fake.send_all(&event(1));
    assert_eq!(
        next_player_event(&mut s)
            .expect("the impostor delivers")
            .data,
        player_event(9, 9, 1)
    );

    // On each core's link (the stream's core is one of them): the nested frame, then a
    // message in the same write.
    for round in 2..=3 {
        let mut deep = b"*1\r\n".repeat(100_000);
        deep.extend_from_slice(b":1\r\n");
        deep.extend(event(round));
        fake.send_all(&deep);
        assert_eq!(
            next_player_event(&mut s)
                .unwrap_or_else(|| panic!(
                    "round {round}: the message behind it is delivered (exit: {:?}):\n{}",
                    gw.wait_exit(Duration::from_millis(10)),
                    gw.log_text()
                ))
                .data,
            player_event(9, 9, round)
        );
        assert!(
            eventually(5 * SEC, || gw.stat("redis.dropped")
                == 2 * (round as i64 - 1)),
            "round {round}: each core counts one skipped frame:\n{}",
            gw.log_text()
        );
    }
    assert_eq!(gw.stat("redis.disconnects"), 0, "{}", gw.log_text());
    assert_eq!(gw.stat("redis.protocol_errors"), 0);
    assert_eq!(fake.accepted(), 2, "no reconnect");
    assert_eq!(ready(&gw), 200);
    let log = gw.log_text();
    assert!(log.contains("nested deeper than 8"), "{log}");
    assert!(
        !log.contains("Redis sent bytes the gateway refuses"),
        "{log}"
    );
    let m = gw.get("/metrics").text();
    assert!(m.contains("sse_redis_protocol_errors_total 0"), "{m}");
    assert_eq!(gw.get("/healthz").status, 200);
}

/// Item 10: a message over 8 MiB dropped every core's subscription (`/readyz` 503 on every
/// node at once). Now a message over the 64 KiB payload limit is read and discarded as it
/// streams in, counted, and the link stays up: the next message is delivered.
#[test]
fn an_oversized_message_is_skipped_and_the_link_stays_up() {
    let redis = Redis::start(&[]);
    let gw = node(&redis.url());
    assert!(eventually(5 * SEC, || ready(&gw) == 200));
    let mut s = Sse::player(gw.addr, 10, 10);
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 1));
    let big = "x".repeat(16 * 1024 * 1024);
    for round in 1..=2 {
        let n = redis.cli_stdin(&["-x", "PUBLISH", "SSE::10::10"], &big);
        assert_eq!(n, "2", "both cores' subscriptions took it");
        redis.cli(&["PUBLISH", "SSE::10::10", &player_event(10, 10, round)]);
        assert_eq!(
            next_player_event(&mut s)
                .unwrap_or_else(|| panic!("round {round}: {}", gw.log_text()))
                .data,
            player_event(10, 10, round)
        );
        assert_eq!(ready(&gw), 200, "round {round}");
        assert_eq!(
            gw.stat("redis.disconnects"),
            0,
            "round {round}: no link dropped:\n{}",
            gw.log_text()
        );
    }
    // Each core skipped each one (a non-owner core too: sizes are checked before owners).
    assert!(eventually(5 * SEC, || gw.stat("redis.dropped") == 4));
    assert_eq!(gw.stat("redis.protocol_errors"), 0);
}

/// Item 11, outcome: a publish answered `503` after the 2 s timeout was still delivered once
/// Redis woke up. A publish whose `PUBLISH` was written and not answered is now a `504`
/// saying the outcome is unknown; a `503` is never delivered.
#[test]
fn an_unanswered_publish_is_a_504_and_a_503_is_never_delivered() {
    let redis = Redis::start(&[]);
    let gw = node(&redis.url());
    assert!(eventually(5 * SEC, || ready(&gw) == 200));
    let mut s = Sse::player(gw.addr, 11, 11);
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 1));
    for n in 1..=4 {
        let r = gw.publish("SSE::11::11", &player_event(11, 11, n));
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(
            next_player_event(&mut s).expect("warm-up").data,
            player_event(11, 11, n)
        );
    }
    redis.signal(libc::SIGSTOP);
    let frozen = gw.publish("SSE::11::11", &player_event(11, 11, 100));
    // Right after the answer, so the subscriptions (given up after 4 s of silence) live on
    // and would deliver what Redis executes on waking.
    let after = gw.publish("SSE::11::11", &player_event(11, 11, 101));
    redis.signal(libc::SIGCONT);
    assert_eq!(frozen.status, 504, "written, unanswered: {}", frozen.text());
    assert!(
        frozen.error().contains("the outcome is unknown"),
        "{}",
        frozen.error()
    );
    let mut not_published = Vec::new();
    for (n, r) in [(100, &frozen), (101, &after)] {
        if r.status == 503 {
            not_published.push(n);
        }
    }
    assert!(eventually(15 * SEC, || ready(&gw) == 200));
    std::thread::sleep(Duration::from_millis(600)); // past the publisher's 0.5 s backoff
    let mut r = gw.publish("SSE::11::11", &player_event(11, 11, 200));
    for _ in 0..10 {
        if r.status == 202 {
            break;
        }
        std::thread::sleep(Duration::from_millis(600));
        r = gw.publish("SSE::11::11", &player_event(11, 11, 200));
    }
    assert_eq!(r.status, 202, "{}", r.text());
    let mut seen = Vec::new();
    loop {
        let ev = next_player_event(&mut s).expect("up to the marker");
        if ev.data == player_event(11, 11, 200) {
            break;
        }
        seen.push(ev.data);
    }
    for n in not_published {
        assert!(
            !seen.contains(&player_event(11, 11, n)),
            "publish {n} was answered 503 but delivered: {seen:?}"
        );
    }
    assert!(gw.stat("redis.publish_unknown") >= 1);
}

/// Item 11, descriptors: timed-out publisher links leaked one descriptor each while Redis
/// stayed frozen (16 -> 25 in 20 s). Now a link given up is closed at once.
#[test]
fn timed_out_publisher_links_are_closed_while_redis_is_frozen() {
    let redis = Redis::start(&[]);
    let gw = node(&redis.url());
    assert!(eventually(5 * SEC, || ready(&gw) == 200));
    for n in 1..=6 {
        let r = gw.publish("SSE::12::12", &player_event(12, 12, n));
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let base = fds(gw.pid());
    redis.signal(libc::SIGSTOP);
    let end = Instant::now() + 16 * SEC;
    let (mut most, mut statuses) = (base, Vec::new());
    for n in 0..200 {
        if Instant::now() >= end {
            break;
        }
        let r = gw.publish("SSE::12::12", &player_event(12, 12, 100 + n));
        statuses.push(r.status);
        most = most.max(fds(gw.pid()));
        std::thread::sleep(Duration::from_millis(100));
    }
    redis.signal(libc::SIGCONT);
    eprintln!("descriptors: {base} before, at most {most} during; statuses {statuses:?}");
    assert!(
        most <= base + 3,
        "descriptors {base} before, up to {most} while publishes timed out: {statuses:?}"
    );
    // The first publish times out (504); each later one opens a new link whose `ssegw`
    // library check (the durable path) times out before anything is published (503): a
    // link per publish either way, each closed at once.
    let timeouts = statuses.iter().filter(|&&s| s == 504).count();
    assert!(
        timeouts >= 1 && statuses.len() >= 4,
        "publishes kept timing out: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [503, 504].contains(s)),
        "{statuses:?}"
    );
}
