//! Published-payload validation with each JSON library, to pick the faster for the hot path.
//!
//! Every payload kind has one check, written once per library with that library's best API
//! for the job:
//!
//! - `simd_value`: `simd-json` into a borrowed DOM (`to_borrowed_value`), as
//!   `route::payload::check` did until these figures moved it to `serde_json`.
//! - `simd_tape`: `simd-json` onto a tape with reused buffers (no allocation once warm).
//! - `serde_typed`: `serde_json` into a borrowed struct whose fields are `&RawValue`: the
//!   document is fully checked for syntax, but nothing is built for the parts not looked at.
//! - `serde_value`: `serde_json` into a `Value` (a DOM, allocating), the naive way.
//!
//! The checks: seed 000's envelope is the gateway's `PlayerEnvelope` rule (integer
//! `brand_id` and `player_id`, string `event_type`, non-null `event_data`); seed 004's event
//! needs a string `type` and a non-null `data`; the others (002, 003) must be JSON objects.
//! Each validator accepts exactly what the others accept on these inputs (tested below), and
//! what the gateway's own check (`payload/check_envelope_000`, now `serde_json` into raw
//! members) accepts.
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use simd_json::prelude::*;

/// What a payload must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Seed 000: the gateway's `PlayerEnvelope` rule.
    Envelope,
    /// Seed 004: `{"type": "<string>", "data": <not null>}`.
    Typed,
    /// Seeds 002 and 003: any JSON object.
    Object,
}

/// The JSON library and API a check runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// `simd-json`, borrowed DOM: the gateway's choice before this comparison.
    SimdValue,
    /// `simd-json`, tape with reused buffers.
    SimdTape,
    /// `serde_json` into a struct of raw values.
    SerdeTyped,
    /// `serde_json` into a `Value`.
    SerdeValue,
}

impl Library {
    /// Every library, in report order.
    pub const ALL: [Library; 4] = [
        Library::SimdValue,
        Library::SimdTape,
        Library::SerdeTyped,
        Library::SerdeValue,
    ];

    /// Short name for bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Library::SimdValue => "simd_value",
            Library::SimdTape => "simd_tape",
            Library::SerdeTyped => "serde_typed",
            Library::SerdeValue => "serde_value",
        }
    }
}

/// Reusable state of one validator: `simd-json` parses in place, so it needs a copy of the
/// payload, and its tape API reuses its index buffers.
#[derive(Default)]
pub struct Validator {
    /// Where `simd-json` parses (the gateway keeps one per core, too).
    scratch: Vec<u8>,
    /// `simd-json`'s stage buffers, kept across calls.
    buffers: simd_json::Buffers,
}

impl Validator {
    /// Whether `payload` has `shape`, checked with `library`.
    pub fn check(&mut self, library: Library, shape: Shape, payload: &[u8]) -> bool {
        match library {
            Library::SimdValue => self.simd_value(shape, payload),
            Library::SimdTape => self.simd_tape(shape, payload),
            Library::SerdeTyped => serde_typed(shape, payload),
            Library::SerdeValue => serde_value(shape, payload),
        }
    }

    fn simd_value(&mut self, shape: Shape, payload: &[u8]) -> bool {
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        let Ok(v) = simd_json::to_borrowed_value(&mut self.scratch) else {
            return false;
        };
        let Some(obj) = v.as_object() else {
            return false;
        };
        match shape {
            Shape::Envelope => {
                ["brand_id", "player_id"]
                    .iter()
                    .all(|k| obj.get(*k).is_some_and(|x| x.is_i64() || x.is_u64()))
                    && obj.get("event_type").is_some_and(|x| x.is_str())
                    && obj.get("event_data").is_some_and(|x| !x.is_null())
            }
            Shape::Typed => {
                obj.get("type").is_some_and(|t| t.is_str())
                    && obj.get("data").is_some_and(|d| !d.is_null())
            }
            Shape::Object => true,
        }
    }

    fn simd_tape(&mut self, shape: Shape, payload: &[u8]) -> bool {
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        let Ok(tape) = simd_json::to_tape_with_buffers(&mut self.scratch, &mut self.buffers) else {
            return false;
        };
        let root = tape.as_value();
        let Some(obj) = root.as_object() else {
            return false;
        };
        match shape {
            Shape::Envelope => {
                ["brand_id", "player_id"]
                    .iter()
                    .all(|k| obj.get(*k).is_some_and(|x| x.is_i64() || x.is_u64()))
                    && obj.get("event_type").is_some_and(|x| x.is_str())
                    && obj.get("event_data").is_some_and(|x| !x.is_null())
            }
            Shape::Typed => {
                obj.get("type").is_some_and(|t| t.is_str())
                    && obj.get("data").is_some_and(|d| !d.is_null())
            }
            Shape::Object => true,
        }
    }
}

/// Seed 000's envelope with every field left as raw JSON text.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    brand_id: Option<&'a RawValue>,
    #[serde(borrow)]
    player_id: Option<&'a RawValue>,
    #[serde(borrow)]
    event_type: Option<&'a RawValue>,
    #[serde(borrow)]
    event_data: Option<&'a RawValue>,
}

