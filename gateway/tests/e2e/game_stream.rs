//! Game streams (seed 002): `GET /sse/{game}` and `GET /sse/type/{type}` with `api_key`,
//! `event: initial` with the latest result, `event: message`, `: heartbeat <unix>` comments.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);
const KEY: &str = "sk_live_xxxxx";

fn round(id: u64, game: &str) -> String {
    format!("{{\"round_id\":{id},\"game_slug\":\"{game}\",\"extras\":\"{{\\\"point\\\": \\\"11.72\\\"}}\"}}")
}

fn game(gw: &Gateway, path: &str) -> Sse {
    let s = Sse::open(gw.addr, path, "");
    assert_eq!(s.status(), 200, "{}", s.head);
    s
}

#[test]
fn seed_002_curl_example_works_as_written() {
    let gw = Gateway::start(&[("SSE_API_KEYS", KEY)]);
    assert_eq!(gw.publish("stream:crash", &round(512, "crash")).status, 202);
    let out = Command::new("curl")
        .args(["-N", "-s", "--max-time", "2.5"])
        .arg(format!("http://{}/sse/crash?api_key={KEY}", gw.addr))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks[0], "retry: 2000");
    let initial = blocks[1];
    assert!(
        initial.contains("\nevent: initial\n") || initial.starts_with("id: "),
        "{text:?}"
    );
    assert!(
        initial.ends_with(&format!("event: initial\ndata: {}", round(512, "crash"))),
        "{text:?}"
    );
    let hb = blocks
        .iter()
        .find(|b| b.starts_with(": heartbeat "))
        .expect("a heartbeat within 2.5 s");
    let secs: u64 = hb[": heartbeat ".len()..].parse().expect("unix seconds");
    assert!(secs > 1_700_000_000, "{hb}");
}

#[test]
fn initial_then_messages_by_game_and_by_type() {
    let gw = Gateway::start(&[("SSE_API_KEYS", &format!("other,{KEY}"))]);
    let mut fresh = game(&gw, &format!("/sse/double?api_key={KEY}"));
    gw.publish("stream:crash", &round(512, "crash"));
    let mut crash = game(&gw, &format!("/sse/crash?api_key={KEY}"));
    let mut by_type = game(&gw, &format!("/sse/type/multiplier?api_key={KEY}"));
    let initial = crash.next_event(5 * SEC).expect("initial");
    assert_eq!(initial.event, "initial");
    assert_eq!(initial.data, round(512, "crash"));
    assert!(!initial.id.is_empty());
    gw.publish("stream:crash", &round(513, "crash"));
    gw.publish("stream:type:multiplier", &round(513, "crash"));
    let msg = crash.next_event(5 * SEC).expect("message");
    assert_eq!(
        (msg.event.as_str(), msg.data.as_str()),
        ("message", round(513, "crash").as_str())
    );
    let t = by_type.next_event(5 * SEC).expect("type message");
    assert_eq!(
        t.event, "message",
        "no initial: the type channel had no message before"
    );
    assert_eq!(
        crash.next_event(Duration::from_millis(300)),
        None,
        "crash does not get type events"
    );
    assert_eq!(
        fresh.next_event(Duration::from_millis(300)),
        None,
        "no initial without a message"
    );
}

#[test]
fn api_key_failures_get_401() {
    let gw = Gateway::start(&[("SSE_API_KEYS", KEY)]);
    for path in [
        "/sse/crash",
        "/sse/crash?api_key=",
        "/sse/crash?api_key=wrong",
        "/sse/type/x?api_key=sk_live",
    ] {
        let r = request(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 401, "{path}");
        assert!(!r.error().is_empty());
    }
    let off = Gateway::start(&[]);
    let r = request(
        off.addr,
        format!("GET /sse/crash?api_key={KEY} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert!(r.error().contains("SSE_API_KEYS"), "{}", r.error());
}

#[test]
fn broadcast_streams_stay_spread_over_both_cores_and_all_get_each_event() {
    let gw = Gateway::start(&[("SSE_API_KEYS", KEY)]);
    let mut streams: Vec<Sse> = (0..12)
        .map(|_| game(&gw, &format!("/sse/crash?api_key={KEY}")))
        .collect();
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.game")
        == 12));
    let per_core = gw.per_core();
    assert!(
        per_core.iter().all(|n| *n > 0),
        "accepted streams stay on both cores: {per_core:?}"
    );
    assert_eq!(
        gw.stat("handoffs"),
        0,
        "broadcast streams are not handed off"
    );
    gw.publish("stream:crash", &round(1, "crash"));
    for s in streams.iter_mut() {
        assert_eq!(
            s.next_event(5 * SEC).expect("event").data,
            round(1, "crash")
        );
    }
}

#[test]
fn a_game_stream_reset_is_named_so_message_handlers_never_see_it() {
    let gw = Gateway::start(&[("SSE_API_KEYS", KEY)]);
    let mut s = Sse::open(
        gw.addr,
        &format!("/sse/crash?api_key={KEY}"),
        "Last-Event-ID: nope.0.1\r\n",
    );
    let ev = s.next_event(5 * SEC).expect("reset");
    assert_eq!(ev.event, "reset");
    assert!(ev.data.starts_with("{\"type\":\"reset\""));
}

#[test]
fn initial_is_sent_even_when_a_subscriber_came_before_the_first_round() {
    let gw = Gateway::start(&[("SSE_API_KEYS", KEY), ("SSE_CORES", "1")]);
    let mut first = game(&gw, &format!("/sse/g1?api_key={KEY}"));
    assert!(eventually(Duration::from_secs(5), || gw
        .stat("connections.per_route.game")
        == 1));
    assert_eq!(gw.publish("stream:g1", &round(1, "g1")).status, 202);
    assert_eq!(first.next_event(5 * SEC).expect("message").event, "message");
    let mut later = game(&gw, &format!("/sse/g1?api_key={KEY}"));
    let ev = later.next_event(5 * SEC).expect("initial");
    assert_eq!((ev.event.as_str(), ev.data), ("initial", round(1, "g1")));
}
