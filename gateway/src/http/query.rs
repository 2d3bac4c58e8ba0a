//! Query-string parameters and percent-decoding, borrowing whenever nothing needs decoding.
//!
//! A stream URL carries a few parameters (`?channel=orders&token=...`); the router asks
//! for each by name. Values are decoded lazily, one at a time, so a request whose values
//! have no escapes costs no allocation at all, and a key is matched against the wanted
//! name by decoding it byte by byte, which never allocates either.

use std::borrow::Cow;
use std::fmt;

/// Why a query value or path segment cannot be decoded. Answered with 400; the variants let
/// a caller that explains itself to a person (the Redis URL setting) say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadEncoding {
    /// A `%` not followed by two hex digits.
    Escape,
    /// Bytes that are not UTF-8 once decoded.
    Utf8,
}

impl fmt::Display for BadEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid percent-encoding")
    }
}

impl std::error::Error for BadEncoding {}

/// First value of `name` in an `a=1&b=2` query, %-decoded (`+` is a space), so routes can
/// read their parameters without caring how a client encoded them.
///
/// `Ok(None)` when absent; a key without `=` has the value `""`; when a key repeats the
/// first occurrence wins. The value is borrowed from `query` unless it needs decoding.
///
/// Keys are matched after the same decoding, so `%63hannel=x` is found as `channel`; a key
/// that does not decode cannot equal any name and is skipped. Only the value that is
/// returned is checked, so a broken escape elsewhere in the query does not reject it.
pub fn query_param<'q>(query: &'q str, name: &str) -> Result<Option<Cow<'q, str>>, BadEncoding> {
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key_matches(key, name) {
            return decode(value, true).map(Some);
        }
    }
    Ok(None)
}

/// %-decode (no '+' handling) for path segments.
///
/// In a path `+` is a literal plus, unlike in a form-encoded query. The result may hold
/// any character, `/` and NUL included: a caller that splits or uses it as a name must
/// decide which it accepts.
pub fn percent_decode(s: &str) -> Result<Cow<'_, str>, BadEncoding> {
    decode(s, false)
}

/// Whether the form-encoded `key` decodes to exactly `name`.
fn key_matches(key: &str, name: &str) -> bool {
    if !key.contains(['%', '+']) {
        return key == name;
    }
    let mut decoded = Decoder {
        rest: key.as_bytes(),
        plus_is_space: true,
    };
    for want in name.bytes() {
        match decoded.next() {
            Some(Ok(got)) if got == want => {}
            _ => return false,
        }
    }
    decoded.next().is_none()
}

/// Decodes `s`, borrowing it when it holds nothing to decode.
fn decode(s: &str, plus_is_space: bool) -> Result<Cow<'_, str>, BadEncoding> {
    let needs_decoding = s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+'));
    if !needs_decoding {
        return Ok(Cow::Borrowed(s));
    }
    let mut bytes = Vec::with_capacity(s.len());
    for b in (Decoder {
        rest: s.as_bytes(),
        plus_is_space,
    }) {
        bytes.push(b?);
    }
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| BadEncoding::Utf8)
}

/// Iterator over the decoded bytes of a percent-encoded string.
struct Decoder<'s> {
    rest: &'s [u8],
    plus_is_space: bool,
}

impl Iterator for Decoder<'_> {
    type Item = Result<u8, BadEncoding>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&first, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(match first {
            b'%' => match rest {
                [hi, lo, tail @ ..] => match (hex_digit(*hi), hex_digit(*lo)) {
                    (Some(hi), Some(lo)) => {
                        self.rest = tail;
                        Ok(hi << 4 | lo)
                    }
                    _ => Err(BadEncoding::Escape),
                },
                _ => Err(BadEncoding::Escape),
            },
            b'+' if self.plus_is_space => Ok(b' '),
            b => Ok(b),
        })
    }
}

