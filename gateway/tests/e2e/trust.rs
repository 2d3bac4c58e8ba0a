//! Who may publish (issue 13, item 5): loopback trust ends at a proxy, publish bodies are
//! JSON, the admin API can live on its own listener, and a publish API open beyond loopback
//! without a token is warned about at start-up.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

fn publish_request(path: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A same-host reverse proxy in miniature: a loopback listener that takes one connection,
/// adds `header` after the request line, relays the request to `upstream` and the answer
/// back, as nginx with `proxy_set_header X-Forwarded-For` does. Every read is bounded.
fn forwarder(upstream: SocketAddr, header: &'static str) -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut client, _) = l.accept().unwrap();
        client.set_read_timeout(Some(5 * SEC)).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "client closed before its head");
            req.extend_from_slice(&buf[..n]);
        };
        // The request line ends at the first CRLF: the header goes right after it.
        let line_end = req.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        assert!(line_end <= head_end + 2);
        let mut relayed = req[..line_end].to_vec();
        relayed.extend_from_slice(header.as_bytes());
        relayed.extend_from_slice(&req[line_end..]);
        let mut up = TcpStream::connect(upstream).unwrap();
        up.set_read_timeout(Some(5 * SEC)).unwrap();
        up.write_all(&relayed).unwrap();
        // The client sent `Connection: close`: relay the answer until the gateway closes.
        let mut answer = Vec::new();
        let _ = up.read_to_end(&mut answer);
        let _ = client.write_all(&answer);
    });
    (addr, t)
}

#[test]
fn publish_through_a_proxy_is_not_trusted_as_loopback() {
    let gw = Gateway::start(&[]);
    let body = format!(
        "{{\"channel\":\"SSE::1::2\",\"data\":{}}}",
        player_event(1, 2, 1)
    );
    let req = publish_request("/api/v1/publish", "application/json", &body);
    // Straight from loopback, no token set: trusted.
    assert_eq!(request(gw.addr, &req).status, 202);
    // The same request through a same-host proxy that says so: refused, whatever it says.
    for header in [
        "X-Forwarded-For: 203.0.113.7\r\n",
        "X-Real-IP: 127.0.0.1\r\n",
        "Forwarded: for=\"[::1]\"\r\n",
    ] {
        let (proxy, t) = forwarder(gw.addr, header);
        let r = request(proxy, &req);
        t.join().unwrap();
        assert_eq!(r.status, 401, "{header}: {}", r.text());
        assert_eq!(
            r.error(),
            "publish through a proxy (Forwarded, X-Forwarded-For or X-Real-IP) needs SSE_PUBLISH_TOKEN"
        );
    }
    // With a token, a proxied publisher that has it gets through.
    let gw = Gateway::start(&[("SSE_PUBLISH_TOKEN", "pub-secret")]);
    let (proxy, t) = forwarder(
        gw.addr,
        "X-Forwarded-For: 203.0.113.7\r\nAuthorization: Bearer pub-secret\r\n",
    );
    let r = request(proxy, &req);
    t.join().unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
}

#[test]
fn publish_bodies_must_be_declared_json() {
    let gw = Gateway::start(&[]);
    let body = format!(
        "{{\"channel\":\"SSE::1::2\",\"data\":{}}}",
        player_event(1, 2, 1)
    );
    let broadcast = r#"{"topic":"t","type":"x","data":1}"#;
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, u16)] = &[
        // What a cross-site <form> or fetch without preflight can send.
        ("/api/v1/publish", "text/plain", &body, 415),
        ("/api/v1/publish", "application/x-www-form-urlencoded", &body, 415),
        ("/api/v1/events/broadcast", "text/plain;charset=UTF-8", broadcast, 415),
        ("/api/v1/events/broadcast", "multipart/form-data; boundary=x", broadcast, 415),
        ("/api/v1/publish", "application/json; charset=utf-8", &body, 202),
        ("/api/v1/events/broadcast", "Application/JSON", broadcast, 202),
    ];
    for (path, content_type, body, want) in cases {
        let r = request(gw.addr, &publish_request(path, content_type, body));
        assert_eq!(r.status, *want, "{path} {content_type}: {}", r.text());
        if *want == 415 {
            assert_eq!(r.error(), "publish needs Content-Type: application/json");
        }
    }
    // No Content-Type at all.
    let raw = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(request(gw.addr, raw.as_bytes()).status, 415);
}

