//! The live status page: `GET /status` (one HTML page, its style and script inline, embedded
//! in the binary) and `GET /status/stream` (its figures, one SSE event per
//! `SSE_STATUS_PERIOD`), served where stats and metrics are.
//!
//! The page loads nothing but itself and the stream: its `Content-Security-Policy` allows
//! exactly its own inline style and script (by their SHA-256, computed once from the embedded
//! text), `connect-src 'self'` for the stream, and nothing else: no other script, style,
//! font, image or frame, from anywhere, and it may not be framed.
//!
//! Rates (events in and out per second, refusals over the last minute) and the latency of
//! the last seconds are computed in the page from successive snapshots of the cumulative
//! counters, over the snapshots' own timestamps (`at_ms`). Why there and not here: the event
//! stays the stats JSON (one source of truth, no second set of figures to keep in step), the
//! gateway keeps no history and nothing per viewer, and a viewer that misses a snapshot (or
//! reconnects) just computes over a longer interval.
use std::rc::Rc;
use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use sha2::{Digest, Sha256};

use crate::conn::api;
use crate::conn::reply::{cors_headers, Reply};
use crate::conn::stream::client_gone;
use crate::core::refusal::RETRY_MS;
use crate::core::shard::Shard;
use crate::core::status::Viewer;
use crate::http::response::{write_stream_head, Status};
use crate::sse::encode::{encode_event, encode_retry, Event};

/// The page's markup; `/*STYLE*/` and `/*SCRIPT*/` mark where its style and script go.
const HTML: &str = include_str!("status/page.html");
/// The page's style sheet, inlined.
const CSS: &str = include_str!("status/page.css");
/// The page's script, inlined.
const JS: &str = include_str!("status/page.js");

/// The SSE event name of a snapshot.
const EVENT: &str = "status";

/// How long a refused viewer is asked to wait before trying again (`Retry-After`, seconds).
pub const REFUSED_RETRY_AFTER: &str = "5";

/// The page and its policy, assembled once.
struct Page {
    /// The whole HTML document.
    html: Vec<u8>,
    /// Its `Content-Security-Policy`.
    csp: String,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let hash = |text: &str| STANDARD.encode(Sha256::digest(text.as_bytes()));
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
         connect-src 'self'; img-src 'none'; font-src 'none'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'",
        hash(JS),
        hash(CSS)
    );
    let html = HTML
        .replacen("/*STYLE*/", CSS, 1)
        .replacen("/*SCRIPT*/", JS, 1);
    Page {
        html: html.into_bytes(),
        csp,
    }
});

/// `GET /status`: the page, with a policy that forbids loading anything from elsewhere.
pub fn page() -> Reply {
    let page = &*PAGE;
    Reply {
        status: Status::Ok,
        content_type: Some("text/html; charset=utf-8"),
        headers: Vec::new(),
        body: page.html.clone(),
    }
    .with_header("Content-Security-Policy", page.csp.as_str())
    .with_header("X-Content-Type-Options", "nosniff")
    .with_header("Referrer-Policy", "no-referrer")
    .with_header("Cache-Control", "no-store")
}

/// `HEAD /status/stream`: the stream's head, no stream.
pub fn stream_head() -> Reply {
    Reply {
        status: Status::Ok,
        content_type: Some("text/event-stream"),
        headers: Vec::new(),
        body: Vec::new(),
    }
    .with_header("Cache-Control", "no-cache")
}

/// The answer to a viewer beyond `SSE_STATUS_VIEWERS`. A `503`, not a `200` with an SSE
/// error as refused event streams get: this stream is for an operator's page, which says why
/// and tries again after `Retry-After`, and a script polling it sees a plain status.
pub fn refused(limit: usize) -> Reply {
    let why = if limit == 0 {
        "the status page is off (SSE_STATUS_VIEWERS=0)".to_string()
    } else {
        format!(
            "status page viewers at SSE_STATUS_VIEWERS ({limit}); close one or raise the setting"
        )
    };
    Reply::error(Status::ServiceUnavailable, &why).with_header("Retry-After", REFUSED_RETRY_AFTER)
}

/// The node's status snapshot as one SSE event: `event: status` and the status JSON
/// ([`crate::stats::Stats::render_status`]). Taken by one core for the whole node and shared.
pub async fn snapshot(shard: &Shard) -> Bytes {
    let gauges = api::gauges(shard).await;
    let names = shard.routes().names();
    let json = shard
        .node()
        .stats()
        .render_status(&names, &gauges, shard.config().status_period);
    let mut out = BytesMut::with_capacity(json.len() + 32);
    let ev = Event {
        id: None,
        event: Some(EVENT),
        data: json.as_bytes(),
        retry: None,
    };
    encode_event(&ev, &mut out);
    out.freeze()
}

/// Runs one viewer's stream until the client leaves, a write takes longer than
/// `SSE_WRITE_TIMEOUT`, or the node drains: the head, `retry:` and the newest snapshot in
/// one write, then each new snapshot as it comes. A viewer whose write is still in flight
/// when snapshots arrive gets only the newest after it: a slow page skips figures, it does
/// not queue them.
pub async fn watch(
    shard: Rc<Shard>,
    stream: TcpStream,
    viewer: Viewer,
    allow_origin: Option<Box<str>>,
) {
    let _ = stream.set_nodelay(true);
    let limit = shard.config().write_timeout;
    let mut first = BytesMut::with_capacity(512);
    write_stream_head(&mut first, &cors_headers(allow_origin.as_deref()));
    encode_retry(RETRY_MS, &mut first);
    if let Some(frame) = viewer.current() {
        first.extend_from_slice(&frame);
    }
    let (rd, mut wr) = stream.into_split();
    // As for event streams: ends only when the client resets.
    let mut gone = Box::pin(client_gone(rd));
    let mut frame = first.freeze();
    loop {
        let written = monoio::select! {
            r = monoio::time::timeout(limit, wr.write_all(frame)) => matches!(r, Ok((Ok(_), _))),
            _ = &mut gone => false,
            _ = shard.drain_started() => false,
        };
        if !written {
            return;
        }
        frame = monoio::select! {
            f = viewer.next() => f,
            _ = &mut gone => return,
            _ = shard.drain_started() => return,
        };
    }
}