/// Seed 004's event.
#[derive(Deserialize)]
struct Typed<'a> {
    #[serde(rename = "type", borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// Any object: every member skipped (and syntax-checked) unseen.
#[derive(Deserialize)]
struct AnyObject {}

/// Whether raw JSON text is an integer that fits `i64` or `u64` (what `simd-json`'s
/// `is_i64() || is_u64()` accept).
fn is_integer(raw: &RawValue) -> bool {
    let s = raw.get();
    !s.contains(['.', 'e', 'E']) && (s.parse::<i64>().is_ok() || s.parse::<u64>().is_ok())
}

fn serde_typed(shape: Shape, payload: &[u8]) -> bool {
    match shape {
        Shape::Envelope => match serde_json::from_slice::<Envelope>(payload) {
            Ok(e) => {
                e.brand_id.is_some_and(is_integer)
                    && e.player_id.is_some_and(is_integer)
                    && e.event_type.is_some_and(|t| t.get().starts_with('"'))
                    && e.event_data.is_some_and(|d| d.get() != "null")
            }
            Err(_) => false,
        },
        Shape::Typed => match serde_json::from_slice::<Typed>(payload) {
            Ok(t) => t.name.is_some() && t.data.is_some_and(|d| d.get() != "null"),
            Err(_) => false,
        },
        // A struct without fields deserializes from a JSON object only (also from `[]`,
        // which the check below refuses).
        Shape::Object => {
            payload.trim_ascii_start().starts_with(b"{")
                && serde_json::from_slice::<AnyObject>(payload).is_ok()
        }
    }
}

fn serde_value(shape: Shape, payload: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return false;
    };
    let Some(obj) = v.as_object() else {
        return false;
    };
    match shape {
        Shape::Envelope => {
            ["brand_id", "player_id"]
                .iter()
                .all(|k| obj.get(*k).is_some_and(|x| x.is_i64() || x.is_u64()))
                && obj.get("event_type").is_some_and(|x| x.is_string())
                && obj.get("event_data").is_some_and(|x| !x.is_null())
        }
        Shape::Typed => {
            obj.get("type").is_some_and(|t| t.is_string())
                && obj.get("data").is_some_and(|d| !d.is_null())
        }
        Shape::Object => true,
    }
}

/// The seeds' real payloads: a short name, the payload and its shape.
pub fn seed_payloads() -> [(&'static str, &'static [u8], Shape); 6] {
    use crate::fixtures::*;
    [
        ("envelope_000", ENVELOPE_000, Shape::Envelope),
        ("round_002", ROUND_002, Shape::Object),
        ("jackpot_value_003", JACKPOT_VALUE_003, Shape::Object),
        (
            "jackpot_won_other_003",
            JACKPOT_WON_OTHER_003,
            Shape::Object,
        ),
        ("jackpot_won_003", JACKPOT_WON_003, Shape::Object),
        ("transaction_004", TRANSACTION_004, Shape::Typed),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_gives_the_same_verdict() {
        #[rustfmt::skip]
        let extra: &[(&[u8], Shape, bool)] = &[
            (b"not json", Shape::Object, false),
            (b"[1,2]", Shape::Object, false),
            (b"{\"a\":1", Shape::Object, false),
            (b"{}", Shape::Object, true),
            (br#"{"brand_id":1,"player_id":2,"event_type":"x","event_data":{}}"#, Shape::Envelope, true),
            (br#"{"brand_id":1.5,"player_id":2,"event_type":"x","event_data":{}}"#, Shape::Envelope, false),
            (br#"{"brand_id":1,"player_id":"2","event_type":"x","event_data":{}}"#, Shape::Envelope, false),
            (br#"{"brand_id":1,"player_id":2,"event_type":7,"event_data":{}}"#, Shape::Envelope, false),
            (br#"{"brand_id":1,"player_id":2,"event_type":"x","event_data":null}"#, Shape::Envelope, false),
            (br#"{"brand_id":1,"player_id":2,"event_type":"x"}"#, Shape::Envelope, false),
            (br#"{"type":"a.b","data":{"x":1}}"#, Shape::Typed, true),
            (br#"{"type":1,"data":{}}"#, Shape::Typed, false),
            (br#"{"type":"a"}"#, Shape::Typed, false),
            (br#"{"type":"a","data":null}"#, Shape::Typed, false),
        ];
        let seeds = seed_payloads().map(|(_, p, s)| (p, s, true));
        let mut v = Validator::default();
        for (payload, shape, want) in seeds.iter().chain(extra) {
            if *shape == Shape::Envelope {
                let gateway = gateway::internals::payload::check(
                    gateway::internals::PayloadRule::PlayerEnvelope,
                    payload,
                );
                assert_eq!(
                    gateway.is_ok(),
                    *want,
                    "gateway on {}",
                    String::from_utf8_lossy(payload)
                );
            }
            for lib in Library::ALL {
                assert_eq!(
                    v.check(lib, *shape, payload),
                    *want,
                    "{} on {}",
                    lib.name(),
                    String::from_utf8_lossy(payload)
                );
            }
        }
    }
}
