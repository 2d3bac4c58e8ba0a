//! The request loop of one accepted connection: read a head (bounded in size and time),
//! decide, answer API requests with keep-alive, and turn stream requests into streams on
//! their core.
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use crate::conn::api;
use crate::conn::decide::{decide, Action, Context, Framing, Listener, MAX_PUBLISH_BODY};
use crate::conn::reply::{write_within, Reply};
use crate::conn::status;
use crate::conn::stream;
use crate::core::shard::{Admission, Shard};
use crate::core::stream::unix_now;
use crate::http::request::MAX_HEAD;
use crate::http::response::Status;
use crate::route::table::Api;
use crate::stats::bump;

/// Why reading more of a request stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// The peer closed, failed, or went quiet between requests.
    Closed,
    /// The deadline passed with part of a head received.
    TimedOut,
}

/// Most stats and metrics answers one core renders or writes at a time; beyond it, `503`.
/// Why: an answer a client does not read stays in memory until `SSE_HEAD_TIMEOUT` (30
/// unread `/metrics` requests held ~930 MB before topics were capped). A scraper asks once
/// per scrape; 4 per core is room for a few scrapers and an operator's curl.
pub const QUERIES_IN_FLIGHT: u64 = 4;

/// A non-stream connection counted against the core's pending limit until it drops.
struct Counted<'a>(&'a Shard);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.pending().leave(self.0.stats());
    }
}

/// A stats or metrics answer in flight on this core until it drops.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    /// A place among the [`QUERIES_IN_FLIGHT`], if one is free.
    fn take(n: &'a AtomicU64) -> Option<InFlight<'a>> {
        if n.load(Relaxed) >= QUERIES_IN_FLIGHT {
            return None;
        }
        n.fetch_add(1, Relaxed);
        Some(InFlight(n))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Serves one connection, accepted on `listener`, until it closes or becomes a stream. The
/// accept loop has counted it in with [`crate::core::pending::Pending::enter`]; it is counted
/// out here.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, peer: SocketAddr, listener: Listener) {
    let counted = Counted(&shard);
    let _ = stream.set_nodelay(true);
    let head_timeout = shard.config().head_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let deadline = Instant::now() + head_timeout;
        // Until its head is complete the connection may be closed for room (the oldest
        // waiter goes first); `waiting` drops before `stream` on every path.
        let waiting = shard.pending().wait(stream.as_raw_fd());
        let action = loop {
            let ctx = Context {
                routes: shard.routes(),
                config: shard.config(),
                peer,
                listener,
                now_unix: unix_now(),
            };
            if let Some(a) = decide(&ctx, &buf) {
                break a;
            }
            match read_more(&mut stream, buf, deadline).await {
                Ok(b) => buf = b,
                Err(end) => {
                    if end == ReadEnd::TimedOut {
                        bump(&shard.stats().head_timeouts);
                    }
                    return;
                }
            }
        };
        drop(waiting);
        // A stats or metrics answer's place, kept until it is written.
        let mut held = None;
        let (reply, framing) = match action {
            Action::Answer { reply, framing } => (reply, framing),
            Action::Publish {
                api,
                head_len,
                len,
                framing,
            } => {
                while buf.len() < head_len + len {
                    match read_more(&mut stream, buf, deadline).await {
                        Ok(b) => buf = b,
                        Err(_) => return,
                    }
                }
                let reply = api::publish_body(&shard, api, &buf[head_len..head_len + len]).await;
                (reply, framing)
            }
            Action::Query {
                api: Api::StatusStream,
                framing,
            } if !framing.head_only => match shard.open_viewer() {
                Some(viewer) => {
                    // Like a stream: bounded by its own limit, not a pending connection, and
                    // in a task of its own.
                    drop(counted);
                    let origin = framing.allow_origin;
                    monoio::spawn(status::watch(shard.clone(), stream, viewer, origin));
                    return;
                }
                None => (status::refused(shard.config().status_viewers), framing),
            },
            Action::Query {
                api: Api::StatusStream,
                framing,
            } => (status::stream_head(), framing),
            Action::Query { api, framing } => {
                // Readiness is cheap and must always answer; stats and metrics take a place.
                let stats = shard.stats();
                held = (api != Api::Readyz).then(|| InFlight::take(&stats.queries_in_flight));
                let reply = if let Some(None) = held {
                    bump(&stats.queries_refused);
                    Reply::error(
                        Status::ServiceUnavailable,
                        "too many stats and metrics requests in flight; retry",
                    )
                    .with_header("Retry-After", "1")
                } else {
                    api::query(&shard, api).await
                };
                (reply, framing)
            }
            Action::Stream(spec) => {
                // A stream is not a pending connection: it counts against
                // `SSE_CONNECTION_LIMIT` instead.
                drop((counted, held));
                // The stream gets a task of its own: this request loop's state (about 2 KiB
                // with its read buffer) must not stay pinned by a long-lived idle stream.
                match shard.admit(&spec) {
                    Admission::Here => stream::start(shard, stream, spec),
                    Admission::Elsewhere(core) => shard.hand_off(core, stream, spec),
                    Admission::Refused(why) => {
                        monoio::spawn(stream::refuse(shard, stream, why, spec.allow_origin));
                    }
                }
                return;
            }
        };
        let go_on = answer(&shard, &mut stream, &reply, &framing).await;
        drop((held, reply));
        if !go_on {
            return;
        }
        buf.drain(..framing.consumed.min(buf.len()));
    }
}

