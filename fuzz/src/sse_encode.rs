//! `sse::encode` and `sse::system`: whatever the fields, the encoded bytes parse back (with
//! the small spec parser below, the WHATWG "event stream interpretation") to exactly the event
//! that was meant, and nothing else: no stray line ends an event early or adds a field.

use crate::{fields, number, text};
use bytes::BytesMut;
use gateway::internals::encode::{
    encode_comment, encode_event, encode_retry, encoded_len_hint, Event,
};
use gateway::internals::system::{
    encode_connected, encode_error, encode_heartbeat, encode_player_keepalive, encode_reset,
    rfc3339_utc, space_utc,
};

/// One event as a spec client dispatches it.
#[derive(Debug, PartialEq, Eq)]
struct Dispatched {
    ty: Vec<u8>,
    data: Vec<u8>,
    id: Vec<u8>,
}

/// What a client makes of a whole stream.
#[derive(Debug, Default)]
struct Parsed {
    events: Vec<Dispatched>,
    retry: Option<u64>,
    /// Lines whose field is none of the four (a stray line would land here).
    unknown: usize,
    /// Comment lines.
    comments: Vec<Vec<u8>>,
    /// Whether the stream ends inside a line or an event (an undispatched field).
    unfinished: bool,
}

/// The spec's parser over bytes: lines end at CRLF, LF or CR; a blank line dispatches.
fn parse(stream: &[u8]) -> Parsed {
    let mut p = Parsed::default();
    let (mut data, mut ty, mut id, mut pending) = (Vec::new(), Vec::new(), Vec::new(), false);
    let mut rest = stream;
    while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        let line = &rest[..i];
        let skip = if rest[i..].starts_with(b"\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
        if line.is_empty() {
            if !data.is_empty() {
                let mut d = std::mem::take(&mut data);
                d.pop();
                let t = std::mem::take(&mut ty);
                let t = if t.is_empty() { b"message".to_vec() } else { t };
                p.events.push(Dispatched {
                    ty: t,
                    data: d,
                    id: id.clone(),
                });
            }
            ty.clear();
            pending = false;
            continue;
        }
        if let Some(comment) = line.strip_prefix(b":") {
            p.comments.push(comment.to_vec());
            continue;
        }
        pending = true;
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => (
                &line[..c],
                line[c + 1..].strip_prefix(b" ").unwrap_or(&line[c + 1..]),
            ),
            None => (line, &b""[..]),
        };
        match field {
            b"event" => ty = value.to_vec(),
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            b"id" if !value.contains(&0) => id = value.to_vec(),
            b"id" => {}
            b"retry" => {
                if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
                    p.retry = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                }
            }
            _ => p.unknown += 1,
        }
    }
    p.unfinished = !rest.is_empty() || pending;
    p
}

/// `s` without the bytes `drop` selects (what the encoder does to `id` and `event`).
fn without(s: &str, drop: &[u8]) -> Vec<u8> {
    s.bytes().filter(|b| !drop.contains(b)).collect()
}

/// The event type a client sees for an optional `event:` value.
fn type_of(event: Option<&str>) -> Vec<u8> {
    match event.map(|e| without(e, b"\r\n")) {
        Some(t) if !t.is_empty() => t,
        _ => b"message".to_vec(),
    }
}

