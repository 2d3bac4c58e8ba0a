//! The live status page (`GET /status`, `GET /status/stream`) on a real gateway: served on
//! the admin listener only when there is one, with a policy that forbids loading anything
//! from elsewhere; its stream sends a snapshot every period, is capped at
//! `SSE_STATUS_VIEWERS` (one more gets `503`), and frees a place when a viewer leaves.
//! The page itself is driven by headless chromium in `the_status_page_renders_and_moves`.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::browser::Browser;
use crate::common::*;

/// `GET path` on `addr`, connection closed after the answer.
fn get_at(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The next `status` event's JSON (`None` when none comes within `within`).
fn next_status(s: &mut Sse, within: Duration) -> Option<Value> {
    let end = Instant::now() + within;
    loop {
        let left = end.checked_duration_since(Instant::now())?;
        let ev = s.next_event(left)?;
        if ev.event == "status" {
            return Some(serde_json::from_str(&ev.data).expect("status JSON"));
        }
    }
}

/// The directives of a `Content-Security-Policy` value, by name.
fn directives(csp: &str) -> Vec<(String, Vec<String>)> {
    csp.split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace().map(str::to_string);
            Some((words.next()?, words.collect()))
        })
        .collect()
}

#[test]
fn the_status_page_and_its_stream_are_served_bounded_and_live() {
    let gw = Gateway::start(&[
        ("SSE_ADMIN_LISTEN", "127.0.0.1:0"),
        ("SSE_STATUS_PERIOD", "100ms"),
        ("SSE_STATUS_VIEWERS", "2"),
    ]);
    let admin = gw.admin_addr().expect("admin_listen= in the start-up line");

    // Like stats and metrics: not on the public listener at all.
    assert_eq!(gw.get("/status").status, 404);
    assert_eq!(gw.get("/status/stream").status, 404);

    // The page: HTML, and a policy under which it can load nothing from anywhere else.
    let page = get_at(admin, "/status");
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        page.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let csp = page.header("content-security-policy").expect("a CSP");
    let d = directives(&csp);
    let sources = |name: &str| -> Vec<String> {
        d.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {csp}"))
    };
    assert_eq!(sources("default-src"), ["'none'"], "{csp}");
    assert_eq!(sources("connect-src"), ["'self'"], "{csp}");
    assert_eq!(sources("frame-ancestors"), ["'none'"], "{csp}");
    assert_eq!(sources("base-uri"), ["'none'"], "{csp}");
    for name in ["script-src", "style-src"] {
        let v = sources(name);
        assert!(
            v.len() == 1 && v[0].starts_with("'sha256-"),
            "{name}: only the page's own inline code, by hash: {csp}"
        );
    }
    for (name, values) in &d {
        for v in values {
            assert!(
                v.starts_with('\'') && !v.contains("unsafe"),
                "{name} {v}: no host, scheme or wildcard source, nothing unsafe: {csp}"
            );
        }
    }
    let html = page.text();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("<script>") && html.contains("EventSource"),
        "inline script"
    );
    for external in ["src=", "href=", "@import", "url("] {
        assert!(
            !html.contains(external),
            "the page loads nothing ({external})"
        );
    }
    let head = request(
        admin,
        b"HEAD /status/stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200, "{head:?}");

    // Two viewers: each gets a snapshot at once or within a period, then one per period.
    let mut viewers: Vec<Sse> = (0..2)
        .map(|_| Sse::open(admin, "/status/stream", ""))
        .collect();
    for v in &mut viewers {
        assert_eq!(v.status(), 200, "{}", v.head);
        assert!(v.head.contains("text/event-stream"), "{}", v.head);
        let mut last = -1;
        // Five snapshots, each newer than the last; with a period of 100 ms, a second at
        // most, whatever else the machine does.
        for _ in 0..5 {
            let s = next_status(v, Duration::from_secs(2)).expect("a status event");
            let at = s["at_ms"].as_i64().expect("at_ms");
            assert!(at > last, "snapshots come newer: {at} after {last}");
            last = at;
            assert_eq!(s["period_ms"], 100);
            assert!(
                s["connections"]["per_core"].is_array(),
                "the stats JSON: {s}"
            );
            assert!(s["latency_histogram"].is_array(), "{s}");
        }
    }
    let s = next_status(&mut viewers[0], Duration::from_secs(2)).expect("status");
    assert_eq!(s["status_viewers"], 2, "{s}");

    // The one over the cap: a plain 503 that says why and when to come back.
    let over = get_at(admin, "/status/stream");
    assert_eq!(over.status, 503, "{over:?}");
    assert!(over.error().contains("SSE_STATUS_VIEWERS (2)"), "{over:?}");
    assert_eq!(over.header("retry-after").as_deref(), Some("5"));
    let s = next_status(&mut viewers[0], Duration::from_secs(2)).expect("status");
    assert_eq!(s["status_viewers_refused"], 1, "{s}");

    // A viewer that leaves gives its place back (noticed at the latest when a snapshot
    // write to it fails), and the next one is let in.
    drop(viewers.pop());
    assert!(
        eventually(Duration::from_secs(5), || {
            let s = next_status(&mut viewers[0], Duration::from_secs(1));
            s.is_some_and(|s| s["status_viewers"] == 1)
        }),
        "the place of a viewer that left is given back"
    );
    let mut again = Sse::open(admin, "/status/stream", "");
    assert_eq!(again.status(), 200, "{}", again.head);
    assert!(next_status(&mut again, Duration::from_secs(2)).is_some());
}