/// Reads more bytes into `buf` until `deadline`.
async fn read_more(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    deadline: Instant,
) -> Result<Vec<u8>, ReadEnd> {
    if buf.capacity() - buf.len() < 1024 {
        let room = (buf.capacity()).clamp(1024, MAX_HEAD + MAX_PUBLISH_BODY);
        buf.reserve(room);
    }
    let had = !buf.is_empty();
    // Read into the spare capacity after what is already buffered (a plain `Vec` would be
    // overwritten from its start).
    let len = buf.len();
    let cap = buf.capacity();
    // First a read that does not wait: a client sends its request right after connecting,
    // so it is usually there when the connection is accepted, and then it costs one
    // `recv(2)` instead of a ring operation, a timer and a second wake-up (what a reconnect
    // storm of 50,000 streams pays 50,000 times).
    // SAFETY: the pointer and length address `buf`'s spare capacity, which `recv` may fill;
    // `set_len` covers only the bytes it wrote.
    let got = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().add(len).cast(),
            cap - len,
            libc::MSG_DONTWAIT,
        )
    };
    match got {
        0 => return Err(ReadEnd::Closed),
        n if n > 0 => {
            // SAFETY: `recv` initialised `n` bytes after `len`.
            unsafe { buf.set_len(len + n as usize) };
            return Ok(buf);
        }
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {}
            _ => return Err(ReadEnd::Closed),
        },
    }
    let spare = buf.slice_mut(len..cap);
    match monoio::time::timeout_at(deadline.into(), stream.read(spare)).await {
        Err(_) if had => Err(ReadEnd::TimedOut),
        Err(_) | Ok((Ok(0), _)) | Ok((Err(_), _)) => Err(ReadEnd::Closed),
        Ok((Ok(_), b)) => Ok(b.into_inner()),
    }
}

/// Writes an answer; `true` when the connection goes on to its next request. The client
/// has `SSE_HEAD_TIMEOUT` to read it.
async fn answer(shard: &Shard, stream: &mut TcpStream, reply: &Reply, framing: &Framing) -> bool {
    if reply.status.code() >= 400 {
        bump(&shard.stats().http_errors);
    }
    let mut out = shard.pool().take();
    reply.render(
        framing.allow_origin.as_deref(),
        framing.keep_alive,
        framing.head_only,
        &mut out,
    );
    match write_within(stream, out, shard.config().head_timeout).await {
        Some(out) => {
            shard.pool().give(out);
            framing.keep_alive
        }
        None => false,
    }
}
