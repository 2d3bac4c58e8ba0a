//! SSE wire framing, per the WHATWG HTML "server-sent events" section.
//!
//! Why this module exists: a published event is encoded exactly once into a caller-owned
//! [`BytesMut`], frozen into a shared `Bytes`, and then written unchanged to thousands of
//! sockets. So the encoder is pure (bytes in, bytes out, no I/O), appends instead of
//! allocating, and must never let a value break the framing: whatever the payload, every
//! spec-compliant client has to see exactly the fields and data the publisher meant.
//!
//! Wire format of one event (fields in this order, each optional except `data`):
//!
//! ```text
//! retry: 3000\n
//! id: 42\n
//! event: update\n
//! data: first line\n
//! data: second line\n
//! \n
//! ```

use bytes::BytesMut;

use crate::util::decimal::{decimal_len, put_decimal};

const RETRY: &[u8] = b"retry: ";
const ID: &[u8] = b"id: ";
const EVENT: &[u8] = b"event: ";
const DATA: &[u8] = b"data: ";
const COMMENT: &[u8] = b": ";

/// One SSE event to encode.
///
/// Why it exists: it is the borrowed, allocation-free description of an event that the
/// publish path hands to [`encode_event`]; it owns nothing so encoding costs no copies beyond the
/// single write into the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `id:` field: becomes the client's last event ID, sent back as `Last-Event-ID`
    /// on reconnect so the gateway can resume. CR, LF and NUL are dropped from it.
    /// `Some("")` is sent as `id: ` and resets the client's last event ID.
    pub id: Option<&'a str>,
    /// The `event:` field: the event type clients listen for (`message` when absent).
    /// CR and LF are dropped from it.
    pub event: Option<&'a str>,
    /// The payload. Sent as one `data:` line per line of the payload; see [`encode_event`]
    /// for how line breaks are treated. Bytes other than line breaks are sent unchanged
    /// (browsers decode the stream as UTF-8, so payloads should be UTF-8).
    pub data: &'a [u8],
    /// The `retry:` field: the client's reconnection delay in milliseconds.
    pub retry: Option<u32>,
}

/// Appends the event: `retry: N\n` (if any), `id: X\n` (if any), `event: NAME\n` (if any),
/// then the data split into `data: ` lines, then a blank line.
///
/// Why: this is the one place where published payloads become wire bytes, so it is where the
/// framing guarantees live:
///
/// - Data containing `\n`, `\r\n` or a lone `\r` is split at each of them into separate
///   `data:` lines, so that no payload can end the event early or inject a field. A client
///   joins `data:` lines with `\n`, so it reassembles exactly the original bytes, with one
///   unavoidable normalisation: `\r\n` and lone `\r` line breaks come back as `\n` (SSE has no
///   way to carry a raw CR in data). Every other byte is preserved exactly.
/// - Empty data encodes as `data: \n`, which clients still dispatch (as an empty message).
/// - A trailing line break in data yields a final empty `data: ` line, so the trailing `\n`
///   survives the client's removal of the last LF.
/// - `id` and `event` are single-line fields: CR and LF (and NUL for `id`, which would make
///   clients ignore the field) are dropped from them, so a field value can never inject a line.
///
/// The buffer is appended to, never cleared. Reserve [`encoded_len_hint`] first to write
/// without reallocating.
pub fn encode_event(ev: &Event<'_>, out: &mut BytesMut) {
    if let Some(ms) = ev.retry {
        out.extend_from_slice(RETRY);
        put_decimal(out, u64::from(ms));
        out.extend_from_slice(b"\n");
    }
    if let Some(id) = ev.id {
        push_id_line(id, out);
    }
    if let Some(name) = ev.event {
        push_event_line(name, out);
    }
    for_each_line(ev.data, |line| {
        out.extend_from_slice(DATA);
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    });
    out.extend_from_slice(b"\n");
}

