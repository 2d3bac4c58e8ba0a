//! The SSE stream writer: registers the stream in the hub, then writes whatever is queued in
//! one syscall per wake-up until the client leaves, the stream is cut, or the node drains.
//!
//! Memory: an idle stream holds its `Subscriber` (an empty queue), this task's state and a
//! 16-byte read buffer for noticing that the client left; no write buffer (taken from the
//! core's pool only for the duration of a write) and no request buffer.
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBuf;
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;

use crate::conn::serve::cors_headers;
use crate::core::hub::{Membership, Resume};
use crate::core::shard::{unix_now, RETRY_MS};
use crate::core::shard::{LocalStream, Shard};
use crate::core::subscriber::{State, Subscriber};
use crate::http::response::write_stream_head;
use crate::route::resolve::StreamSpec;
use crate::route::table::{Greeting, SlowPolicy};
use crate::sse::encode::{encode_event, encode_retry, Event};
use crate::sse::system::{encode_connected, encode_error, encode_reset};
use crate::stats::bump;

/// A registered stream: owns its place in the hub, the core and the node's count, and gives
/// them back when dropped, however the stream ends.
struct Registration {
    shard: Rc<Shard>,
    sub: Rc<Subscriber>,
    membership: Membership,
    stream_key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let shard = &self.shard;
        shard.hub.borrow_mut().unsubscribe(&self.membership);
        shard.streams.borrow_mut().try_remove(self.stream_key);
        shard.stats().streams_open[self.sub.family]
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        shard.node.close_stream();
    }
}

/// Starts a stream that this core owns: queues its greeting, registers it, and spawns its
/// writer task. The caller has already counted it against the node's connection limit; the
/// stream uncounts itself when it ends.
///
/// Setup is synchronous on purpose: the spawned task then holds each piece of state once
/// (an async fn would keep its arguments and everything it moved on in its own state), which
/// keeps an idle stream's task at a few hundred bytes.
pub fn start(shard: Rc<Shard>, stream: TcpStream, spec: StreamSpec) {
    let _ = stream.set_nodelay(true);
    if shard.draining.is_set() {
        shard.node.close_stream();
        monoio::spawn(refuse_draining(shard, stream, spec.allow_origin));
        return;
    }
    if !shard.source_up.get() {
        // Redis is down on this core: say so in-band (seed 000's event) and close; the
        // client's EventSource comes back after `retry:`.
        shard.node.close_stream();
        bump(&shard.stats().rejected_redis);
        monoio::spawn(refuse_unsubscribed(shard, stream, spec));
        return;
    }
    let family = spec.family;
    let sub = Rc::new(
        Subscriber::new(family, shard.take_slot(), shard.node.config.event_buffer)
            .conflating(shard.family(family).slow == SlowPolicy::Conflate),
    );
    // Everything before live events goes out as one write: the head, `retry:`, the greeting,
    // and what a resuming client missed (however many events: history may hold more than the
    // queue bound). It is not queued, so no cut or conflation of the queue can drop it.
    let mut b = shard.pool.take();
    write_stream_head(&mut b, &cors_headers(spec.allow_origin.as_deref()));
    encode_prelude(&shard, &spec, &mut b);
    let prelude = Bytes::copy_from_slice(&b);
    shard.pool.give(b);
    // Prelude and subscribe happen in one synchronous step: nothing published in between can
    // be missed or delivered twice.
    let membership = {
        let mut hub = shard.hub.borrow_mut();
        if let (Greeting::Latest, Some(channel)) =
            (shard.family(family).greeting, spec.channels.one())
        {
            // A channel that greets with its latest message remembers it from creation on,
            // whether a stream or a message creates it.
            hub.keep(channel, family);
        }
        hub.subscribe(spec.channels, family, sub.clone())
    };
    let stream_key = shard
        .streams
        .borrow_mut()
        .insert(LocalStream { sub: sub.clone() });
    shard.stats().streams_open[family].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (rd, wr) = stream.into_split();
    let reg = Registration {
        shard,
        sub,
        membership,
        stream_key,
    };
    monoio::spawn(write_loop(reg, rd, wr, prelude));
}

