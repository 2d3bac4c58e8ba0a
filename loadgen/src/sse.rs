//! A cheap incremental SSE parser: the load generator must cost far less CPU than the server
//! it measures, so it scans for line breaks and hands out borrowed slices; only a partial
//! line is ever copied, and event fields reuse the same buffers.

/// One dispatched event, borrowed from the parser.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field (empty: `message`).
    pub event: &'a [u8],
    /// The `id:` field of this event (empty when the event had none).
    pub id: &'a [u8],
    /// Data lines joined with `\n`.
    pub data: &'a [u8],
}

/// Parser state across reads.
#[derive(Default)]
pub struct Parser {
    /// An incomplete line carried over from the previous read.
    partial: Vec<u8>,
    /// A `\r` ended the previous read: a `\n` starting the next one belongs to it.
    skip_lf: bool,
    /// Data lines of the event being built.
    data: Vec<u8>,
    /// Whether any `data` line was seen for the current event.
    has_data: bool,
    /// `id` of the event being built.
    id: Vec<u8>,
    /// `event` of the event being built.
    event: Vec<u8>,
    /// Comment lines seen (keep-alives), for reports.
    pub comments: u64,
    /// The latest `retry:` field (milliseconds): how long the server asks a client to wait
    /// before reconnecting (a draining gateway sends a jittered one before it closes).
    pub retry_ms: Option<u64>,
}

impl Parser {
    /// Feeds one read's bytes; calls `on_event` for every complete event.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_event: impl FnMut(&Event<'_>)) {
        if self.skip_lf {
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
            self.skip_lf = false;
        }
        while let Some(pos) = chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let brk = chunk[pos];
            let mut next = pos + 1;
            if brk == b'\r' {
                if next < chunk.len() {
                    if chunk[next] == b'\n' {
                        next += 1;
                    }
                } else {
                    self.skip_lf = true;
                }
            }
            if self.partial.is_empty() {
                self.line(&chunk[..pos], &mut on_event);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..pos]);
                self.line(&line, &mut on_event);
                line.clear();
                self.partial = line;
            }
            chunk = &chunk[next..];
        }
        self.partial.extend_from_slice(chunk);
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&Event<'_>)) {
        if line.is_empty() {
            if self.has_data {
                on_event(&Event {
                    event: &self.event,
                    id: &self.id,
                    data: &self.data,
                });
            }
            self.data.clear();
            self.has_data = false;
            self.id.clear();
            self.event.clear();
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"id" => {
                self.id.clear();
                self.id.extend_from_slice(value);
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            // As the SSE standard has it: only ASCII digits, else ignored.
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry_ms = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }
}

/// The start of the gateway's reset event's data, exactly as `gateway/src/sse/system.rs`
/// (`encode_reset`) writes it and the contract names it: `data: {"type":"reset", ...}`,
/// named `event: reset` on every family but the player stream, where it is unnamed.
pub const RESET_DATA: &[u8] = br#"{"type":"reset","#;

/// Whether an event is a resume reset (the server could not replay what the client missed):
/// judged by its data, so the unnamed player-stream form counts too.
pub fn is_reset(e: &Event<'_>) -> bool {
    e.data.starts_with(RESET_DATA)
}

/// Finds `"key":<digits>` in a JSON payload and returns the number: loadgen's payloads carry
/// their send time and sequence number this way, found without parsing the JSON.
pub fn json_u64(data: &[u8], key: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i + key.len() + 3 <= data.len() {
        let rest = &data[i..];
        let at = rest
            .windows(key.len() + 2)
            .position(|w| w[0] == b'"' && &w[1..=key.len()] == key && w[key.len() + 1] == b'"')?;
        let mut j = i + at + key.len() + 2;
        while j < data.len() && (data[j] == b' ' || data[j] == b':') {
            j += 1;
        }
        let start = j;
        let mut v: u64 = 0;
        while j < data.len() && data[j].is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add(u64::from(data[j] - b'0'))?;
            j += 1;
        }
        if j > start {
            return Some(v);
        }
        i += at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> (Vec<(String, String, String)>, u64) {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |e| {
                out.push((
                    String::from_utf8_lossy(e.event).into_owned(),
                    String::from_utf8_lossy(e.id).into_owned(),
                    String::from_utf8_lossy(e.data).into_owned(),
                ))
            });
        }
        (out, p.comments)
    }

    const STREAM: &[u8] = b"retry: 2000\n\ndata: {\"type\":\"connected\"}\n\n: keepalive 2025-10-22 14:30:45\ndata: {\"type\":\"keepalive\"}\n\nid: a.0.1\nevent: message\ndata: line1\r\ndata: line2\r\n\r\n: heartbeat 1\r\rid: a.0.2\rdata:x\r\r";

    #[test]
    fn whole_and_split_at_every_boundary() {
        let (whole, comments) = collect(&[STREAM]);
        assert_eq!(
            whole,
            vec![
                ("".into(), "".into(), "{\"type\":\"connected\"}".into()),
                ("".into(), "".into(), "{\"type\":\"keepalive\"}".into()),
                ("message".into(), "a.0.1".into(), "line1\nline2".into()),
                ("".into(), "a.0.2".into(), "x".into()),
            ]
        );
        assert_eq!(comments, 2);
        for cut in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            assert_eq!(collect(&[a, b]).0, whole, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(collect(&bytes).0, whole, "one byte at a time");
    }

    #[test]
    fn retry_and_reset_events() {
        let mut p = Parser::default();
        let mut resets = Vec::new();
        let bytes = b"retry: 2000\n\nid: 661a-5-17\nevent: reset\ndata: {\"type\":\"reset\",\"reason\":\"history\"}\n\ndata: {\"type\":\"reset\",\"reason\":\"x\"}\n\ndata: {\"type\":\"resetx\"}\n\ndata: {\"seq\":1,\"t\":2}\n\nretry: 4x\n\nretry: 3187\r\n\r\n";
        p.feed(bytes, |e| resets.push(is_reset(e)));
        assert_eq!(resets, vec![true, true, false, false]);
        assert_eq!(p.retry_ms, Some(3187));
        let mut q = Parser::default();
        q.feed(b"retry:\n\n", |_| {});
        assert_eq!(q.retry_ms, None);
    }

    #[test]
    fn the_gateways_own_reset_bytes_count_as_resets_named_or_not() {
        use gateway::sse::system::{encode_connected, encode_error, encode_reset};
        for named in [true, false] {
            let mut b = bytes::BytesMut::new();
            encode_connected(1_700_000_000, &mut b);
            encode_reset(Some("661a-5-17"), named, "history \"trimmed\"", &mut b);
            encode_error("reset", Some("reset"), &mut b);
            let mut p = Parser::default();
            let mut seen = Vec::new();
            p.feed(&b, |e| seen.push(is_reset(e)));
            assert_eq!(seen, vec![false, true, false], "named {named}");
        }
    }

    #[test]
    fn numbers_in_payloads() {
        let d = br#"{"event_data":{"seq":42,"sent_ns": 1700000000123456789},"seqx":"7"}"#;
        assert_eq!(json_u64(d, b"seq"), Some(42));
        assert_eq!(json_u64(d, b"sent_ns"), Some(1_700_000_000_123_456_789));
        assert_eq!(json_u64(d, b"seqx"), None);
        assert_eq!(json_u64(d, b"missing"), None);
        assert_eq!(json_u64(b"", b"seq"), None);
    }
}
