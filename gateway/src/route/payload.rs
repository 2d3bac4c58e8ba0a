//! Validation of published payloads, per the family's [`PayloadRule`].
//!
//! Runs once per message per core that owns subscribers, before the payload is encoded.
//!
//! Why `serde_json` into a struct of raw values, not `simd-json`: on the seeds' real payloads
//! (about 150-250 bytes) it is twice as fast as `simd-json`'s DOM, which this used before, and
//! as fast as `simd-json`'s tape with reused buffers (measured: 0.36 us against 0.71 us and
//! 0.37 us for seed 000's envelope, `docs/BENCHMARKS.md`), while needing no copy of the
//! payload, no per-core buffers and no allocation: the whole document is checked for syntax,
//! but only the four members the rule reads are kept (as borrowed JSON text), the rest skipped.
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

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
        }
    }
}

/// Seed 000's envelope: its four members as raw JSON text, borrowed from the payload.
#[derive(Default)]
struct Envelope<'a> {
    brand_id: Option<&'a RawValue>,
    player_id: Option<&'a RawValue>,
    event_type: Option<&'a RawValue>,
    event_data: Option<&'a RawValue>,
}

/// A member name of the envelope, told apart without allocating (escaped names included).
enum Member {
    BrandId,
    PlayerId,
    EventType,
    EventData,
    Other,
}

// `#[inline]` on the visitors of this hot path: whether LLVM inlines them into `check` moved
// with unrelated code elsewhere in the crate (+5% instructions when they were not).
impl<'de> serde::Deserialize<'de> for Member {
    #[inline]
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MemberVisitor;
        impl Visitor<'_> for MemberVisitor {
            type Value = Member;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            #[inline]
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Member, E> {
                Ok(match name {
                    "brand_id" => Member::BrandId,
                    "player_id" => Member::PlayerId,
                    "event_type" => Member::EventType,
                    "event_data" => Member::EventData,
                    _ => Member::Other,
                })
            }
        }
        d.deserialize_identifier(MemberVisitor)
    }
}

impl<'de> serde::Deserialize<'de> for Envelope<'de> {
    #[inline]
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor;
        impl<'de> Visitor<'de> for EnvelopeVisitor {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            #[inline]
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                let mut e = Envelope::default();
                while let Some(member) = map.next_key::<Member>()? {
                    let slot = match member {
                        Member::BrandId => &mut e.brand_id,
                        Member::PlayerId => &mut e.player_id,
                        Member::EventType => &mut e.event_type,
                        Member::EventData => &mut e.event_data,
                        Member::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    // A repeated member keeps its first value.
                    let value = map.next_value()?;
                    slot.get_or_insert(value);
                }
                Ok(e)
            }
        }
        d.deserialize_map(EnvelopeVisitor)
    }
}

/// Whether raw JSON text is an integer that fits `i64` or `u64`.
fn is_integer(raw: &RawValue) -> bool {
    let s = raw.get();
    !s.contains(['.', 'e', 'E']) && (s.parse::<i64>().is_ok() || s.parse::<u64>().is_ok())
}

