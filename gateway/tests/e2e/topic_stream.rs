//! Topic stream (seed 004): `GET /api/v1/events?topics=a,b` (none or `all`: every topic),
//! events named by their type, `POST /api/v1/events/broadcast`, per-topic stats, resume over
//! several channels merged in id order.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

fn broadcast(gw: &Gateway, topic: &str, kind: &str, data: &str) -> Response {
    gw.post(
        "/api/v1/events/broadcast",
        &format!("{{\"topic\":\"{topic}\",\"type\":\"{kind}\",\"data\":{data}}}"),
    )
}

fn txn(n: u64) -> String {
    format!("{{\"transaction_id\":\"t{n}\",\"type\":\"deposit\",\"status\":\"pending\",\"amount\":10000,\"currency\":\"INR\"}}")
}

fn topics(gw: &Gateway, path: &str) -> Sse {
    let s = Sse::open(gw.addr, path, "");
    assert_eq!(s.status(), 200, "{}", s.head);
    s
}

/// Opens `n` more topic streams' worth of waiting: the stats count them once registered.
fn wait_streams(gw: &Gateway, n: i64) {
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.topic")
        == n));
}

#[test]
fn events_are_named_by_type_and_filtered_by_topic() {
    let gw = Gateway::start(&[]);
    let mut tx_only = topics(&gw, "/api/v1/events?topics=transactions");
    let mut both = topics(&gw, "/api/v1/events?topics=wallets,transactions");
    let mut all = topics(&gw, "/api/v1/events?topics=all");
    let mut bare = topics(&gw, "/api/v1/events");
    wait_streams(&gw, 4);
    let wallet = r#"{"wallet_id":"w1","user_id":"u1","status":"active"}"#;
    assert_eq!(
        broadcast(&gw, "transactions", "transaction.created", &txn(1)).status,
        202
    );
    assert_eq!(
        broadcast(&gw, "wallets", "wallet.created", wallet).status,
        202
    );
    // The Redis form, through the generic publish: `{"type","data"}` on `events:{topic}`.
    let user = r#"{"user_id":"u1","status":"pending"}"#;
    let r = gw.publish(
        "events:users",
        &format!("{{\"type\":\"user.registered\",\"data\":{user}}}"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let ev = tx_only.next_event(5 * SEC).expect("transaction");
    assert_eq!(
        (ev.event.as_str(), ev.data.as_str()),
        ("transaction.created", txn(1).as_str())
    );
    assert!(!ev.id.is_empty());
    let names = |s: &mut Sse, n: usize| -> Vec<String> {
        (0..n)
            .map(|_| s.next_event(5 * SEC).expect("event").event)
            .collect()
    };
    assert_eq!(
        names(&mut both, 2),
        ["transaction.created", "wallet.created"]
    );
    for s in [&mut all, &mut bare] {
        assert_eq!(
            names(s, 3),
            ["transaction.created", "wallet.created", "user.registered"]
        );
    }
    // Nothing else arrives on the filtered streams (a later event comes first).
    assert_eq!(
        broadcast(&gw, "transactions", "transaction.created", &txn(2)).status,
        202
    );
    assert_eq!(tx_only.next_event(5 * SEC).expect("second").data, txn(2));
    assert_eq!(both.next_event(5 * SEC).expect("second").data, txn(2));
}

#[test]
fn seed_004_curl_example_works_as_written() {
    let gw = Gateway::start(&[]);
    let addr = gw.addr;
    let curl = std::thread::spawn(move || {
        Command::new("curl")
            .args(["-N", "-s", "--max-time", "3"])
            .arg(format!("http://{addr}/api/v1/events?topics=transactions"))
            .output()
            .expect("run curl")
    });
    wait_streams(&gw, 1);
    assert_eq!(
        broadcast(&gw, "transactions", "transaction.created", &txn(7)).status,
        202
    );
    let out = curl.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("retry: 2000\n\n"), "{text:?}");
    assert!(
        text.contains(&format!(
            "\nevent: transaction.created\ndata: {}\n\n",
            txn(7)
        )),
        "{text:?}"
    );
    assert!(
        text.contains("\n: heartbeat "),
        "heartbeat comment: {text:?}"
    );
}

#[test]
fn broadcast_bad_input_is_refused_with_a_reason() {
    let gw = Gateway::start(&[]);
    let cases: &[(&str, u16, &str)] = &[
        ("{}", 400, "body must be"),
        (r#"{"topic":"t","type":"x"}"#, 400, "body must be"),
        (r#"{"topic":"all","type":"x","data":{}}"#, 400, "not `all`"),
        (
            r#"{"topic":"a b","type":"x","data":{}}"#,
            400,
            "topic must be",
        ),
        (r#"{"topic":"t","type":"","data":{}}"#, 400, "type"),
        (
            r#"{"topic":"t","type":"a\nb","data":{}}"#,
            400,
            "line breaks",
        ),
        (r#"{"topic":"t","type":"x","data":null}"#, 400, "data"),
        ("not json", 400, "body must be"),
    ];
    for (body, status, msg) in cases {
        let r = gw.post("/api/v1/events/broadcast", body);
        assert_eq!(r.status, *status, "{body}: {}", r.text());
        assert!(r.error().contains(msg), "{body}: {}", r.error());
    }
    let r = gw.publish("events:t", r#"{"data":{}}"#);
    assert_eq!(r.status, 400, "a topic event without type: {}", r.text());
    let big = format!("\"{}\"", "x".repeat(70 * 1024));
    assert_eq!(broadcast(&gw, "t", "x", &big).status, 413);
    let r = gw.get("/api/v1/events?topics=a%20b");
    assert_eq!(r.status, 400, "{}", r.text());
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let r = gw.get(&format!("/api/v1/events?topics={}", many.join(",")));
    assert_eq!(r.status, 400, "{}", r.text());
    let locked = Gateway::start(&[("SSE_PUBLISH_TOKEN", "pub-token")]);
    let r = broadcast(&locked, "t", "x", "{}");
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn stats_count_subscribers_per_topic() {
    let gw = Gateway::start(&[]);
    let _a = topics(&gw, "/api/v1/events?topics=transactions,wallets");
    let _b = topics(&gw, "/api/v1/events?topics=transactions");
    let _c = topics(&gw, "/api/v1/events");
    wait_streams(&gw, 3);
    assert_eq!(gw.stat("topics.transactions"), 2);
    assert_eq!(gw.stat("topics.wallets"), 1);
    assert_eq!(gw.stat("topics.all"), 1);
    let m = gw.get("/metrics").text();
    assert!(
        m.contains("sse_topic_subscribers{topic=\"transactions\"} 2"),
        "{m}"
    );
}

#[test]
fn resume_over_several_topics_replays_them_merged_in_order() {
    let gw = Gateway::start(&[]);
    let mut s = topics(&gw, "/api/v1/events?topics=transactions,wallets");
    let mut w = topics(&gw, "/api/v1/events?topics=all");
    wait_streams(&gw, 2);
    broadcast(&gw, "transactions", "transaction.created", &txn(1));
    let seen = s.next_event(5 * SEC).expect("first");
    let seen_all = w.next_event(5 * SEC).expect("first");
    drop(s);
    drop(w);
    wait_streams(&gw, 0);
    broadcast(&gw, "wallets", "wallet.created", "{\"n\":2}");
    broadcast(&gw, "risk", "risk.alert", "{\"n\":3}");
    broadcast(&gw, "transactions", "transaction.created", &txn(4));
    let mut back = Sse::open(
        gw.addr,
        "/api/v1/events?topics=transactions,wallets",
        &format!("Last-Event-ID: {}\r\n", seen.id),
    );
    let a = back.next_event(5 * SEC).expect("missed 1");
    let b = back.next_event(5 * SEC).expect("missed 2");
    assert_eq!(
        (a.event.as_str(), a.data.as_str()),
        ("wallet.created", "{\"n\":2}")
    );
    assert_eq!(b.data, txn(4));
    // The `all` stream left before `risk` had a subscriber on its core: that message was
    // dropped there, so the honest answer is a reset, not a silent gap.
    let mut back_all = Sse::open(
        gw.addr,
        &format!("/api/v1/events?lastEventId={}", seen_all.id),
        "",
    );
    let r = back_all.next_event(5 * SEC).expect("reset or replay");
    assert_eq!(r.event, "reset", "{r:?}");
    assert!(r.data.contains("\"type\":\"reset\""), "{}", r.data);
    // Live after replay, no duplicates.
    broadcast(&gw, "wallets", "wallet.created", "{\"n\":5}");
    assert_eq!(back.next_event(5 * SEC).expect("live").data, "{\"n\":5}");
    assert_eq!(
        back_all.next_event(5 * SEC).expect("live").data,
        "{\"n\":5}"
    );
}

#[test]
fn topics_with_another_familys_shape_are_refused() {
    let gw = Gateway::start(&[]);
    // `events:p_user_q` has the shape of a private jackpot channel: it would be routed there.
    let r = gw.get("/api/v1/events?topics=ok,p_user_q");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("another family"), "{}", r.error());
    let r = broadcast(&gw, "x_broadcast_y", "t", "{}");
    assert_eq!(r.status, 400, "{}", r.text());
}
