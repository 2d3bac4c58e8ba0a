//! A client library nobody here wrote (the `eventsource` npm package, run by Node.js) receives
//! published events across reconnects. The connection is cut by a TCP proxy in the test, so
//! the library's own reconnect logic is what brings the stream back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

/// A loopback proxy whose live connections the test can sever.
struct Proxy {
    addr: std::net::SocketAddr,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let live = Arc::new(Mutex::new(Vec::new()));
        let live2 = live.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let Ok(u) = TcpStream::connect(upstream) else {
                    continue;
                };
                live2.lock().unwrap().push(c.try_clone().unwrap());
                live2.lock().unwrap().push(u.try_clone().unwrap());
                for (mut a, mut b) in [(c.try_clone().unwrap(), u.try_clone().unwrap()), (u, c)] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = a.read(&mut buf) {
                            if n == 0 || b.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = b.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, live }
    }

    fn sever(&self) {
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn eventsource_library_receives_events_across_reconnects() {
    let gw = Gateway::start(&[]);
    let proxy = Proxy::start(gw.addr);
    let js = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests-js/sse-client.js");
    let url = format!("http://{}/sse?token={}", proxy.addr, player_token(9, 9));
    let mut child = Command::new("node")
        .args([js, &url, "6", "20000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node (installed by scripts/install-deps)");
    let lines = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    {
        let lines = lines.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&l) {
                    lines.lock().unwrap().push(v);
                }
            }
        });
    }
    let count = |kind: &str| {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["kind"] == kind)
            .count()
    };
    let data_msgs = || {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| {
                v["kind"] == "message" && v["data"].as_str().unwrap_or("").contains("event_type")
            })
            .count()
    };
    assert!(
        eventually(10 * Duration::from_secs(1), || count("open") == 1),
        "library connected"
    );
    // Messages: `connected`, events 1 and 2, (cut) `connected` again, event 3 (replayed), 4.
    for n in 1..=2 {
        gw.publish("SSE::9::9", &player_event(9, 9, n));
    }
    assert!(
        eventually(Duration::from_secs(5), || data_msgs() == 2),
        "two events before the cut"
    );
    proxy.sever();
    // Published while the library is away: it must come back with Last-Event-ID and get this
    // event replayed, exactly once.
    gw.publish("SSE::9::9", &player_event(9, 9, 3));
    assert!(
        eventually(Duration::from_secs(10), || count("open") == 2),
        "the library reconnected by itself: {:?}",
        lines.lock().unwrap()
    );
    gw.publish("SSE::9::9", &player_event(9, 9, 4));
    let status = child.wait().expect("node exits");
    let got = lines.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "got all 6 messages: {got:?}");
    let app: Vec<String> = got
        .iter()
        .filter(|v| v["kind"] == "message")
        .filter_map(|v| v["data"].as_str())
        .filter(|d| d.contains("event_type"))
        .map(str::to_string)
        .collect();
    let want: Vec<String> = (1..=4).map(|n| player_event(9, 9, n)).collect();
    assert_eq!(
        app, want,
        "every event once, in order, across the reconnect"
    );
    let last = got.iter().rev().find(|v| v["kind"] == "message").unwrap();
    assert!(!last["id"].as_str().unwrap().is_empty(), "events carry ids");
    assert_eq!(gw.stat("resumes"), 1, "the reconnect resumed from history");
}
