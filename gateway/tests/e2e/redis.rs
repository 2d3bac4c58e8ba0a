//! The Redis broker against a real `redis-server` started by each test on a free port: one
//! pattern subscription per core, plain `redis-cli PUBLISH` reaching every family, several
//! nodes on one Redis, and the faults: `kill -9` and restart, a silent (stopped) server, the
//! pub/sub output-buffer limit, malformed and oversized payloads, AUTH and SELECT.

use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);
const KEY: &str = "sk_live_xxxxx";

fn node(redis: &str) -> Gateway {
    Gateway::start(&[("EVENTS_REDIS_STORAGE", redis), ("SSE_API_KEYS", KEY)])
}

#[test]
fn redis_cli_publish_reaches_every_family() {
    let redis = Redis::start(&[]);
    let gw = node(&redis.url());
    assert!(eventually(5 * SEC, || ready(&gw) == 200));
    assert_eq!(gw.stat("redis.subscribed_cores"), 2);
    // One connection per core, each with every family's pattern (6 distinct).
    assert_eq!(redis.cli(&["PUBSUB", "NUMPAT"]), "6");
    let clients = redis.cli(&["CLIENT", "LIST"]);
    let subscribers = clients.lines().filter(|l| l.contains(" psub=6 ")).count();
    assert_eq!(
        subscribers, 2,
        "one pattern subscriber per core:\n{clients}"
    );
    let mut player = Sse::player(gw.addr, 3, 77);
    let mut game = Sse::open(gw.addr, &format!("/sse/crash?api_key={KEY}"), "");
    let mut jackpot = Sse::open(gw.addr, "/subscribe?channel=ws_broadcast_g1", "");
    let mut topic = Sse::open(gw.addr, "/api/v1/events?topics=transactions", "");
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 4));
    let p = player_event(3, 77, 1);
    let cases = [
        ("SSE::3::77", p.as_str()),
        ("stream:crash", r#"{"round_id":1}"#),
        ("ws_broadcast_g1", r#"{"value":"1.00"}"#),
        (
            "events:transactions",
            r#"{"type":"transaction.created","data":{"id":1}}"#,
        ),
    ];
    for (channel, payload) in cases {
        let n: u64 = redis.cli(&["PUBLISH", channel, payload]).parse().unwrap();
        assert_eq!(n, 2, "{channel}: both cores' subscriptions receive it");
    }
    assert_eq!(next_player_event(&mut player).expect("player").data, p);
    // `stream:type:x` matches two patterns (`stream:*` too): delivered once all the same.
    let mut by_type = Sse::open(gw.addr, &format!("/sse/type/x?api_key={KEY}"), "");
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 5));
    redis.cli(&["PUBLISH", "stream:type:x", r#"{"round_id":7}"#]);
    redis.cli(&["PUBLISH", "stream:type:x", r#"{"round_id":8}"#]);
    assert_eq!(
        by_type.next_event(5 * SEC).expect("first").data,
        r#"{"round_id":7}"#
    );
    assert_eq!(
        by_type.next_event(5 * SEC).expect("second").data,
        r#"{"round_id":8}"#
    );
    let ev = game.next_event(5 * SEC).expect("game");
    assert_eq!(
        (ev.event.as_str(), ev.data.as_str()),
        ("message", r#"{"round_id":1}"#)
    );
    assert_eq!(
        jackpot.next_event(5 * SEC).expect("jackpot").data,
        r#"{"value":"1.00"}"#
    );
    let ev = topic.next_event(5 * SEC).expect("topic");
    assert_eq!(
        (ev.event.as_str(), ev.data.as_str()),
        ("transaction.created", r#"{"id":1}"#)
    );
}

#[test]
fn two_nodes_deliver_what_the_other_published_over_http() {
    let redis = Redis::start(&[]);
    let a = node(&redis.url());
    let b = node(&redis.url());
    assert!(eventually(5 * SEC, || ready(&a) == 200 && ready(&b) == 200));
    let mut on_a = Sse::player(a.addr, 1, 5);
    let mut on_b = Sse::player(b.addr, 1, 6);
    assert!(eventually(5 * SEC, || a.stat("connections.total") == 1
        && b.stat("connections.total") == 1));
    let r = a.publish("SSE::1::6", &player_event(1, 6, 1));
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        r.text().contains("\"delivered_to_nodes\":4"),
        "Redis's receiver count (2 nodes x 2 cores): {}",
        r.text()
    );
    assert_eq!(
        next_player_event(&mut on_b).expect("on b").data,
        player_event(1, 6, 1)
    );
    let r = b.publish("SSE::1::5", &player_event(1, 5, 2));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        next_player_event(&mut on_a).expect("on a").data,
        player_event(1, 5, 2)
    );
    let r = b.post(
        "/api/v1/events/broadcast",
        r#"{"topic":"wallets","type":"wallet.created","data":{"w":1}}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
}

#[test]
fn kill_9_and_restart_streams_stay_open_and_resume_receiving() {
    let mut redis = Redis::start(&[]);
    let gw = node(&redis.url());
    assert!(eventually(5 * SEC, || ready(&gw) == 200));
    let mut player = Sse::player(gw.addr, 2, 9);
    let mut topic = Sse::open(gw.addr, "/api/v1/events?topics=risk", "");
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 2));
    redis.cli(&["PUBLISH", "SSE::2::9", &player_event(2, 9, 1)]);
    assert_eq!(
        next_player_event(&mut player).expect("before").data,
        player_event(2, 9, 1)
    );

    redis.kill9();
    assert!(
        eventually(5 * SEC, || ready(&gw) == 503),
        "readyz 503 while Redis is down"
    );
    let body = gw.get("/readyz").text();
    assert!(body.contains("Redis subscription down"), "{body}");
    // A stream opened now gets the seed's error event, then the stream closes.
    let mut late = Sse::player(gw.addr, 2, 10);
    let ev = late.next_event(5 * SEC).expect("error event");
    assert_eq!(
        ev.data,
        r#"{"type":"error","message":"Failed to subscribe to events"}"#
    );
    assert!(late.closed_within(5 * SEC));
    assert!(late.retries.contains(&2000), "retry: before the error");
    let r = gw.publish("SSE::2::9", &player_event(2, 9, 2));
    assert_eq!(
        r.status,
        503,
        "HTTP publish while Redis is down: {}",
        r.text()
    );
    assert!(r.error().contains("Redis"), "{}", r.error());

    redis.restart();
    assert!(
        eventually(15 * SEC, || ready(&gw) == 200),
        "readyz back to 200"
    );
    redis.cli(&["PUBLISH", "SSE::2::9", &player_event(2, 9, 3)]);
    redis.cli(&[
        "PUBLISH",
        "events:risk",
        r#"{"type":"risk.alert","data":{"level":"high"}}"#,
    ]);
    assert_eq!(
        next_player_event(&mut player)
            .expect("after the restart, same connection")
            .data,
        player_event(2, 9, 3)
    );
    assert_eq!(
        topic.next_event(5 * SEC).expect("topic after").event,
        "risk.alert"
    );
    assert!(
        gw.stat("redis.disconnects") >= 2,
        "both cores counted the outage"
    );
    assert!(gw.stat("redis.rejected_streams") >= 1);
    assert!(gw.stat("redis.publish_failed") >= 1);
    let m = gw.get("/metrics").text();
    assert!(m.contains("sse_redis_subscribed_cores 2"), "{m}");
}

#[test]
fn a_silent_redis_is_given_up_within_seconds_and_recovers() {
    let redis = Redis::start(&[]);
    let gw = node(&redis.url());
    assert!(eventually(5 * SEC, || ready(&gw) == 200));
    let mut s = Sse::player(gw.addr, 4, 4);
    redis.signal(libc::SIGSTOP); // no RST, no FIN: only silence
    assert!(
        eventually(10 * SEC, || ready(&gw) == 503),
        "a stopped Redis noticed by the PING watchdog:\n{}",
        gw.log_text()
    );
    assert!(
        gw.log_text().contains("no answer from Redis"),
        "{}",
        gw.log_text()
    );
    redis.signal(libc::SIGCONT);
    assert!(eventually(15 * SEC, || ready(&gw) == 200));
    redis.cli(&["PUBLISH", "SSE::4::4", &player_event(4, 4, 1)]);
    assert_eq!(
        next_player_event(&mut s).expect("after").data,
        player_event(4, 4, 1)
    );
}

#[test]
fn the_pubsub_output_buffer_limit_disconnect_is_recovered() {
    let redis = Redis::start(&["--client-output-buffer-limit", "pubsub 64kb 0 0"]);
    let gw = node(&redis.url());
    assert!(eventually(5 * SEC, || ready(&gw) == 200));
    let mut s = Sse::player(gw.addr, 5, 5);
    // One payload over the limit: Redis drops the subscriber connections of every core.
    let big = format!("\"{}\"", "x".repeat(200 * 1024));
    redis.cli_stdin(&["-x", "PUBLISH", "SSE::5::5"], &big);
    assert!(
        eventually(10 * SEC, || gw.stat("redis.disconnects") >= 1),
        "{}",
        gw.log_text()
    );
    assert!(eventually(15 * SEC, || ready(&gw) == 200));
    redis.cli(&["PUBLISH", "SSE::5::5", &player_event(5, 5, 1)]);
    assert_eq!(
        next_player_event(&mut s).expect("after").data,
        player_event(5, 5, 1)
    );
}

#[test]
fn malformed_and_oversized_payloads_are_dropped_and_counted() {
    let redis = Redis::start(&[]);
    let gw = node(&redis.url());
    assert!(eventually(5 * SEC, || ready(&gw) == 200));
    let mut s = Sse::player(gw.addr, 6, 6);
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 1));
    let big = format!(
        r#"{{"brand_id":6,"player_id":6,"event_type":"x","event_data":"{}"}}"#,
        "y".repeat(70 * 1024)
    );
    for bad in ["not json", r#"{"brand_id":6}"#, "", big.as_str()] {
        redis.cli(&["PUBLISH", "SSE::6::6", bad]);
    }
    redis.cli(&["PUBLISH", "SSE::6::6", &player_event(6, 6, 1)]);
    assert_eq!(
        next_player_event(&mut s).expect("the good one").data,
        player_event(6, 6, 1),
        "nothing bad reached the stream, and the core survived"
    );
    let stats = gw.get("/api/v1/events/stats").text();
    assert!(gw.stat("events.invalid") >= 3, "malformed counted: {stats}");
    assert!(gw.stat("redis.dropped") >= 1, "oversized counted");
    assert_eq!(ready(&gw), 200);
}

#[test]
fn auth_and_db_from_the_url_work_and_a_wrong_password_is_reported() {
    let redis = Redis::start(&["--requirepass", "s3cret"]);
    let good = format!("redis://:s3cret@127.0.0.1:{}/3", redis.port);
    let gw = node(&good);
    assert!(
        eventually(5 * SEC, || ready(&gw) == 200),
        "{}",
        gw.log_text()
    );
    let mut s = Sse::player(gw.addr, 7, 7);
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 1));
    let r = gw.publish("SSE::7::7", &player_event(7, 7, 1));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        next_player_event(&mut s).expect("event").data,
        player_event(7, 7, 1)
    );

    let bad = format!("redis://:wrong@127.0.0.1:{}", redis.port);
    let gw2 = node(&bad);
    assert!(eventually(5 * SEC, || gw2
        .log_text()
        .contains("Redis refused")));
    assert_eq!(ready(&gw2), 503);
    assert!(
        !gw2.log_text().contains("wrong"),
        "no password in logs:\n{}",
        gw2.log_text()
    );
}
