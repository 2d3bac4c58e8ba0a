//! Jackpot channels (seed 003): `GET /subscribe?channel=<ws>_broadcast_<group>` (public) and
//! `<ws>_user_<player>` (private: a token whose `channels` claim lists it), unnamed events.

use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);
const BROADCAST: &str = "8mQhEnuznUe01IsGOE4mPw_broadcast_fce39b15-9fc1-42bb-8d96-e65c1d17feac";
const USER: &str = "8mQhEnuznUe01IsGOE4mPw_user_a@b.com";

fn jackpot_value(v: &str) -> String {
    format!("{{\"reason\":\"jackpot_value\",\"jackpotInstance\":\"3XiLXZkU_5\",\"jackpot\":\"3XiLXZkU\",\"channel\":\"{BROADCAST}\",\"currency\":\"EUR\",\"value\":\"{v}\"}}")
}

fn status(gw: &Gateway, path: &str) -> (u16, String) {
    let r = request(
        gw.addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let e = if r.status == 200 {
        String::new()
    } else {
        r.error()
    };
    (r.status, e)
}

#[test]
fn broadcast_channel_is_public_and_events_are_unnamed() {
    let gw = Gateway::start(&[]);
    let mut a = Sse::open(gw.addr, &format!("/subscribe?channel={BROADCAST}"), "");
    let mut b = Sse::open(gw.addr, &format!("/subscribe?channel={BROADCAST}"), "");
    assert_eq!((a.status(), b.status()), (200, 200), "{}", a.head);
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.jackpot")
        == 2));
    assert_eq!(gw.publish(BROADCAST, &jackpot_value("372.2")).status, 202);
    for s in [&mut a, &mut b] {
        let ev = s.next_event(5 * SEC).expect("event");
        assert_eq!(ev.event, "", "onmessage sees unnamed events");
        assert_eq!(ev.data, jackpot_value("372.2"));
        assert!(!ev.id.is_empty());
    }
}

#[test]
fn private_channel_needs_a_token_listing_it() {
    let gw = Gateway::start(&[]);
    let enc = USER.replace('@', "%40");
    assert_eq!(status(&gw, &format!("/subscribe?channel={enc}")).0, 401);
    assert_eq!(
        status(&gw, &format!("/subscribe?channel={enc}&token=bad.token.x")).0,
        401
    );
    let other = channel_token(&["8mQhEnuznUe01IsGOE4mPw_user_someone"]);
    let (st, err) = status(&gw, &format!("/subscribe?channel={enc}&token={other}"));
    assert_eq!(st, 403, "{err}");
    assert!(!err.is_empty());
    let good = channel_token(&[USER]);
    let mut s = Sse::open(
        gw.addr,
        &format!("/subscribe?channel={enc}"),
        &format!("Authorization: Bearer {good}\r\n"),
    );
    assert_eq!(s.status(), 200, "{}", s.head);
    let won =
        format!("{{\"reason\":\"jackpot_won\",\"channel\":\"{USER}\",\"value\":\"1,408.20\"}}");
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.jackpot_user")
        == 1));
    assert_eq!(gw.publish(USER, &won).status, 202);
    let ev = s.next_event(5 * SEC).expect("private event");
    assert_eq!((ev.event.as_str(), ev.data.as_str()), ("", won.as_str()));
    let mut q = Sse::open(
        gw.addr,
        &format!("/subscribe?channel={enc}&token={good}"),
        "",
    );
    assert_eq!(q.status(), 200, "token in the query works for EventSource");
    drop(q.next_event(Duration::from_millis(50)));
}

#[test]
fn channel_names_of_neither_form_or_bad_characters_get_400() {
    let gw = Gateway::start(&[]);
    let long = format!("ws_broadcast_{}", "g".repeat(200));
    for q in [
        "",
        "?channel=",
        "?channel=orders",
        "?channel=ws_broadcast_",
        "?channel=ws_broadcast_g%21",
        "?channel=ws%20x_broadcast_g",
        &format!("?channel={long}"),
    ] {
        let (st, err) = status(&gw, &format!("/subscribe{q}"));
        assert_eq!(st, 400, "{q}: {err}");
        assert!(!err.is_empty());
    }
}

#[test]
fn a_stalled_broadcast_client_is_conflated_not_cut_and_gets_the_newest_value() {
    use std::io::{Read, Write};
    let gw = Gateway::start(&[("SSE_EVENT_BUFFER", "5")]);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&gw.addr.into()).unwrap();
    let mut stalled: std::net::TcpStream = sock.into();
    write!(
        stalled,
        "GET /subscribe?channel={BROADCAST} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.jackpot")
        == 1));
    let pad = "x".repeat(60 * 1024);
    let value =
        |n: u64| format!("{{\"reason\":\"jackpot_value\",\"value\":\"{n}\",\"pad\":\"{pad}\"}}");
    for n in 0..150 {
        assert_eq!(gw.publish(BROADCAST, &value(n)).status, 202);
    }
    assert!(
        eventually(10 * SEC, || gw.stat("conflated") > 0),
        "older values were dropped"
    );
    assert_eq!(
        gw.stat("slow_consumers_cut"),
        0,
        "a conflating stream is never cut"
    );
    // The client reads again: the last event it gets is the newest value.
    stalled
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = stalled.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&all);
    let last = text.rsplit("data: ").next().unwrap_or("");
    assert!(
        last.starts_with(&value(149)),
        "newest value last, got {}",
        &last[..last.len().min(80)]
    );
    assert_eq!(
        gw.stat("connections.per_route.jackpot"),
        1,
        "still connected"
    );
}
