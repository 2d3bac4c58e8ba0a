//! Hostile clients against the gateway's memory (issue 13, items 1 and 2): resumers that
//! never read, replays over the limit, floods of channels. Each test attacks a real gateway
//! process and checks what it holds (its counters, its open streams, its RSS).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// 60 KiB of JSON string: a large but valid event (payloads are at most 64 KiB).
fn big(n: u64) -> String {
    format!("\"{n:06}{}\"", "x".repeat(60 * 1024))
}

fn broadcast(gw: &Gateway, topic: &str, data: &str) {
    let r = gw.post(
        "/api/v1/events/broadcast",
        &format!("{{\"topic\":\"{topic}\",\"type\":\"t\",\"data\":{data}}}"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
}

/// The gateway's resident set in KiB, from `/proc/<pid>/status`.
fn rss_kib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A client that sends `GET path` with `headers` and then never reads, with a 4 KiB receive
/// buffer so the kernel cannot absorb what the gateway writes.
fn non_reader(gw: &Gateway, path: &str, headers: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&gw.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").unwrap();
    s
}

/// A reading topic stream on `topics` that has seen one marker event: returns the stream and
/// the marker's id (a resume point that predates everything published after it).
fn watcher_with_marker(gw: &Gateway, topics: &str) -> (Sse, String) {
    let mut w = Sse::open(gw.addr, &format!("/api/v1/events?topics={topics}"), "");
    assert_eq!(w.status(), 200, "{}", w.head);
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 1));
    let first = topics.split(',').next().unwrap();
    broadcast(gw, first, "\"marker\"");
    let marker = w.next_app_event(5 * SEC).expect("marker");
    assert_eq!(marker.data, "\"marker\"");
    (w, marker.id)
}

#[test]
fn non_reading_resumers_of_every_topic_are_cut_by_the_write_deadline_and_memory_stays_bounded() {
    let gw = Gateway::start(&[
        ("SSE_WRITE_TIMEOUT", "1s"),
        // Large enough that the replay is written, not reset: the deadline is what is tested.
        ("SSE_REPLAY_LIMIT", "16777216"),
    ]);
    let (mut w, marker) = watcher_with_marker(&gw, "t0,t1,t2,t3");
    // 96 events of 60 KiB (about 6 MiB of history on the watcher's core), read by the
    // watcher: more than the kernel's socket buffers take (4 MiB here), so a write to a
    // client that does not read blocks.
    for n in 0..96 {
        broadcast(&gw, &format!("t{}", n % 4), &big(n));
        let ev = w.next_app_event(5 * SEC).expect("watcher gets every event");
        assert!(ev.data == big(n), "watcher gets event {n} in order");
    }
    let before = rss_kib(&gw);
    // 20 clients resume every topic from the marker and never read: each is owed 6 MiB.
    let resumers: Vec<TcpStream> = (0..20)
        .map(|_| {
            non_reader(
                &gw,
                "/api/v1/events?topics=all",
                &format!("Last-Event-ID: {marker}\r\n"),
            )
        })
        .collect();
    assert!(
        eventually(10 * SEC, || gw.stat("resumes") == 20),
        "every resumer got its replay"
    );
    let during = rss_kib(&gw);
    eprintln!("RSS KiB: before {before}, with 20 resumers {during}");
    assert!(
        eventually(10 * SEC, || gw.stat("connections.total") == 1),
        "every non-reading resumer is cut within the write deadline (1 s), the watcher is not"
    );
    assert_eq!(gw.stat("write_timeouts"), 20);
    let after = rss_kib(&gw);
    // Replays share the history's bytes: 20 resumers cost their handles, not 20 x 6 MiB
    // copies (the unfixed gateway grew by more than 120 MiB here and kept it).
    let grown = during.max(after).saturating_sub(before);
    eprintln!("RSS KiB: after the cuts {after}");
    assert!(
        grown < 24 * 1024,
        "RSS grew by {grown} KiB (from {before} KiB)"
    );
    // The honest watcher still gets every event, in order.
    broadcast(&gw, "t1", "\"after\"");
    let ev = w.next_app_event(5 * SEC).expect("watcher still served");
    assert_eq!(ev.data, "\"after\"");
    drop(resumers);
}