/// Upper bound of the bytes [`encode_event`] appends for `ev`.
///
/// Why: callers reserve once before encoding so the single encode never reallocates. The
/// bound is exact unless the data contains `\r\n` pairs (7 bytes of slack each: a pair is
/// counted as two line breaks) or `id` / `event` contain characters that get dropped (one
/// byte each). It scans the data once for line-break bytes, far cheaper than the copy it sizes.
pub fn encoded_len_hint(ev: &Event<'_>) -> usize {
    // Each CR or LF byte ends at most one line; a line costs `data: ` + `\n` (7 bytes) and
    // replaces at least its one break byte, hence 6 extra bytes per break byte. Plus the
    // first line's 7 bytes and the blank line.
    let breaks = ev
        .data
        .iter()
        .filter(|&&b| b == b'\n' || b == b'\r')
        .count();
    let mut n = ev
        .data
        .len()
        .saturating_add(breaks.saturating_mul(DATA.len()))
        .saturating_add(DATA.len() + 2);
    if let Some(ms) = ev.retry {
        n = n.saturating_add(RETRY.len() + decimal_len(u64::from(ms)) + 1);
    }
    if let Some(id) = ev.id {
        n = n.saturating_add(ID.len() + id.len() + 1);
    }
    if let Some(name) = ev.event {
        n = n.saturating_add(EVENT.len() + name.len() + 1);
    }
    n
}

/// Appends a comment block `: text\n\n`; text with line breaks (`\n`, `\r\n` or `\r`)
/// becomes several `: ` lines.
///
/// Why: clients ignore comment lines, so comments carry keep-alive traffic and diagnostics
/// that keep proxies from timing out idle streams without dispatching anything. Splitting at
/// line breaks keeps any text from escaping the comment and becoming a field.
pub fn encode_comment(text: &str, out: &mut BytesMut) {
    out.reserve(text.len() + COMMENT.len() + 2);
    for_each_line(text.as_bytes(), |line| {
        out.extend_from_slice(COMMENT);
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    });
    out.extend_from_slice(b"\n");
}

/// Appends `retry: ms\n\n`.
///
/// Why: tells the client how long to wait before reconnecting, on its own (without an
/// event), e.g. right after the stream opens. The blank line dispatches nothing because the
/// data buffer is empty.
pub fn encode_retry(ms: u32, out: &mut BytesMut) {
    out.extend_from_slice(RETRY);
    put_decimal(out, u64::from(ms));
    out.extend_from_slice(b"\n\n");
}

/// Appends `id: <id>\n` with CR, LF and NUL dropped from `id`.
///
/// Why: shared with the system events so every `id:` line the gateway writes is sanitised
/// the same way (a NUL would make clients ignore the field; CR/LF would inject a line).
pub(crate) fn push_id_line(id: &str, out: &mut BytesMut) {
    push_single_line(
        ID,
        id.as_bytes(),
        |b| b == b'\n' || b == b'\r' || b == 0,
        out,
    );
}

/// Appends `event: <name>\n` with CR and LF dropped from `name`.
///
/// Why: shared with the system events so every `event:` line is single-line by construction.
pub(crate) fn push_event_line(name: &str, out: &mut BytesMut) {
    push_single_line(EVENT, name.as_bytes(), |b| b == b'\n' || b == b'\r', out);
}

