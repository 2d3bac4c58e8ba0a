//! The SSE stream writer: opens the stream on its core, then writes whatever is queued in one
//! syscall per wake-up until the client leaves, the stream is cut, or the node drains.
//!
//! Memory: an idle stream holds its `Subscriber` (an empty queue), this task's state and a
//! 16-byte read buffer for noticing that the client left; no write buffer (taken from the
//! core's pool only for the duration of a write) and no request buffer.
//!
//! Every write (the prelude and replay, each wake-up's events, keep-alives) is marked on the
//! stream's `Subscriber`; the core's timer cuts a stream whose write has taken longer than
//! `SSE_WRITE_TIMEOUT`, and the cut abandons the write. Abandoning an in-flight io_uring
//! write is safe: the buffer is owned by the operation, which monoio keeps until the kernel
//! completes it, and with monoio's `async-cancel` feature (on in the workspace) dropping it
//! submits an `IORING_OP_ASYNC_CANCEL`, so the kernel lets go of the buffer and of the
//! socket at once instead of when the client reads again (which a stalled client never
//! does).
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use monoio::buf::{IoBuf, IoVecBuf};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;

use crate::conn::reply::{cors_headers, write_within};
use crate::core::refusal::Refusal;
use crate::core::shard::Shard;
use crate::core::stream::{Opened, Registration};
use crate::core::subscriber::State;
use crate::http::response::write_stream_head;
use crate::route::resolve::StreamSpec;

/// Starts a stream admitted on this core: writes its head and prelude in one write, then
/// its events as they come. Refused (draining, Redis down): the refusal is written instead.
///
/// In channel mode a stream whose channel Redis has not confirmed yet first waits for the
/// confirmation (see [`crate::core::by_channel`]): its head is written only after, so no
/// event published after it can be missed. Without a confirmation in time it is refused
/// like a stream on a core whose Redis link is down.
pub fn start(shard: Rc<Shard>, stream: TcpStream, mut spec: StreamSpec) {
    let waits = shard.unconfirmed(&spec);
    if waits.is_empty() {
        return begin(shard, stream, spec);
    }
    monoio::spawn(async move {
        if shard.confirmed(&waits).await {
            begin(shard.clone(), stream, spec);
        } else {
            let why = shard.refuse_unconfirmed(spec.family);
            let allow_origin = spec.allow_origin.take();
            monoio::spawn(refuse(shard.clone(), stream, why, allow_origin));
        }
        shard.release_channels(&waits);
    });
}

