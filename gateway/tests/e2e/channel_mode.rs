//! Subscription by channel (`SSE_REDIS_SUBSCRIBE=channel`, issue 16) against a real
//! `redis-server`: player and private channels are subscribed one by one on the core that
//! holds their streams (Redis's `PUBSUB NUMSUB` counts one subscriber per node holding the
//! channel, not one per core), unsubscribed once the channel has been idle for
//! `SSE_CHANNEL_IDLE`; an event published right after a stream's head reaches it; a Redis
//! restart re-subscribes every channel while the streams stay open; broadcast families keep
//! their patterns; a name that fits a broadcast pattern and a private family arrives once;
//! the durable resume works across nodes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// A node in channel mode (or `mode`) on `redis`, channels kept 1 s after their last stream.
fn node_in(redis: &Redis, mode: &str) -> Gateway {
    let gw = Gateway::start(&[
        ("EVENTS_REDIS_STORAGE", &redis.url()),
        ("SSE_REDIS_SUBSCRIBE", mode),
        ("SSE_CHANNEL_IDLE", "1s"),
    ]);
    assert!(
        eventually(5 * SEC, || ready(&gw) == 200),
        "{}",
        gw.log_text()
    );
    gw
}

fn node(redis: &Redis) -> Gateway {
    node_in(redis, "channel")
}

/// Redis's subscriber count of `channel` (`PUBSUB NUMSUB`: channel subscriptions only, not
/// patterns).
fn numsub(redis: &Redis, channel: &str) -> i64 {
    redis.subscribers("NUMSUB", channel)
}

/// `PUBLISH` through `redis-cli`: Redis's receiver count.
fn publish(redis: &Redis, channel: &str, payload: &str) -> i64 {
    let out = redis.cli(&["PUBLISH", channel, payload]);
    out.parse()
        .unwrap_or_else(|_| panic!("PUBLISH {channel}: {out}"))
}

/// A connection of our own to Redis, for publishing with no process start in between.
struct Publisher(TcpStream);

impl Publisher {
    fn connect(redis: &Redis) -> Publisher {
        let s = TcpStream::connect(("127.0.0.1", redis.port)).expect("connect to Redis");
        s.set_read_timeout(Some(5 * SEC)).unwrap();
        Publisher(s)
    }

    /// `PUBLISH channel payload`: the receiver count.
    fn publish(&mut self, channel: &str, payload: &str) -> i64 {
        let mut cmd = format!("*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n", channel.len());
        cmd.push_str(&format!("${}\r\n{payload}\r\n", payload.len()));
        self.0.write_all(cmd.as_bytes()).expect("write PUBLISH");
        let mut answer = Vec::new();
        let mut b = [0u8; 1];
        while !answer.ends_with(b"\r\n") {
            let n = self.0.read(&mut b).expect("PUBLISH answer");
            assert_eq!(n, 1, "Redis closed the connection");
            answer.push(b[0]);
        }
        let text = String::from_utf8_lossy(&answer);
        text.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("PUBLISH answer {text}"))
    }
}

