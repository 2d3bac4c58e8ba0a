//! Last-Event-ID resume on the player stream: missed events exactly once and in order, then
//! live; a reset when history does not reach back or the id is not this run's.

use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

fn open_with(gw: &Gateway, brand: i64, player: i64, last: Option<&str>, via_query: bool) -> Sse {
    let token = player_token(brand, player);
    let s = match (last, via_query) {
        (Some(id), true) => Sse::open(gw.addr, &format!("/sse?token={token}&lastEventId={id}"), ""),
        (Some(id), false) => Sse::open(
            gw.addr,
            &format!("/sse?token={token}"),
            &format!("Last-Event-ID: {id}\r\n"),
        ),
        (None, _) => Sse::open(gw.addr, &format!("/sse?token={token}"), ""),
    };
    assert_eq!(s.status(), 200, "{}", s.head);
    s
}

fn publish_n(gw: &Gateway, brand: i64, player: i64, range: std::ops::Range<u64>) {
    for n in range {
        assert_eq!(
            gw.publish(
                &format!("SSE::{brand}::{player}"),
                &player_event(brand, player, n)
            )
            .status,
            202
        );
    }
}

fn resume_case(via_query: bool) {
    let gw = Gateway::start(&[]);
    let mut s = open_with(&gw, 1, 2, None, false);
    s.next_event(5 * SEC).expect("connected");
    publish_n(&gw, 1, 2, 0..3);
    let got: Vec<Event> = (0..3)
        .map(|_| s.next_app_event(5 * SEC).expect("live event"))
        .collect();
    let last = got[0].id.clone();
    drop(s);
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 0));
    publish_n(&gw, 1, 2, 3..5); // published while the client is away
    let mut r = open_with(&gw, 1, 2, Some(&last), via_query);
    let connected = r.next_event(5 * SEC).expect("connected");
    assert!(connected.data.contains("\"connected\""), "{connected:?}");
    for n in 1..5 {
        let ev = r.next_app_event(5 * SEC).expect("replayed event");
        assert_eq!(ev.data, player_event(1, 2, n), "missed events in order");
        if n < 3 {
            assert_eq!(ev.id, got[n as usize].id, "replayed with its original id");
        }
    }
    publish_n(&gw, 1, 2, 5..6);
    let live = r.next_app_event(5 * SEC).expect("then live");
    assert_eq!(live.data, player_event(1, 2, 5));
    assert_eq!(
        r.next_app_event(Duration::from_millis(300)),
        None,
        "no duplicates"
    );
    assert_eq!(gw.stat("resumes"), 1);
}

#[test]
fn resume_by_header_replays_missed_events_once_in_order_then_live() {
    resume_case(false);
}

#[test]
fn resume_by_query_parameter_works_the_same() {
    resume_case(true);
}

#[test]
fn when_history_does_not_reach_back_a_reset_comes_first() {
    let gw = Gateway::start(&[("SSE_HISTORY", "2")]);
    let mut s = open_with(&gw, 3, 4, None, false);
    s.next_event(5 * SEC).unwrap();
    publish_n(&gw, 3, 4, 0..1);
    let first = s.next_app_event(5 * SEC).unwrap();
    drop(s);
    publish_n(&gw, 3, 4, 1..5);
    let mut r = open_with(&gw, 3, 4, Some(&first.id), false);
    r.next_event(5 * SEC).unwrap();
    let reset = r.next_app_event(5 * SEC).expect("reset");
    assert!(reset.data.starts_with("{\"type\":\"reset\""), "{reset:?}");
    assert_eq!(reset.event, "", "unnamed on the player stream");
    assert!(!reset.id.is_empty(), "carries the newest event's id");
    assert_eq!(
        r.next_app_event(Duration::from_millis(300)),
        None,
        "no partial history after a reset"
    );
    publish_n(&gw, 3, 4, 5..6);
    assert_eq!(
        r.next_app_event(5 * SEC).unwrap().data,
        player_event(3, 4, 5)
    );
    // Resuming from the reset's id misses nothing.
    drop(r);
    let mut again = open_with(&gw, 3, 4, Some(&reset.id), false);
    again.next_event(5 * SEC).unwrap();
    assert_eq!(
        again.next_app_event(5 * SEC).unwrap().data,
        player_event(3, 4, 5)
    );
    assert_eq!(gw.stat("resets"), 1);
}

#[test]
fn an_id_from_before_a_restart_gets_a_reset_not_wrong_events() {
    let old_id = {
        let gw = Gateway::start(&[]);
        let mut s = open_with(&gw, 5, 6, None, false);
        s.next_event(5 * SEC).unwrap();
        publish_n(&gw, 5, 6, 0..3);
        let ev = s.next_app_event(5 * SEC).unwrap();
        ev.id
    };
    let gw = Gateway::start(&[]);
    // The new run has events on that channel with small sequence numbers too.
    let mut warm = open_with(&gw, 5, 6, None, false);
    warm.next_event(5 * SEC).unwrap();
    publish_n(&gw, 5, 6, 10..13);
    for _ in 0..3 {
        warm.next_app_event(5 * SEC).unwrap();
    }
    let mut r = open_with(&gw, 5, 6, Some(&old_id), false);
    r.next_event(5 * SEC).unwrap();
    let ev = r.next_app_event(5 * SEC).expect("reset");
    assert!(
        ev.data.starts_with("{\"type\":\"reset\""),
        "an old run's id must not replay: {ev:?}"
    );
    for bogus in ["garbage", "x.0.1", "1.2.3.4", "a.0.99999999999999999999999"] {
        let mut b = open_with(&gw, 5, 6, Some(bogus), false);
        b.next_event(5 * SEC).unwrap();
        let ev = b.next_app_event(5 * SEC).expect("reset");
        assert!(
            ev.data.starts_with("{\"type\":\"reset\""),
            "{bogus}: {ev:?}"
        );
    }
}
