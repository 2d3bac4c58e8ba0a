//! RESP2 frames from Redis, checked before they are decoded: a pure, iterative scan that
//! bounds nesting and sizes, and skips oversized pub/sub messages as they stream in.
//!
//! Redis has no TLS here, so anything on the network path can write to our sockets; Redis
//! itself is an input like a client. Two ways the decoder alone fails against that:
//!
//! - **Nesting.** `redis-protocol` decodes recursively: about 10,000 nested `*1\r\n`
//!   (40 KB) overflow a core's stack and abort the whole process. [`scan`] walks a frame
//!   with a fixed array of counters, no recursion, and refuses nesting deeper than
//!   [`MAX_DEPTH`] before the crate sees a byte; the crate then recurses at most that deep.
//!   What we read is shallow: a `pmessage` or a `psubscribe` confirmation is one array of
//!   bulk strings, `PUBLISH` answers an integer, `AUTH`/`SELECT` a simple string.
//! - **Size.** A message is buffered whole before the crate can decode it. A `message` or
//!   `pmessage` whose payload is over [`MAX_PAYLOAD`](crate::broker::message::MAX_PAYLOAD)
//!   (or channel over `MAX_CHANNEL`) would be dropped after decoding anyway, so [`scan`]
//!   says so as soon as the element's length is read ([`Scan::Oversized`]) and [`Reader`]
//!   discards its bytes as they arrive: never more than one read of it is held, and the link
//!   stays up. Any other frame is bounded by [`MAX_FRAME`]; beyond it the link is dropped.
//!
//! The scan costs one pass over a frame's headers (bulk strings are jumped over by their
//! length, not read): measured by `scan_cost` below (`cargo test --release -p gateway --lib
//! scan_cost -- --ignored --nocapture`), 264 ns for a 210-byte `pmessage` against 1,497 ns
//! for the codec's own decode of it (with the copy into its buffer), on the shared 2-core
//! machine at a load average of 10: the check adds about a sixth to the decode.
use bytes::{Buf, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;

use crate::broker::message::{MAX_CHANNEL, MAX_PAYLOAD};

/// Deepest nesting of arrays accepted. Our deepest frame is 1 (an array of bulk strings);
/// 8 leaves room for any reply shape Redis gives, and bounds the crate's recursion to 8
/// frames (a few KiB of stack) where 10,000 aborted the process.
pub const MAX_DEPTH: usize = 8;

/// Largest frame buffered (other than a skipped message): replies and confirmations are
/// tens of bytes, and an acceptable message is at most 64 KiB + 1 KiB + its pattern, so a
/// frame over 8 MiB is not one we asked for; the link is dropped.
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
    /// A `message`/`pmessage` with an element over its limit, seen from its length alone:
    /// the first `header` bytes (up to and including that element's `$<n>\r\n`) and then
    /// `skip` more bytes (its content and CRLF) and `more` further bulk strings (the
    /// message's remaining elements) are to be discarded as they arrive.
    Oversized {
        /// Bytes of the frame up to and including the oversized element's length line.
        header: usize,
        /// The oversized element's content and CRLF.
        skip: usize,
        /// Bulk strings of the message still to come after it.
        more: usize,
        /// Which element was over.
        what: Over,
    },
    /// Not RESP, or beyond a bound: the link cannot be trusted further.
    Error(FrameError),
}

/// Which element of a pub/sub message was over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// The channel (or pattern) name.
    Channel,
    /// The payload.
    Payload,
}

impl Over {
    /// Why the message was dropped, for the counters and logs.
    pub fn why(self) -> &'static str {
        match self {
            Over::Channel => "channel name over 1024 bytes",
            Over::Payload => "payload over 64 KiB",
        }
    }
}