/// Whether a probe line shows a number above `min` for `key` (the page's figures are
/// written like `1,234` or `2.5`; a dash means not known yet).
fn shows_above(line: &Value, key: &str, min: f64) -> bool {
    line[key]
        .as_str()
        .and_then(|t| t.replace(',', "").parse::<f64>().ok())
        .is_some_and(|n| n > min)
}

#[test]
fn the_status_page_renders_and_moves_in_chromium() {
    let gw = Gateway::start(&[("SSE_STATUS_PERIOD", "200ms")]);
    let url = format!("http://{}/status", gw.addr);
    let mut b = Browser::open_url(&url, "status-probe.js", Duration::from_secs(30));
    let probes = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|v| v["kind"] == "status")
            .cloned()
            .collect()
    };
    // Rendered, live, with nothing open yet.
    assert!(
        b.wait_for(Duration::from_secs(15), |l| {
            probes(l)
                .iter()
                .any(|p| p["updates"].as_u64() >= Some(2) && p["streams"] == "0")
        }),
        "the page shows a snapshot: {}",
        b.dump()
    );
    let quiet = probes(&b.lines()).last().cloned().expect("a probe line");
    assert_eq!(quiet["state"], "live", "{quiet}");
    assert_eq!(quiet["eventsIn"], "0", "{quiet}");
    assert_eq!(quiet["coreBars"], 2, "a bar per core: {quiet}");
    assert_eq!(quiet["families"], 6, "a row per family: {quiet}");
    assert!(quiet["refusals"].as_u64() >= Some(9), "{quiet}");

    // Load arrives: three topic streams, and events published until the page shows them
    // (bounded: 10 s at most; about a second where the machine is not overloaded).
    let mut streams: Vec<Sse> = (0..3)
        .map(|_| Sse::open(gw.addr, "/api/v1/events?topics=status", ""))
        .collect();
    let end = Instant::now() + Duration::from_secs(10);
    let moved = |lines: &[Value]| {
        probes(lines).iter().any(|p| {
            shows_above(p, "streams", 2.0)
                && shows_above(p, "eventsIn", 0.0)
                && shows_above(p, "eventsOut", 0.0)
                && p["latencyBars"].as_u64() >= Some(1)
        })
    };
    let mut n = 0;
    while Instant::now() < end && !moved(&b.lines()) {
        let body = format!("{{\"topic\":\"status\",\"type\":\"tick\",\"data\":{{\"n\":{n}}}}}");
        let r = gw.post("/api/v1/events/broadcast", &body);
        assert_eq!(r.status, 202, "{r:?}");
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        moved(&b.lines()),
        "streams, events in and out and the latency histogram move: {}",
        b.dump()
    );
    for s in &mut streams {
        assert!(s.next_app_event(Duration::from_secs(2)).is_some());
    }
    let lines = b.lines();
    assert_eq!(b.finish(Duration::from_secs(10)), Some(0), "{}", b.dump());

    // No console message, page error or failed request, and nothing loaded from elsewhere.
    let bad: Vec<&Value> = lines
        .iter()
        .filter(|v| {
            let k = v["kind"].as_str().unwrap_or("");
            k.starts_with("harness.") && !["harness.ready", "harness.exit"].contains(&k)
        })
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    let origin = format!("http://{}", gw.addr);
    for p in probes(&lines) {
        assert_eq!(p["origin"], origin.as_str());
        for r in p["resources"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap_or("");
            assert!(r.starts_with(&origin), "loaded from elsewhere: {r}");
        }
    }
}
