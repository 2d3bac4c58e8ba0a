//! The gateway's own system events, byte-exact.
//!
//! Why this module exists: besides relaying published events, the gateway speaks on its own
//! (stream opened, keep-alives, errors, resume resets). Existing clients parse these exact
//! bytes, so each one is written here once, without allocation, date crates or `fmt`, and
//! pinned by exact-bytes tests.
//!
//! Timestamps are UTC. Instants past `9999-12-31T23:59:59Z` (which would need a fifth year
//! digit) are clamped to it, so formatting never fails or panics on any `u64`.

use bytes::BytesMut;

use super::encode::{push_event_line, push_id_line};
use crate::util::decimal::put_decimal;
use crate::util::json::escape_json_into;

/// `9999-12-31T23:59:59Z`: the last instant with a four-digit year.
const MAX_SECS: u64 = 253_402_300_799;
const SECS_PER_DAY: u64 = 86_400;

/// Formats `unix_secs` as `2025-10-22T14:30:45Z` (RFC 3339, UTC, whole seconds).
///
/// Why: the `connected` event carries a machine-readable timestamp; a fixed-size array keeps
/// it allocation-free. Instants after year 9999 are clamped to `9999-12-31T23:59:59Z`.
pub fn rfc3339_utc(unix_secs: u64) -> [u8; 20] {
    let [y0, y1, y2, y3, mo0, mo1, d0, d1, h0, h1, mi0, mi1, s0, s1] = digits(unix_secs);
    [
        y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b'T', h0, h1, b':', mi0, mi1, b':', s0, s1,
        b'Z',
    ]
}

/// Formats `unix_secs` as `2025-10-22 14:30:45` (UTC).
///
/// Why: the player keep-alive has always carried this human-readable form, and its clients
/// compare it verbatim. Instants after year 9999 are clamped to `9999-12-31 23:59:59`.
pub fn space_utc(unix_secs: u64) -> [u8; 19] {
    let [y0, y1, y2, y3, mo0, mo1, d0, d1, h0, h1, mi0, mi1, s0, s1] = digits(unix_secs);
    [
        y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b' ', h0, h1, b':', mi0, mi1, b':', s0, s1,
    ]
}

/// Appends `data: {"type":"connected","timestamp":"<rfc3339>"}\n\n`.
///
/// Why: the first event on every stream, so clients know the subscription is live (and
/// proxies flush the response head) before any real event arrives.
pub fn encode_connected(unix_secs: u64, out: &mut BytesMut) {
    out.extend_from_slice(b"data: {\"type\":\"connected\",\"timestamp\":\"");
    out.extend_from_slice(&rfc3339_utc(unix_secs));
    out.extend_from_slice(b"\"}\n\n");
}

/// Appends exactly
/// `: keepalive 2025-10-22 14:30:45\ndata: {"type":"keepalive","timestamp":"2025-10-22 14:30:45"}\n\n`.
///
/// Why: player clients expect a periodic keep-alive they can observe as a message (the data
/// line) while the comment line keeps intermediaries from closing the idle stream.
pub fn encode_player_keepalive(unix_secs: u64, out: &mut BytesMut) {
    let ts = space_utc(unix_secs);
    out.extend_from_slice(b": keepalive ");
    out.extend_from_slice(&ts);
    out.extend_from_slice(b"\ndata: {\"type\":\"keepalive\",\"timestamp\":\"");
    out.extend_from_slice(&ts);
    out.extend_from_slice(b"\"}\n\n");
}

/// Appends `: heartbeat <unix secs>\n\n`.
///
/// Why: the keep-alive for non-player streams: a comment, so clients dispatch nothing, but
/// bytes flow and proxies and load balancers keep the connection open.
pub fn encode_heartbeat(unix_secs: u64, out: &mut BytesMut) {
    out.extend_from_slice(b": heartbeat ");
    put_decimal(out, unix_secs);
    out.extend_from_slice(b"\n\n");
}

/// Appends `data: {"type":"error","message":"<escaped msg>"}\n\n`, with `event: <name>\n`
/// first when `event` is Some.
///
/// Why: tells a client in-band why its stream is failing (e.g. before the gateway closes it),
/// since the HTTP status is long gone once streaming started. The message is JSON-escaped
/// (so it cannot break the JSON or the SSE line); CR/LF are dropped from the event name.
pub fn encode_error(message: &str, event: Option<&str>, out: &mut BytesMut) {
    if let Some(name) = event {
        push_event_line(name, out);
    }
    out.extend_from_slice(b"data: {\"type\":\"error\",\"message\":\"");
    escape_json_into(out, message);
    out.extend_from_slice(b"\"}\n\n");
}