#[test]
fn the_admin_listener_takes_publish_stats_and_metrics_off_the_public_port() {
    let gw = Gateway::start(&[("SSE_ADMIN_LISTEN", "127.0.0.1:0")]);
    let admin = gw.admin_addr().expect("admin_listen= in the start-up line");
    assert_ne!(admin, gw.addr);
    let body = format!(
        "{{\"channel\":\"SSE::1::2\",\"data\":{}}}",
        player_event(1, 2, 1)
    );
    let publish = publish_request("/api/v1/publish", "application/json", &body);
    let broadcast = publish_request(
        "/api/v1/events/broadcast",
        "application/json",
        r#"{"topic":"t","type":"x","data":1}"#,
    );
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    // A player listening on the public port receives what the admin port publishes.
    let mut player = Sse::player(gw.addr, 1, 2);
    let public: Vec<(Vec<u8>, u16)> = vec![
        (publish.clone(), 404),
        (broadcast.clone(), 404),
        (get("/api/v1/events/stats").into_bytes(), 404),
        (get("/metrics").into_bytes(), 404),
        (get("/api/v1/publish").into_bytes(), 404),
        (get("/healthz").into_bytes(), 200),
        (get("/readyz").into_bytes(), 200),
    ];
    for (req, want) in &public {
        let r = request(gw.addr, req);
        assert_eq!(r.status, *want, "public {}", String::from_utf8_lossy(req));
        if *want == 404 {
            assert_eq!(r.error(), "no such path");
        }
    }
    let on_admin: Vec<(Vec<u8>, u16)> = vec![
        (publish, 202),
        (broadcast, 202),
        (get("/api/v1/events/stats").into_bytes(), 200),
        (get("/metrics").into_bytes(), 200),
        (get("/healthz").into_bytes(), 200),
        (get("/readyz").into_bytes(), 200),
        (get("/api/v1/events?topics=t").into_bytes(), 404),
        (get("/subscribe?channel=ws_broadcast_g").into_bytes(), 404),
    ];
    for (req, want) in &on_admin {
        let r = request(admin, req);
        assert_eq!(r.status, *want, "admin {}", String::from_utf8_lossy(req));
    }
    let connected = player.next_app_event(5 * SEC).expect("greeting");
    assert!(connected.data.contains("\"connected\""), "{connected:?}");
    let ev = player
        .next_app_event(5 * SEC)
        .expect("published on the admin port");
    assert_eq!(ev.data, player_event(1, 2, 1));
    // No stream is served on the admin port.
    let s = Sse::open(admin, &format!("/sse?token={}", player_token(1, 2)), "");
    assert_eq!(s.status(), 404);
    let metrics = request(admin, get("/metrics").as_bytes()).text();
    assert!(
        metrics.contains("sse_connections{route=\"player\"} 1"),
        "{metrics}"
    );
}

#[test]
fn publish_beyond_loopback_without_a_token_is_warned_about_at_start() {
    // Listening on every interface (port 0, for the instant it takes to read the log).
    let gw = Gateway::start(&[("SSE_LISTEN", "0.0.0.0:0")]);
    let port = gw.addr.port();
    assert!(
        eventually(5 * SEC, || gw.log_text().contains("beyond loopback")),
        "{}",
        gw.log_text()
    );
    let log = gw.log_text();
    let line = log.lines().find(|l| l.contains("beyond loopback")).unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!("0.0.0.0:{port} (SSE_LISTEN)")),
        "{line}"
    );
    assert!(line.contains("SSE_PUBLISH_TOKEN"), "{line}");
    drop(gw);
    // Not with a token, nor on loopback only (the log is complete once healthz answers).
    for env in [
        &[("SSE_LISTEN", "0.0.0.0:0"), ("SSE_PUBLISH_TOKEN", "t")][..],
        &[][..],
        &[
            ("SSE_LISTEN", "0.0.0.0:0"),
            ("SSE_ADMIN_LISTEN", "127.0.0.1:0"),
        ][..],
    ] {
        let gw = Gateway::start(env);
        assert_eq!(gw.get("/healthz").status, 200);
        assert!(
            !gw.log_text().contains("beyond loopback"),
            "{env:?}: {}",
            gw.log_text()
        );
    }
    // `--check-config` says it too, so a deploy pipeline sees it before the start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .args(["--check-config", "--listen=0.0.0.0:8080"])
        .output()
        .expect("run --check-config");
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: publish is served on 0.0.0.0:8080 (SSE_LISTEN)"),
        "{err}"
    );
}
