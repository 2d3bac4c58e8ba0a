//! The request loop of one accepted connection: read a head (bounded in size and time),
//! route it, answer API requests with keep-alive, and turn stream requests into streams on
//! their owner core.
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::auth::credentials;
use crate::config::CorsOrigins;
use crate::conn::api::{self, Reply, MAX_PUBLISH_BODY};
use crate::conn::stream;
use crate::core::node::{Control, Handoff};
use crate::core::shard::{unix_now, Shard};
use crate::core::timer::Jitter;
use crate::http::request::{parse_head, BodyKind, Method, Parsed, MAX_HEAD};
use crate::http::response::{write_json_error, write_response, write_stream_head, Status};
use crate::route::resolve::{resolve, StreamSpec};
use crate::route::table::{owner_core, Api, Endpoint, Match, Placement};
use crate::sse::system::encode_error;
use crate::stats::bump;

/// What to do once a head is parsed. Owned, so the read buffer is free again.
enum Action {
    /// Write these bytes; then close, or go on after consuming `consumed` bytes.
    Respond {
        out: BytesMut,
        keep_alive: bool,
        consumed: usize,
    },
    /// Read a `len`-byte publish body after `head_len` bytes, then answer.
    Publish {
        api: Api,
        head_len: usize,
        len: usize,
        keep_alive: bool,
        head_only: bool,
        allow_origin: Option<Box<str>>,
    },
    /// Answer from every core's state (stats, metrics): asks the other cores first.
    Query {
        api: Api,
        keep_alive: bool,
        head_only: bool,
        consumed: usize,
        allow_origin: Option<Box<str>>,
    },
    /// Start a stream.
    Stream(StreamSpec),
}

/// Serves one connection until it closes or becomes a stream.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let head_timeout = shard.node.config.head_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let deadline = Instant::now() + head_timeout;
        let action = loop {
            if let Some(a) = decide(&shard, &buf, peer) {
                break a;
            }
            match read_more(&mut stream, buf, deadline).await {
                Ok(b) => buf = b,
                Err(timed_out_mid_head) => {
                    if timed_out_mid_head {
                        bump(&shard.stats().head_timeouts);
                    }
                    return;
                }
            }
        };
        match action {
            Action::Respond {
                out,
                keep_alive,
                consumed,
            } => {
                let Some(out) = write_within(&mut stream, out, head_timeout).await else {
                    return;
                };
                shard.pool.give(out);
                if !keep_alive {
                    return;
                }
                buf.drain(..consumed.min(buf.len()));
            }
            Action::Publish {
                api,
                head_len,
                len,
                keep_alive,
                head_only,
                allow_origin,
            } => {
                while buf.len() < head_len + len {
                    match read_more(&mut stream, buf, deadline).await {
                        Ok(b) => buf = b,
                        Err(_) => return,
                    }
                }
                let body = &buf[head_len..head_len + len];
                let reply = match api {
                    Api::Broadcast => api::broadcast(&shard, body).await,
                    _ => api::publish(&shard, body).await,
                };
                let done = (keep_alive, head_only, head_timeout);
                if !answer(&shard, &mut stream, reply, allow_origin.as_deref(), done).await {
                    return;
                }
                buf.drain(..head_len + len);
            }
            Action::Query {
                api,
                keep_alive,
                head_only,
                consumed,
                allow_origin,
            } => {
                let reply = match api {
                    Api::Metrics => api::metrics(&shard).await,
                    _ => api::stats(&shard).await,
                };
                let done = (keep_alive, head_only, head_timeout);
                if !answer(&shard, &mut stream, reply, allow_origin.as_deref(), done).await {
                    return;
                }
                buf.drain(..consumed.min(buf.len()));
            }
            Action::Stream(spec) => {
                // The stream gets a task of its own: this request loop's state (about 2 KiB
                // with its read buffer) must not stay pinned by a long-lived idle stream.
                start_stream(shard, stream, spec);
                return;
            }
        }
    }
}

