//! RESP2 frames from Redis, checked before they are decoded: a pure, iterative scan that
//! bounds nesting and sizes, and a skipper that discards frames beyond those bounds as
//! their bytes arrive, so the link stays up.
//!
//! Redis has no TLS here, so anything on the network path can write to our sockets; Redis
//! itself is an input like a client. Three ways the decoder alone fails against that:
//!
//! - **Nesting.** `redis-protocol` decodes recursively: about 10,000 nested `*1\r\n`
//!   (40 KB) overflow a core's stack and abort the whole process. [`scan`] walks a frame
//!   with a fixed array of counters, no recursion, and stops at an array nested deeper than
//!   [`MAX_DEPTH`] before the crate sees a byte; the crate then recurses at most that deep.
//!   What we read is shallow: a `pmessage` or a `psubscribe` confirmation is one array of
//!   bulk strings, `PUBLISH` answers an integer, `AUTH`/`SELECT` a simple string.
//! - **Message size.** A message is buffered whole before the crate can decode it. A
//!   `message` or `pmessage` whose payload is over
//!   [`MAX_PAYLOAD`](crate::broker::message::MAX_PAYLOAD) (or channel over `MAX_CHANNEL`)
//!   would be dropped after decoding anyway, so [`scan`] says so as soon as the element's
//!   length is read.
//! - **Frame size.** Any other frame is bounded by [`MAX_FRAME`]: a declared bulk length or
//!   array count over it is seen from its header; a frame of many elements, each within
//!   bounds, is seen once 8 MiB of it are buffered.
//!
//! All three are **skipped, not fatal**: RESP can be skipped without a depth stack. The
//! skipper keeps one counter of values still to read: an array header of n > 0 adds n,
//! every value read (an array header included) takes one, a bulk string is jumped over by
//! its declared length (its CRLF checked), `$-1`/`*-1` are single values. Where the scan
//! stops (a header at depth d), the count is what that header opens plus, for each open
//! level, the elements left there after the one being read. So a frame nested 100,000 deep
//! costs 4 bytes of buffer at a time and one counter, a 16 MiB message never more than one
//! read, and the next frame on the link is read as usual: one hostile frame drops one
//! message (counted in `redis.dropped`), not the link of every other message's
//! subscribers.
//!
//! Only bytes that are not RESP at all end the link ([`FrameError`]: a bad type byte, a
//! malformed number, a bulk string without its CRLF, a line over [`MAX_LINE`]): after them
//! no frame boundary can be found again, so the caller drops the link and counts it
//! (`redis.protocol_errors`). A consequence of skipping by count: a declared count of
//! billions (`*9000000000`) skips that many values, i.e. everything the link sends until
//! a non-RESP byte or a reconnect; only a peer that can write to the link can send one, and
//! such a peer can as well drop or forge messages.
//!
//! The scan costs one pass over a frame's headers (bulk strings are jumped over by their
//! length, not read): measured by `scan_cost` below (`cargo test --release -p gateway --lib
//! scan_cost -- --ignored --nocapture`), 193 ns for a 210-byte `pmessage` against 819 ns
//! for the codec's own decode of it (with the copy into its buffer), on the shared 2-core
//! machine at a load average of 7: the check adds about a quarter to the decode.
use bytes::{Buf, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;

use crate::broker::message::{MAX_CHANNEL, MAX_PAYLOAD};

/// Appends a command (or, in tests, a frame Redis would send) as a RESP array of bulk
/// strings: the one RESP writer, beside the reader.
pub fn encode_command(args: &[&[u8]], out: &mut BytesMut) {
    push_len(b'*', args.len(), out);
    for a in args {
        push_len(b'$', a.len(), out);
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_len(kind: u8, n: usize, out: &mut BytesMut) {
    out.extend_from_slice(&[kind]);
    crate::util::decimal::put_decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// Deepest nesting of arrays decoded. Our deepest frame is 1 (an array of bulk strings);
/// 8 leaves room for any reply shape Redis gives, and bounds the crate's recursion to 8
/// frames (a few KiB of stack) where 10,000 aborted the process. A deeper frame is skipped.
pub const MAX_DEPTH: usize = 8;

/// Largest frame buffered: replies and confirmations are tens of bytes, and an acceptable
/// message is at most 64 KiB + 1 KiB + its pattern, so a frame over 8 MiB is not one we
/// asked for; it is skipped.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Longest simple-string, error or integer line (without its CRLF). Redis's error
/// messages are under 1 KiB; a line that runs on is not RESP we can use.
pub const MAX_LINE: usize = 64 * 1024;

/// How big each element of a pub/sub message may be; beyond it, the message is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest channel (and pattern) name.
    pub channel: usize,
    /// Largest payload.
    pub payload: usize,
}

impl Limits {
    /// The wire limits every path applies (broker::message).
    pub const WIRE: Limits = Limits {
        channel: MAX_CHANNEL,
        payload: MAX_PAYLOAD,
    };
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A whole frame of this many bytes, within every bound: safe to decode.
    Complete(usize),
    /// Not a whole frame yet; read more.
    Partial,
    /// A frame over a bound, seen from one of its headers: the first `header` bytes (up to
    /// and including that header) are discarded now, then, as they arrive, the `bulk`
    /// content bytes and CRLF of the bulk string that header opened (if it was one), then
    /// `values` further RESP values (the rest of the frame).
    Skip {
        /// Bytes of the frame up to and including the header where the scan stopped.
        header: usize,
        /// The declared length of the bulk string that header opened, if it was one.
        bulk: Option<usize>,
        /// RESP values of the frame still to come after that.
        values: usize,
        /// Which bound was over.
        what: Over,
    },
    /// Not RESP: the link cannot be trusted further.
    Error(FrameError),
}

/// Which bound a skipped frame was over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// A pub/sub message's channel (or pattern) name.
    Channel,
    /// A pub/sub message's payload.
    Payload,
    /// Arrays nested deeper than [`MAX_DEPTH`].
    Depth,
    /// A frame, or a declared length or count, over [`MAX_FRAME`].
    Frame,
}

impl Over {
    /// Why the frame was dropped, for the counters and logs.
    pub fn why(self) -> &'static str {
        match self {
            Over::Channel => "channel name over 1024 bytes",
            Over::Payload => "payload over 64 KiB",
            Over::Depth => "a frame nested deeper than 8 arrays",
            Over::Frame => "a frame over 8 MiB",
        }
    }
}

/// Why bytes from Redis are not RESP: after them no frame boundary can be found, so the
/// link is dropped. Small and `Copy`: nothing is allocated on the error path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A type byte other than `+ - : $ *`.
    BadType(u8),
    /// A length or integer that is not a decimal `i64`, or a negative length other than -1.
    BadNumber,
    /// A bulk string not followed by CRLF.
    BadTerminator,
    /// A line over [`MAX_LINE`] without its CRLF.
    LineTooLong,
    /// The scan and the decoder disagree (a bug, or RESP the crate reads differently).
    Undecodable,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadType(b) => write!(f, "not RESP: type byte 0x{b:02x}"),
            FrameError::BadNumber => f.write_str("not RESP: a length or integer is malformed"),
            FrameError::BadTerminator => f.write_str("not RESP: a bulk string without CRLF"),
            FrameError::LineTooLong => write!(f, "a line over {MAX_LINE} bytes"),
            FrameError::Undecodable => f.write_str("a frame the decoder cannot read"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The line after a type byte at `start`: `(content end, next value's start)`, `None`
/// when there is no whole line yet.
fn line(buf: &[u8], start: usize) -> Result<Option<(usize, usize)>, FrameError> {
    let window = &buf[start.min(buf.len())..buf.len().min(start + MAX_LINE + 2)];
    match memchr_crlf(window) {
        Some(i) => Ok(Some((start + i, start + i + 2))),
        None if window.len() >= MAX_LINE + 2 => Err(FrameError::LineTooLong),
        None => Ok(None),
    }
}

fn memchr_crlf(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].iter().position(|&b| b == b'\r') {
        let at = from + i;
        match s.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

/// A decimal `i64` as RESP writes it (optional `-`, digits, nothing else).
fn number(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as i64)?;
    }
    Some(if neg { -n } else { n })
}

/// A length: `None` for -1 (null), the value when non-negative, an error otherwise.
fn length(s: &[u8]) -> Result<Option<usize>, FrameError> {
    match number(s) {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        _ => Err(FrameError::BadNumber),
    }
}

/// Whether `b` starts a RESP2 value.
fn is_type(b: u8) -> bool {
    matches!(b, b'+' | b'-' | b':' | b'$' | b'*')
}

/// Values after the one being read in every open array (`left` counts that one): what a
/// skip from the current header on still has to discard. Saturating, never panics.
fn rest(left: &[usize]) -> usize {
    left.iter()
        .fold(0usize, |sum, &l| sum.saturating_add(l.saturating_sub(1)))
}

/// What the start of `buf` holds: a complete frame within every bound, a partial one, a
/// frame to skip, or bytes that are not RESP. Pure, iterative (a fixed array of counters
/// instead of recursion), and it looks at each element's header only: a bulk string is
/// jumped over by its declared length.
pub fn scan(buf: &[u8], limits: Limits) -> Scan {
    // Elements still to come in each open array, outermost first, the one being read
    // included.
    let mut left = [0usize; MAX_DEPTH];
    let mut depth = 0;
    // Whether the top-level array is a pub/sub message (`message` of 3 elements or
    // `pmessage` of 4), and its length.
    let mut top_len = 0usize;
    let mut message = false;
    let mut pos = 0;
    // Not a whole frame yet: read more, unless over 8 MiB of it are buffered already; then
    // skip it from the value at `pos` (not read yet, so counted) on.
    let partial = |pos: usize, left: &[usize]| {
        if buf.len() > MAX_FRAME {
            Scan::Skip {
                header: pos,
                bulk: None,
                values: rest(left).saturating_add(1),
                what: Over::Frame,
            }
        } else {
            Scan::Partial
        }
    };
    loop {
        let Some(&kind) = buf.get(pos) else {
            return partial(pos, &left[..depth]);
        };
        let (end, next) = match line(buf, pos + 1) {
            Ok(Some(l)) => l,
            Ok(None) if is_type(kind) => return partial(pos, &left[..depth]),
            Ok(None) => return Scan::Error(FrameError::BadType(kind)),
            Err(e) => return Scan::Error(e),
        };
        let text = &buf[pos + 1..end];
        match kind {
            b'+' | b'-' => pos = next,
            b':' => {
                if number(text).is_none() {
                    return Scan::Error(FrameError::BadNumber);
                }
                pos = next;
            }
            b'$' => match length(text) {
                Err(e) => return Scan::Error(e),
                Ok(None) => pos = next,
                Ok(Some(n)) => {
                    let mut over = None;
                    if message && depth == 1 {
                        let last = left[0] == 1;
                        let (limit, what) = if last {
                            (limits.payload, Over::Payload)
                        } else {
                            (limits.channel, Over::Channel)
                        };
                        if n > limit {
                            over = Some(what);
                        }
                    }
                    if over.is_none() && n > MAX_FRAME {
                        over = Some(Over::Frame);
                    }
                    if let Some(what) = over {
                        return Scan::Skip {
                            header: next,
                            bulk: Some(n),
                            values: rest(&left[..depth]),
                            what,
                        };
                    }
                    let end = next + n;
                    match buf.get(end..end + 2) {
                        None => return partial(pos, &left[..depth]),
                        Some(b"\r\n") => {}
                        Some(_) => return Scan::Error(FrameError::BadTerminator),
                    }
                    if depth == 1 && left[0] == top_len {
                        let word = &buf[next..end];
                        message = (top_len == 4 && word.eq_ignore_ascii_case(b"pmessage"))
                            || (top_len == 3 && word.eq_ignore_ascii_case(b"message"));
                    }
                    pos = end + 2;
                }
            },
            b'*' => match length(text) {
                Err(e) => return Scan::Error(e),
                Ok(Some(n)) if n > 0 => {
                    // Too deep, or more elements than 8 MiB can hold (each takes at
                    // least 3 bytes, `+\r\n`): skip this array's elements and the rest.
                    let what = if depth == MAX_DEPTH {
                        Some(Over::Depth)
                    } else if n > MAX_FRAME / 3 {
                        Some(Over::Frame)
                    } else {
                        None
                    };
                    if let Some(what) = what {
                        return Scan::Skip {
                            header: next,
                            bulk: None,
                            values: n.saturating_add(rest(&left[..depth])),
                            what,
                        };
                    }
                    if depth == 0 {
                        top_len = n;
                    }
                    left[depth] = n;
                    depth += 1;
                    pos = next;
                    // An array is complete only with its last element.
                    continue;
                }
                _ => pos = next,
            },
            other => return Scan::Error(FrameError::BadType(other)),
        }
        // One value is complete: close every array it completes.
        loop {
            if depth == 0 {
                return if pos > MAX_FRAME {
                    // Whole, and every element within bounds, but too big together.
                    Scan::Skip {
                        header: pos,
                        bulk: None,
                        values: 0,
                        what: Over::Frame,
                    }
                } else {
                    Scan::Complete(pos)
                };
            }
            left[depth - 1] -= 1;
            if left[depth - 1] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

/// The rest of a frame being skipped, discarded as it arrives: O(1) state whatever its
/// depth or size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Skip {
    /// Content bytes of the current bulk string still to discard.
    bytes: usize,
    /// Whether that bulk string's CRLF is still to check and discard.
    crlf: bool,
    /// RESP values after it still to read (saturating at `usize::MAX`).
    values: usize,
    /// Which bound the frame was over.
    what: Over,
}

/// What [`Reader::next`] found.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// A frame, decoded (bounded in depth and size).
    Frame(BytesFrame),
    /// A frame over a bound, discarded whole without being buffered.
    Skipped(Over),
    /// More bytes are needed (everything of a frame being skipped is already discarded,
    /// but for at most one incomplete header line).
    Partial,
}

/// A link's frame reader: [`scan`], then `redis-protocol` decodes what the scan passed;
/// remembers a frame being skipped across reads. Pure: bytes in, frames out, no I/O, so a
/// fuzz target can drive it.
#[derive(Debug, Default)]
pub struct Reader {
    /// The frame being skipped, if any.
    skip: Option<Skip>,
}

impl Reader {
    /// A reader at a frame boundary.
    pub fn new() -> Reader {
        Reader::default()
    }

    /// The next frame at the start of `buf` (consumed from it), with the wire limits.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Next, FrameError> {
        self.next_with(buf, Limits::WIRE)
    }

    /// [`Reader::next`] with other limits (tests use small ones).
    pub fn next_with(&mut self, buf: &mut BytesMut, limits: Limits) -> Result<Next, FrameError> {
        loop {
            if let Some(skip) = &mut self.skip {
                if !discard(skip, buf)? {
                    return Ok(Next::Partial);
                }
                let what = skip.what;
                self.skip = None;
                return Ok(Next::Skipped(what));
            }
            match scan(buf, limits) {
                Scan::Complete(len) => {
                    return match decode_bytes_mut(buf) {
                        Ok(Some((frame, n, _))) if n == len => Ok(Next::Frame(frame)),
                        _ => Err(FrameError::Undecodable),
                    }
                }
                Scan::Partial => return Ok(Next::Partial),
                Scan::Error(e) => return Err(e),
                Scan::Skip {
                    header,
                    bulk,
                    values,
                    what,
                } => {
                    buf.advance(header);
                    self.skip = Some(Skip {
                        bytes: bulk.unwrap_or(0),
                        crlf: bulk.is_some(),
                        values,
                        what,
                    });
                }
            }
        }
    }
}

/// Discards what `buf` holds of a frame being skipped; `true` once all of it is gone.
/// Keeps at most one incomplete header line (up to [`MAX_LINE`]) in `buf`.
fn discard(skip: &mut Skip, buf: &mut BytesMut) -> Result<bool, FrameError> {
    loop {
        let n = skip.bytes.min(buf.len());
        buf.advance(n);
        skip.bytes -= n;
        if skip.bytes > 0 {
            return Ok(false);
        }
        if skip.crlf {
            match buf.get(..2) {
                Some(b"\r\n") => {
                    buf.advance(2);
                    skip.crlf = false;
                }
                None if buf.first().is_none_or(|&b| b == b'\r') => return Ok(false),
                _ => return Err(FrameError::BadTerminator),
            }
        }
        if skip.values == 0 {
            return Ok(true);
        }
        let Some(&kind) = buf.first() else {
            return Ok(false);
        };
        if !is_type(kind) {
            return Err(FrameError::BadType(kind));
        }
        let Some((end, next)) = line(buf, 1)? else {
            return Ok(false);
        };
        let text = &buf[1..end];
        // This value is read: one fewer to go, plus what it opens.
        let mut values = skip.values - 1;
        match kind {
            b':' => {
                number(text).ok_or(FrameError::BadNumber)?;
            }
            b'$' => {
                if let Some(n) = length(text)? {
                    skip.bytes = n;
                    skip.crlf = true;
                }
            }
            b'*' => values = values.saturating_add(length(text)?.unwrap_or(0)),
            _ => {}
        }
        skip.values = values;
        buf.advance(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        channel: 8,
        payload: 16,
    };

    /// A RESP array of bulk strings.
    fn array(args: &[&[u8]]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_command(args, &mut out);
        out.to_vec()
    }

    fn pmessage(channel: &[u8], payload: &[u8]) -> Vec<u8> {
        array(&[b"pmessage", b"SSE:*", channel, payload])
    }

    fn skip(header: usize, bulk: Option<usize>, values: usize, what: Over) -> Scan {
        Scan::Skip {
            header,
            bulk,
            values,
            what,
        }
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut v = b"*1\r\n".repeat(depth);
        v.extend_from_slice(b":1\r\n");
        v
    }

    #[test]
    fn scan_table() {
        let deep_ok = nested(MAX_DEPTH);
        let deep = nested(MAX_DEPTH + 1);
        let deeper = nested(100_000);
        let huge_bulk = format!("${}\r\n", MAX_FRAME + 1);
        let huge_array = format!("*{}\r\n", MAX_FRAME);
        let long_line = [b"+".as_slice(), &vec![b'a'; MAX_LINE + 2]].concat();
        let wide = b"*2\r\n".repeat(MAX_DEPTH + 1);
        let cases: &[(&[u8], Scan)] = &[
            (b"+OK\r\n", Scan::Complete(5)),
            (b"-ERR no\r\n", Scan::Complete(9)),
            (b":42\r\n", Scan::Complete(5)),
            (b":-42\r\n", Scan::Complete(6)),
            (b"$-1\r\n", Scan::Complete(5)),
            (b"*-1\r\n", Scan::Complete(5)),
            (b"*0\r\n", Scan::Complete(4)),
            (b"$0\r\n\r\n", Scan::Complete(6)),
            (b"*2\r\n*1\r\n:1\r\n$1\r\nx\r\n+OK\r\n", Scan::Complete(19)),
            (b"", Scan::Partial),
            (b"+OK\r", Scan::Partial),
            (b"$5\r\nabc", Scan::Partial),
            (b"*2\r\n:1\r\n", Scan::Partial),
            (&deep_ok, Scan::Complete(deep_ok.len())),
            // The 9th `*1` is consumed; its one element is left to skip.
            (&deep, skip(36, None, 1, Over::Depth)),
            (&deeper, skip(36, None, 1, Over::Depth)),
            // Two elements at each of 8 open levels: one left after the one being read
            // at each, plus the 9th array's two.
            (&wide, skip(36, None, 10, Over::Depth)),
            (
                b"*3\r\n*2\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*5\r\n",
                skip(36, None, 8, Over::Depth),
            ),
            (b"$-2\r\n", Scan::Error(FrameError::BadNumber)),
            (b"*-5\r\n", Scan::Error(FrameError::BadNumber)),
            (b":1x\r\n", Scan::Error(FrameError::BadNumber)),
            (b"$\r\n", Scan::Error(FrameError::BadNumber)),
            (
                b"$99999999999999999999\r\n",
                Scan::Error(FrameError::BadNumber),
            ),
            (
                b":-9223372036854775809\r\n",
                Scan::Error(FrameError::BadNumber),
            ),
            (
                huge_bulk.as_bytes(),
                skip(10, Some(MAX_FRAME + 1), 0, Over::Frame),
            ),
            (
                huge_array.as_bytes(),
                skip(10, None, MAX_FRAME, Over::Frame),
            ),
            (
                b"*3\r\n*2\r\n$9000000000\r\n",
                skip(21, Some(9_000_000_000), 3, Over::Frame),
            ),
            (
                b"*2\r\n:1\r\n*9000000000\r\n",
                skip(21, None, 9_000_000_000, Over::Frame),
            ),
            (
                b"*9223372036854775807\r\n",
                skip(22, None, i64::MAX as usize, Over::Frame),
            ),
            (b"$3\r\nabcX\r\n", Scan::Error(FrameError::BadTerminator)),
            (b"?what\r\n", Scan::Error(FrameError::BadType(b'?'))),
            (b"?", Scan::Error(FrameError::BadType(b'?'))),
            (b"*2\r\n:1\r\n!", Scan::Error(FrameError::BadType(b'!'))),
            (&long_line, Scan::Error(FrameError::LineTooLong)),
        ];
        for (wire, want) in cases {
            let got = scan(wire, SMALL);
            assert_eq!(
                got,
                *want,
                "{:?}",
                String::from_utf8_lossy(&wire[..wire.len().min(40)])
            );
        }
    }

    #[test]
    fn oversized_message_elements_are_seen_from_their_length() {
        let wire = pmessage(b"SSE:1", &[b'p'; 17]);
        // `*4`, `$8 pmessage`, `$5 SSE:*`, `$5 SSE:1`, then `$17\r\n`.
        let header = 4 + 14 + 11 + 11 + 5;
        let want = skip(header, Some(17), 0, Over::Payload);
        // Known as soon as the payload's length line is in, not when the payload is.
        for cut in header..=wire.len() {
            assert_eq!(scan(&wire[..cut], SMALL), want, "cut at {cut}");
        }
        for cut in 0..header {
            assert_eq!(scan(&wire[..cut], SMALL), Scan::Partial, "cut at {cut}");
        }
        let wire = pmessage(b"SSE:toolong", b"x");
        assert!(matches!(
            scan(&wire, SMALL),
            Scan::Skip {
                bulk: Some(11),
                values: 1,
                what: Over::Channel,
                ..
            }
        ));
        // Not a message: the same sizes are only bounded by MAX_FRAME.
        let reply = array(&[b"psubscribe", &[b'p'; 17], b"x"]);
        assert_eq!(scan(&reply, SMALL), Scan::Complete(reply.len()));
    }

    /// Feeds `wire` to a reader in pieces cut at `cuts`, collecting what it reads; checks
    /// that a skipped message is never held in the buffer beyond one piece.
    fn read_all(wire: &[u8], cuts: &[usize]) -> Result<Vec<Next>, FrameError> {
        let mut reader = Reader::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain(std::iter::once(&wire.len())) {
            buf.extend_from_slice(&wire[from..to]);
            from = to;
            loop {
                match reader.next_with(&mut buf, SMALL)? {
                    Next::Partial => break,
                    n => got.push(n),
                }
            }
            if reader.skip.is_some() {
                // At most one incomplete header line (or a bulk string's CR) is held.
                let whole_line = buf.windows(2).any(|w| w == b"\r\n");
                assert!(!whole_line, "skipping holds {buf:?}");
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(got)
    }

    fn payload_of(n: &Next) -> Option<Vec<u8>> {
        match n {
            Next::Frame(BytesFrame::Array(a)) => match a.last() {
                Some(BytesFrame::BulkString(p)) => Some(p.to_vec()),
                _ => None,
            },
            _ => None,
        }
    }

    #[test]
    fn reader_skips_oversized_messages_at_every_split_and_keeps_the_next() {
        let mut wire = pmessage(b"SSE:1", b"before");
        wire.extend(pmessage(b"SSE:1", &[b'p'; 100]));
        wire.extend(pmessage(b"SSE:toolong", &[b'q'; 100]));
        wire.extend(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$17\r\n01234567890123456\r\n");
        wire.extend(pmessage(b"SSE:1", b"after"));
        for cut in 0..wire.len() {
            let got = read_all(&wire, &[cut]).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            assert_eq!(got.len(), 5, "cut {cut}: {got:?}");
            assert_eq!(payload_of(&got[0]).as_deref(), Some(&b"before"[..]));
            assert_eq!(got[1], Next::Skipped(Over::Payload));
            assert_eq!(got[2], Next::Skipped(Over::Channel));
            assert_eq!(got[3], Next::Skipped(Over::Payload));
            assert_eq!(payload_of(&got[4]).as_deref(), Some(&b"after"[..]));
        }
        // Byte by byte.
        let cuts: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(read_all(&wire, &cuts).expect("bytewise").len(), 5);
    }

    /// A frame to skip for each bound, whole RESP of every kind inside, each followed by a
    /// message that must still be read.
    fn skippable_frames() -> Vec<(Vec<u8>, Over)> {
        // Nested 9 deep, two elements a level, the elements left holding every RESP kind
        // (nulls, empty and nested arrays, a bulk string with CRLF inside).
        let mut wide = b"*2\r\n".repeat(MAX_DEPTH + 1);
        wide.extend_from_slice(b":1\r\n$-1\r\n*-1\r\n*0\r\n+OK\r\n-ERR x\r\n");
        wide.extend_from_slice(b"$4\r\na\r\nb\r\n*2\r\n$0\r\n\r\n*1\r\n:-3\r\n$1\r\nz\r\n:2\r\n");
        vec![(nested(MAX_DEPTH + 1), Over::Depth), (wide, Over::Depth)]
    }

    #[test]
    fn reader_skips_deep_frames_at_every_split_and_keeps_the_next() {
        let mut wire = pmessage(b"SSE:1", b"before");
        let frames = skippable_frames();
        for (frame, _) in &frames {
            wire.extend_from_slice(frame);
            wire.extend(pmessage(b"SSE:1", b"between"));
        }
        let check = |got: &[Next], how: &str| {
            assert_eq!(got.len(), 1 + 2 * frames.len(), "{how}: {got:?}");
            assert_eq!(
                payload_of(&got[0]).as_deref(),
                Some(&b"before"[..]),
                "{how}"
            );
            for (i, (_, what)) in frames.iter().enumerate() {
                assert_eq!(got[1 + 2 * i], Next::Skipped(*what), "{how}");
                let next = payload_of(&got[2 + 2 * i]);
                assert_eq!(next.as_deref(), Some(&b"between"[..]), "{how}");
            }
        };
        for cut in 0..wire.len() {
            let got = read_all(&wire, &[cut]).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            check(&got, &format!("cut {cut}"));
        }
        let cuts: Vec<usize> = (1..wire.len()).collect();
        check(&read_all(&wire, &cuts).expect("bytewise"), "bytewise");
    }

    #[test]
    fn a_frame_100_000_deep_is_skipped_byte_by_byte_then_the_message_is_read() {
        let mut wire = nested(100_000);
        wire.extend(pmessage(b"SSE:1", b"after"));
        let cuts: Vec<usize> = (1..wire.len()).collect();
        let got = read_all(&wire, &cuts).expect("bytewise");
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], Next::Skipped(Over::Depth));
        assert_eq!(payload_of(&got[1]).as_deref(), Some(&b"after"[..]));
        // In one piece, and cut anywhere in the first and last 100 bytes.
        let ends = (0..100).chain(wire.len() - 100..wire.len());
        for cut in std::iter::once(wire.len()).chain(ends) {
            let got = read_all(&wire, &[cut]).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            assert_eq!(got[0], Next::Skipped(Over::Depth), "cut {cut}");
            assert_eq!(payload_of(&got[1]).as_deref(), Some(&b"after"[..]));
        }
    }

    /// Feeds `wire` in reads of 64 KiB (as a link does) and returns what was read, checking
    /// that a frame being skipped never holds more than one read in the buffer.
    fn read_in_chunks(wire: &[u8]) -> Result<Vec<Next>, FrameError> {
        let mut reader = Reader::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(64 * 1024) {
            buf.extend_from_slice(chunk);
            loop {
                match reader.next(&mut buf)? {
                    Next::Partial => break,
                    n => got.push(n),
                }
            }
            if reader.skip.is_some() {
                assert!(buf.len() <= 64 * 1024, "skipping holds {} bytes", buf.len());
            }
        }
        assert!(buf.is_empty(), "left over: {} bytes", buf.len());
        Ok(got)
    }

    #[test]
    fn frames_over_8_mib_are_skipped_and_the_next_message_is_read() {
        let after = pmessage(b"SSE:1", b"after");
        // A declared bulk length over 8 MiB, inside an array.
        let mut big_bulk = format!("*2\r\n${}\r\n", MAX_FRAME + 1).into_bytes();
        big_bulk.extend(std::iter::repeat_n(b'b', MAX_FRAME + 1));
        big_bulk.extend_from_slice(b"\r\n:5\r\n");
        // A declared count over what 8 MiB can hold.
        let n = MAX_FRAME / 3 + 1;
        let mut big_array = format!("*{n}\r\n").into_bytes();
        big_array.extend(b"+\r\n".repeat(n));
        // Three bulk strings of 3 MiB, each within bounds, 9 MiB together: skipped once
        // 8 MiB of it are buffered.
        let third = vec![b'c'; 3 * 1024 * 1024];
        let big_sum = array(&[&third, &third, &third]);
        for (name, frame) in [("bulk", big_bulk), ("array", big_array), ("sum", big_sum)] {
            let wire = [frame.as_slice(), &after].concat();
            let got = read_in_chunks(&wire).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.len(), 2, "{name}: {got:?}");
            assert_eq!(got[0], Next::Skipped(Over::Frame), "{name}");
            assert_eq!(
                payload_of(&got[1]).as_deref(),
                Some(&b"after"[..]),
                "{name}"
            );
            // Cut near the header and the end too.
            let len = frame.len();
            for cut in (0..40).chain(len - 40..len + 5) {
                let got = read_all(&wire, &[cut]).unwrap_or_else(|e| panic!("{name} {cut}: {e}"));
                assert_eq!(got[0], Next::Skipped(Over::Frame), "{name} cut {cut}");
                assert_eq!(got.len(), 2, "{name} cut {cut}");
            }
        }
    }

    #[test]
    fn skip_counts_saturate_without_panicking() {
        let max = b"*9223372036854775807\r\n";
        let mut wire = b"*1\r\n".repeat(MAX_DEPTH);
        // Deep: i64::MAX values to skip; then two more such arrays inside the skip.
        wire.extend_from_slice(max);
        wire.extend_from_slice(max);
        wire.extend_from_slice(max);
        wire.extend_from_slice(b"$9223372036854775807\r\nxyz");
        let mut reader = Reader::new();
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(reader.next(&mut buf), Ok(Next::Partial));
        assert!(buf.is_empty());
        let skip = reader.skip.expect("skipping");
        assert_eq!(skip.values, usize::MAX - 1);
        assert_eq!(skip.bytes, i64::MAX as usize - 3);
        assert_eq!(skip.what, Over::Depth);
        // Nothing can end it but a reconnect; it never panics nor holds bytes.
        buf.extend_from_slice(&pmessage(b"SSE:1", b"x"));
        assert_eq!(reader.next(&mut buf), Ok(Next::Partial));
        assert!(buf.is_empty());
        // The scan's sums cannot overflow: a count over MAX_FRAME / 3 is skipped at once,
        // so 8 open levels add up to at most 8 such counts plus the one skipped.
        let mut wide = format!("*{}\r\n", MAX_FRAME / 3)
            .repeat(MAX_DEPTH)
            .into_bytes();
        wide.extend_from_slice(max);
        let want = (MAX_FRAME / 3 - 1) * MAX_DEPTH + i64::MAX as usize;
        assert!(matches!(
            scan(&wide, SMALL),
            Scan::Skip { values, what: Over::Depth, .. } if values == want
        ));
    }

    #[test]
    fn reader_refuses_bytes_that_are_not_resp_without_recursing() {
        // A skipped message whose next element is not RESP.
        let mut not_resp = b"*4\r\n$8\r\npmessage\r\n$1\r\np\r\n$99\r\n".to_vec();
        not_resp.extend_from_slice(&[b'c'; 99]);
        not_resp.extend_from_slice(b"\r\n!1\r\n");
        let deep = nested(MAX_DEPTH + 1);
        let head = &deep[..36];
        let in_deep = |tail: &[u8]| [head, tail].concat();
        let long_line = in_deep(&[b"+".as_slice(), &vec![b'a'; MAX_LINE + 2]].concat());
        let cases: &[(&[u8], FrameError)] = &[
            (b"*1\r\n$-7\r\n", FrameError::BadNumber),
            (b"!1\r\n", FrameError::BadType(b'!')),
            (&not_resp, FrameError::BadType(b'!')),
            (&in_deep(b"?"), FrameError::BadType(b'?')),
            (&in_deep(b"$x\r\n"), FrameError::BadNumber),
            (&in_deep(b"*-2\r\n"), FrameError::BadNumber),
            (&in_deep(b":1.5\r\n"), FrameError::BadNumber),
            (&in_deep(b"$3\r\nabcX\r\n"), FrameError::BadTerminator),
            (&in_deep(b"$3\r\nabc\rX"), FrameError::BadTerminator),
            (&long_line, FrameError::LineTooLong),
        ];
        for (wire, want) in cases {
            // Every split within the first 200 bytes (past where each is refused).
            for cut in 0..wire.len().min(200) {
                assert_eq!(read_all(wire, &[cut]), Err(*want), "cut {cut}");
            }
        }
    }

    /// What the scan adds to the codec's decode of a typical message (prints, asserts
    /// nothing about time).
    #[test]
    #[ignore]
    fn scan_cost() {
        let wire = pmessage(b"SSE::1001::12345", &[b'x'; 150]);
        let n = 1_000_000u32;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(scan(std::hint::black_box(&wire), Limits::WIRE));
        }
        let scan_ns = t.elapsed().as_nanos() as f64 / n as f64;
        let mut buf = BytesMut::new();
        let t = std::time::Instant::now();
        for _ in 0..n {
            buf.extend_from_slice(&wire);
            std::hint::black_box(decode_bytes_mut(&mut buf).ok());
        }
        let decode_ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "{} bytes: scan {scan_ns:.0} ns, decode {decode_ns:.0} ns",
            wire.len()
        );
    }
}