/// `retry:`, then the family's greeting and, for a client with `Last-Event-ID`, the events it
/// missed or a reset. A family that greets with the latest message sends it as `initial`
/// unless the client resumed (it would be a duplicate of a replayed or already seen event).
fn encode_prelude(shard: &Shard, spec: &StreamSpec, out: &mut BytesMut) {
    let family = shard.family(spec.family);
    encode_retry(RETRY_MS, out);
    if family.greeting == Greeting::Connected {
        encode_connected(unix_now(), out);
    }
    let mut hub = shard.hub.borrow_mut();
    // Only a fresh stream is greeted with the latest message: after a replay it would be a
    // duplicate, and after a reset "no partial history follows" (CONTRACT).
    let mut resumed = false;
    if let Some(last) = &spec.last_event_id {
        match hub.resume(&spec.channels, spec.family, last) {
            Resume::Replay(missed) => {
                bump(&shard.stats().resumes);
                out.extend_from_slice(&missed);
                resumed = true;
            }
            Resume::Reset { newest_id, reason } => {
                bump(&shard.stats().resets);
                resumed = true;
                encode_reset(
                    newest_id.as_deref(),
                    family.named_system_events,
                    reason,
                    out,
                );
            }
        }
    }
    if family.greeting == Greeting::Latest && !resumed {
        if let Some((id, payload)) = spec.channels.one().and_then(|c| hub.latest(c)) {
            encode_event(
                &Event {
                    id: Some(&id),
                    event: Some("initial"),
                    data: &payload,
                    retry: None,
                },
                out,
            );
        }
    }
}

/// A stream opened while this core has no Redis subscription: `retry:`, then
/// `{"type":"error","message":"Failed to subscribe to events"}` (named `error` on families
/// whose system events are named), then the stream closes.
async fn refuse_unsubscribed(shard: Rc<Shard>, mut stream: TcpStream, spec: StreamSpec) {
    let mut b = shard.pool.take();
    write_stream_head(&mut b, &cors_headers(spec.allow_origin.as_deref()));
    encode_retry(RETRY_MS, &mut b);
    let named = shard.family(spec.family).named_system_events;
    encode_error(
        "Failed to subscribe to events",
        named.then_some("error"),
        &mut b,
    );
    let limit = shard.node.config.head_timeout;
    if let Ok((Ok(_), b)) = monoio::time::timeout(limit, stream.write_all(b)).await {
        shard.pool.give(b);
    }
}

/// A stream that arrives while the node drains gets only a jittered `retry:`.
async fn refuse_draining(shard: Rc<Shard>, mut stream: TcpStream, allow_origin: Option<Box<str>>) {
    let mut b = shard.pool.take();
    write_stream_head(&mut b, &cors_headers(allow_origin.as_deref()));
    crate::sse::encode::encode_retry(
        crate::core::timer::Jitter::new(shard.id).between(1000, 5000),
        &mut b,
    );
    let (_, b) = stream.write_all(b).await;
    shard.pool.give(b);
}

/// Boxed writes keep the resting state of an idle stream's task small: the write futures
/// exist only while a write is in flight.
async fn write_loop(
    reg: Registration,
    mut rd: OwnedReadHalf<TcpStream>,
    mut wr: OwnedWriteHalf<TcpStream>,
    prelude: Bytes,
) {
    let shard = &*reg.shard;
    let sub = &*reg.sub;
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
    let stats = shard.stats();
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
            let mut b = shard.pool.take();
            if sub.take_into(&mut b, &mut arrivals) == 0 {
                shard.pool.give(b);
                if sub.state() == State::Closing {
                    return;
                }
                continue;
            }
            match Box::pin(write(&mut wr, b, sub, &mut gone)).await {
                Some(b) => {
                    shard.pool.give(b);
                    true
                }
                None => false,
            }
        };
        if !ok {
            return;
        }
        if !arrivals.is_empty() {
            let now = Instant::now();
            let hist = &stats.latency[sub.family];
            for t in arrivals.drain(..) {
                hist.record(now.saturating_duration_since(t));
                bump(&stats.events_delivered);
            }
            if arrivals.capacity() > 64 {
                arrivals.shrink_to(8);
            }
        }
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
