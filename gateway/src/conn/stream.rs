//! The SSE stream writer: opens the stream on its core, then writes whatever is queued in one
//! syscall per wake-up until the client leaves, the stream is cut, or the node drains.
//!
//! Memory: an idle stream holds its `Subscriber` (an empty queue), this task's state and a
//! 16-byte read buffer for noticing that the client left; no write buffer (taken from the
//! core's pool only for the duration of a write) and no request buffer.
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use monoio::buf::IoBuf;
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;

use crate::conn::reply::{cors_headers, write_within};
use crate::core::refusal::Refusal;
use crate::core::shard::Shard;
use crate::core::stream::Registration;
use crate::core::subscriber::{State, Subscriber};
use crate::http::response::write_stream_head;
use crate::route::resolve::StreamSpec;

/// Starts a stream admitted on this core: writes its head and prelude in one write, then
/// its events as they come. Refused (draining, Redis down): the refusal is written instead.
///
/// Setup is synchronous on purpose: the spawned task then holds each piece of state once
/// (an async fn would keep its arguments and everything it moved on in its own state), which
/// keeps an idle stream's task at a few hundred bytes.
pub fn start(shard: Rc<Shard>, stream: TcpStream, mut spec: StreamSpec) {
    let _ = stream.set_nodelay(true);
    let mut b = shard.pool().take();
    let allow_origin = spec.allow_origin.take();
    write_stream_head(&mut b, &cors_headers(allow_origin.as_deref()));
    match shard.open_stream(spec, &mut b) {
        Ok(reg) => {
            let prelude = Bytes::copy_from_slice(&b);
            shard.pool().give(b);
            let (rd, wr) = stream.into_split();
            monoio::spawn(write_loop(reg, rd, wr, prelude));
        }
        Err(why) => {
            shard.pool().give(b);
            monoio::spawn(refuse(shard, stream, why, allow_origin));
        }
    }
}

/// Writes a refused stream's head and refusal (a `200`, so an EventSource comes back by
/// itself after the `retry:`), bounded by `SSE_HEAD_TIMEOUT`, and closes it.
pub async fn refuse(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    why: Refusal,
    allow_origin: Option<Box<str>>,
) {
    let mut out = shard.pool().take();
    write_stream_head(&mut out, &cors_headers(allow_origin.as_deref()));
    why.encode(shard.id(), &mut out);
    if let Some(out) = write_within(&mut stream, out, shard.config().head_timeout).await {
        shard.pool().give(out);
    }
}

/// Boxed writes keep the resting state of an idle stream's task small: the write futures
/// exist only while a write is in flight.
async fn write_loop(
    reg: Registration,
    mut rd: OwnedReadHalf<TcpStream>,
    mut wr: OwnedWriteHalf<TcpStream>,
    prelude: Bytes,
) {
    let shard = reg.shard();
    let sub = reg.sub();
    let mut gone = Box::pin(async move {
        let mut b = Vec::with_capacity(16);
        let rd = &mut rd;
        loop {
            let (r, nb) = rd.read(b).await;
            b = nb;
            b.clear();
            match r {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    });
    if Box::pin(write(&mut wr, prelude, sub, &mut gone))
        .await
        .is_none()
    {
        return;
    }
    let mut arrivals: Vec<Instant> = Vec::new();
    loop {
        monoio::select! {
            _ = &mut gone => return,
            _ = sub.ready() => {}
        }
        if sub.state() == State::Cut {
            return;
        }
        let ok = if let Some(f) = sub.take_single() {
            if let Some(t) = f.arrived {
                arrivals.push(t);
            }
            Box::pin(write(&mut wr, f.bytes, sub, &mut gone))
                .await
                .is_some()
        } else {
            let mut b = shard.pool().take();
            if sub.take_into(&mut b, &mut arrivals) == 0 {
                shard.pool().give(b);
                if sub.state() == State::Closing {
                    return;
                }
                continue;
            }
            match Box::pin(write(&mut wr, b, sub, &mut gone)).await {
                Some(b) => {
                    shard.pool().give(b);
                    true
                }
                None => false,
            }
        };
        if !ok {
            return;
        }
        reg.delivered(&mut arrivals);
        if sub.state() == State::Closing && !sub.has_queued() {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

/// Writes all of `buf` unless the stream is cut or the client leaves first; gives the
/// buffer back on success.
async fn write<T: IoBuf + 'static, G: std::future::Future<Output = ()> + Unpin>(
    wr: &mut OwnedWriteHalf<TcpStream>,
    buf: T,
    sub: &Subscriber,
    gone: &mut G,
) -> Option<T> {
    monoio::select! {
        (res, buf) = wr.write_all(buf) => res.ok().map(|_| buf),
        _ = sub.cut() => None,
        _ = gone => None,
    }
}
