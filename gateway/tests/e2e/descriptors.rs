//! File descriptors against hostile clients (issue 13, item 4): under a low open-file limit,
//! a flood of idle sockets must not lock out a request made after it, nor flood the log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// Raises this test process's own soft open-file limit (the flood needs more than 1,024
/// sockets); the hard limit is left as it is.
fn raise_own_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
        assert!(lim.rlim_cur >= want, "this test needs {want} descriptors");
    }
}

/// `GET /healthz` on a fresh connection; the status, or `None` when no answer came within
/// `within`.
fn healthz(gw: &Gateway, within: Duration) -> Option<u16> {
    let mut s = TcpStream::connect(gw.addr).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    parse_response(&all).map(|r| r.status)
}

/// `n` sockets to `gw` that never send a byte.
fn idle_sockets(gw: &Gateway, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| TcpStream::connect(gw.addr).unwrap_or_else(|e| panic!("connect {i}: {e}")))
        .collect()
}

#[test]
fn idle_sockets_under_a_low_descriptor_limit_do_not_lock_out_healthz() {
    raise_own_nofile(4_096);
    // Heads may take 30 s: the idle sockets are not freed by the head timeout meanwhile.
    let gw = Gateway::start_under(&[("SSE_HEAD_TIMEOUT", "30s")], Some(1_024));
    // 1,100 sockets that never send a byte.
    let flood = idle_sockets(&gw, 1_100);
    std::thread::sleep(SEC);
    // A request made after the flood is answered, within a generous bound.
    let started = Instant::now();
    assert_eq!(
        healthz(&gw, 5 * SEC),
        Some(200),
        "after {:?}",
        started.elapsed()
    );
    eprintln!("/healthz after 1,100 idle sockets: {:?}", started.elapsed());
    // The start-up warning names the limit and what the settings need.
    let log = gw.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("open-file limit 1024 cannot hold"))
        .unwrap_or_else(|| panic!("no open-file warning in {log}"));
    let pending: u64 = field(
        log.lines()
            .find(|l| l.contains("gateway started"))
            .expect("start line"),
        "pending_limit=",
    )
    .expect("pending_limit on the start line")
    .parse()
    .expect("a number");
    assert!(
        (100..=512).contains(&pending),
        "a quarter of 1,024 less headroom: {pending}"
    );
    assert!(
        warning.contains(&format!("= {}", 50_000 + pending + 38)),
        "{warning}"
    );
    // The idle ones were closed to make room, and it shows.
    let r = gw.get("/metrics");
    assert_eq!(r.status, 200);
    let text = r.text();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert!(value("sse_pending_evicted_total") >= 1_100 - pending);
    assert!(value("sse_pending_connections") <= pending + 2);
    assert_eq!(value("sse_pending_limit"), pending);
    // At most one line per core about failing accepts, not one per failure.
    let accept_lines = gw
        .log_text()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(accept_lines <= 2, "{accept_lines} accept lines");
    drop(flood);
}

#[test]
fn running_out_of_descriptors_pauses_accepts_and_logs_once() {
    raise_own_nofile(4_096);
    // A pending limit the descriptors cannot hold: accepts fail before it is reached.
    let env = [("SSE_HEAD_TIMEOUT", "30s"), ("SSE_PENDING_LIMIT", "5000")];
    let gw = Gateway::start_under(&env, Some(1_024));
    let flood = idle_sockets(&gw, 1_100);
    std::thread::sleep(SEC);
    // Each failed accept closes the core's oldest idle connection: a request made after the
    // flood gets in.
    let started = Instant::now();
    assert_eq!(
        healthz(&gw, 5 * SEC),
        Some(200),
        "after {:?}",
        started.elapsed()
    );
    eprintln!(
        "/healthz with descriptors exhausted: {:?}",
        started.elapsed()
    );
    std::thread::sleep(SEC);
    let accept_lines = gw
        .log_text()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        (1..=2).contains(&accept_lines),
        "{accept_lines} accept lines: {}",
        gw.log_text()
    );
    let r = gw.get("/metrics");
    assert_eq!(r.status, 200);
    let text = r.text();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert!(value("sse_accept_errors_total") >= 1);
    assert!(value("sse_pending_evicted_total") >= 1);
    drop(flood);
}