/// Appends a reset notice: `id: <id>\n` (if Some), `event: reset\n` when `named`, then
/// `data: {"type":"reset","reason":"<escaped reason>"}\n\n`.
///
/// Why: tells a resuming client that history no longer reaches its `Last-Event-ID`, so it
/// must resynchronise instead of assuming it missed nothing. The `id` moves the client's
/// last event ID to the current position so the next reconnect resumes from here. CR, LF and
/// NUL are dropped from `id`; the reason is JSON-escaped.
pub fn encode_reset(id: Option<&str>, named: bool, reason: &str, out: &mut BytesMut) {
    if let Some(id) = id {
        push_id_line(id, out);
    }
    if named {
        out.extend_from_slice(b"event: reset\n");
    }
    out.extend_from_slice(b"data: {\"type\":\"reset\",\"reason\":\"");
    escape_json_into(out, reason);
    out.extend_from_slice(b"\"}\n\n");
}

/// The ASCII digits of the UTC date and time of `unix_secs` (clamped to year 9999):
/// year (4), month, day, hour, minute, second (2 each).
fn digits(unix_secs: u64) -> [u8; 14] {
    let secs = unix_secs.min(MAX_SECS);
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    let sod = secs % SECS_PER_DAY;
    let [y0, y1] = two_digits(year / 100);
    let [y2, y3] = two_digits(year % 100);
    let [mo0, mo1] = two_digits(month);
    let [d0, d1] = two_digits(day);
    let [h0, h1] = two_digits(sod / 3600);
    let [mi0, mi1] = two_digits(sod / 60 % 60);
    let [s0, s1] = two_digits(sod % 60);
    [y0, y1, y2, y3, mo0, mo1, d0, d1, h0, h1, mi0, mi1, s0, s1]
}

