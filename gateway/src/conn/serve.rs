//! The request loop of one accepted connection: read a head (bounded in size and time),
//! decide, answer API requests with keep-alive, and turn stream requests into streams on
//! their core.
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use crate::conn::api;
use crate::conn::decide::{decide, Action, Context, Framing, Listener, MAX_PUBLISH_BODY};
use crate::conn::reply::{write_within, Reply};
use crate::conn::stream;
use crate::core::shard::{Admission, Shard};
use crate::core::stream::unix_now;
use crate::http::request::MAX_HEAD;
use crate::stats::bump;

/// Why reading more of a request stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// The peer closed, failed, or went quiet between requests.
    Closed,
    /// The deadline passed with part of a head received.
    TimedOut,
}

/// Serves one connection, accepted on `listener`, until it closes or becomes a stream.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, peer: SocketAddr, listener: Listener) {
    let _ = stream.set_nodelay(true);
    let head_timeout = shard.config().head_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let deadline = Instant::now() + head_timeout;
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
            Action::Query { api, framing } => (api::query(&shard, api).await, framing),
            Action::Stream(spec) => {
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
        if !answer(&shard, &mut stream, &reply, &framing).await {
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
