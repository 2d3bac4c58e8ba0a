//! The player stream (`GET /sse`, seeds 000/001) end to end: real gateway, real sockets, curl.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

fn is_keepalive_block(block: &str) -> bool {
    // `: keepalive 2025-10-22 14:30:45\ndata: {"type":"keepalive","timestamp":"2025-10-22 14:30:45"}`
    let Some((comment, data)) = block.split_once('\n') else {
        return false;
    };
    let Some(ts) = comment.strip_prefix(": keepalive ") else {
        return false;
    };
    let b = ts.as_bytes();
    b.len() == 19
        && b[4] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && data == format!("data: {{\"type\":\"keepalive\",\"timestamp\":\"{ts}\"}}")
}

#[test]
fn curl_sees_connected_then_keepalive() {
    let gw = Gateway::start(&[]);
    let out = Command::new("curl")
        .args(["-N", "-s", "--max-time", "2.5"])
        .arg(format!(
            "http://{}/sse?token={}",
            gw.addr,
            player_token(1001, 12345)
        ))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(
        blocks[0], "retry: 2000",
        "stream starts with retry: {text:?}"
    );
    let connected = blocks[1];
    let ts = connected
        .strip_prefix("data: {\"type\":\"connected\",\"timestamp\":\"")
        .and_then(|r| r.strip_suffix("\"}"))
        .unwrap_or_else(|| panic!("connected event: {connected:?}"));
    assert_eq!(ts.len(), 20, "RFC 3339 UTC whole seconds: {ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    assert!(
        blocks[2..].iter().any(|b| is_keepalive_block(b)),
        "a byte-exact keep-alive within 2.5 s at a 1 s period: {text:?}"
    );
}

#[test]
fn stream_headers_and_bearer_header_auth() {
    let gw = Gateway::start(&[]);
    let s = Sse::open(
        gw.addr,
        "/sse",
        &format!("Authorization: Bearer {}\r\n", player_token(1, 2)),
    );
    assert_eq!(s.status(), 200, "{}", s.head);
    let h = crate::common::parse_response(format!("{}\r\n\r\n", s.head).as_bytes()).unwrap();
    assert_eq!(
        h.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(h.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(h.header("x-accel-buffering").as_deref(), Some("no"));
}

#[test]
fn published_payload_arrives_byte_for_byte_with_an_id() {
    let gw = Gateway::start(&[]);
    let mut s = Sse::player(gw.addr, 1001, 12345);
    let first = s.next_event(5 * SEC).expect("connected");
    assert!(
        first.data.starts_with("{\"type\":\"connected\""),
        "{first:?}"
    );
    assert!(first.id.is_empty(), "system events carry no id");
    let payload = "{ \"brand_id\": 1001,  \"player_id\":12345,\"event_type\":\"notification\",\"event_data\":{\"title\":\"Bonus h\u{e9}llo \u{2603}\",\"n\":1.50} }";
    let r = gw.publish("SSE::1001::12345", payload);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.text(), "{\"delivered_to_nodes\":1}");
    let ev = s.next_app_event(5 * SEC).expect("event");
    assert_eq!(ev.data, payload);
    assert_eq!(ev.event, "", "player events are unnamed (onmessage)");
    assert!(!ev.id.is_empty(), "application events carry an id");
    gw.publish("SSE::1001::12345", &player_event(1001, 12345, 2));
    let ev2 = s.next_app_event(5 * SEC).expect("second event");
    assert_ne!(ev2.id, ev.id, "ids are unique");
}

#[test]
fn twenty_four_players_over_two_cores_each_get_exactly_their_own() {
    let gw = Gateway::start(&[]);
    let mut streams: Vec<(i64, Sse)> = (1..=24).map(|p| (p, Sse::player(gw.addr, 7, p))).collect();
    for (_, s) in streams.iter_mut() {
        s.next_event(5 * SEC).expect("connected");
    }
    assert!(
        eventually(5 * SEC, || gw.stat("connections.total") == 24),
        "24 streams counted"
    );
    let per_core = gw.per_core();
    assert_eq!(per_core.len(), 2);
    assert!(
        per_core.iter().all(|n| *n > 0),
        "both cores own players: {per_core:?}"
    );
    // Three rounds, interleaved across players.
    for n in 0..3u64 {
        for p in 1..=24 {
            let r = gw.publish(&format!("SSE::7::{p}"), &player_event(7, p, n));
            assert_eq!(r.status, 202, "{}", r.text());
        }
    }
    // A foreign brand's player with the same id must not leak into brand 7's streams.
    gw.publish("SSE::8::1", &player_event(8, 1, 99));
    for (p, s) in streams.iter_mut() {
        for n in 0..3u64 {
            let ev = s
                .next_app_event(5 * SEC)
                .unwrap_or_else(|| panic!("player {p} event {n}"));
            assert_eq!(
                ev.data,
                player_event(7, *p, n),
                "player {p} gets its own events in order"
            );
        }
    }
    for (p, s) in streams.iter_mut() {
        assert_eq!(
            s.next_app_event(Duration::from_millis(200)),
            None,
            "player {p} receives nothing else"
        );
    }
    assert!(
        gw.stat("handoffs") > 0,
        "some streams crossed to their owner core"
    );
}

#[test]
fn two_streams_of_one_player_both_receive() {
    let gw = Gateway::start(&[]);
    let mut a = Sse::player(gw.addr, 3, 4);
    let mut b = Sse::player(gw.addr, 3, 4);
    a.next_event(5 * SEC).unwrap();
    b.next_event(5 * SEC).unwrap();
    gw.publish("SSE::3::4", &player_event(3, 4, 1));
    assert_eq!(
        a.next_app_event(5 * SEC).unwrap().data,
        player_event(3, 4, 1)
    );
    assert_eq!(
        b.next_app_event(5 * SEC).unwrap().data,
        player_event(3, 4, 1)
    );
}

#[test]
fn delivery_latency_is_visible_in_stats_and_metrics() {
    let gw = Gateway::start(&[]);
    let mut s = Sse::player(gw.addr, 1, 1);
    s.next_event(5 * SEC).unwrap();
    for n in 0..5 {
        gw.publish("SSE::1::1", &player_event(1, 1, n));
    }
    for _ in 0..5 {
        s.next_app_event(5 * SEC).expect("event");
    }
    assert!(eventually(5 * SEC, || gw
        .stat("delivery_latency_ms.player.count")
        == 5));
    assert_eq!(gw.stat("events.delivered"), 5);
    let m = gw.get("/metrics");
    assert_eq!(m.status, 200);
    let text = m.text();
    assert!(
        text.contains("sse_delivery_latency_seconds_count{route=\"player\"} 5"),
        "{text}"
    );
    assert!(text.contains("sse_delivery_latency_seconds_bucket{route=\"player\",le=\"+Inf\"} 5"));
    assert!(text.contains("sse_connections{route=\"player\"} 1"));
}

#[test]
fn health_and_readiness() {
    let gw = Gateway::start(&[]);
    assert_eq!(gw.get("/healthz").status, 200);
    let r = gw.get("/readyz");
    assert_eq!(r.status, 200, "{}", r.text());
    let h = request(
        gw.addr,
        b"HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty(), "HEAD has no body");
}
