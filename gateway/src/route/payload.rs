//! Validation of published payloads, per the family's [`PayloadRule`].
//!
//! Runs once per message per core that owns subscribers, before the payload is encoded.
//! `simd-json` parses in place, so the payload is copied into a per-core scratch buffer that
//! is reused (no allocation per message once warm).
use simd_json::prelude::*;

use crate::route::table::PayloadRule;

/// Why a payload was refused (the message goes to the log and to HTTP publishers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    /// Nothing to deliver.
    Empty,
    /// Not JSON at all.
    NotJson,
    /// JSON, but not an object.
    NotObject,
    /// An object missing a required field (named), or with the wrong type.
    Field(&'static str),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// Deepest nesting of arrays and objects accepted in a payload. JSON parsers recurse (and a
/// core's stack is finite): a 40 KB body of `[[[[...` must be refused before any parser sees
/// it, not abort the process. Real payloads nest a handful of levels.
pub const MAX_DEPTH: usize = 64;

/// Whether `json`'s arrays and objects nest at most `max` deep (strings skipped, escapes
/// honoured). One pass, no allocation; says nothing else about validity.
pub fn depth_ok(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

impl PayloadError {
    /// A sentence for logs and `400` bodies.
    pub fn message(self) -> &'static str {
        match self {
            PayloadError::Empty => "payload is empty",
            PayloadError::NotJson => "payload is not valid JSON",
            PayloadError::NotObject => "payload is not a JSON object",
            PayloadError::Field("brand_id") => "payload lacks an integer brand_id",
            PayloadError::Field("player_id") => "payload lacks an integer player_id",
            PayloadError::Field("event_type") => "payload lacks a string event_type",
            PayloadError::Field("event_data") => "payload lacks event_data",
            PayloadError::Field("type") => {
                "payload lacks a string type of 1 to 200 bytes without line breaks"
            }
            PayloadError::Field("data") => "payload lacks data",
            PayloadError::Field(_) => "payload lacks a required field",
            PayloadError::TooDeep => "payload nests arrays/objects more than 64 deep",
        }
    }
}

/// Checks `payload` against `rule`, using `scratch` as the parse buffer.
pub fn check(rule: PayloadRule, payload: &[u8], scratch: &mut Vec<u8>) -> Result<(), PayloadError> {
    match rule {
        PayloadRule::Any if payload.is_empty() => Err(PayloadError::Empty),
        PayloadRule::Any => Ok(()),
        PayloadRule::PlayerEnvelope => {
            if !depth_ok(payload, MAX_DEPTH) {
                return Err(PayloadError::TooDeep);
            }
            scratch.clear();
            scratch.extend_from_slice(payload);
            let v = simd_json::to_borrowed_value(scratch).map_err(|_| PayloadError::NotJson)?;
            let obj = v.as_object().ok_or(PayloadError::NotObject)?;
            for key in ["brand_id", "player_id"] {
                if !obj.get(key).is_some_and(|x| x.is_i64() || x.is_u64()) {
                    return Err(PayloadError::Field(key));
                }
            }
            if !obj.get("event_type").is_some_and(|x| x.is_str()) {
                return Err(PayloadError::Field("event_type"));
            }
            if obj.get("event_data").is_none_or(|x| x.is_null()) {
                return Err(PayloadError::Field("event_data"));
            }
            Ok(())
        }
        PayloadRule::TypedEvent => typed_event(payload).map(|_| ()),
    }
}

/// A `{"type": ..., "data": ...}` payload split into its event name and the raw JSON text of
/// `data` (delivered byte for byte as published).
#[derive(Debug, PartialEq, Eq)]
pub struct TypedEvent<'a> {
    /// The `event:` name.
    pub name: std::borrow::Cow<'a, str>,
    /// `data`'s JSON text.
    pub data: &'a [u8],
}

#[derive(serde::Deserialize)]
struct TypedEventJson<'a> {
    #[serde(rename = "type", borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

/// Longest event name accepted from a payload's `type`.
pub const MAX_EVENT_NAME: usize = 200;

