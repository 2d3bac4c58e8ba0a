//! One connection to a Redis node, below every link of the broker (subscriber, publisher, a
//! fetch of the cluster's slot map): connect to one node of `EVENTS_REDIS_STORAGE` or to a
//! given one, authenticate, select the database, read frames through the bounded
//! [`Reader`]; and the error every link ends with.
use std::cell::Cell;
use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use redis_protocol::resp2::types::BytesFrame;

use crate::broker::resp::{encode_command, FrameError, Next, Reader};
use crate::broker::target::{RedisTarget, Seed};

/// How long a connect (and its `AUTH`/`SELECT`/`PSUBSCRIBE` handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Silence after which a subscriber link counts as dead (no RST needed to notice).
pub const DEAD_AFTER: Duration = Duration::from_secs(4);

/// Why a Redis link failed: the boundary error of the broker's Redis links, logged where the
/// link ends.
#[derive(Debug)]
pub enum RedisError {
    /// TCP connect, read or write failed.
    Io(std::io::Error),
    /// Connect or handshake took longer than [`CONNECT_TIMEOUT`].
    Timeout(&'static str),
    /// Redis answered a command with an error (bad password, unknown db...).
    Refused(String),
    /// Redis closed the connection.
    Closed,
    /// Nothing heard for [`DEAD_AFTER`].
    Silent,
    /// A reply of the wrong shape.
    Protocol(String),
    /// Bytes that are not RESP at all (frames too deep or too large are skipped, not this).
    Frame(FrameError),
    /// Sharded mode: the node no longer serves a slot of this link's channels (a `MOVED`
    /// answer, or Redis unsubscribed a channel on its own): the slot map is asked again.
    Moved(String),
}

impl RedisError {
    /// Whether the peer sent bytes we refuse (not a network fault): such a link is not
    /// trusted again soon, and it is counted apart (`redis.protocol_errors`).
    pub fn is_hostile(&self) -> bool {
        matches!(self, RedisError::Protocol(_) | RedisError::Frame(_))
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Io(e) => write!(f, "{e}"),
            RedisError::Timeout(what) => write!(f, "{what} timed out"),
            RedisError::Refused(m) => write!(f, "Redis refused: {m}"),
            RedisError::Closed => f.write_str("Redis closed the connection"),
            RedisError::Silent => write!(f, "no answer from Redis for {DEAD_AFTER:?}"),
            RedisError::Protocol(m) => write!(f, "unexpected bytes from Redis: {m}"),
            RedisError::Frame(e) => write!(f, "refused bytes from Redis: {e}"),
            RedisError::Moved(m) => write!(f, "the node no longer serves these channels: {m}"),
        }
    }
}

impl std::error::Error for RedisError {}

/// The next complete frame in `buf`, if any (consumed from it), outside subscribed mode:
/// a pub/sub message here is an answer we did not ask for.
pub(crate) fn next_frame(
    reader: &mut Reader,
    buf: &mut BytesMut,
) -> Result<Option<BytesFrame>, RedisError> {
    match reader.next(buf).map_err(RedisError::Frame)? {
        Next::Frame(f) => Ok(Some(f)),
        Next::Partial => Ok(None),
        // The answer to our command was skipped (or it was a message we did not ask for).
        Next::Skipped(over) => Err(RedisError::Protocol(format!(
            "a skipped frame: {}",
            over.why()
        ))),
    }
}

/// Reads more bytes into `buf` (appending).
pub(crate) async fn read_more<R: AsyncReadRent>(
    rd: &mut R,
    buf: BytesMut,
) -> Result<BytesMut, RedisError> {
    let mut buf = buf;
    if buf.capacity() - buf.len() < 16 * 1024 {
        buf.reserve(64 * 1024);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let (r, slice) = rd.read(buf.slice_mut(len..cap)).await;
    let buf = slice.into_inner();
    match r {
        Ok(0) => Err(RedisError::Closed),
        Ok(_) => Ok(buf),
        Err(e) => Err(RedisError::Io(e)),
    }
}

/// Reads until one complete frame is there.
pub(crate) async fn read_frame<R: AsyncReadRent>(
    rd: &mut R,
    reader: &mut Reader,
    buf: &mut BytesMut,
) -> Result<BytesFrame, RedisError> {
    loop {
        if let Some(f) = next_frame(reader, buf)? {
            return Ok(f);
        }
        *buf = read_more(rd, std::mem::take(buf)).await?;
    }
}

/// Connects to the first of `target`'s nodes that takes the connection, trying each once
/// from `next` on: a node that fails moves `next` past it, so the link's next connect starts
/// after the node that failed last (and a link that worked tries its node first again).
/// With several nodes, an I/O error names the last one tried.
pub(crate) async fn connect_any(
    target: &RedisTarget,
    next: &Cell<usize>,
) -> Result<(TcpStream, BytesMut), RedisError> {
    let n = target.seeds.len().max(1);
    let mut last = RedisError::Protocol("no Redis node to connect to".into());
    for _ in 0..n {
        let i = next.get() % n;
        let Some(seed) = target.seeds.get(i) else {
            break;
        };
        match connect_to(target, seed).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                next.set((i + 1) % n);
                last = match e {
                    RedisError::Io(e) if n > 1 => {
                        RedisError::Io(std::io::Error::new(e.kind(), format!("{seed}: {e}")))
                    }
                    e => e,
                };
            }
        }
    }
    Err(last)
}

/// Connects to `seed`, authenticates and selects the database of `target`.
pub(crate) async fn connect_to(
    target: &RedisTarget,
    seed: &Seed,
) -> Result<(TcpStream, BytesMut), RedisError> {
    let handshake = async {
        let mut stream = TcpStream::connect((seed.host.as_str(), seed.port))
            .await
            .map_err(RedisError::Io)?;
        let _ = stream.set_nodelay(true);
        let mut cmds = BytesMut::new();
        let mut expect = 0;
        if let Some(pass) = &target.password {
            let pass = pass.expose().as_bytes();
            match &target.username {
                Some(user) => encode_command(&[b"AUTH", user.as_bytes(), pass], &mut cmds),
                None => encode_command(&[b"AUTH", pass], &mut cmds),
            }
            expect += 1;
        }
        if target.db != 0 {
            encode_command(&[b"SELECT", target.db.to_string().as_bytes()], &mut cmds);
            expect += 1;
        }
        let mut buf = BytesMut::with_capacity(4096);
        if expect > 0 {
            let (r, _) = stream.write_all(cmds.freeze()).await;
            r.map_err(RedisError::Io)?;
            let mut reader = Reader::new();
            for _ in 0..expect {
                match read_frame(&mut stream, &mut reader, &mut buf).await? {
                    BytesFrame::Error(e) => return Err(RedisError::Refused(e.to_string())),
                    _ => continue,
                }
            }
        }
        Ok((stream, buf))
    };
    match monoio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(r) => r,
        Err(_) => Err(RedisError::Timeout("connecting to Redis")),
    }
}