#[test]
fn non_reading_streams_of_a_conflating_broadcast_channel_are_cut_by_the_write_deadline() {
    const CHANNEL: &str = "ws_broadcast_hostile";
    let gw = Gateway::start(&[("SSE_WRITE_TIMEOUT", "1s"), ("SSE_EVENT_BUFFER", "5")]);
    let stalled: Vec<TcpStream> = (0..20)
        .map(|_| non_reader(&gw, &format!("/subscribe?channel={CHANNEL}"), ""))
        .collect();
    let mut honest = Sse::open(gw.addr, &format!("/subscribe?channel={CHANNEL}"), "");
    assert_eq!(honest.status(), 200);
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.jackpot")
        == 21));
    let value = |n: u64| format!("{{\"reason\":\"jackpot_value\",\"value\":{}}}", big(n));
    // 120 values of 60 KiB: more than the kernel's socket buffers take (4 MiB here).
    for n in 0..120 {
        assert_eq!(gw.publish(CHANNEL, &value(n)).status, 202);
        let ev = honest
            .next_app_event(5 * SEC)
            .expect("honest reader served");
        assert!(ev.data == value(n), "honest reader gets value {n}");
    }
    assert!(
        eventually(10 * SEC, || gw.stat("connections.per_route.jackpot") == 1),
        "conflating streams that stopped reading are cut too"
    );
    assert_eq!(gw.stat("write_timeouts"), 20);
    assert_eq!(
        gw.stat("slow_consumers_cut"),
        0,
        "cut by time, not by queue"
    );
    assert_eq!(gw.publish(CHANNEL, &value(120)).status, 202);
    let ev = honest
        .next_app_event(5 * SEC)
        .expect("honest reader still served");
    assert!(ev.data == value(120), "newest value");
    drop(stalled);
}

#[test]
fn a_resume_over_the_replay_limit_gets_a_reset_and_one_within_it_a_replay() {
    let gw = Gateway::start(&[("SSE_REPLAY_LIMIT", "131072")]);
    let (mut w, marker) = watcher_with_marker(&gw, "a,b");
    let mut ids = Vec::new();
    for n in 0..4 {
        broadcast(&gw, if n % 2 == 0 { "a" } else { "b" }, &big(n));
        ids.push(w.next_app_event(5 * SEC).expect("event").id);
    }
    // From the marker: 4 x 60 KiB missed, over 128 KiB: a reset naming the newest event.
    let mut r = Sse::open(
        gw.addr,
        "/api/v1/events?topics=a,b",
        &format!("Last-Event-ID: {marker}\r\n"),
    );
    assert_eq!(r.status(), 200);
    let reset = r.next_event(5 * SEC).expect("reset");
    assert_eq!(
        (reset.event.as_str(), reset.id.len()),
        ("reset", ids[3].len()),
        "a reset, not a replay (of {} bytes)",
        reset.data.len()
    );
    assert!(reset.data.contains("SSE_REPLAY_LIMIT"), "{}", reset.data);
    assert_eq!(reset.id, ids[3], "resumes from the newest event next time");
    assert_eq!(
        r.next_app_event(Duration::from_millis(300)),
        None,
        "no partial history after a reset"
    );
    assert_eq!(gw.stat("resets_replay_limit"), 1);
    assert_eq!(gw.stat("resets"), 1);
    // From the second big event: 2 x 60 KiB fit, replayed in order.
    let mut ok = Sse::open(
        gw.addr,
        "/api/v1/events?topics=all",
        &format!("Last-Event-ID: {}\r\n", ids[1]),
    );
    for (n, id) in ids.iter().enumerate().skip(2) {
        let ev = ok.next_app_event(5 * SEC).expect("replayed");
        assert_eq!(&ev.id, id);
        assert!(ev.data == big(n as u64), "replayed in order");
    }
    assert_eq!(gw.stat("resumes"), 1);
    assert_eq!(gw.stat("resets_replay_limit"), 1);
}

/// Opens a topic stream on 64 topics named `<prefix>-0` .. `<prefix>-63`; returns it with
/// its head read (and whatever followed in the same packet).
fn many_topics(gw: &Gateway, prefix: &str) -> Sse {
    let list: Vec<String> = (0..64).map(|i| format!("{prefix}-{i}")).collect();
    Sse::open(
        gw.addr,
        &format!("/api/v1/events?topics={}", list.join(",")),
        "",
    )
}

/// `/healthz` answers `200`, and within a generous second (the soak run measures it).
fn healthz_answers(gw: &Gateway) {
    let t = std::time::Instant::now();
    assert_eq!(gw.get("/healthz").status, 200);
    assert!(t.elapsed() < SEC, "/healthz took {:?}", t.elapsed());
}