/// Opens a stream whose channels are subscribed: head, prelude and registration in one
/// step, then the writer.
///
/// Setup is synchronous on purpose: the spawned task then holds each piece of state once
/// (an async fn would keep its arguments and everything it moved on in its own state), which
/// keeps an idle stream's task at a few hundred bytes.
fn begin(shard: Rc<Shard>, stream: TcpStream, mut spec: StreamSpec) {
    let _ = stream.set_nodelay(true);
    let mut b = shard.pool().take();
    let allow_origin = spec.allow_origin.take();
    write_stream_head(&mut b, &cors_headers(allow_origin.as_deref()));
    match shard.open_stream(spec, &mut b) {
        Ok(Opened {
            reg,
            replay,
            read: None,
        }) => {
            let prelude = Bytes::copy_from_slice(&b);
            shard.pool().give(b);
            let fd = Fd(stream.as_raw_fd());
            let (rd, wr) = stream.into_split();
            monoio::spawn(write_loop(reg, rd, wr, fd, Frames::new(prelude, replay)));
        }
        Ok(Opened {
            reg,
            read: Some(read),
            ..
        }) => {
            // What it missed is in Redis: read it (subscribed already), then the same writer.
            let mut prelude = b.clone();
            shard.pool().give(b);
            let fd = Fd(stream.as_raw_fd());
            let (rd, wr) = stream.into_split();
            monoio::spawn(async move {
                let (reset, replay) = reg.shard().read_durable(reg.sub(), read).await;
                prelude.extend_from_slice(&reset);
                let frames = Frames::new(prelude.freeze(), replay);
                Box::pin(write_loop(reg, rd, wr, fd, frames)).await
            });
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
    rd: OwnedReadHalf<TcpStream>,
    mut wr: OwnedWriteHalf<TcpStream>,
    fd: Fd,
    prelude: Frames,
) {
    let shard = reg.shard();
    let sub = reg.sub();
    let mut gone = Box::pin(client_gone(rd));
    if Box::pin(write_frames(&mut wr, fd, prelude, &reg, &mut gone))
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
            Box::pin(write(&mut wr, fd, f.bytes, &reg, &mut gone))
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
            match Box::pin(write(&mut wr, fd, b, &reg, &mut gone)).await {
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

/// The socket of a stream, for the writes that go around the ring (see [`write`]). Valid
/// while the stream's write half lives: both are owned by the stream's task.
#[derive(Debug, Clone, Copy)]
struct Fd(RawFd);

/// Resolves when the client resets the connection (a read fails): what a stream's writer (and
/// a status page viewer's) races every write and wait against, with one 16-byte read
/// outstanding. A read of 0 bytes is not leaving: a half-close after the request
/// (`printf ... | nc -N`) is legal HTTP and the client still reads, so then reads are over and
/// the stream ends when a write fails (a client that closed both ways fails the next
/// keep-alive or the one after).
pub(super) async fn client_gone(mut rd: OwnedReadHalf<TcpStream>) {
    let mut b = Vec::with_capacity(16);
    loop {
        let (r, nb) = rd.read(b).await;
        b = nb;
        b.clear();
        match r {
            Ok(0) => std::future::pending::<()>().await,
            Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Writes all of `buf` unless the stream is cut (its queue overflowed, or this write took
/// longer than `SSE_WRITE_TIMEOUT`) or the client leaves first; gives the buffer back on
/// success.
///
/// First one `send(2)` that does not wait (`MSG_DONTWAIT`): when the socket's send buffer has
/// room, the usual case for a client that reads, the kernel takes everything at once and the
/// write is over: no ring operation to submit and complete, no second wake-up of this task.
/// Only what the kernel did not take (a full send buffer: a slow client) goes through the
/// ring, which waits for room and is timed by the write deadline. `perf` on the Redis path
/// at 3,000 events a second: each delivered event cost one `io_uring_enter` submit, a
/// completion and a task wake-up besides the send itself.
async fn write<T: IoBuf + 'static, G: std::future::Future<Output = ()> + Unpin>(
    wr: &mut OwnedWriteHalf<TcpStream>,
    fd: Fd,
    buf: T,
    reg: &Registration,
    gone: &mut G,
) -> Option<T> {
    let len = buf.bytes_init();
    // SAFETY: `buf` is initialised for `len` bytes and outlives the call; `fd` is the
    // stream's socket, open while `wr` lives (see `Fd`).
    let sent = unsafe {
        libc::send(
            fd.0,
            buf.read_ptr().cast(),
            len,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    let done = match sent {
        n if n >= 0 => n as usize,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => 0,
            // The client is gone (reset, broken pipe): the stream ends.
            _ => return None,
        },
    };
    if done >= len {
        return Some(buf);
    }
    let all = async {
        let (res, rest) = wr.write_all(buf.slice(done..)).await;
        res.ok().map(|_| rest.into_inner())
    };
    timed(all, reg, gone).await
}

/// Runs the write `io`, marked on the stream for the timer's write deadline; `None` when the
/// stream is cut meanwhile (queue overflow, or the write took longer than
/// `SSE_WRITE_TIMEOUT`) or the client leaves first.
async fn timed<T, G: std::future::Future<Output = ()> + Unpin>(
    io: impl std::future::Future<Output = Option<T>>,
    reg: &Registration,
    gone: &mut G,
) -> Option<T> {
    let sub = reg.sub();
    sub.writing(reg.shard().now_tick());
    let out = monoio::select! {
        r = io => r,
        _ = sub.cut() => None,
        _ = gone => None,
    };
    sub.written();
    out
}

/// [`write`] for the prelude: its head and the replayed history frames, gathered into as
/// few `writev` calls as the socket allows, without copying the frames.
async fn write_frames<G: std::future::Future<Output = ()> + Unpin>(
    wr: &mut OwnedWriteHalf<TcpStream>,
    fd: Fd,
    mut frames: Frames,
    reg: &Registration,
    gone: &mut G,
) -> Option<()> {
    // What the kernel takes at once goes without the ring (see [`write`]).
    frames.send_now(fd);
    if frames.is_empty() {
        return Some(());
    }
    let all = async {
        while !frames.is_empty() {
            let (res, back) = wr.writev(frames).await;
            frames = back;
            match res {
                Ok(0) => return None,
                Ok(n) => frames.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(())
    };
    timed(all, reg, gone).await
}

/// Most `iovec`s one `writev` takes (Linux's `IOV_MAX`); more are written by the next call.
const IOV_MAX: usize = 1024;

/// Frames to write with `writev`: the shared `Bytes` themselves and one `iovec` per frame
/// pointing into them. The whole value is handed to each `writev` operation, so the frames
/// live as long as the kernel may read them, even when the write is abandoned.
struct Frames {
    /// The frames, kept alive for the `iovec`s that point into them.
    _parts: Vec<Bytes>,
    /// One per frame; the first `first` are written, the one at `first` maybe in part.
    iov: Vec<libc::iovec>,
    /// Index of the first `iovec` not completely written.
    first: usize,
}

impl Frames {
    /// `head` (the response head and prelude), then `rest` (replayed history frames).
    fn new(head: Bytes, rest: Vec<Bytes>) -> Frames {
        let mut parts = Vec::with_capacity(rest.len() + 1);
        parts.push(head);
        parts.extend(rest.into_iter().filter(|b| !b.is_empty()));
        let iov = parts
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        Frames {
            _parts: parts,
            iov,
            first: 0,
        }
    }

    /// Whether everything is written.
    fn is_empty(&self) -> bool {
        self.iov[self.first..].iter().all(|v| v.iov_len == 0)
    }

    /// Sends what the socket takes now, without waiting (`sendmsg` with `MSG_DONTWAIT`);
    /// an error is left to the ring's write, which meets it again and ends the stream.
    fn send_now(&mut self, fd: Fd) {
        let len = self.read_iovec_len();
        if len == 0 {
            return;
        }
        // SAFETY: a zeroed `msghdr` is valid (no name, no control data); its `iovec`s are
        // this value's, valid for the call (see `IoVecBuf` below).
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = self.read_iovec_ptr() as *mut libc::iovec;
            msg.msg_iovlen = len as _;
            libc::sendmsg(fd.0, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if sent > 0 {
            self.advance(sent as usize);
        }
    }

    /// Records that the kernel took `n` more bytes.
    fn advance(&mut self, mut n: usize) {
        while n > 0 && self.first < self.iov.len() {
            let v = &mut self.iov[self.first];
            let k = n.min(v.iov_len);
            // Moves within the frame `v` points into (k <= its remaining length).
            v.iov_base = (v.iov_base as *mut u8).wrapping_add(k) as *mut libc::c_void;
            v.iov_len -= k;
            n -= k;
            if v.iov_len == 0 {
                self.first += 1;
            }
        }
    }
}

// SAFETY: the `iovec`s point into `_parts`, whose `Bytes` are owned by `self` and whose
// data does not move when `self` (or the `Bytes` handles) move; the `iov` vector is never
// resized after construction, so the pointer returned stays valid and unchanged while the
// runtime owns `self`, and it addresses `read_iovec_len()` initialised `iovec`s.
unsafe impl IoVecBuf for Frames {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov[self.first.min(self.iov.len())..].as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        (self.iov.len() - self.first).min(IOV_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_advance_across_and_within_parts() {
        let mut f = Frames::new(
            Bytes::from_static(b"head"),
            vec![
                Bytes::from_static(b"ab"),
                Bytes::new(),
                Bytes::from_static(b"cde"),
            ],
        );
        assert_eq!(f.read_iovec_len(), 3, "empty frames are left out");
        f.advance(5);
        assert_eq!((f.first, f.iov[1].iov_len), (1, 1));
        // SAFETY (test): the iovec points into the live frame "ab", one byte in.
        assert_eq!(unsafe { *(f.iov[1].iov_base as *const u8) }, b'b');
        assert!(!f.is_empty());
        f.advance(4);
        assert!(f.is_empty());
        assert_eq!(f.read_iovec_len(), 0);
    }
}