/// Data as a client reassembles it: CRLF and lone CR become LF, every other byte kept.
fn normalised(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' => {
                out.push(b'\n');
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Seconds since the epoch of a proleptic Gregorian UTC date: the inverse of the encoder's
/// calendar, written the long way (days per year and month, no era arithmetic).
fn unix_secs(y: u64, mo: u64, d: u64, h: u64, mi: u64, s: u64) -> u64 {
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    assert!((1..=12).contains(&mo) && (0..24).contains(&h) && mi < 60 && s < 60);
    let month_len = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    assert!(
        d >= 1 && d <= month_len[mo as usize - 1],
        "day {d} of {y}-{mo}"
    );
    // Whole 400-year cycles first (146 097 days each), then year by year.
    let cycles = (y - 1970) / 400;
    let mut days = cycles * 146_097;
    for year in 1970 + cycles * 400..y {
        days += if leap(year) { 366 } else { 365 };
    }
    days += month_len[..mo as usize - 1].iter().sum::<u64>() + d - 1;
    days * 86_400 + h * 3600 + mi * 60 + s
}

/// Reads `YYYY-MM-DD?HH:MM:SS` back into seconds.
fn timestamp(t: &[u8]) -> u64 {
    let n = |r: std::ops::Range<usize>| -> u64 {
        assert!(t[r.clone()].iter().all(u8::is_ascii_digit), "{t:?}");
        std::str::from_utf8(&t[r]).unwrap().parse().unwrap()
    };
    assert_eq!((t[4], t[7], t[13], t[16]), (b'-', b'-', b':', b':'));
    unix_secs(n(0..4), n(5..7), n(8..10), n(11..13), n(14..16), n(17..19))
}

/// The JSON object of a system event's data.
fn json(data: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_slice(data) {
        Ok(serde_json::Value::Object(m)) => m,
        other => panic!("system event data is not a JSON object: {other:?} {data:?}"),
    }
}

fn one(p: &Parsed) -> &Dispatched {
    assert!(!p.unfinished && p.unknown == 0, "{p:?}");
    assert_eq!(p.events.len(), 1, "{p:?}");
    &p.events[0]
}

/// The input: `MODE 0xFF field 0xFF field ...`. MODE's first byte picks the encoder (`e`
/// event, `c` comment, `r` retry, `x` error, `z` reset, `t` timestamps and connected, `k`
/// player keep-alive, `h` heartbeat); letters after it set options: `i` an id, `n` an event
/// name, `y` a retry, `N` a named reset, `p` something already in the buffer.
fn check(data: &[u8]) -> Option<()> {
    let f = fields(data, 5);
    let mode = f[0];
    let has = |c: u8| mode.get(1..).is_some_and(|m| m.contains(&c));
    fn opt(on: bool, field: &[u8]) -> Option<Option<&str>> {
        Some(if on { Some(text(field)?) } else { None })
    }
    let opt = |c: u8, field| opt(has(c), field);
    // Something already in the buffer (the encoders append) that ends a previous block.
    let mut out = BytesMut::new();
    if has(b'p') {
        out.extend_from_slice(b": before\n\n");
    }
    let before = out.len();
    match mode.first().copied().unwrap_or(b'e') {
        b'e' => {
            // MODE id event retry data
            let ev = Event {
                id: opt(b'i', f[1])?,
                event: opt(b'n', f[2])?,
                retry: has(b'y').then(|| number(f[3]) as u32),
                data: f[4],
            };
            encode_event(&ev, &mut out);
            assert!(
                out.len() - before <= encoded_len_hint(&ev),
                "hint too small"
            );
            let p = parse(&out);
            let got = one(&p);
            assert_eq!(got.data, normalised(ev.data), "data");
            assert_eq!(got.ty, type_of(ev.event), "event");
            assert_eq!(
                got.id,
                ev.id.map(|i| without(i, b"\r\n\0")).unwrap_or_default()
            );
            assert_eq!(p.retry, ev.retry.map(u64::from), "retry");
        }
        b'c' => {
            let text = text(f[1])?;
            encode_comment(text, &mut out);
            let p = parse(&out);
            assert!(
                p.events.is_empty() && !p.unfinished && p.unknown == 0,
                "{p:?}"
            );
            // Every line of the text is a comment line (a `: ` line each, the space kept).
            let lines = p.comments.len() - usize::from(before > 0);
            assert_eq!(
                lines,
                normalised(text.as_bytes()).split(|&b| b == b'\n').count()
            );
        }
        b'r' => {
            let ms = number(f[1]) as u32;
            encode_retry(ms, &mut out);
            let p = parse(&out);
            assert!(
                p.events.is_empty() && !p.unfinished && p.unknown == 0,
                "{p:?}"
            );
            assert_eq!(p.retry, Some(u64::from(ms)));
        }
        b'x' => {
            // MODE message event
            let (message, event) = (text(f[1])?, opt(b'n', f[2])?);
            encode_error(message, event, &mut out);
            let p = parse(&out);
            let got = one(&p);
            assert_eq!(got.ty, type_of(event));
            let m = json(&got.data);
            assert_eq!(m.get("type"), Some(&"error".into()));
            assert_eq!(m.get("message"), Some(&message.into()));
            assert_eq!(m.len(), 2);
        }
        b'z' => {
            // MODE id reason
            let (id, named, reason) = (opt(b'i', f[1])?, has(b'N'), text(f[2])?);
            encode_reset(id, named, reason, &mut out);
            let p = parse(&out);
            let got = one(&p);
            assert_eq!(got.ty, if named { &b"reset"[..] } else { b"message" });
            assert_eq!(
                got.id,
                id.map(|i| without(i, b"\r\n\0")).unwrap_or_default()
            );
            let m = json(&got.data);
            assert_eq!(m.get("type"), Some(&"reset".into()));
            assert_eq!(m.get("reason"), Some(&reason.into()));
            assert_eq!(m.len(), 2);
        }
        b't' => {
            // Timestamps: any u64 (a decimal, else eight raw bytes), clamped to year 9999.
            let secs = seconds(f[1]);
            let want = secs.min(253_402_300_799);
            let r = rfc3339_utc(secs);
            assert_eq!((r[10], r[19]), (b'T', b'Z'));
            assert_eq!(timestamp(&r), want, "{}", String::from_utf8_lossy(&r));
            let s = space_utc(secs);
            assert_eq!(s[10], b' ');
            assert_eq!(timestamp(&s), want);
            encode_connected(secs, &mut out);
            let p = parse(&out);
            let m = json(&one(&p).data);
            assert_eq!(m.get("type"), Some(&"connected".into()));
            let ts = m
                .get("timestamp")
                .and_then(|t| t.as_str())
                .unwrap_or_default();
            assert_eq!(ts.as_bytes(), &r[..]);
        }
        b'k' => {
            let secs = seconds(f[1]);
            encode_player_keepalive(secs, &mut out);
            let p = parse(&out);
            let m = json(&one(&p).data);
            assert_eq!(m.get("type"), Some(&"keepalive".into()));
            let ts = m
                .get("timestamp")
                .and_then(|t| t.as_str())
                .unwrap_or_default();
            assert_eq!(ts.as_bytes(), &space_utc(secs)[..]);
            let mut want = b" keepalive ".to_vec();
            want.extend_from_slice(&space_utc(secs));
            assert_eq!(p.comments.last(), Some(&want));
        }
        b'h' => {
            let secs = seconds(f[1]);
            encode_heartbeat(secs, &mut out);
            let p = parse(&out);
            assert!(
                p.events.is_empty() && !p.unfinished && p.unknown == 0,
                "{p:?}"
            );
            let want = format!(" heartbeat {secs}");
            assert_eq!(p.comments.last().map(Vec::as_slice), Some(want.as_bytes()));
        }
        _ => return None,
    }
    // Every encoder ends its block: the buffer ends with a blank line.
    assert!(out.ends_with(b"\n\n"), "{out:?}");
    Some(())
}

/// A number of seconds: the field's decimal, else its first eight bytes (so the fuzzer
/// reaches every `u64`, `u64::MAX` included).
fn seconds(field: &[u8]) -> u64 {
    match text(field).and_then(|t| t.parse().ok()) {
        Some(n) => n,
        None => {
            let mut b = [0u8; 8];
            let n = field.len().min(8);
            b[..n].copy_from_slice(&field[..n]);
            u64::from_le_bytes(b)
        }
    }
}

/// One input.
pub fn run(data: &[u8]) {
    let _ = check(data);
}
