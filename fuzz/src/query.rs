//! `http::query`: `query_param` and `percent_decode` on arbitrary strings.
//!
//! Two checks besides "never panics": against a plain reference decoder written here (a
//! value borrowed from the query when nothing needed decoding), and a round trip: a name and
//! a value of any Unicode, percent-encoded into a query among other pairs, come back intact.

use std::borrow::Cow;

use crate::{fields, text};
use gateway::internals::query::{percent_decode, query_param};

/// The reference: `%XX` is a byte, `+` a space when `plus` is set, anything else itself;
/// `None` for a broken escape or a result that is not UTF-8.
fn reference(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes every byte that is not unreserved, as a browser's form encoding would
/// (`encode_space_as_plus` picks `+` or `%20`).
fn encode(s: &str, plus: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' if plus => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One input.
pub fn run(data: &[u8]) {
    // `query 0xFF name 0xFF value 0xFF +` (the last field: `+` encodes spaces as `+`).
    let f = fields(data, 4);
    let (Some(query), Some(name), Some(value)) = (text(f[0]), text(f[1]), text(f[2])) else {
        return;
    };
    let plus = f[3] == b"+";

    // percent_decode against the reference; borrowed exactly when nothing was decoded.
    match percent_decode(query) {
        Ok(got) => {
            assert_eq!(
                Some(got.as_ref()),
                reference(query, false).as_deref(),
                "{query:?}"
            );
            assert_eq!(
                matches!(got, Cow::Borrowed(_)),
                !query.contains('%'),
                "{query:?}"
            );
        }
        Err(_) => assert_eq!(reference(query, false), None, "{query:?}"),
    }

    // query_param against the reference: first pair whose decoded key is the name.
    let want = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .find(|(k, _)| reference(k, true).as_deref() == Some(name))
        .map(|(_, v)| reference(v, true));
    match query_param(query, name) {
        Ok(got) => assert_eq!(
            got.as_deref(),
            want.clone().map(|v| v.expect("ok")).as_deref()
        ),
        Err(_) => assert_eq!(want, Some(None), "{query:?} {name:?}"),
    }

    // Round trip: the encoded pair, between other pairs, decodes to what was encoded.
    if name.is_empty() {
        return;
    }
    let wanted = format!("{}={}", encode(name, plus), encode(value, plus));
    let others = query
        .split('&')
        .filter(|p| {
            let key = p.split_once('=').map_or(*p, |(k, _)| k);
            reference(key, true).as_deref() != Some(name)
        })
        .collect::<Vec<_>>();
    let at = data.len() % (others.len() + 1);
    let mut pairs: Vec<&str> = others.clone();
    pairs.insert(at, &wanted);
    let q = pairs.join("&");
    let got = query_param(&q, name).expect("an encoded value decodes");
    assert_eq!(got.as_deref(), Some(value), "round trip through {q:?}");
    // The path decoder keeps `+` literal and decodes everything `encode` wrote.
    let path = encode(value, false);
    assert_eq!(percent_decode(&path).expect("decodes"), value);
}
