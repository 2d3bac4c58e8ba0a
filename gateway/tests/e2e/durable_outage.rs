//! The durable path while Redis is unreachable (issue 15), with a real `redis-server`: a
//! client resumes on a node whose memory cannot answer (started after the events it missed),
//! so the node must read Redis's history, and Redis is not there.
//!
//! - **Frozen** (SIGSTOP: the socket stays up, nothing answers): the read times out (2 s) and
//!   the resume gets a reset (`resume_redis_failed`); the stream stays open through the
//!   node's loss of its subscription and receives live events once Redis is back. A durable
//!   HTTP publish meanwhile answers `504` or `503` with a JSON error.
//! - **Gone** (killed: connections refused): the node knows at once that its subscription is
//!   down, so the stream is refused as every stream then is (`200`, `retry:`, seed 000's
//!   error event, closed; `redis.rejected_streams`), not reset: the client keeps its id, and
//!   when Redis is back with its data (here an append-only file) the same reconnect gets
//!   exactly what it missed. A durable HTTP publish meanwhile answers `503` with a JSON error.
//!
//! About 7 s and 3 s.

use std::time::Duration;

use crate::common::*;
use crate::durable::{node, topic_body as body, topic_event, topics};

const SEC: Duration = Duration::from_secs(1);

/// Reads events `ns` of a topic stream, in that order, with durable ids; the last one's id.
fn expect(s: &mut Sse, ns: impl IntoIterator<Item = u64>) -> String {
    let mut last = String::new();
    for n in ns {
        let ev = s
            .next_app_event(5 * SEC)
            .unwrap_or_else(|| panic!("event {n}"));
        assert_eq!(ev.data, format!("{{\"n\":{n}}}"), "event {n}: {ev:?}");
        assert!(!ev.id.contains('.'), "a durable id: {ev:?}");
        last = ev.id;
    }
    last
}

/// Reads events 1..=3 on a fresh stream on `a`, leaves, and publishes 4 and 5 on `a`
/// (missed); the id the client will resume from.
fn read_three_then_leave(a: &Gateway) -> String {
    let mut t = topics(a, None);
    assert!(eventually(5 * SEC, || a.stat("connections.total") == 1));
    for n in 1..=3 {
        topic_event(a, n);
    }
    let last = expect(&mut t, 1..=3);
    drop(t);
    assert!(eventually(5 * SEC, || a.stat("connections.total") == 0));
    topic_event(a, 4);
    topic_event(a, 5);
    last
}

/// A durable publish while Redis is unreachable: `503` (not published) or, when `frozen`,
/// possibly `504` (sent, not answered), with a JSON error naming why. On topic `c`, which
/// the stream does not read: a `504`'s event is executed when Redis wakes up.
fn publish_refused(gw: &Gateway, frozen: bool) {
    let r = gw.post("/api/v1/events/broadcast", &body("c", 0));
    let allowed: &[u16] = if frozen { &[503, 504] } else { &[503] };
    assert!(allowed.contains(&r.status), "{r:?}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json"),
        "{r:?}"
    );
    assert!(!r.error().is_empty(), "{}", r.text());
}

