//! The durable path (issue 15): three gateway nodes on one real `redis-server`. A client
//! reads some events on node A, leaves, events are published, and it comes back to node B
//! with its `Last-Event-ID`: exactly the missed events, in order, then live; the same after
//! every node restarted; for a `topics=a,b` stream and a player stream. Events published by
//! a service with `FCALL ssegw_publish` resume like HTTP publishes; plain `PUBLISH` still
//! delivers with a per-node id. A resume the node's memory answers reads nothing from Redis;
//! one on a fresh node reads once. Redis restarted without its data: a reset.

use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// One node on `redis`: one core, so which core a stream lands on (and so whose memory
/// answers it) is not left to `SO_REUSEPORT`.
pub(crate) fn node(redis: &Redis) -> Gateway {
    let gw = Gateway::start(&[("EVENTS_REDIS_STORAGE", &redis.url()), ("SSE_CORES", "1")]);
    assert!(
        eventually(10 * SEC, || ready(&gw) == 200),
        "{}",
        gw.log_text()
    );
    gw
}

fn nodes(redis: &Redis) -> [Gateway; 3] {
    [node(redis), node(redis), node(redis)]
}

fn reads(gw: &Gateway) -> i64 {
    gw.stat("resume_redis_reads")
}

/// A `topics=a,b` stream, resuming from `last` when given.
pub(crate) fn topics(gw: &Gateway, last: Option<&str>) -> Sse {
    let header = last.map(|l| format!("Last-Event-ID: {l}\r\n"));
    let s = Sse::open(
        gw.addr,
        "/api/v1/events?topics=a,b",
        header.as_deref().unwrap_or(""),
    );
    assert_eq!(s.status(), 200, "{}", s.head);
    s
}

/// Player 7 of brand 1's stream, resuming from `last` when given.
fn player(gw: &Gateway, last: Option<&str>) -> Sse {
    let header = last.map(|l| format!("Last-Event-ID: {l}\r\n"));
    let s = Sse::open(
        gw.addr,
        &format!("/sse?token={}", player_token(1, 7)),
        header.as_deref().unwrap_or(""),
    );
    assert_eq!(s.status(), 200, "{}", s.head);
    s
}

/// Event `n` on topic `a` (odd `n`) or `b` (even), through `gw`'s HTTP broadcast.
pub(crate) fn topic_event(gw: &Gateway, n: u64) {
    let topic = if n % 2 == 1 { "a" } else { "b" };
    let r = gw.post("/api/v1/events/broadcast", &topic_body(topic, n));
    assert_eq!(r.status, 202, "{}", r.text());
}

/// The broadcast body of event `n` on `topic`.
pub(crate) fn topic_body(topic: &str, n: u64) -> String {
    format!("{{\"topic\":\"{topic}\",\"type\":\"t.{topic}\",\"data\":{{\"n\":{n}}}}}")
}

/// Player event `n`, through `gw`'s HTTP publish.
fn player_publish(gw: &Gateway, n: u64) {
    let r = gw.publish("SSE::1::7", &player_event(1, 7, n));
    assert_eq!(r.status, 202, "{}", r.text());
}

/// Reads the events `ns` of a topic stream, in that order; the last one's id.
fn expect_topics(s: &mut Sse, ns: impl IntoIterator<Item = u64>) -> String {
    let mut last = String::new();
    for n in ns {
        let ev = s
            .next_app_event(5 * SEC)
            .unwrap_or_else(|| panic!("event {n}"));
        let topic = if n % 2 == 1 { "a" } else { "b" };
        assert_eq!(
            (ev.event.as_str(), ev.data.as_str()),
            (
                format!("t.{topic}").as_str(),
                format!("{{\"n\":{n}}}").as_str()
            ),
            "event {n}"
        );
        assert!(
            !ev.id.contains('.'),
            "a durable id, not a node's: {}",
            ev.id
        );
        last = ev.id;
    }
    last
}

/// Reads the player events `ns`, in that order (skipping the greeting); the last one's id.
fn expect_player(s: &mut Sse, ns: impl IntoIterator<Item = u64>) -> String {
    let mut last = String::new();
    for n in ns {
        let ev = next_player_event(s).unwrap_or_else(|| panic!("player event {n}"));
        assert_eq!(ev.data, player_event(1, 7, n), "player event {n}");
        assert!(
            !ev.id.contains('.'),
            "a durable id, not a node's: {}",
            ev.id
        );
        last = ev.id;
    }
    last
}

/// Nothing more than keep-alives within a moment: no duplicate follows what was expected.
fn nothing_more(s: &mut Sse) {
    if let Some(ev) = s.next_app_event(SEC / 2) {
        assert!(ev.data.contains("keepalive"), "unexpected {ev:?}");
    }
}

