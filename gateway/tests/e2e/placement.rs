//! Placement (issue 13, item 7): a `Last-Event-ID` sends a stream to the core it names only
//! when that core gave the id out; a forged one is placed like a stream without an id.
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// The run tag from the start-up line.
fn run_id(gw: &Gateway) -> String {
    let log = gw.log_text();
    let i = log.find(" run=").expect("run= in the start-up line") + 5;
    log[i..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_forged_last_event_id_does_not_choose_the_core() {
    let gw = Gateway::start(&[]);
    let run = run_id(&gw);
    // Ids naming core 1 that core 1 never gave out: far ahead, and 0.
    let mut streams = Vec::new();
    for i in 0..200 {
        let forged = if i % 2 == 0 {
            format!("{run}.1.999999")
        } else {
            format!("{run}.1.0")
        };
        let s = Sse::open(
            gw.addr,
            "/api/v1/events?topics=t",
            &format!("Last-Event-ID: {forged}\r\n"),
        );
        assert_eq!(s.status(), 200, "{}", s.head);
        streams.push(s);
    }
    assert!(eventually(10 * SEC, || gw.stat("connections.total") == 200));
    let spread = gw.per_core();
    assert_eq!(spread.iter().sum::<i64>(), 200, "{spread:?}");
    assert!(
        spread.iter().all(|n| *n >= 50),
        "forged ids chose the core: {spread:?}"
    );
    drop(streams);
    assert!(eventually(10 * SEC, || gw.stat("connections.total") == 0));

    // An id the core did give out still brings its client back to that core.
    let mut first = Sse::open(gw.addr, "/api/v1/events?topics=u", "");
    assert_eq!(first.status(), 200);
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 1));
    let r = gw.post(
        "/api/v1/events/broadcast",
        r#"{"topic":"u","type":"x","data":1}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let ev = first.next_event(5 * SEC).expect("the event");
    let core: usize = ev.id.split('.').nth(1).unwrap().parse().unwrap();
    let mut resumed = Vec::new();
    for _ in 0..20 {
        let s = Sse::open(
            gw.addr,
            "/api/v1/events?topics=u",
            &format!("Last-Event-ID: {}\r\n", ev.id),
        );
        assert_eq!(s.status(), 200);
        resumed.push(s);
    }
    assert!(eventually(10 * SEC, || gw.stat("connections.total") == 21));
    let spread = gw.per_core();
    assert_eq!(
        spread[core], 21,
        "resumes go to the core of their id: {spread:?}"
    );
}