/// Why bytes from Redis are not a frame we take. Small and `Copy`: nothing is allocated on
/// the error path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A type byte other than `+ - : $ *`.
    BadType(u8),
    /// A length or integer that is not a decimal `i64`, or a negative length other than -1.
    BadNumber,
    /// A bulk string not followed by CRLF.
    BadTerminator,
    /// Arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A frame, or a declared length, over [`MAX_FRAME`] (other than a skippable message).
    TooLarge,
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
            FrameError::TooDeep => write!(f, "a frame nested deeper than {MAX_DEPTH} arrays"),
            FrameError::TooLarge => write!(f, "a frame over {MAX_FRAME} bytes"),
            FrameError::LineTooLong => write!(f, "a line over {MAX_LINE} bytes"),
            FrameError::Undecodable => f.write_str("a frame the decoder cannot read"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The line after a type byte at `start`: `(content end, next value's start)`, or the scan's
/// answer when there is no whole line yet.
fn line(buf: &[u8], start: usize) -> Result<(usize, usize), Scan> {
    let window = &buf[start.min(buf.len())..buf.len().min(start + MAX_LINE + 2)];
    match memchr_crlf(window) {
        Some(i) => Ok((start + i, start + i + 2)),
        None if window.len() >= MAX_LINE + 2 => Err(Scan::Error(FrameError::LineTooLong)),
        None => Err(Scan::Partial),
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
fn length(s: &[u8]) -> Result<Option<usize>, Scan> {
    match number(s) {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        _ => Err(Scan::Error(FrameError::BadNumber)),
    }
}

/// What the start of `buf` holds: a complete frame within every bound, a partial one, a
/// pub/sub message to skip, or an error. Pure, iterative (a fixed array of counters instead
/// of recursion), and it looks at each element's header only: a bulk string is jumped over
/// by its declared length.
pub fn scan(buf: &[u8], limits: Limits) -> Scan {
    match scan_inner(buf, limits) {
        Ok(len) if len > MAX_FRAME => Scan::Error(FrameError::TooLarge),
        Ok(len) => Scan::Complete(len),
        Err(Scan::Partial) if buf.len() > MAX_FRAME => Scan::Error(FrameError::TooLarge),
        Err(s) => s,
    }
}

fn scan_inner(buf: &[u8], limits: Limits) -> Result<usize, Scan> {
    // Elements still to come in each open array, outermost first.
    let mut left = [0usize; MAX_DEPTH];
    let mut depth = 0;
    // The top-level array: its length, how many of its elements are complete, and whether
    // it is a pub/sub message (`message` of 3 elements or `pmessage` of 4).
    let mut top_len = 0usize;
    let mut top_done = 0usize;
    let mut message = false;
    let mut pos = 0;
    loop {
        let Some(&kind) = buf.get(pos) else {
            return Err(Scan::Partial);
        };
        let (end, next) = line(buf, pos + 1)?;
        let text = &buf[pos + 1..end];
        match kind {
            b'+' | b'-' => pos = next,
            b':' => {
                number(text).ok_or(Scan::Error(FrameError::BadNumber))?;
                pos = next;
            }
            b'$' => match length(text)? {
                None => pos = next,
                Some(n) => {
                    if message && depth == 1 {
                        let last = top_done + 1 == top_len;
                        let (limit, what) = if last {
                            (limits.payload, Over::Payload)
                        } else {
                            (limits.channel, Over::Channel)
                        };
                        if n > limit {
                            return Err(Scan::Oversized {
                                header: next,
                                skip: n.saturating_add(2),
                                more: top_len - top_done - 1,
                                what,
                            });
                        }
                    }
                    if n > MAX_FRAME {
                        return Err(Scan::Error(FrameError::TooLarge));
                    }
                    let end = next + n;
                    match buf.get(end..end + 2) {
                        None => return Err(Scan::Partial),
                        Some(b"\r\n") => {}
                        Some(_) => return Err(Scan::Error(FrameError::BadTerminator)),
                    }
                    if depth == 1 && top_done == 0 {
                        let word = &buf[next..end];
                        message = (top_len == 4 && word.eq_ignore_ascii_case(b"pmessage"))
                            || (top_len == 3 && word.eq_ignore_ascii_case(b"message"));
                    }
                    pos = end + 2;
                }
            },
            b'*' => match length(text)? {
                // Each element takes at least 3 bytes (`+\r\n`).
                Some(n) if n > MAX_FRAME / 3 => return Err(Scan::Error(FrameError::TooLarge)),
                Some(n) if n > 0 => {
                    if depth == MAX_DEPTH {
                        return Err(Scan::Error(FrameError::TooDeep));
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
            other => return Err(Scan::Error(FrameError::BadType(other))),
        }
        // One value is complete: close every array it completes.
        loop {
            if depth == 0 {
                return Ok(pos);
            }
            if depth == 1 {
                top_done += 1;
            }
            left[depth - 1] -= 1;
            if left[depth - 1] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

/// The rest of an oversized message, discarded as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Skip {
    /// Bytes of the current element still to discard.
    bytes: usize,
    /// Bulk strings after it still to discard.
    more: usize,
    /// Which element was over.
    what: Over,
}

/// What [`Reader::next`] found.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// A frame, decoded (bounded in depth and size).
    Frame(BytesFrame),
    /// A pub/sub message over the limits, discarded whole without being buffered.
    Skipped(Over),
    /// More bytes are needed (everything of a message being skipped is already discarded).
    Partial,
}

/// A link's frame reader: [`scan`], then `redis-protocol` decodes what the scan passed;
/// remembers an oversized message being skipped across reads. Pure: bytes in, frames out,
/// no I/O, so a fuzz target can drive it.
#[derive(Debug, Default)]
pub struct Reader {
    /// The message being skipped, if any.
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
                Scan::Oversized {
                    header,
                    skip,
                    more,
                    what,
                } => {
                    buf.advance(header);
                    self.skip = Some(Skip {
                        bytes: skip,
                        more,
                        what,
                    });
                }
            }
        }
    }
}

/// Discards what `buf` holds of a skipped message; `true` once all of it is gone.
fn discard(skip: &mut Skip, buf: &mut BytesMut) -> Result<bool, FrameError> {
    loop {
        let n = skip.bytes.min(buf.len());
        buf.advance(n);
        skip.bytes -= n;
        if skip.bytes > 0 {
            return Ok(false);
        }
        if skip.more == 0 {
            return Ok(true);
        }
        // The next element's length line: a bulk string (a message holds nothing else).
        let (end, next) = match line(buf, 1) {
            Ok(l) => l,
            Err(Scan::Partial) if buf.is_empty() || buf[0] == b'$' => return Ok(false),
            Err(Scan::Partial) => return Err(FrameError::BadType(buf[0])),
            Err(_) => return Err(FrameError::LineTooLong),
        };
        if buf[0] != b'$' {
            return Err(FrameError::BadType(buf[0]));
        }
        let n = match length(&buf[1..end]) {
            Ok(n) => n.map_or(0, |n| n.saturating_add(2)),
            Err(_) => return Err(FrameError::BadNumber),
        };
        buf.advance(next);
        skip.bytes = n;
        skip.more -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        channel: 8,
        payload: 16,
    };

    /// A RESP array of bulk strings (written here: `broker::redis` imports this module).
    fn array(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn pmessage(channel: &[u8], payload: &[u8]) -> Vec<u8> {
        array(&[b"pmessage", b"SSE:*", channel, payload])
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
            (&deep, Scan::Error(FrameError::TooDeep)),
            (&deeper, Scan::Error(FrameError::TooDeep)),
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
            (huge_bulk.as_bytes(), Scan::Error(FrameError::TooLarge)),
            (huge_array.as_bytes(), Scan::Error(FrameError::TooLarge)),
            (b"$3\r\nabcX\r\n", Scan::Error(FrameError::BadTerminator)),
            (b"?what\r\n", Scan::Error(FrameError::BadType(b'?'))),
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
        let want = Scan::Oversized {
            header,
            skip: 19,
            more: 0,
            what: Over::Payload,
        };
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
            Scan::Oversized {
                more: 1,
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
                assert!(buf.len() < 8, "skipping holds {} bytes", buf.len());
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

    #[test]
    fn reader_refuses_hostile_frames_without_recursing() {
        // A skipped message whose next element is not a bulk string.
        let mut not_bulk = b"*4\r\n$8\r\npmessage\r\n$1\r\np\r\n$99\r\n".to_vec();
        not_bulk.extend_from_slice(&[b'c'; 99]);
        not_bulk.extend_from_slice(b"\r\n:1\r\n");
        let cases: &[(&[u8], FrameError)] = &[
            (&nested(100_000), FrameError::TooDeep),
            (b"*1\r\n$-7\r\n", FrameError::BadNumber),
            (b"$9000000000\r\n", FrameError::TooLarge),
            (b"*9000000000\r\n", FrameError::TooLarge),
            (b"!1\r\n", FrameError::BadType(b'!')),
            (&not_bulk, FrameError::BadType(b':')),
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