/// Splits a seed-004 payload. `serde_json` here, not `simd-json`: it hands back `data`'s raw
/// text without re-serialising it, and topic events are few next to player events.
pub fn typed_event(payload: &[u8]) -> Result<TypedEvent<'_>, PayloadError> {
    if payload.is_empty() {
        return Err(PayloadError::Empty);
    }
    if !depth_ok(payload, MAX_DEPTH) {
        return Err(PayloadError::TooDeep);
    }
    let v: TypedEventJson = serde_json::from_slice(payload).map_err(|e| {
        if e.is_data() {
            PayloadError::NotObject
        } else {
            PayloadError::NotJson
        }
    })?;
    let name = v
        .name
        .filter(|n| !n.is_empty() && n.len() <= MAX_EVENT_NAME && !n.contains(['\r', '\n']))
        .ok_or(PayloadError::Field("type"))?;
    let data = v
        .data
        .filter(|d| d.get() != "null")
        .ok_or(PayloadError::Field("data"))?;
    Ok(TypedEvent {
        name,
        data: data.get().as_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn player_envelope() {
        let ok = br#"{"brand_id":1001,"player_id":12345,"event_type":"notification","event_data":{"a":1}}"#;
        let cases: &[(&[u8], Result<(), PayloadError>)] = &[
            (ok, Ok(())),
            (b"not json", Err(PayloadError::NotJson)),
            (b"{\"brand_id\":1", Err(PayloadError::NotJson)),
            (b"[1,2]", Err(PayloadError::NotObject)),
            (b"42", Err(PayloadError::NotObject)),
            (
                br#"{"player_id":1,"event_type":"x","event_data":{}}"#,
                Err(PayloadError::Field("brand_id")),
            ),
            (
                br#"{"brand_id":"1","player_id":1,"event_type":"x","event_data":{}}"#,
                Err(PayloadError::Field("brand_id")),
            ),
            (
                br#"{"brand_id":1,"player_id":1.5,"event_type":"x","event_data":{}}"#,
                Err(PayloadError::Field("player_id")),
            ),
            (
                br#"{"brand_id":1,"player_id":1,"event_type":7,"event_data":{}}"#,
                Err(PayloadError::Field("event_type")),
            ),
            (
                br#"{"brand_id":1,"player_id":1,"event_type":"x"}"#,
                Err(PayloadError::Field("event_data")),
            ),
            (
                br#"{"brand_id":1,"player_id":1,"event_type":"x","event_data":null}"#,
                Err(PayloadError::Field("event_data")),
            ),
        ];
        let mut scratch = Vec::new();
        for (p, want) in cases {
            assert_eq!(
                check(PayloadRule::PlayerEnvelope, p, &mut scratch),
                *want,
                "{}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn typed_events() {
        let ev =
            typed_event(br#"{"type":"transaction.created","data":{"amount": 10000}}"#).unwrap();
        assert_eq!(ev.name, "transaction.created");
        assert_eq!(ev.data, br#"{"amount": 10000}"#);
        let esc = typed_event(br#"{"data":[1],"type":"a\u002eb"}"#).unwrap();
        assert_eq!(esc.name, "a.b");
        let cases: &[(&[u8], PayloadError)] = &[
            (b"", PayloadError::Empty),
            (b"nope", PayloadError::NotJson),
            (b"[1]", PayloadError::NotObject),
            (br#"{"type":1,"data":{}}"#, PayloadError::NotObject),
            (br#"{"data":{}}"#, PayloadError::Field("type")),
            (br#"{"type":"","data":{}}"#, PayloadError::Field("type")),
            (br#"{"type":"a\nb","data":{}}"#, PayloadError::Field("type")),
            (br#"{"type":"a"}"#, PayloadError::Field("data")),
            (br#"{"type":"a","data":null}"#, PayloadError::Field("data")),
        ];
        for (p, want) in cases {
            assert_eq!(
                typed_event(p).map(|_| ()),
                Err(*want),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = |n: usize| {
            format!(
                r#"{{"brand_id":1,"player_id":2,"event_type":"x","event_data":{}1{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        let mut scratch = Vec::new();
        let ok = deep(MAX_DEPTH - 1);
        assert_eq!(
            check(PayloadRule::PlayerEnvelope, ok.as_bytes(), &mut scratch),
            Ok(())
        );
        for n in [MAX_DEPTH, 20_000, 200_000] {
            let p = deep(n);
            assert_eq!(
                check(PayloadRule::PlayerEnvelope, p.as_bytes(), &mut scratch),
                Err(PayloadError::TooDeep)
            );
            let t = format!(
                r#"{{"type":"a","data":{}1{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            );
            assert_eq!(typed_event(t.as_bytes()), Err(PayloadError::TooDeep));
        }
        // Brackets inside strings (escaped quotes too) do not count.
        let s = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(depth_ok(s.as_bytes(), 2));
        assert!(!depth_ok(b"[[[", 2));
    }
}
