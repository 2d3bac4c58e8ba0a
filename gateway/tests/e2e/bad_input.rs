//! Every "Bad input" row of the contract (docs/API.md, "Errors and bad input") for the player stream and the HTTP API: real gateway,
//! real sockets. Each test fails if the behaviour changes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn malformed_request_line_and_headers_get_400() {
    let gw = Gateway::start(&[]);
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /sse HTTP/9.9\r\n\r\n",
        b"GET /sse HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET http://x/sse HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /api/v1/publish HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
    ] {
        let r = request(gw.addr, raw);
        assert_eq!(
            r.status,
            400,
            "{:?} -> {}",
            String::from_utf8_lossy(raw),
            r.head
        );
        assert!(!r.error().is_empty());
    }
}

#[test]
fn head_over_8_kib_gets_431() {
    let gw = Gateway::start(&[]);
    let big = format!(
        "GET /sse HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let r = request(gw.addr, big.as_bytes());
    assert_eq!(r.status, 431, "{}", r.head);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
}

#[test]
fn incomplete_head_is_closed_after_the_timeout() {
    let gw = Gateway::start(&[("SSE_HEAD_TIMEOUT", "1s")]);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: t\r\n").unwrap();
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < 4 * SEC,
        "closed after {took:?}"
    );
    assert!(eventually(2 * SEC, || gw.stat("head_timeouts") == 1));
}