#[test]
fn a_resume_while_redis_is_frozen_gets_a_reset_then_live_events() {
    let redis = Redis::start(&[]);
    let a = node(&redis);
    let last = read_three_then_leave(&a);
    // B starts after 1..=5 were published: only Redis can tell what the client missed.
    let b = node(&redis);

    redis.signal(libc::SIGSTOP);
    let mut t = topics(&b, Some(&last));
    let reset = t.next_app_event(10 * SEC).expect("an answer to the resume");
    assert_eq!(reset.event, "reset", "{reset:?}");
    assert_eq!(
        reset.data,
        "{\"type\":\"reset\",\"reason\":\"Redis's history cannot be read now\"}"
    );
    // The reset moves the client's Last-Event-ID on: a client that drops before the next
    // event resumes from the reset, not from before the events it was told to refetch.
    assert!(!reset.id.is_empty(), "a reset with a cursor: {reset:?}");
    assert_eq!(b.stat("resume_redis_failed"), 1);
    assert_eq!(b.stat("resume_redis_reads"), 1);
    assert_eq!(b.stat("resets"), 1);
    publish_refused(&b, true);

    // B gives its silent subscription up; the stream stays open.
    assert!(
        eventually(10 * SEC, || ready(&b) == 503),
        "{}",
        b.log_text()
    );
    assert_eq!(b.stat("connections.total"), 1, "the stream is still open");
    redis.signal(libc::SIGCONT);
    for gw in [&a, &b] {
        assert!(
            eventually(10 * SEC, || ready(gw) == 200),
            "{}",
            gw.log_text()
        );
    }

    // Live events reach the same stream; nothing of what was missed (a reset gives no
    // partial history). A client that dropped right after the reset comes back with its
    // cursor: never a replay of 4 and 5, which the reset told it to refetch (from its old id,
    // Redis, readable again, would replay them). B's subscription was down meanwhile, so
    // it cannot prove nothing else was missed either: a reset saying so, then live events.
    let mut after = topics(&b, Some(&reset.id));
    let again = after.next_app_event(5 * SEC).expect("an answer");
    assert_eq!(
        (again.event.as_str(), again.data.as_str()),
        (
            "reset",
            "{\"type\":\"reset\",\"reason\":\"events published while Redis was unreachable are lost\"}"
        ),
        "{again:?}"
    );
    assert!(eventually(5 * SEC, || b.stat("connections.total") == 2));
    topic_event(&a, 6);
    topic_event(&b, 7);
    expect(&mut t, 6..=7);
    expect(&mut after, 6..=7);
    assert_eq!(b.stat("resume_redis_failed"), 1);
}

#[test]
fn a_resume_while_redis_is_gone_is_refused_and_comes_back_to_what_it_missed() {
    let dir = std::env::temp_dir().join(format!("sse-durable-outage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let dir_arg = dir.display().to_string();
    // An append-only file synced at every write: what a killed Redis held is there again.
    let mut redis = Redis::start(&[
        "--dir",
        &dir_arg,
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    let a = node(&redis);
    let last = read_three_then_leave(&a);
    let b = node(&redis);

    redis.kill9();
    assert!(
        eventually(10 * SEC, || ready(&b) == 503),
        "{}",
        b.log_text()
    );
    let mut t = topics(&b, Some(&last));
    let refused = t.next_app_event(5 * SEC).expect("the refusal");
    assert_eq!(
        (refused.event.as_str(), refused.data.as_str()),
        (
            "error",
            "{\"type\":\"error\",\"message\":\"Failed to subscribe to events\"}"
        ),
        "{refused:?}"
    );
    assert!(t.closed_within(5 * SEC), "the refused stream is closed");
    assert_eq!(t.retries, [2000], "the client comes back after 2 s");
    assert_eq!(b.stat("redis.rejected_streams"), 1);
    assert_eq!(b.stat("resume_redis_reads"), 0, "nothing was read");
    assert_eq!(b.stat("resets"), 0, "not a reset: the client keeps its id");
    publish_refused(&b, false);

    redis.restart();
    for gw in [&a, &b] {
        assert!(
            eventually(10 * SEC, || ready(gw) == 200),
            "{}",
            gw.log_text()
        );
    }
    // The browser's reconnect, with the same id: exactly what it missed, then live.
    let mut t = topics(&b, Some(&last));
    expect(&mut t, 4..=5);
    topic_event(&a, 6);
    expect(&mut t, [6]);
    assert_eq!(b.stat("resume_redis_reads"), 1);
    assert_eq!(b.stat("resets"), 0);
    assert_eq!(b.stat("resume_redis_failed"), 0);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