/// The value of one hex digit, either case.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected outcome: `Ok(None)` absent, `Ok(Some((value, borrowed)))`, or `Err`.
    type Want = Result<Option<(&'static str, bool)>, BadEncoding>;

    fn shape<'a>(
        got: &'a Result<Option<Cow<'_, str>>, BadEncoding>,
    ) -> Result<Option<(&'a str, bool)>, BadEncoding> {
        match got {
            Ok(Some(value)) => Ok(Some((value, matches!(value, Cow::Borrowed(_))))),
            Ok(None) => Ok(None),
            Err(e) => Err(*e),
        }
    }

    #[test]
    fn query_param_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, Want)] = &[
            // (query, name, want)
            ("", "a", Ok(None)),
            ("b=1", "a", Ok(None)),
            ("a=1", "a", Ok(Some(("1", true)))),
            ("b=2&a=1", "a", Ok(Some(("1", true)))),
            ("a=", "a", Ok(Some(("", true)))),
            ("a", "a", Ok(Some(("", true)))),
            ("b&a&c", "a", Ok(Some(("", true)))),
            ("a=1&a=2", "a", Ok(Some(("1", true)))),
            ("a=%zz&a=2", "a", Err(BadEncoding::Escape)),
            ("a=1&a=%zz", "a", Ok(Some(("1", true)))),
            ("a=x%2Cy", "a", Ok(Some(("x,y", false)))),
            ("a=x%2cy", "a", Ok(Some(("x,y", false)))),
            ("a=x+y", "a", Ok(Some(("x y", false)))),
            ("a=%2B", "a", Ok(Some(("+", false)))),
            ("a=%20", "a", Ok(Some((" ", false)))),
            ("a=%C3%A9", "a", Ok(Some(("é", false)))),
            ("a=é", "a", Ok(Some(("é", true)))),
            ("a=%zz", "a", Err(BadEncoding::Escape)),
            ("a=%2", "a", Err(BadEncoding::Escape)),
            ("a=%", "a", Err(BadEncoding::Escape)),
            ("a=%ff", "a", Err(BadEncoding::Utf8)),
            ("a=%C3", "a", Err(BadEncoding::Utf8)),
            ("b=%zz&a=1", "a", Ok(Some(("1", true)))),
            ("a=1&", "a", Ok(Some(("1", true)))),
            ("a=1&", "", Ok(None)),
            ("&&a=1&&", "a", Ok(Some(("1", true)))),
            ("=1", "", Ok(Some(("1", true)))),
            ("a=b=c", "a", Ok(Some(("b=c", true)))),
            ("ab=1", "a", Ok(None)),
            ("a=1", "ab", Ok(None)),
            ("A=1", "a", Ok(None)),
            ("%61=1", "a", Ok(Some(("1", true)))),
            ("%61%62=1", "a", Ok(None)),
            ("%6=1&a=2", "a", Ok(Some(("2", true)))),
            ("my+key=1", "my key", Ok(Some(("1", true)))),
            ("my%20key=1", "my key", Ok(Some(("1", true)))),
            ("my+key=1", "my+key", Ok(None)),
            ("%C3%A9=1", "é", Ok(Some(("1", true)))),
            ("last-event-id=42&channel=orders", "channel", Ok(Some(("orders", true)))),
        ];
        for (query, name, want) in cases {
            let got = query_param(query, name);
            assert_eq!(shape(&got), *want, "query_param({query:?}, {name:?})");
        }
    }

    #[test]
    fn percent_decode_table() {
        #[rustfmt::skip]
        let cases: &[(&str, Want)] = &[
            // (input, want)
            ("", Ok(Some(("", true)))),
            ("/plain/path", Ok(Some(("/plain/path", true)))),
            ("a+b", Ok(Some(("a+b", true)))),
            ("a%2Bb", Ok(Some(("a+b", false)))),
            ("a%20b", Ok(Some(("a b", false)))),
            ("%2c%2C", Ok(Some((",,", false)))),
            ("%2F", Ok(Some(("/", false)))),
            ("%00", Ok(Some(("\0", false)))),
            ("%e2%82%ac", Ok(Some(("€", false)))),
            ("%zz", Err(BadEncoding::Escape)),
            ("%g0", Err(BadEncoding::Escape)),
            ("%0", Err(BadEncoding::Escape)),
            ("a%", Err(BadEncoding::Escape)),
            ("%ff", Err(BadEncoding::Utf8)),
            ("%e2%82", Err(BadEncoding::Utf8)),
        ];
        for (input, want) in cases {
            let got = percent_decode(input).map(Some);
            assert_eq!(shape(&got), *want, "percent_decode({input:?})");
        }
    }

    #[test]
    fn bad_encoding_displays() {
        for e in [BadEncoding::Escape, BadEncoding::Utf8] {
            assert_eq!(e.to_string(), "invalid percent-encoding");
        }
    }
}