#[test]
fn a_head_sent_slowly_but_within_the_timeout_is_served() {
    let gw = Gateway::start(&[("SSE_HEAD_TIMEOUT", "3s")]);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    for piece in [
        "GET /hea",
        "lthz HTTP/1.1\r\nHo",
        "st: t\r\nConnection: close\r\n",
        "\r\n",
    ] {
        s.write_all(piece.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut all = Vec::new();
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let _ = s.read_to_end(&mut all);
    assert_eq!(parse_response(&all).unwrap().status, 200);
}

#[test]
fn unknown_path_404_and_wrong_method_405() {
    let gw = Gateway::start(&[]);
    let r = gw.get("/nope");
    assert_eq!(r.status, 404);
    assert!(!r.error().is_empty());
    let r = request(
        gw.addr,
        // `Connection: close`, as in the other requests: without it the 405 leaves the
        // connection open for the next request, and reading the reply to its end waited the
        // idle timeout out (10 s of the e2e run).
        b"POST /sse HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("GET"));
    let r = request(
        gw.addr,
        b"GET /api/v1/publish HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("POST"));
}

fn stream_status(gw: &Gateway, path: &str, headers: &str) -> (u16, String) {
    let r = request(
        gw.addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n").as_bytes(),
    );
    let err = if r.status == 200 {
        String::new()
    } else {
        r.error()
    };
    (r.status, err)
}

#[test]
fn player_auth_failures_get_401_with_a_json_body() {
    let gw = Gateway::start(&[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign =
        |claims: String, secret: &str| gateway::auth::jwt::sign_hs256(&claims, secret.as_bytes());
    // Beyond the default 30 s clock-skew leeway (SSE_JWT_LEEWAY).
    let expired = sign(
        format!("{{\"brand_id\":1,\"player_id\":2,\"exp\":{}}}", now - 120),
        SECRET,
    );
    let wrong_secret = sign(
        format!("{{\"brand_id\":1,\"player_id\":2,\"exp\":{}}}", now + 60),
        "other",
    );
    let no_player = sign(format!("{{\"brand_id\":1,\"exp\":{}}}", now + 60), SECRET);
    let no_exp = sign("{\"brand_id\":1,\"player_id\":2}".into(), SECRET);
    // alg "none": header {"alg":"none"} and an empty signature.
    let none = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        base64_url(format!("{{\"brand_id\":1,\"player_id\":2,\"exp\":{}}}", now + 60).as_bytes())
    );
    let cases: Vec<(String, String)> = vec![
        ("/sse".into(), String::new()),
        ("/sse?token=".into(), String::new()),
        ("/sse?token=not.a.jwt".into(), String::new()),
        (format!("/sse?token={expired}"), String::new()),
        (format!("/sse?token={wrong_secret}"), String::new()),
        (format!("/sse?token={no_player}"), String::new()),
        (format!("/sse?token={no_exp}"), String::new()),
        (format!("/sse?token={none}"), String::new()),
        ("/sse".into(), "Authorization: Basic dTpw\r\n".into()),
        (
            "/sse".into(),
            format!("Authorization: Bearer {expired}\r\n"),
        ),
    ];
    for (path, headers) in cases {
        let (status, err) = stream_status(&gw, &path, &headers);
        assert_eq!(status, 401, "{path} {headers}");
        assert!(!err.is_empty(), "{path}: JSON error body");
    }
    let control = Sse::open(gw.addr, &format!("/sse?token={}", player_token(1, 2)), "");
    assert_eq!(control.status(), 200, "the control case streams");
}

fn base64_url(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    s
}

#[test]
fn without_a_secret_player_streams_answer_401() {
    let gw = Gateway::start(&[("SSE_AUTH_SECRET", "")]);
    let (status, err) = stream_status(&gw, &format!("/sse?token={}", player_token(1, 2)), "");
    assert_eq!(status, 401);
    assert!(err.contains("SSE_AUTH_SECRET"), "{err}");
}

#[test]
fn over_the_connection_limit_a_stream_gets_retry_and_an_error_event() {
    let gw = Gateway::start(&[("SSE_CONNECTION_LIMIT", "2")]);
    let mut a = Sse::player(gw.addr, 1, 1);
    let _b = Sse::player(gw.addr, 1, 2);
    a.next_event(5 * SEC).unwrap();
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 2));
    assert_eq!(gw.get("/readyz").status, 503, "full node is not ready");
    let mut c = Sse::open(gw.addr, &format!("/sse?token={}", player_token(1, 3)), "");
    assert_eq!(c.status(), 200, "EventSource must not see a non-200");
    assert!(c.head.contains("text/event-stream"));
    let ev = c.next_event(5 * SEC).expect("error event");
    assert_eq!(
        ev.data,
        "{\"type\":\"error\",\"message\":\"connection limit reached\"}"
    );
    assert_eq!(
        c.retries.len(),
        1,
        "exactly one retry: {:?}",
        String::from_utf8_lossy(&c.raw)
    );
    assert!(
        (1000..=5000).contains(&c.retries[0]),
        "jittered retry {}",
        c.retries[0]
    );
    assert!(c.closed_within(5 * SEC), "closed after the error");
    assert_eq!(
        String::from_utf8_lossy(&c.raw),
        format!(
            "retry: {}\n\ndata: {{\"type\":\"error\",\"message\":\"connection limit reached\"}}\n\n",
            c.retries[0]
        ),
        "carries only retry and the error"
    );
    assert_eq!(gw.stat("rejected_connection_limit"), 1);
    assert!(gw
        .get("/metrics")
        .text()
        .contains("sse_rejected_connection_limit_total 1"));
    drop(a);
    assert!(
        eventually(5 * SEC, || gw.get("/readyz").status == 200),
        "ready again"
    );
}

#[test]
fn a_client_that_stops_reading_is_cut_and_others_are_not_slowed() {
    let gw = Gateway::start(&[("SSE_EVENT_BUFFER", "5")]);
    // The stalled client: a tiny receive buffer so the kernel cannot absorb the backlog.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&gw.addr.into()).unwrap();
    let mut stalled: TcpStream = sock.into();
    write!(
        stalled,
        "GET /sse?token={} HTTP/1.1\r\nHost: t\r\n\r\n",
        player_token(5, 5)
    )
    .unwrap();
    let mut healthy = Sse::player(gw.addr, 5, 6);
    healthy.next_event(5 * SEC).unwrap();
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 2));
    let big = "x".repeat(60 * 1024);
    let payload = |p: i64, n: u64| {
        format!("{{\"brand_id\":5,\"player_id\":{p},\"event_type\":\"bulk\",\"event_data\":{{\"n\":{n},\"pad\":\"{big}\"}}}}")
    };
    for n in 0..200 {
        let r = gw.publish("SSE::5::5", &payload(5, n));
        assert_eq!(r.status, 202);
        if n % 20 == 0 {
            gw.publish("SSE::5::6", &player_event(5, 6, n));
        }
    }
    assert!(
        eventually(10 * SEC, || gw.stat("slow_consumers_cut") == 1),
        "stalled client cut"
    );
    for n in (0..200).step_by(20) {
        let ev = healthy
            .next_app_event(5 * SEC)
            .expect("healthy client keeps receiving");
        assert_eq!(ev.data, player_event(5, 6, n));
    }
    assert!(
        eventually(5 * SEC, || gw.stat("connections.total") == 1),
        "cut stream closed"
    );
}

fn post(gw: &Gateway, headers: &str, body: &str) -> Response {
    request(
        gw.addr,
        format!(
            "POST /api/v1/publish HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

#[test]
fn publish_refusals() {
    let gw = Gateway::start(&[]);
    let ok_data = player_event(1, 2, 3);
    let cases: Vec<(String, u16)> = vec![
        ("not json".into(), 400),
        ("{}".into(), 400),
        (format!("{{\"data\":{ok_data}}}"), 400),
        ("{\"channel\":\"SSE::1::2\"}".into(), 400),
        (format!("{{\"channel\":\"\",\"data\":{ok_data}}}"), 400),
        (
            format!("{{\"channel\":\"nobody-routes-this\",\"data\":{ok_data}}}"),
            400,
        ),
        (
            "{\"channel\":\"SSE::1::2\",\"data\":{\"brand_id\":1}}".into(),
            400,
        ),
        ("{\"channel\":\"SSE::1::2\",\"data\":[1,2]}".into(), 400),
        (
            format!("{{\"channel\":\"SSE::1::2\",\"data\":{ok_data}}}"),
            202,
        ),
    ];
    for (body, want) in cases {
        let r = post(&gw, "", &body);
        assert_eq!(r.status, want, "{body} -> {}", r.text());
        if want == 400 {
            assert!(!r.error().is_empty());
        }
    }
    let huge = format!(
        "{{\"channel\":\"SSE::1::2\",\"data\":\"{}\"}}",
        "a".repeat(70 * 1024)
    );
    assert_eq!(post(&gw, "", &huge).status, 413);
    let r = request(
        gw.addr,
        b"POST /api/v1/publish HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 411);
    let r = request(
        gw.addr,
        b"POST /api/v1/publish HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 411, "no Content-Length: {}", r.text());
}

#[test]
fn publish_token_is_required_when_set() {
    let gw = Gateway::start(&[("SSE_PUBLISH_TOKEN", "pub-secret")]);
    let body = format!(
        "{{\"channel\":\"SSE::1::2\",\"data\":{}}}",
        player_event(1, 2, 3)
    );
    assert_eq!(post(&gw, "", &body).status, 401);
    assert_eq!(
        post(&gw, "Authorization: Bearer wrong\r\n", &body).status,
        401
    );
    assert_eq!(
        post(&gw, "Authorization: Bearer pub-secret\r\n", &body).status,
        202
    );
    assert!(!gw.log_text().contains("pub-secret"), "secret never logged");
}

#[test]
fn publishers_reuse_a_keep_alive_connection() {
    let gw = Gateway::start(&[]);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let body = format!(
        "{{\"channel\":\"SSE::1::2\",\"data\":{}}}",
        player_event(1, 2, 3)
    );
    let req = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Two requests pipelined in one write, then a third after the answers.
    s.write_all(format!("{req}{req}").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(12).filter(|w| w == b"HTTP/1.1 202").count() < 2 {
        let n = s.read(&mut buf).expect("answers on one connection");
        assert!(n > 0, "connection stays open");
        got.extend_from_slice(&buf[..n]);
    }
    s.write_all(req.as_bytes()).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 202"));
}

#[test]
fn deeply_nested_payloads_cannot_crash_a_core() {
    let gw = Gateway::start(&[]);
    let mut s = Sse::player(gw.addr, 1, 2);
    assert!(eventually(Duration::from_secs(5), || gw
        .stat("connections.total")
        == 1));
    // 20,000 levels (40 KB) aborted the whole process when payloads were parsed into a DOM.
    let n = 20_000;
    let data = format!(
        r#"{{"brand_id":1,"player_id":2,"event_type":"x","event_data":{}1{}}}"#,
        "[".repeat(n),
        "]".repeat(n)
    );
    let r = gw.publish("SSE::1::2", &data);
    assert_eq!(
        r.status,
        202,
        "a valid envelope, however deep: {}",
        r.text()
    );
    let t = format!(
        r#"{{"type":"a","data":{}1{}}}"#,
        "[".repeat(n),
        "]".repeat(n)
    );
    assert_eq!(gw.publish("events:t", &t).status, 202);
    assert_eq!(gw.publish("SSE::1::2", &player_event(1, 2, 1)).status, 202);
    let mut got = Vec::new();
    while got.len() < 2 {
        let ev = s
            .next_app_event(Duration::from_secs(5))
            .expect("events after");
        if !ev.data.contains("\"connected\"") {
            got.push(ev.data);
        }
    }
    assert_eq!(
        got,
        [data, player_event(1, 2, 1)],
        "both delivered, in order"
    );
    assert_eq!(gw.get("/healthz").status, 200);
}

#[test]
fn a_client_that_pipelines_requests_and_never_reads_is_closed() {
    let gw = Gateway::start(&[("SSE_HEAD_TIMEOUT", "1s")]);
    let mut c = TcpStream::connect(gw.addr).unwrap();
    let req = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n".repeat(3000);
    c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // The kernel may refuse part of it once both buffers are full: that is the point.
    let _ = c.write_all(&req);
    std::thread::sleep(Duration::from_secs(3));
    // Now read: what the gateway wrote before giving up, then the end of the stream.
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let end = Instant::now() + Duration::from_secs(10);
    let closed = loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) if Instant::now() < end => break true,
            Ok(_) if Instant::now() < end => continue,
            _ => break false,
        }
    };
    assert!(closed, "the gateway closed the stalled connection");
    assert_eq!(gw.get("/healthz").status, 200);
}

#[test]
fn path_values_must_be_channel_names() {
    let gw = Gateway::start(&[("SSE_API_KEYS", "k")]);
    for path in [
        "/sse/a%0Ab?api_key=k",
        "/sse/a%2Fb?api_key=k",
        "/sse/type/%00?api_key=k",
    ] {
        let r = gw.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    let long = "g".repeat(201);
    assert_eq!(gw.get(&format!("/sse/{long}?api_key=k")).status, 400);
    // A jackpot name that has the player channel's shape would be routed as a player's.
    let r = gw.get("/subscribe?channel=SSE::1::x_broadcast_y");
    assert_eq!(r.status, 400, "{}", r.text());
}