/// The key test: run in pattern mode it fails at the first `NUMSUB` (0: patterns only) and
/// at the receiver counts (every core of every node receives every event).
#[test]
fn unicast_channels_are_subscribed_where_their_streams_are_and_dropped_when_idle() {
    let redis = Redis::start(&[]);
    let a = node(&redis);
    let b = node(&redis);
    // Only the broadcast families' patterns (NUMPAT counts distinct patterns: 6 in pattern
    // mode).
    assert_eq!(redis.cli(&["PUBSUB", "NUMPAT"]), "4");
    let mut player_a = Sse::player(a.addr, 3, 77);
    let mut player_b = Sse::player(b.addr, 3, 77);
    let mut inbox = Sse::private(a.addr, "ws_user_p1");
    // One subscriber per node holding the channel (its owner core), not one per core.
    assert_eq!(numsub(&redis, "SSE::3::77"), 2);
    assert_eq!(numsub(&redis, "ws_user_p1"), 1);
    assert_eq!(numsub(&redis, "SSE::3::78"), 0);
    let p = player_event(3, 77, 1);
    assert_eq!(publish(&redis, "SSE::3::77", &p), 2);
    assert_eq!(next_player_event(&mut player_a).expect("node a").data, p);
    assert_eq!(next_player_event(&mut player_b).expect("node b").data, p);
    assert_eq!(publish(&redis, "ws_user_p1", r#"{"won":5}"#), 1);
    assert_eq!(
        inbox.next_event(5 * SEC).expect("private").data,
        r#"{"won":5}"#
    );
    // Nobody holds it: nobody receives it.
    assert_eq!(publish(&redis, "SSE::3::78", &player_event(3, 78, 1)), 0);
    let stats = a.get("/api/v1/events/stats").text();
    assert!(
        eventually(5 * SEC, || a.stat("redis.channels") == 2),
        "{stats}"
    );
    assert!(a.stat("redis.subscribe_channels") >= 2);
    assert!(a.stat("redis.subscribe_commands") >= 1);

    // Gone from Redis once idle for SSE_CHANNEL_IDLE (the sweep visits idle channels every
    // 10 s), on both nodes.
    drop(player_a);
    drop(player_b);
    drop(inbox);
    assert!(
        eventually(25 * SEC, || numsub(&redis, "SSE::3::77") == 0
            && numsub(&redis, "ws_user_p1") == 0),
        "{}",
        redis.cli(&["PUBSUB", "CHANNELS"])
    );
    assert_eq!(redis.cli(&["PUBSUB", "CHANNELS"]), "");
    // A core stores its figures every 100 ms: a channel stops counting as live when its
    // last stream leaves, before the unsubscribe that Redis has just confirmed is counted.
    assert!(eventually(5 * SEC, || a.stat("redis.channels") == 0
        && a.stat("redis.unsubscribe_channels") >= 2));
}

#[test]
fn broadcast_families_keep_their_patterns_and_a_shared_name_arrives_once() {
    let redis = Redis::start(&[]);
    let gw = node(&redis);
    let mut jackpot = Sse::open(gw.addr, "/subscribe?channel=ws_broadcast_g1", "");
    let mut all = Sse::open(gw.addr, "/api/v1/events?topics=all", "");
    let mut ab = Sse::open(gw.addr, "/api/v1/events?topics=a,b", "");
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 3));
    assert_eq!(publish(&redis, "ws_broadcast_g1", r#"{"value":"1.00"}"#), 2);
    assert_eq!(
        jackpot.next_event(5 * SEC).expect("jackpot").data,
        r#"{"value":"1.00"}"#
    );
    let body = r#"{"type":"t.a","data":{"n":1}}"#;
    assert_eq!(publish(&redis, "events:a", body), 2);
    for s in [&mut all, &mut ab] {
        let ev = s.next_event(5 * SEC).expect("topic");
        assert_eq!((ev.event.as_str(), ev.data.as_str()), ("t.a", r#"{"n":1}"#));
    }
    // A private channel whose name also fits the broadcast pattern `*_broadcast_*`: it is
    // the private family's (the strictest), subscribed by name, and delivered once.
    let name = "ws_user_jane_broadcast_doe";
    let mut inbox = Sse::private(gw.addr, name);
    assert_eq!(numsub(&redis, name), 1);
    // Received by the channel subscription and by both cores' broadcast pattern.
    assert_eq!(publish(&redis, name, "first"), 3);
    publish(&redis, name, "second");
    assert_eq!(inbox.next_event(5 * SEC).expect("first").data, "first");
    assert_eq!(inbox.next_event(5 * SEC).expect("second").data, "second");
}

/// No gap: the head of a stream on a new channel is written only once Redis confirmed the
/// channel's subscription, so an event published the moment the head arrives is received.
#[test]
fn an_event_published_right_after_the_head_is_received() {
    let redis = Redis::start(&[]);
    let gw = node(&redis);
    let mut publisher = Publisher::connect(&redis);
    for player in 1..=5 {
        let channel = format!("SSE::9::{player}");
        let mut s = Sse::player(gw.addr, 9, player);
        let p = player_event(9, player, 1);
        assert_eq!(publisher.publish(&channel, &p), 1, "{channel}");
        assert_eq!(next_player_event(&mut s).expect("player").data, p);
        let private_channel = format!("ws_user_{player}");
        let mut inbox = Sse::private(gw.addr, &private_channel);
        assert_eq!(publisher.publish(&private_channel, "hi"), 1);
        assert_eq!(inbox.next_event(5 * SEC).expect("private").data, "hi");
    }
    assert!(gw.stat("redis.subscribe_waits") >= 10);
    assert_eq!(gw.stat("redis.subscribe_timeouts"), 0);
}

/// Redis killed and started again (without its data): every channel is subscribed again,
/// and the streams, still open, receive again.
#[test]
fn a_redis_restart_subscribes_every_channel_again_and_streams_receive_without_reconnecting() {
    let mut redis = Redis::start(&[]);
    let gw = node(&redis);
    let mut streams: Vec<(i64, Sse)> = (1..=4).map(|p| (p, Sse::player(gw.addr, 5, p))).collect();
    let mut inbox = Sse::private(gw.addr, "ws_user_r");
    redis.kill9();
    assert!(eventually(5 * SEC, || ready(&gw) == 503));
    redis.restart();
    assert!(
        eventually(10 * SEC, || ready(&gw) == 200),
        "{}",
        gw.log_text()
    );
    // Ready means every core's channels are confirmed again, not only its patterns.
    for p in 1..=4 {
        assert_eq!(numsub(&redis, &format!("SSE::5::{p}")), 1, "player {p}");
    }
    assert_eq!(numsub(&redis, "ws_user_r"), 1);
    for (p, s) in streams.iter_mut() {
        let ev = player_event(5, *p, 2);
        assert_eq!(publish(&redis, &format!("SSE::5::{p}"), &ev), 1);
        assert_eq!(next_player_event(s).expect("after the restart").data, ev);
    }
    assert_eq!(publish(&redis, "ws_user_r", "back"), 1);
    assert_eq!(inbox.next_event(5 * SEC).expect("private").data, "back");
}

/// A client read some events on node A, left, and comes back to node B (which never held
/// its channel) with its `Last-Event-ID`: exactly what it missed, from Redis's history, then
/// live events.
#[test]
fn a_durable_resume_on_another_node_in_channel_mode() {
    let redis = Redis::start(&[]);
    let a = node(&redis);
    let b = node(&redis);
    let channel = "SSE::1::7";
    let send = |gw: &Gateway, n| {
        let r = gw.publish(channel, &player_event(1, 7, n));
        assert_eq!(r.status, 202, "{}", r.text());
    };
    let mut s = Sse::player(a.addr, 1, 7);
    send(&a, 1);
    let last = next_player_event(&mut s).expect("first").id;
    drop(s);
    send(&a, 2);
    send(&a, 3);
    let mut back = Sse::open(
        b.addr,
        &format!("/sse?token={}", player_token(1, 7)),
        &format!("Last-Event-ID: {last}\r\n"),
    );
    assert_eq!(back.status(), 200, "{}", back.head);
    for n in 2..=3 {
        let ev = next_player_event(&mut back).unwrap_or_else(|| panic!("missed {n}"));
        assert_eq!(ev.data, player_event(1, 7, n));
    }
    send(&b, 4);
    let ev = next_player_event(&mut back).expect("live");
    assert_eq!(ev.data, player_event(1, 7, 4));
    assert_eq!(b.stat("resume_redis_reads"), 1);
}