/// Reads more bytes into `buf`. `Err(true)` when the deadline passed with part of a head
/// received, `Err(false)` when the peer closed or went quiet between requests.
async fn read_more(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    deadline: Instant,
) -> Result<Vec<u8>, bool> {
    if buf.capacity() - buf.len() < 1024 {
        let room = (buf.capacity()).clamp(1024, MAX_HEAD + MAX_PUBLISH_BODY);
        buf.reserve(room);
    }
    let had = !buf.is_empty();
    // Read into the spare capacity after what is already buffered (a plain `Vec` would be
    // overwritten from its start).
    let len = buf.len();
    let cap = buf.capacity();
    let spare = buf.slice_mut(len..cap);
    match monoio::time::timeout_at(deadline.into(), stream.read(spare)).await {
        Err(_) => Err(had),
        Ok((Ok(0), _)) | Ok((Err(_), _)) => Err(false),
        Ok((Ok(_), b)) => Ok(b.into_inner()),
    }
}

fn render(
    shard: &Shard,
    reply: Reply,
    cors: &[(&str, &str)],
    keep_alive: bool,
    head_only: bool,
) -> BytesMut {
    let mut out = shard.pool.take();
    if reply.status.code() >= 400 {
        bump(&shard.stats().http_errors);
    }
    write_response(
        &mut out,
        reply.status,
        Some(reply.content_type),
        cors,
        &reply.body,
        keep_alive,
    );
    if head_only {
        out.truncate(out.len() - reply.body.len());
    }
    out
}

fn error_out(
    shard: &Shard,
    status: Status,
    message: &str,
    extra: &[(&str, &str)],
    keep_alive: bool,
    consumed: usize,
) -> Action {
    bump(&shard.stats().http_errors);
    let mut out = shard.pool.take();
    write_json_error(&mut out, status, message, extra, keep_alive);
    Action::Respond {
        out,
        keep_alive,
        consumed,
    }
}