#[test]
fn a_channel_flood_stays_within_the_channel_budget_and_a_watcher_gets_every_event() {
    let gw = Gateway::start(&[("SSE_CHANNEL_LIMIT", "200")]);
    let mut w = Sse::open(gw.addr, "/api/v1/events?topics=all", "");
    assert_eq!(w.status(), 200);
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 1));
    let before = rss_kib(&gw);
    let mut n = 0;
    // 150 streams of 64 fresh topics each, opened and closed: 9,600 channels asked for.
    for i in 0..150 {
        let s = many_topics(&gw, &format!("flood{i}"));
        assert_eq!(s.status(), 200, "{}", s.head);
        drop(s);
        if i % 10 == 0 {
            // A fresh topic's message creates its channel (the watcher takes every topic).
            broadcast(&gw, &format!("w{i}"), &format!("{n}"));
            let ev = w.next_app_event(5 * SEC).expect("watcher served");
            assert_eq!(ev.data, format!("{n}"), "every event, in order");
            n += 1;
            healthz_answers(&gw);
            assert!(gw.stat("channels") <= 400, "within 2 cores x 200");
        }
    }
    // Every flood channel stays idle (for a returning client) only while the budget has room.
    assert!(
        eventually(5 * SEC, || gw.stat("connections.total") == 1),
        "flood streams closed"
    );
    // 500 fresh topics with history (published while the watcher takes every topic): beyond
    // the budget the least recently used go, and the watcher still gets every event.
    for i in 0..500 {
        broadcast(&gw, &format!("h{i}"), &format!("{n}"));
        let ev = w.next_app_event(5 * SEC).expect("watcher served");
        assert_eq!(ev.data, format!("{n}"), "every event, in order");
        n += 1;
    }
    healthz_answers(&gw);
    let channels = gw.stat("channels");
    assert!(channels <= 400, "{channels} channels, budget 2 x 200");
    assert!(gw.stat("channels_evicted") > 0);
    let grown = rss_kib(&gw).saturating_sub(before);
    eprintln!("channel flood: {channels} channels, RSS grew {grown} KiB");
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB");
}

#[test]
fn streams_that_would_need_channels_beyond_the_budget_get_the_captured_answer() {
    let gw = Gateway::start(&[("SSE_CHANNEL_LIMIT", "100")]);
    // Eight streams held open on 64 fresh topics each: 512 live channels over two cores
    // whose budget is 100 each. Every channel has a live stream, so none can be evicted.
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..8 {
        let mut s = many_topics(&gw, &format!("held{i}"));
        assert_eq!(s.status(), 200, "{}", s.head);
        let first = s.next_event(2 * SEC);
        match first {
            Some(ev) if ev.data.contains("channel limit reached") => {
                assert_eq!(ev.event, "", "unnamed, as over the connection limit");
                assert!(!s.retries.is_empty(), "a retry: comes first");
                assert!(s.closed_within(5 * SEC), "then the stream closes");
                refused += 1;
            }
            other => {
                assert!(
                    other.is_none(),
                    "an open topic stream sends nothing: {other:?}"
                );
                held.push(s);
            }
        }
    }
    assert!(refused > 0, "some streams are refused");
    assert!(!held.is_empty(), "the first streams are served");
    assert_eq!(gw.stat("rejected_channel_limit"), refused);
    assert!(gw.stat("channels") <= 200);
    // The held streams are served: an event on one of their topics reaches its stream.
    broadcast(&gw, "held0-5", "\"to held0\"");
    let ev = held[0].next_app_event(5 * SEC).expect("held stream served");
    assert_eq!(ev.data, "\"to held0\"");
}

#[test]
fn history_stays_within_its_byte_budget_and_resumes_past_it_get_a_reset() {
    let gw = Gateway::start(&[("SSE_HISTORY_BYTES", "1048576")]);
    let topics: Vec<String> = (0..16).map(|i| format!("h{i}")).collect();
    let (mut w, marker) = watcher_with_marker(&gw, &topics.join(","));
    let before = rss_kib(&gw);
    // 16 topics x 64 events x 60 KiB: 61 MiB of history at SSE_HISTORY = 64 without a
    // byte budget; 1 MiB per core with it.
    let mut last_two = Vec::new();
    for i in 0..16 * 64u64 {
        broadcast(&gw, &topics[(i % 16) as usize], &big(i));
        let ev = w.next_app_event(5 * SEC).expect("watcher served");
        assert!(
            ev.data.starts_with(&format!("\"{i:06}")),
            "every event, in order"
        );
        last_two.push(ev.id);
        if last_two.len() > 2 {
            last_two.remove(0);
        }
    }
    assert!(eventually(2 * SEC, || gw.stat("history_bytes") <= 2 * 1_048_576));
    assert!(gw.stat("history_trimmed") > 0);
    let grown = rss_kib(&gw).saturating_sub(before);
    eprintln!("61 MiB published: RSS grew {grown} KiB");
    assert!(grown < 24 * 1024, "RSS grew by {grown} KiB");
    // What left history cannot be replayed: a reset, not a silent gap.
    let path = format!("/api/v1/events?topics={}", topics.join(","));
    let mut old = Sse::open(gw.addr, &path, &format!("Last-Event-ID: {marker}\r\n"));
    assert_eq!(old.status(), 200, "{}", old.head);
    let reset = old.next_event(5 * SEC).expect("reset");
    assert!(
        reset.data.contains("history does not reach back"),
        "{reset:?}"
    );
    // The newest events are still there.
    let mut recent = Sse::open(
        gw.addr,
        &path,
        &format!("Last-Event-ID: {}\r\n", last_two[0]),
    );
    assert_eq!(recent.status(), 200, "{}", recent.head);
    let ev = recent.next_app_event(5 * SEC).expect("replay");
    assert_eq!(ev.id, last_two[1]);
}