/// Checks `payload` against `rule`, parsing it where it is (no copy, no allocation).
pub fn check(rule: PayloadRule, payload: &[u8]) -> Result<(), PayloadError> {
    match rule {
        PayloadRule::Any if payload.is_empty() => Err(PayloadError::Empty),
        PayloadRule::Any => Ok(()),
        PayloadRule::PlayerEnvelope => {
            let e: Envelope = serde_json::from_slice(payload).map_err(|e| {
                if e.is_data() {
                    PayloadError::NotObject
                } else {
                    PayloadError::NotJson
                }
            })?;
            for (key, value) in [("brand_id", e.brand_id), ("player_id", e.player_id)] {
                if !value.is_some_and(is_integer) {
                    return Err(PayloadError::Field(key));
                }
            }
            if !e.event_type.is_some_and(|t| t.get().starts_with('"')) {
                return Err(PayloadError::Field("event_type"));
            }
            if e.event_data.is_none_or(|d| d.get() == "null") {
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
    // serde reads a struct from a JSON array of its fields too (`["x",1]` would pass as
    // `{"type":"x","data":1}`): only an object is a typed event.
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return Err(match serde_json::from_slice::<IgnoredAny>(payload) {
            Ok(_) => PayloadError::NotObject,
            Err(_) => PayloadError::NotJson,
        });
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
            (
                br#"{"brand_id":1,"player_id":1,"event_type":"x","event_data":{},}"#,
                Err(PayloadError::NotJson),
            ),
            (
                br#"{"brand_id":1,"player_id":1,"event_type":"x","event_data":{"a":[1,}}"#,
                Err(PayloadError::NotJson),
            ),
            (
                br#"{"brand_id":1,"player_id":1,"event_type":"x","event_data":{}} x"#,
                Err(PayloadError::NotJson),
            ),
            (
                br#" {"br\u0061nd_id":-7,"player_id":18446744073709551615,"event_type":"x","event_data":0} "#,
                Ok(()),
            ),
            (
                br#"{"brand_id":1,"player_id":1e3,"event_type":"x","event_data":{}}"#,
                Err(PayloadError::Field("player_id")),
            ),
            (
                br#"{"brand_id":1,"player_id":18446744073709551616,"event_type":"x","event_data":{}}"#,
                Err(PayloadError::Field("player_id")),
            ),
            (
                br#"{"brand_id":"1","brand_id":1,"player_id":1,"event_type":"x","event_data":{}}"#,
                Err(PayloadError::Field("brand_id")),
            ),
            (
                br#"{"other":{"deep":[1,{"brand_id":"x"}]},"brand_id":1,"player_id":1,"event_type":"x","event_data":[]}"#,
                Ok(()),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(
                check(PayloadRule::PlayerEnvelope, p),
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

    /// Found by the `payload` fuzz target: serde reads a struct from a JSON array of its
    /// fields in order, so `["x",1]` passed as `{"type":"x","data":1}`. Only an object is a
    /// typed event, as only an object is a player envelope.
    #[test]
    fn an_array_is_not_a_typed_event() {
        let cases: &[(&[u8], PayloadError)] = &[
            (br#"["x",1]"#, PayloadError::NotObject),
            (br#" ["x",{"a":1}] "#, PayloadError::NotObject),
            (br#"["x",1"#, PayloadError::NotJson),
        ];
        for (p, want) in cases {
            let p = *p;
            assert_eq!(
                typed_event(p).map(|_| ()),
                Err(*want),
                "{}",
                String::from_utf8_lossy(p)
            );
            let rule = check(PayloadRule::TypedEvent, p);
            assert_eq!(rule, Err(*want), "{}", String::from_utf8_lossy(p));
        }
        // The player envelope never took arrays.
        let array = br#"[1,2,"x",{}]"#;
        assert_eq!(
            check(PayloadRule::PlayerEnvelope, array),
            Err(PayloadError::NotObject)
        );
    }

    #[test]
    fn deep_nesting_cannot_exhaust_a_cores_stack() {
        // serde_json skips the raw members without recursing: a million levels on a 256 KiB
        // stack (a core has 2 MiB) are checked like any payload. A recursive DOM parser
        // (simd-json's, formerly here) aborted the process at about 20,000.
        let n = 1_000_000;
        let deep = format!(
            r#"{{"brand_id":1,"player_id":2,"event_type":"x","event_data":{}1{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        );
        let typed = format!(
            r#"{{"type":"a","data":{}1{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        );
        let r = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                (
                    check(PayloadRule::PlayerEnvelope, deep.as_bytes()),
                    typed_event(typed.as_bytes()).map(|e| e.data.len()),
                )
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(r, (Ok(()), Ok(2 * n + 1)));
    }
}