/// Parses what has been read so far and decides; `None` means the head is incomplete.
fn decide(shard: &Shard, buf: &[u8], peer: SocketAddr) -> Option<Action> {
    let head = match parse_head(buf) {
        Ok(Parsed::Partial) => return None,
        Ok(Parsed::Complete(h)) => h,
        Err(e) => {
            let status = Status::from_code(e.status()).unwrap_or(Status::BadRequest);
            return Some(error_out(shard, status, e.message(), &[], false, 0));
        }
    };
    let body_len = match head.body {
        BodyKind::None => 0,
        BodyKind::Length(n) => n,
        BodyKind::Chunked => {
            return Some(error_out(
                shard,
                Status::LengthRequired,
                "chunked request bodies are not accepted: send Content-Length",
                &[],
                false,
                0,
            ))
        }
    };
    // Requests other than publish carry no body; one that does is answered and closed
    // rather than having its body parsed as the next request.
    let keep_alive = head.keep_alive;
    let consumed = head.head_len;
    let routes = &shard.node.routes;
    let config = &shard.node.config;
    let origin_allowed = head.origin.filter(|o| config.cors_origins.allows(o));
    let allow_origin = match (&config.cors_origins, origin_allowed) {
        (_, None) => None,
        (CorsOrigins::Any, Some(_)) => Some("*"),
        (_, Some(o)) => std::str::from_utf8(o).ok(),
    };
    let cors = cors_headers(allow_origin);
    if head.method == Method::Options && config.cors_origins != CorsOrigins::None {
        return Some(preflight(
            shard,
            &head,
            allow_origin,
            keep_alive && body_len == 0,
        ));
    }
    let endpoint = match routes.lookup(head.method, head.path) {
        Match::NotFound => {
            return Some(error_out(
                shard,
                Status::NotFound,
                "no such path",
                &cors,
                keep_alive && body_len == 0,
                consumed,
            ))
        }
        Match::WrongMethod(allow) => {
            let mut extra = cors.clone();
            extra.push(("Allow", allow));
            return Some(error_out(
                shard,
                Status::MethodNotAllowed,
                "method not allowed for this path",
                &extra,
                keep_alive && body_len == 0,
                consumed,
            ));
        }
        Match::Found(e) => e,
    };
    let head_only = head.method == Method::Head;
    let reply = match endpoint {
        Endpoint::Api(api @ (Api::Publish | Api::Broadcast)) => {
            let authorized = match &shard.node.config.publish_token {
                Some(token) => credentials::bearer(head.authorization)
                    .is_some_and(|t| credentials::secret_eq(t, token.expose().as_bytes())),
                // `::ffff:127.0.0.1` on a dual-stack listener is loopback too.
                None => peer.ip().to_canonical().is_loopback(),
            };
            if !authorized {
                let why = if shard.node.config.publish_token.is_some() {
                    "publish needs Authorization: Bearer <SSE_PUBLISH_TOKEN>"
                } else {
                    "publish is accepted from loopback only while SSE_PUBLISH_TOKEN is unset"
                };
                return Some(error_out(shard, Status::Unauthorized, why, &cors, false, 0));
            }
            if head.body == BodyKind::None {
                return Some(error_out(
                    shard,
                    Status::LengthRequired,
                    "publish needs a JSON body with Content-Length",
                    &cors,
                    false,
                    0,
                ));
            }
            if body_len > MAX_PUBLISH_BODY {
                return Some(error_out(
                    shard,
                    Status::PayloadTooLarge,
                    "publish body over 64 KiB",
                    &cors,
                    false,
                    0,
                ));
            }
            return Some(Action::Publish {
                api,
                head_len: head.head_len,
                len: body_len,
                keep_alive,
                head_only,
                allow_origin: allow_origin.map(Into::into),
            });
        }
        Endpoint::Api(api @ (Api::Stats | Api::Metrics)) => {
            return Some(Action::Query {
                api,
                keep_alive: keep_alive && body_len == 0,
                head_only,
                consumed,
                allow_origin: allow_origin.map(Into::into),
            });
        }
        Endpoint::Api(Api::Healthz) => api::healthz(),
        Endpoint::Api(Api::Readyz) => api::readyz(shard),
        Endpoint::Stream(i) => {
            return Some(match resolve(routes, i, &head, config, unix_now()) {
                Ok(mut spec) => {
                    spec.allow_origin = allow_origin.map(Into::into);
                    Action::Stream(spec)
                }
                Err(r) => error_out(
                    shard,
                    r.status,
                    &r.message,
                    &cors,
                    keep_alive && body_len == 0,
                    consumed,
                ),
            });
        }
    };
    let keep_alive = keep_alive && body_len == 0;
    Some(Action::Respond {
        out: render(shard, reply, &cors, keep_alive, head_only),
        keep_alive,
        consumed,
    })
}

/// The CORS headers of a response: `Access-Control-Allow-Origin` when the request's origin
/// is allowed, with `Vary: Origin` when the value echoes that origin (so caches keep one copy
/// per origin). Empty when CORS is not configured or the origin is not allowed.
pub fn cors_headers(allow_origin: Option<&str>) -> Vec<(&'static str, &str)> {
    match allow_origin {
        None => Vec::new(),
        Some("*") => vec![("Access-Control-Allow-Origin", "*")],
        Some(o) => vec![("Access-Control-Allow-Origin", o), ("Vary", "Origin")],
    }
}

/// Answers a CORS preflight (`OPTIONS`): `204` with what a browser may send to this path,
/// `403` for an origin not in `SSE_CORS_ORIGINS`, `404` for an unknown path.
fn preflight(
    shard: &Shard,
    head: &crate::http::request::RequestHead<'_>,
    allow_origin: Option<&str>,
    keep_alive: bool,
) -> Action {
    let consumed = head.head_len;
    let allow = match shard.node.routes.lookup(Method::Get, head.path) {
        Match::NotFound => {
            return error_out(
                shard,
                Status::NotFound,
                "no such path",
                &[],
                keep_alive,
                consumed,
            )
        }
        Match::Found(Endpoint::Stream(_)) => "GET, OPTIONS",
        Match::Found(Endpoint::Api(_)) => "GET, HEAD, OPTIONS",
        Match::WrongMethod(_) => "POST, OPTIONS",
    };
    let Some(origin) = allow_origin else {
        return error_out(
            shard,
            Status::Forbidden,
            "origin not allowed by SSE_CORS_ORIGINS",
            &[],
            keep_alive,
            consumed,
        );
    };
    let mut headers = cors_headers(Some(origin));
    headers.extend([
        ("Access-Control-Allow-Methods", allow),
        (
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, Last-Event-ID, Cache-Control",
        ),
        ("Access-Control-Max-Age", "600"),
    ]);
    let mut out = shard.pool.take();
    write_response(&mut out, Status::NoContent, None, &headers, b"", keep_alive);
    Action::Respond {
        out,
        keep_alive,
        consumed,
    }
}

