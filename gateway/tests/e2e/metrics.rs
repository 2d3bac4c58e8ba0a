//! Stats and metrics against hostile clients (issue 13, item 3): topic names are chosen by
//! clients, so only the busiest `SSE_METRICS_TOPICS` get series of their own; and answers
//! that are never read cannot pile up in memory.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// Opens `streams` topic streams of 64 distinct topics each, every name `pad` bytes long or
/// more, and waits until the gateway counts them.
fn topic_flood(gw: &Gateway, streams: usize, pad: usize) -> Vec<Sse> {
    let filler = "x".repeat(pad);
    let open: Vec<Sse> = (0..streams)
        .map(|i| {
            let topics: Vec<String> = (0..64).map(|j| format!("t{i}-{j}-{filler}")).collect();
            let s = Sse::open(
                gw.addr,
                &format!("/api/v1/events?topics={}", topics.join(",")),
                "",
            );
            assert_eq!(s.status(), 200, "{}", s.head);
            s
        })
        .collect();
    assert!(eventually(10 * SEC, || gw
        .stat("connections.per_route.topic")
        == streams as i64));
    open
}

/// The samples of `/metrics` (lines that are not comments).
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn topic_series_are_bounded_and_the_rest_summed() {
    let gw = Gateway::start(&[("SSE_METRICS_TOPICS", "100")]);
    let _streams = topic_flood(&gw, 300, 0);
    let r = gw.get("/metrics");
    assert_eq!(r.status, 200);
    let text = r.text();
    let all = samples(&text);
    let topic_lines: Vec<&&str> = all
        .iter()
        .filter(|l| l.starts_with("sse_topic_subscribers{"))
        .collect();
    // 300 streams of 64 topics were 19,200 series: now the 100 busiest and `_other`.
    assert_eq!(topic_lines.len(), 101, "{}", topic_lines.len());
    assert!(all.len() < 1_000, "{} samples", all.len());
    assert!(
        all.contains(&"sse_topic_subscribers{topic=\"_other\"} 19100"),
        "_other in {topic_lines:?}"
    );
    assert!(all.contains(&"sse_topics_aggregated 19100"));
    // The stats JSON lists the same topics.
    let stats: serde_json::Value =
        serde_json::from_slice(&gw.get("/api/v1/events/stats").body).expect("stats JSON");
    let topics = stats["topics"].as_object().expect("topics object");
    assert_eq!(topics.len(), 101);
    assert_eq!(topics["_other"], 19_100);
    assert_eq!(stats["topics_aggregated"], 19_100);
}

#[test]
fn unread_metrics_answers_do_not_pile_up_in_memory() {
    let gw = Gateway::start(&[]);
    // 19,200 topics of about 100 bytes: the uncapped `/metrics` text was 2.6 MB.
    let _streams = topic_flood(&gw, 300, 90);
    // One answer read in full first, so the allocator's pools are warm.
    assert_eq!(gw.get("/metrics").status, 200);
    std::thread::sleep(SEC / 2);
    let before = gw.rss_kib();
    // 30 requests whose answers are never read, from sockets with small receive buffers.
    let unread: Vec<TcpStream> = (0..30)
        .map(|_| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
            s.connect(&gw.addr.into()).expect("connect");
            let mut s: TcpStream = s.into();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                .expect("write");
            s
        })
        .collect();
    // The highest resident memory over the next 3 s (sampled every 100 ms).
    let end = Instant::now() + 3 * SEC;
    let mut peak = before;
    while Instant::now() < end {
        peak = peak.max(gw.rss_kib());
        std::thread::sleep(SEC / 10);
    }
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!("30 unread /metrics: RSS {before} KiB before, peak {peak} KiB");
    assert!(
        grown_mib < 32,
        "30 unread /metrics answers grew RSS by {grown_mib} MiB ({before} KiB before)"
    );
    // The gateway still answers, and its counters show the topics summed.
    let r = gw.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(samples(&r.text()).contains(&"sse_topics_aggregated 19100"));
    drop(unread);
}