/// Two ASCII digits of `n % 100`.
fn two_digits(n: u64) -> [u8; 2] {
    [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

/// (year, month 1..=12, day 1..=31) of the proleptic Gregorian calendar for `days` since
/// 1970-01-01: Howard Hinnant's `civil_from_days`, in unsigned arithmetic since `days >= 0`.
/// It counts in 400-year eras of 146 097 days, with years starting on March 1 so the leap
/// day is the last day of the year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, 0..=146_096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::encode::tests::{assert_decodes_in_any_chunking, decode, Dispatched};

    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap_or("<not utf-8>")
    }

    #[test]
    fn known_timestamps() {
        #[rustfmt::skip]
        let cases: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            (86_399, "1970-01-01T23:59:59Z"),
            (68_169_600, "1972-02-29T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (951_868_799, "2000-02-29T23:59:59Z"),
            (951_868_800, "2000-03-01T00:00:00Z"),
            (1_709_164_799, "2024-02-28T23:59:59Z"),
            (1_709_164_800, "2024-02-29T00:00:00Z"),
            (1_761_143_445, "2025-10-22T14:30:45Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (4_133_980_800, "2101-01-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
            (253_402_300_800, "9999-12-31T23:59:59Z"),
            (u64::MAX, "9999-12-31T23:59:59Z"),
        ];
        for &(secs, want) in cases {
            assert_eq!(s(&rfc3339_utc(secs)), want, "{secs}");
            let spaced = want.replace('T', " ").replace('Z', "");
            assert_eq!(s(&space_utc(secs)), spaced, "{secs}");
        }
    }

    #[test]
    fn every_day_from_1970_to_2100_matches_an_independent_day_counter() {
        // Gregorian rule, spelled out: every 400th year, else not every 100th, else every 4th.
        let leap = |y: u64| match (y % 400, y % 100, y % 4) {
            (0, _, _) => true,
            (_, 0, _) => false,
            (_, _, 0) => true,
            _ => false,
        };
        let month_len = |y: u64, m: u64| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut day = 0u64;
        for y in 1970..=2100 {
            for m in 1..=12 {
                for d in 1..=month_len(y, m) {
                    // Vary the time of day too, and always check both ends of the day.
                    let sod = day * 7_919 % SECS_PER_DAY;
                    for sod in [0, sod, SECS_PER_DAY - 1] {
                        let secs = day * SECS_PER_DAY + sod;
                        let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
                        let want = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z");
                        assert_eq!(s(&rfc3339_utc(secs)), want, "{secs}");
                        let want = format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}");
                        assert_eq!(s(&space_utc(secs)), want, "{secs}");
                    }
                    day += 1;
                }
            }
        }
        assert_eq!(day, 47_847, "days from 1970-01-01 to 2101-01-01");
    }

    fn run(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(&mut out);
        out.to_vec()
    }

    const T: u64 = 1_761_143_445; // 2025-10-22T14:30:45Z

    #[test]
    fn system_events_are_byte_exact() {
        #[rustfmt::skip]
        let cases: &[(Vec<u8>, &[u8])] = &[
            (run(|o| encode_connected(T, o)), b"data: {\"type\":\"connected\",\"timestamp\":\"2025-10-22T14:30:45Z\"}\n\n"),
            (run(|o| encode_connected(0, o)), b"data: {\"type\":\"connected\",\"timestamp\":\"1970-01-01T00:00:00Z\"}\n\n"),
            (run(|o| encode_player_keepalive(T, o)), b": keepalive 2025-10-22 14:30:45\ndata: {\"type\":\"keepalive\",\"timestamp\":\"2025-10-22 14:30:45\"}\n\n"),
            (run(|o| encode_heartbeat(T, o)), b": heartbeat 1761143445\n\n"),
            (run(|o| encode_heartbeat(0, o)), b": heartbeat 0\n\n"),
            (run(|o| encode_heartbeat(u64::MAX, o)), b": heartbeat 18446744073709551615\n\n"),
            (run(|o| encode_error("channel not found", None, o)), b"data: {\"type\":\"error\",\"message\":\"channel not found\"}\n\n"),
            (run(|o| encode_error("bad", Some("error"), o)), b"event: error\ndata: {\"type\":\"error\",\"message\":\"bad\"}\n\n"),
            (run(|o| encode_error("", Some("e\r\nx"), o)), b"event: ex\ndata: {\"type\":\"error\",\"message\":\"\"}\n\n"),
            (run(|o| encode_reset(Some("42"), true, "history expired", o)), b"id: 42\nevent: reset\ndata: {\"type\":\"reset\",\"reason\":\"history expired\"}\n\n"),
            (run(|o| encode_reset(Some("42"), false, "gap", o)), b"id: 42\ndata: {\"type\":\"reset\",\"reason\":\"gap\"}\n\n"),
            (run(|o| encode_reset(None, true, "gap", o)), b"event: reset\ndata: {\"type\":\"reset\",\"reason\":\"gap\"}\n\n"),
            (run(|o| encode_reset(None, false, "", o)), b"data: {\"type\":\"reset\",\"reason\":\"\"}\n\n"),
            (run(|o| encode_reset(Some("1\n\0\r2"), false, "x", o)), b"id: 12\ndata: {\"type\":\"reset\",\"reason\":\"x\"}\n\n"),
        ];
        for (got, want) in cases {
            assert_eq!(s(got), s(want));
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("say \"hi\"", r#"say \"hi\""#),
            (r"C:\path", r"C:\\path"),
            ("a\nb\r\nc", r"a\nb\r\nc"),
            ("\t\u{8}\u{c}", r"\t\u0008\u000c"),
            ("\0\u{1}\u{1f}\u{7f}", "\\u0000\\u0001\\u001f\u{7f}"),
            ("héllo 🌍 \u{2028}", "héllo 🌍 \u{2028}"),
            ("</script>'", "</script>'"),
            ("\"\\\"", r#"\"\\\""#),
        ];
        for (raw, escaped) in cases {
            let got = run(|o| encode_error(raw, None, o));
            let want = format!("data: {{\"type\":\"error\",\"message\":\"{escaped}\"}}\n\n");
            assert_eq!(s(&got), want, "{raw:?}");
            let got = run(|o| encode_reset(None, false, raw, o));
            let want = format!("data: {{\"type\":\"reset\",\"reason\":\"{escaped}\"}}\n\n");
            assert_eq!(s(&got), want, "{raw:?}");
        }
    }

    #[test]
    fn system_events_decode_as_clients_see_them() {
        let d = |ty: &str, data: &str, id: &str| Dispatched {
            ty: ty.into(),
            data: data.into(),
            id: id.into(),
            retry: None,
        };
        #[rustfmt::skip]
        let cases: &[(Vec<u8>, Vec<Dispatched>)] = &[
            (run(|o| encode_connected(T, o)), vec![d("message", r#"{"type":"connected","timestamp":"2025-10-22T14:30:45Z"}"#, "")]),
            (run(|o| encode_player_keepalive(T, o)), vec![d("message", r#"{"type":"keepalive","timestamp":"2025-10-22 14:30:45"}"#, "")]),
            (run(|o| encode_heartbeat(T, o)), vec![]),
            (run(|o| encode_error("line1\nline2", Some("oops\n"), o)), vec![d("oops", r#"{"type":"error","message":"line1\nline2"}"#, "")]),
            (run(|o| encode_reset(Some("9\r\n"), true, "a\r\nb", o)), vec![d("reset", r#"{"type":"reset","reason":"a\r\nb"}"#, "9")]),
        ];
        for (stream, want) in cases {
            assert_eq!(&decode(stream), want, "{}", s(stream));
        }
        // All of them in one stream, under every chunking.
        let stream: Vec<u8> = cases.iter().flat_map(|(b, _)| b.iter().copied()).collect();
        // The reset is last and the only event with an id, so no id carries over.
        let want: Vec<Dispatched> = cases.iter().flat_map(|(_, w)| w.iter().cloned()).collect();
        assert_decodes_in_any_chunking(&stream, &want);
    }
}