/// Over the limit: `200` with a jittered `retry:` and an error event, so an EventSource comes
/// back later by itself (a non-200 would stop it for good).
async fn refuse_over_limit(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    allow_origin: Option<Box<str>>,
) {
    let mut out = shard.pool.take();
    write_stream_head(&mut out, &cors_headers(allow_origin.as_deref()));
    crate::sse::encode::encode_retry(Jitter::new(shard.id).between(1000, 5000), &mut out);
    encode_error("connection limit reached", None, &mut out);
    let limit = shard.node.config.head_timeout;
    if let Some(out) = write_within(&mut stream, out, limit).await {
        shard.pool.give(out);
    }
}

/// Counts the stream against the node's limit and runs it on its owner core.
fn start_stream(shard: Rc<Shard>, stream: TcpStream, spec: StreamSpec) {
    if !shard.node.try_open_stream() {
        bump(&shard.stats().rejected_limit);
        monoio::spawn(refuse_over_limit(shard, stream, spec.allow_origin));
        return;
    }
    let family = &shard.node.routes.families[spec.family];
    let cores = shard.node.config.cores;
    let owner = match (family.placement, spec.channels.one()) {
        (Placement::Owner, Some(channel)) => owner_core(channel.as_bytes(), cores),
        // A resuming client goes back to the core that gave out its id: only that core's
        // history knows what it missed.
        _ => spec
            .last_event_id
            .as_deref()
            .and_then(|id| id_core(id, &shard.node.run_id))
            .filter(|c| *c < cores)
            .unwrap_or(shard.id),
    };
    if owner == shard.id {
        stream::start(shard, stream, spec);
        return;
    }
    bump(&shard.stats().handoffs_out);
    // SAFETY: `into_raw_fd` gives up monoio's ownership (and deregisters the fd from this
    // core's driver); no other handle to the socket exists, so the std stream is its only
    // owner from here on.
    let socket = unsafe { std::net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
    let _ = socket.set_nonblocking(true);
    if shard.node.control[owner]
        .send(Control::Handoff(Handoff { socket, spec }))
        .is_err()
    {
        shard.node.close_stream();
    }
}

/// The core an event id of this run names (`<run>.<core>.<seq>`), if it is one.
fn id_core(id: &str, run: &str) -> Option<usize> {
    let rest = id.strip_prefix(run)?.strip_prefix('.')?;
    let (core, _) = rest.split_once('.')?;
    core.parse().ok()
}

/// Writes an API reply; `true` when the connection goes on to its next request.
/// `(keep_alive, head_only, limit)`: whether to keep the connection, whether the request was
/// `HEAD`, and how long the client may take to read the answer.
async fn answer(
    shard: &Shard,
    stream: &mut TcpStream,
    reply: api::Reply,
    allow_origin: Option<&str>,
    (keep_alive, head_only, limit): (bool, bool, Duration),
) -> bool {
    let out = render(
        shard,
        reply,
        &cors_headers(allow_origin),
        keep_alive,
        head_only,
    );
    match write_within(stream, out, limit).await {
        Some(out) => {
            shard.pool.give(out);
            keep_alive
        }
        None => false,
    }
}

/// Writes a response unless the client stops reading for `limit`: a client that pipelines
/// requests and never reads the answers would otherwise hold its socket (and megabytes of
/// kernel buffers) forever. `None`: the write failed or timed out; close the connection.
async fn write_within(stream: &mut TcpStream, out: BytesMut, limit: Duration) -> Option<BytesMut> {
    match monoio::time::timeout(limit, stream.write_all(out)).await {
        Ok((Ok(_), out)) => Some(out),
        _ => None,
    }
}