/// Appends `prefix`, `value` without the bytes `drop` selects, then `\n`, copying whole runs.
fn push_single_line(prefix: &[u8], value: &[u8], drop: impl Fn(u8) -> bool, out: &mut BytesMut) {
    out.extend_from_slice(prefix);
    let mut rest = value;
    while let Some(pos) = rest.iter().position(|&b| drop(b)) {
        let (run, tail) = rest.split_at(pos);
        out.extend_from_slice(run);
        rest = tail.get(1..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    out.extend_from_slice(b"\n");
}

/// Calls `line` for each line of `bytes`, split at `\r\n`, `\n` and lone `\r` (the three SSE
/// line endings). Always calls it at least once; a trailing break yields a final empty line.
fn for_each_line(bytes: &[u8], mut line: impl FnMut(&[u8])) {
    let mut rest = bytes;
    while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        let (run, tail) = rest.split_at(pos);
        line(run);
        let skip = if tail.starts_with(b"\r\n") { 2 } else { 1 };
        rest = tail.get(skip..).unwrap_or_default();
    }
    line(rest);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // ---- reference decoder: the spec's "event stream interpretation", byte for byte ----

    /// One event as a spec-compliant client dispatches it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Dispatched {
        /// The event's type (`message` when no `event:` field was given).
        pub(crate) ty: String,
        /// The data, after joining `data:` lines with LF and removing the final LF.
        pub(crate) data: Vec<u8>,
        /// The last event ID string at dispatch time (persists across events).
        pub(crate) id: String,
        /// The reconnection time at dispatch time, if any `retry:` was accepted so far.
        pub(crate) retry: Option<u64>,
    }

    const BOM: &[u8] = b"\xEF\xBB\xBF";

    /// The spec's parser. It works on bytes rather than decoded UTF-8: CR, LF, `:` and space
    /// are ASCII and never occur inside a multi-byte UTF-8 sequence, so splitting is the same,
    /// and keeping raw bytes lets the tests check that data bytes are preserved exactly.
    #[derive(Default)]
    pub(crate) struct Decoder {
        head: Vec<u8>,
        bom_done: bool,
        line: Vec<u8>,
        after_cr: bool,
        data: Vec<u8>,
        ty: Vec<u8>,
        last_id: Vec<u8>,
        retry: Option<u64>,
        pub(crate) events: Vec<Dispatched>,
    }

    impl Decoder {
        /// Feeds one chunk of the stream, as it arrives from the network.
        pub(crate) fn feed(&mut self, chunk: &[u8]) {
            if self.bom_done {
                self.feed_body(chunk);
                return;
            }
            // One leading BOM is ignored; it may itself arrive split across chunks.
            self.head.extend_from_slice(chunk);
            if self.head.len() < BOM.len() && BOM.starts_with(&self.head) {
                return;
            }
            self.bom_done = true;
            let head = std::mem::take(&mut self.head);
            self.feed_body(head.strip_prefix(BOM).unwrap_or(&head));
        }

        fn feed_body(&mut self, mut bytes: &[u8]) {
            // A CR followed by LF is one line break, even across chunks (an empty chunk
            // leaves the pending CR pending).
            if self.after_cr && !bytes.is_empty() {
                self.after_cr = false;
                bytes = bytes.strip_prefix(b"\n").unwrap_or(bytes);
            }
            // Whole runs up to each CR or LF.
            while let Some(i) = find_break(bytes) {
                let b = bytes[i];
                self.line.extend_from_slice(&bytes[..i]);
                self.end_line();
                bytes = &bytes[i + 1..];
                if b == b'\r' {
                    match bytes.first() {
                        None => self.after_cr = true,
                        Some(b'\n') => bytes = &bytes[1..],
                        Some(_) => {}
                    }
                }
            }
            self.line.extend_from_slice(bytes);
        }

        fn end_line(&mut self) {
            // Take the line out (and put its allocation back) so fields can borrow it.
            let mut line = std::mem::take(&mut self.line);
            self.process_line(&line);
            line.clear();
            self.line = line;
        }

        fn process_line(&mut self, line: &[u8]) {
            if line.is_empty() {
                self.dispatch();
                return;
            }
            if line.starts_with(b":") {
                return;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let value = &line[i + 1..];
                    (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &b""[..]),
            };
            match field {
                b"event" => self.ty = value.to_vec(),
                b"data" => {
                    self.data.extend_from_slice(value);
                    self.data.push(b'\n');
                }
                b"id" if !value.contains(&0) => self.last_id = value.to_vec(),
                b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                    let parsed = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                    if parsed.is_some() {
                        self.retry = parsed;
                    }
                }
                _ => {}
            }
        }

        fn dispatch(&mut self) {
            if self.data.is_empty() {
                self.ty.clear();
                return;
            }
            let mut data = std::mem::take(&mut self.data);
            if data.last() == Some(&b'\n') {
                data.pop();
            }
            let ty = std::mem::take(&mut self.ty);
            let ty = if ty.is_empty() {
                "message".to_owned()
            } else {
                lossy(&ty)
            };
            let id = lossy(&self.last_id);
            self.events.push(Dispatched {
                ty,
                data,
                id,
                retry: self.retry,
            });
        }
    }

    /// Index of the first CR or LF in `bytes` (an index loop: the tests run unoptimised and
    /// feed each stream once per split point, where iterator adaptors are several times slower).
    fn find_break(bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\n' || bytes[i] == b'\r' {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    fn lossy(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// Decodes a whole stream delivered as the given chunks; an unfinished event is discarded.
    pub(crate) fn decode_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Dispatched> {
        let mut d = Decoder::default();
        for chunk in chunks {
            d.feed(chunk);
        }
        d.events
    }

    /// Decodes a whole stream delivered in one chunk.
    pub(crate) fn decode(stream: &[u8]) -> Vec<Dispatched> {
        decode_chunks([stream])
    }

    /// Asserts that `stream` decodes to `want` in one chunk, in two chunks split at every
    /// byte boundary, and one byte at a time.
    pub(crate) fn assert_decodes_in_any_chunking(stream: &[u8], want: &[Dispatched]) {
        assert_decodes_split_at(stream, want, 0..=stream.len());
    }

    /// Asserts that `stream` decodes to `want` in one chunk, in two chunks split at each of
    /// `cuts`, and one byte at a time.
    fn assert_decodes_split_at(
        stream: &[u8],
        want: &[Dispatched],
        cuts: impl IntoIterator<Item = usize>,
    ) {
        assert_eq!(decode(stream), want, "one chunk");
        for cut in cuts {
            let (a, b) = stream.split_at(cut);
            assert!(
                decode_chunks([a, b]) == want,
                "split at {cut} of {}",
                stream.len()
            );
        }
        assert_eq!(decode_chunks(stream.chunks(1)), want, "one byte at a time");
    }

    fn d(ty: &str, data: &[u8], id: &str, retry: Option<u64>) -> Dispatched {
        Dispatched {
            ty: ty.into(),
            data: data.into(),
            id: id.into(),
            retry,
        }
    }

    /// A stream as the chunks it arrives in.
    type Chunks<'a> = &'a [&'a [u8]];

    #[test]
    fn reference_decoder_follows_the_spec() {
        let m = "message";
        #[rustfmt::skip]
        let cases: &[(&str, Chunks, Vec<Dispatched>)] = &[
            ("lf lines", &[b"data: a\ndata: b\n\n"], vec![d(m, b"a\nb", "", None)]),
            ("crlf lines", &[b"data: a\r\ndata: b\r\n\r\n"], vec![d(m, b"a\nb", "", None)]),
            ("cr lines", &[b"data: a\rdata: b\r\r"], vec![d(m, b"a\nb", "", None)]),
            ("crlf split across chunks is one break", &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"], vec![d(m, b"a\nb", "", None)]),
            ("cr then cr is two breaks", &[b"data: a\r", b"\r"], vec![d(m, b"a", "", None)]),
            ("bom stripped", &[b"\xEF\xBB\xBFdata: x\n\n"], vec![d(m, b"x", "", None)]),
            ("bom split across chunks", &[b"\xEF", b"\xBB", b"\xBFdata: x\n\n"], vec![d(m, b"x", "", None)]),
            ("only one bom stripped", &[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"], vec![]),
            ("bom not at start kept", &[b"data: \xEF\xBB\xBFx\n\n"], vec![d(m, b"\xEF\xBB\xBFx", "", None)]),
            ("no space after colon", &[b"data:x\n\n"], vec![d(m, b"x", "", None)]),
            ("only one space removed", &[b"data:  x\n\n"], vec![d(m, b" x", "", None)]),
            ("value keeps later colons", &[b"data: a: b\n\n"], vec![d(m, b"a: b", "", None)]),
            ("field without colon", &[b"data\n\n"], vec![d(m, b"", "", None)]),
            ("comment ignored", &[b": hi\ndata: x\n: there\n\n"], vec![d(m, b"x", "", None)]),
            ("unknown field ignored", &[b"foo: bar\ndata: x\n\n"], vec![d(m, b"x", "", None)]),
            ("empty data buffer not dispatched", &[b"event: x\n\n"], vec![]),
            ("event type reset after non-dispatch", &[b"event: x\n\ndata: y\n\n"], vec![d(m, b"y", "", None)]),
            ("event type applied", &[b"event: up\ndata: y\n\n"], vec![d("up", b"y", "", None)]),
            ("event type reset after dispatch", &[b"event: up\ndata: y\n\ndata: z\n\n"], vec![d("up", b"y", "", None), d(m, b"z", "", None)]),
            ("only the last trailing lf removed", &[b"data: a\ndata:\ndata:\n\n"], vec![d(m, b"a\n\n", "", None)]),
            ("id persisted", &[b"id: 1\n\ndata: a\n\nid: 2\0\ndata: b\n\n"], vec![d(m, b"a", "1", None), d(m, b"b", "1", None)]),
            ("id without value resets", &[b"id: 1\ndata: a\n\nid\ndata: b\n\n"], vec![d(m, b"a", "1", None), d(m, b"b", "", None)]),
            ("retry digits", &[b"retry: 150\ndata: x\n\n"], vec![d(m, b"x", "", Some(150))]),
            ("retry non-digits ignored", &[b"retry: 150\n\nretry: 12a\nretry: -1\nretry:  5\nretry:\ndata: x\n\n"], vec![d(m, b"x", "", Some(150))]),
            ("unterminated event discarded", &[b"data: a\n\ndata: x\n"], vec![d(m, b"a", "", None)]),
            ("unterminated line discarded", &[b"data: x"], vec![]),
        ];
        for (name, chunks, want) in cases {
            assert_eq!(&decode_chunks(chunks.iter().copied()), want, "{name}");
            let joined = chunks.concat();
            assert_eq!(
                &decode_chunks(joined.chunks(1)),
                want,
                "{name} byte by byte"
            );
        }
    }

    // ---- encoder ----

    fn ev<'a>(
        id: Option<&'a str>,
        event: Option<&'a str>,
        data: &'a [u8],
        retry: Option<u32>,
    ) -> Event<'a> {
        Event {
            id,
            event,
            data,
            retry,
        }
    }

    fn encode(e: &Event<'_>) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_event(e, &mut out);
        out.to_vec()
    }

    /// A round-trip case: the event, and what a client must dispatch for it when it is the
    /// first event on a fresh stream (data, type, last event ID, reconnection time).
    #[derive(Clone, Copy)]
    struct Case<'a> {
        name: &'a str,
        ev: Event<'a>,
        data: &'a [u8],
        ty: &'a str,
        id: &'a str,
        retry: Option<u64>,
    }

    fn c<'a>(
        name: &'a str,
        ev: Event<'a>,
        data: &'a [u8],
        ty: &'a str,
        id: &'a str,
        retry: Option<u64>,
    ) -> Case<'a> {
        Case {
            name,
            ev,
            data,
            ty,
            id,
            retry,
        }
    }

    /// 16 KiB of text in 64-byte lines, with `sep` as the line break.
    fn big(sep: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..16 * 1024 / 64 {
            v.extend((0..63).map(|j| b'a' + ((i + j) % 26) as u8));
            v.extend_from_slice(sep);
        }
        v
    }

    #[rustfmt::skip]
    fn round_trip_cases<'a>(big_lf: &'a [u8], big_crlf: &'a [u8], big_cr: &'a [u8], big_flat: &'a [u8]) -> Vec<Case<'a>> {
        let m = "message";
        vec![
            c("plain", ev(None, None, b"hello", None), b"hello", m, "", None),
            c("empty", ev(None, None, b"", None), b"", m, "", None),
            c("multi-line lf", ev(None, None, b"a\nb\nc", None), b"a\nb\nc", m, "", None),
            c("multi-line crlf", ev(None, None, b"a\r\nb\r\nc", None), b"a\nb\nc", m, "", None),
            c("multi-line cr", ev(None, None, b"a\rb\rc", None), b"a\nb\nc", m, "", None),
            c("mixed breaks", ev(None, None, b"a\r\n\rb\n\r\nc\n\r", None), b"a\n\nb\n\nc\n\n", m, "", None),
            c("trailing lf", ev(None, None, b"a\n", None), b"a\n", m, "", None),
            c("trailing crlf", ev(None, None, b"a\r\n", None), b"a\n", m, "", None),
            c("trailing cr", ev(None, None, b"a\r", None), b"a\n", m, "", None),
            c("leading lf", ev(None, None, b"\na", None), b"\na", m, "", None),
            c("leading cr", ev(None, None, b"\ra", None), b"\na", m, "", None),
            c("only lf", ev(None, None, b"\n", None), b"\n", m, "", None),
            c("only newlines", ev(None, None, b"\n\n\n", None), b"\n\n\n", m, "", None),
            c("only crlfs", ev(None, None, b"\r\n\r\n", None), b"\n\n", m, "", None),
            c("cr cr lf", ev(None, None, b"\r\r\n", None), b"\n\n", m, "", None),
            c("lf cr", ev(None, None, b"\n\r", None), b"\n\n", m, "", None),
            c("leading spaces kept", ev(None, None, b"  x\n y", None), b"  x\n y", m, "", None),
            c("field-like data", ev(None, None, b": no comment\nid: 9\nevent: x\n\ndata: y", None), b": no comment\nid: 9\nevent: x\n\ndata: y", m, "", None),
            c("unicode", ev(None, None, "héllo wörld 🌍\n日本語\r\nend".as_bytes(), None), "héllo wörld 🌍\n日本語\nend".as_bytes(), m, "", None),
            c("nul tab bom kept", ev(None, None, b"\0\t\xEF\xBB\xBFx", None), b"\0\t\xEF\xBB\xBFx", m, "", None),
            c("raw non-utf8 bytes kept", ev(None, None, b"\xff\xfe\x80", None), b"\xff\xfe\x80", m, "", None),
            c("16 KiB lf", ev(None, None, big_lf, None), big_lf, m, "", None),
            c("16 KiB crlf", ev(None, None, big_crlf, None), big_lf, m, "", None),
            c("16 KiB cr", ev(None, None, big_cr, None), big_lf, m, "", None),
            c("16 KiB one line", ev(None, None, big_flat, None), big_flat, m, "", None),
            c("with id", ev(Some("42"), None, b"x", None), b"x", m, "42", None),
            c("with event", ev(None, Some("update"), b"x", None), b"x", "update", "", None),
            c("with retry", ev(None, None, b"x", Some(3000)), b"x", m, "", Some(3000)),
            c("retry zero", ev(None, None, b"x", Some(0)), b"x", m, "", Some(0)),
            c("retry max", ev(None, None, b"x", Some(u32::MAX)), b"x", m, "", Some(4_294_967_295)),
            c("all fields", ev(Some("7"), Some("tick"), b"a\nb", Some(10)), b"a\nb", "tick", "7", Some(10)),
            c("empty id resets", ev(Some(""), None, b"x", None), b"x", m, "", None),
            c("id spaces kept", ev(Some(" 7 "), None, b"x", None), b"x", m, " 7 ", None),
            c("unicode id and event", ev(Some("ид-1"), Some("événement"), b"x", None), b"x", "événement", "ид-1", None),
            c("empty event is message", ev(None, Some(""), b"x", None), b"x", m, "", None),
            c("id crlf nul dropped", ev(Some("1\r\n2\r3\n4\x005"), None, b"x", None), b"x", m, "12345", None),
            c("id injection dropped", ev(Some("1\n\ndata: evil\n"), None, b"x", None), b"x", m, "1data: evil", None),
            c("event crlf dropped", ev(None, Some("up\r\nda\rte\n"), b"x", None), b"x", "update", "", None),
            c("event injection dropped", ev(None, Some("x\nid: 666\n\ndata: evil"), b"x", None), b"x", "xid: 666data: evil", "", None),
            c("event keeps nul", ev(None, Some("a\0b"), b"x", None), b"x", "a\0b", "", None),
        ]
    }

    fn with_big_cases(check: impl FnOnce(&[Case<'_>])) {
        let (lf, crlf, cr, flat) = (big(b"\n"), big(b"\r\n"), big(b"\r"), vec![b'z'; 16 * 1024]);
        assert_eq!(lf.len(), 16 * 1024);
        check(&round_trip_cases(&lf, &crlf, &cr, &flat));
    }

    #[test]
    fn every_event_round_trips_through_a_spec_decoder() {
        with_big_cases(|cases| {
            for case in cases {
                let got = decode(&encode(&case.ev));
                let want = vec![d(case.ty, case.data, case.id, case.retry)];
                assert!(got == want, "{}: got {got:?}", case.name);
            }
        });
    }

    /// Concatenates every case with comments and retry blocks in between, and computes what a
    /// client must dispatch for the whole stream (last event ID and retry persist).
    fn stream_of(cases: &[Case<'_>]) -> (Vec<u8>, Vec<Dispatched>) {
        let mut out = BytesMut::new();
        let mut want = Vec::new();
        let (mut id, mut retry) = (String::new(), None);
        encode_comment("stream open", &mut out);
        for (i, case) in cases.iter().enumerate() {
            match i % 4 {
                0 => encode_comment("keep\nalive\r\nmulti\rline", &mut out),
                1 => {
                    encode_retry(1000 + i as u32, &mut out);
                    retry = Some(1000 + i as u64);
                }
                2 => encode_comment("", &mut out),
                _ => {}
            }
            encode_event(&case.ev, &mut out);
            if case.ev.id.is_some() {
                id = case.id.to_owned();
            }
            if case.ev.retry.is_some() {
                retry = case.retry;
            }
            want.push(d(case.ty, case.data, &id, retry));
        }
        encode_comment("bye", &mut out);
        (out.to_vec(), want)
    }

    #[test]
    fn streams_decode_identically_under_every_chunking() {
        with_big_cases(|cases| {
            let (small, large): (Vec<Case<'_>>, Vec<Case<'_>>) =
                cases.iter().copied().partition(|c| c.ev.data.len() < 1024);
            assert!(small.len() > 30 && large.len() == 4);
            // Every case except the 16 KiB ones, in one stream, split at every byte boundary.
            let (stream, want) = stream_of(&small);
            assert_decodes_in_any_chunking(&stream, &want);
            // Each 16 KiB event in its own stream (comments and retry around it). Splitting
            // ~18 KB at every boundary costs O(n²) in an unoptimised build, so: every boundary
            // in the first and last KiB (all framing around the event), and every 61st in
            // between, which is coprime to the 70-byte encoded line and so cuts each line at
            // every offset; plus the whole stream one byte at a time.
            for case in large {
                let (stream, want) = stream_of(&[case]);
                let n = stream.len();
                let cuts = (0..=n).filter(|&k| k <= 1024 || k >= n - 1024 || k % 61 == 0);
                assert_decodes_split_at(&stream, &want, cuts);
            }
        });
    }

    #[test]
    fn encode_event_writes_the_exact_wire_format() {
        #[rustfmt::skip]
        let cases: &[(Event<'_>, &[u8])] = &[
            (ev(Some("7"), Some("message"), b"a\nb", None), b"id: 7\nevent: message\ndata: a\ndata: b\n\n"),
            (ev(None, None, b"hello", None), b"data: hello\n\n"),
            (ev(None, None, b"", None), b"data: \n\n"),
            (ev(None, None, b"a\r\nb", None), b"data: a\ndata: b\n\n"),
            (ev(None, None, b"a\rb", None), b"data: a\ndata: b\n\n"),
            (ev(None, None, b"a\n", None), b"data: a\ndata: \n\n"),
            (ev(None, None, b"\n", None), b"data: \ndata: \n\n"),
            (ev(None, None, b"\r\n", None), b"data: \ndata: \n\n"),
            (ev(None, None, b"\r\r\n", None), b"data: \ndata: \ndata: \n\n"),
            (ev(None, None, b"\n\r", None), b"data: \ndata: \ndata: \n\n"),
            (ev(None, None, b" x", None), b"data:  x\n\n"),
            (ev(None, None, b"x", Some(5000)), b"retry: 5000\ndata: x\n\n"),
            (ev(Some("1"), Some("e"), b"x", Some(0)), b"retry: 0\nid: 1\nevent: e\ndata: x\n\n"),
            (ev(None, None, b"x", Some(u32::MAX)), b"retry: 4294967295\ndata: x\n\n"),
            (ev(Some(""), Some(""), b"x", None), b"id: \nevent: \ndata: x\n\n"),
            (ev(Some("a\r\nb\0c"), None, b"x", None), b"id: abc\ndata: x\n\n"),
            (ev(None, Some("x\ny\r\0"), b"x", None), b"event: xy\0\ndata: x\n\n"),
            (ev(Some("\n\r\0"), Some("\r\n"), b"x", None), b"id: \nevent: \ndata: x\n\n"),
        ];
        for (e, want) in cases {
            assert_eq!(encode(e), *want, "{e:?}");
        }
    }

    #[test]
    fn encoders_append_without_clearing() {
        let mut out = BytesMut::from(&b"prefix|"[..]);
        encode_event(&ev(None, None, b"x", None), &mut out);
        encode_comment("c", &mut out);
        encode_retry(5, &mut out);
        assert_eq!(&out[..], b"prefix|data: x\n\n: c\n\nretry: 5\n\n");
    }

    #[test]
    fn len_hint_is_an_upper_bound_exact_but_for_crlf_and_dropped_bytes() {
        let crlfs = |b: &[u8]| b.windows(2).filter(|w| w == b"\r\n").count();
        let dropped = |s: Option<&str>, nul: bool| {
            s.map_or(0, |s| {
                s.bytes()
                    .filter(|&b| b == b'\r' || b == b'\n' || (nul && b == 0))
                    .count()
            })
        };
        with_big_cases(|cases| {
            for case in cases {
                let e = &case.ev;
                let (len, hint) = (encode(e).len(), encoded_len_hint(e));
                let slack = 7 * crlfs(e.data) + dropped(e.id, true) + dropped(e.event, false);
                assert_eq!(hint, len + slack, "{}", case.name);
            }
        });
    }

    #[test]
    fn encode_comment_writes_comment_lines() {
        #[rustfmt::skip]
        let cases: &[(&str, &[u8])] = &[
            ("", b": \n\n"),
            ("hi", b": hi\n\n"),
            ("keepalive 2025-10-22 14:30:45", b": keepalive 2025-10-22 14:30:45\n\n"),
            ("a\nb", b": a\n: b\n\n"),
            ("a\r\nb\rc", b": a\n: b\n: c\n\n"),
            ("a\n", b": a\n: \n\n"),
            ("\ndata: evil\n", b": \n: data: evil\n: \n\n"),
        ];
        for (text, want) in cases {
            let mut out = BytesMut::new();
            encode_comment(text, &mut out);
            assert_eq!(&out[..], *want, "{text:?}");
            assert_eq!(decode(&out), vec![], "{text:?} dispatches nothing");
        }
    }

    #[test]
    fn encode_retry_sets_the_reconnection_time_without_dispatching() {
        #[rustfmt::skip]
        let cases: &[(u32, &[u8])] = &[
            (0, b"retry: 0\n\n"),
            (7, b"retry: 7\n\n"),
            (3000, b"retry: 3000\n\n"),
            (u32::MAX, b"retry: 4294967295\n\n"),
        ];
        for &(ms, want) in cases {
            let mut out = BytesMut::new();
            encode_retry(ms, &mut out);
            assert_eq!(&out[..], want, "{ms}");
            assert_eq!(decode(&out), vec![], "{ms} dispatches nothing");
            encode_event(&ev(None, None, b"x", None), &mut out);
            assert_eq!(
                decode(&out),
                vec![d("message", b"x", "", Some(u64::from(ms)))],
                "{ms}"
            );
        }
    }
}