#[test]
fn a_client_resumes_on_any_node_and_after_every_node_restarted() {
    let mut redis = Redis::start(&[]);
    let [a, b, c] = nodes(&redis);

    // On A: three events of each stream, interleaved over `a` and `b` for the topics one.
    let mut t = topics(&a, None);
    let mut p = player(&a, None);
    assert!(eventually(5 * SEC, || a.stat("connections.total") == 2));
    for n in 1..=3 {
        topic_event(&a, n);
        player_publish(&a, n);
    }
    let t_last = expect_topics(&mut t, 1..=3);
    let p_last = expect_player(&mut p, 1..=3);
    drop((t, p));
    assert!(eventually(5 * SEC, || a.stat("connections.total") == 0));

    // Five more each while away: published on C, the player's through a service's FCALL.
    for n in 4..=8 {
        topic_event(&c, n);
        let payload = player_event(1, 7, n);
        let args = ["FCALL", "ssegw_publish", "1", "SSE::1::7", payload.as_str()];
        assert_eq!(redis.cli(&args), "3", "one receiver per node");
    }

    // Back on B, whose memory never saw them: read from Redis once per stream.
    let mut t = topics(&b, Some(&t_last));
    let mut p = player(&b, Some(&p_last));
    expect_topics(&mut t, 4..=8);
    let p_last_b = expect_player(&mut p, 4..=8);
    assert_eq!(reads(&b), 2, "one Redis read per resume on a fresh node");
    // Then live, nothing twice.
    topic_event(&a, 9);
    player_publish(&a, 9);
    let t_last = expect_topics(&mut t, [9]);
    let p_last = expect_player(&mut p, [9]);
    nothing_more(&mut t);
    assert_ne!(p_last, p_last_b);

    // Plain PUBLISH keeps working: delivered live with a node's own id.
    redis.cli(&["PUBLISH", "SSE::1::7", &player_event(1, 7, 100)]);
    let plain = next_player_event(&mut p).expect("plain publish");
    assert_eq!(plain.data, player_event(1, 7, 100));
    assert!(plain.id.contains('.'), "a per-node id: {}", plain.id);

    // Left and back on B: its memory holds everything since, so no Redis read.
    drop((t, p));
    assert!(eventually(5 * SEC, || b.stat("connections.total") == 0));
    topic_event(&c, 10);
    player_publish(&c, 10);
    let mut t = topics(&b, Some(&t_last));
    let mut p = player(&b, Some(&p_last));
    let t_last = expect_topics(&mut t, [10]);
    // The plain event had a per-node id: a durable resume replays durable events.
    let p_last = expect_player(&mut p, [10]);
    assert_eq!(reads(&b), 2, "answered from memory");
    drop((t, p, a, b, c));

    // Every node restarted: events published meanwhile are still there, on any node.
    let [a, b, c] = nodes(&redis);
    topic_event(&a, 11);
    topic_event(&b, 12);
    player_publish(&a, 11);
    player_publish(&b, 12);
    let mut t = topics(&c, Some(&t_last));
    let mut p = player(&c, Some(&p_last));
    expect_topics(&mut t, 11..=12);
    let p_last = expect_player(&mut p, 11..=12);
    topic_event(&a, 13);
    let t_last = expect_topics(&mut t, [13]);
    assert_eq!(reads(&c), 2);
    drop((t, p));
    assert!(eventually(5 * SEC, || c.stat("connections.total") == 0));

    // Redis restarted without its data: old ids get a reset (a new epoch), never a replay.
    redis.kill9();
    redis.restart();
    for gw in [&a, &b, &c] {
        assert!(
            eventually(10 * SEC, || ready(gw) == 200),
            "{}",
            gw.log_text()
        );
    }
    topic_event(&a, 14);
    player_publish(&a, 14);
    let mut t = topics(&b, Some(&t_last));
    let r = t.next_app_event(5 * SEC).expect("a reset");
    assert_eq!(r.event, "reset", "{r:?}");
    let mut p = player(&b, Some(&p_last));
    let r = next_player_event(&mut p).expect("a reset");
    assert!(r.data.contains("\"type\":\"reset\""), "{r:?}");
    // Then live (14 may still have been on its way to B when the stream opened).
    topic_event(&c, 15);
    player_publish(&c, 15);
    let ev = t.next_app_event(5 * SEC).expect("live");
    let ev = match ev.data.as_str() {
        "{\"n\":14}" => t.next_app_event(5 * SEC).expect("live"),
        _ => ev,
    };
    assert_eq!(ev.data, "{\"n\":15}");
    let ev = next_player_event(&mut p).expect("live");
    let ev = match ev.data == player_event(1, 7, 14) {
        true => next_player_event(&mut p).expect("live"),
        false => ev,
    };
    assert_eq!(ev.data, player_event(1, 7, 15));
}

/// A service that switched to `FCALL ssegw_publish` can publish as soon as a node is ready,
/// before any HTTP publish or resume: the node loads the function library when its
/// subscription starts, and again after Redis restarted without its data.
#[test]
fn a_service_can_fcall_as_soon_as_a_node_is_ready_and_after_redis_lost_its_data() {
    let mut redis = Redis::start(&[]);
    let gw = node(&redis);
    let library = |r: &Redis| r.cli(&["FUNCTION", "LIST", "LIBRARYNAME", "ssegw"]);
    assert!(
        eventually(5 * SEC, || library(&redis).contains("ssegw")),
        "no library after start-up: {}",
        library(&redis)
    );
    let mut s = player(&gw, None);
    let p = player_event(1, 7, 1);
    let out = redis.cli(&["FCALL", "ssegw_publish", "1", "SSE::1::7", &p]);
    assert!(!out.contains("ERR"), "{out}");
    let ev = next_player_event(&mut s).expect("the service's event");
    assert_eq!(ev.data, p);
    assert_eq!(ev.id.split('-').count(), 3, "a durable id: {}", ev.id);
    redis.kill9();
    redis.restart();
    assert!(eventually(10 * SEC, || ready(&gw) == 200));
    assert!(
        eventually(5 * SEC, || library(&redis).contains("ssegw")),
        "no library after Redis came back empty: {}",
        library(&redis)
    );
}
