//! `route::payload`: `check` under every rule and `typed_event`, against a reference written
//! here on `serde_json::Value` (slower, simpler): the same payloads pass, the same field is
//! named when one is missing, and what passes is valid JSON whose `data` comes back byte for
//! byte.

use gateway::internals::payload::{check, typed_event, PayloadError, MAX_EVENT_NAME};
use gateway::internals::PayloadRule;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// A JSON object's members in order, repeats kept (a `Value` keeps only the last of each).
struct Members(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    v.push(entry);
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// The object's members, or the error for a payload that is not one.
fn members(payload: &[u8]) -> Result<Vec<(String, Value)>, PayloadError> {
    match serde_json::from_slice::<Value>(payload) {
        Err(_) => Err(PayloadError::NotJson),
        Ok(Value::Object(_)) => Ok(serde_json::from_slice::<Members>(payload)
            .expect("an object parses as members")
            .0),
        Ok(_) => Err(PayloadError::NotObject),
    }
}

fn first<'a>(m: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    m.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Seed 000's envelope rule; a repeated member keeps its first value.
fn player_envelope(payload: &[u8]) -> Result<(), PayloadError> {
    let m = members(payload)?;
    for key in ["brand_id", "player_id"] {
        if !first(&m, key).is_some_and(|v| v.is_i64() || v.is_u64()) {
            return Err(PayloadError::Field(key));
        }
    }
    if !first(&m, "event_type").is_some_and(Value::is_string) {
        return Err(PayloadError::Field("event_type"));
    }
    if first(&m, "event_data").is_none_or(Value::is_null) {
        return Err(PayloadError::Field("event_data"));
    }
    Ok(())
}

/// Seed 004's `{"type": name, "data": any}`, as the name it yields and `data` as JSON.
fn typed(payload: &[u8]) -> Result<(String, Value), PayloadError> {
    if payload.is_empty() {
        return Err(PayloadError::Empty);
    }
    let m = members(payload)?;
    let name = match first(&m, "type") {
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= MAX_EVENT_NAME && !s.contains(['\r', '\n']) =>
        {
            s.clone()
        }
        _ => return Err(PayloadError::Field("type")),
    };
    match first(&m, "data") {
        None | Some(Value::Null) => Err(PayloadError::Field("data")),
        Some(d) => Ok((name, d.clone())),
    }
}

/// Same outcome, reading any two refusals of a payload that is not an object as equal:
/// which of `NotJson` / `NotObject` an invalid non-object gets depends on where the parser
/// stopped, and both are the same `400` to the publisher.
fn same(got: Result<(), PayloadError>, want: Result<(), PayloadError>) -> bool {
    use PayloadError::{NotJson, NotObject};
    match (got, want) {
        (Err(NotJson | NotObject), Err(NotJson | NotObject)) => true,
        (g, w) => g == w,
    }
}

/// One input.
pub fn run(payload: &[u8]) {
    // Not UTF-8: serde_json checks the UTF-8 of what it reads but not of members it skips,
    // so the gateway may take such a payload (or name a missing field) where the reference
    // says "not JSON". Browsers show such bytes as U+FFFD; left as is (docs/API.md,
    // "Fuzzing"), so only "no panic" here.
    if std::str::from_utf8(payload).is_err() {
        let _ = (
            check(PayloadRule::PlayerEnvelope, payload),
            typed_event(payload),
        );
        return;
    }
    // Deeper than `Value`'s recursion limit (128): the gateway skips such members without
    // recursing (pinned by its own test); the reference cannot follow, so only "no panic".
    if let Err(e) = serde_json::from_slice::<Value>(payload) {
        let e = e.to_string();
        // And numbers beyond f64 (`1e999`), valid JSON that `Value` refuses to hold. And a
        // lone surrogate escape (`"\udae2"`: "lone leading surrogate", or "unexpected end of
        // hex escape" when no `\u` follows): serde_json refuses it where it decodes a string
        // but not in a member it skips, as with UTF-8 above (browsers' JSON.parse takes it).
        if e.contains("recursion limit")
            || e.contains("number out of range")
            || e.contains("surrogate")
            || e.contains("end of hex escape")
        {
            let _ = (
                check(PayloadRule::PlayerEnvelope, payload),
                typed_event(payload),
            );
            return;
        }
    }
    let any = check(PayloadRule::Any, payload);
    assert_eq!(any.is_ok(), !payload.is_empty());

    let got = check(PayloadRule::PlayerEnvelope, payload);
    let want = player_envelope(payload);
    // `-0` is an integer in JSON's grammar, and the gateway takes it as one; `Value` reads
    // it as the float -0.0, as it does `-0.0`, which the gateway refuses: undecidable here.
    let negative_zero = members(payload).is_ok_and(|m| {
        ["brand_id", "player_id"].iter().any(|k| {
            first(&m, k)
                .and_then(Value::as_f64)
                .is_some_and(|f| f == 0.0 && f.is_sign_negative())
        })
    });
    assert!(
        negative_zero || same(got, want),
        "player envelope: {got:?}, reference {want:?}"
    );

    let got = typed_event(payload);
    let want = typed(payload);
    match (&got, &want) {
        (Ok(ev), Ok((name, data))) => {
            assert_eq!(ev.name, name.as_str());
            // `data` is the payload's own text for it, which parses to the same value.
            let text: Value = serde_json::from_slice(ev.data).expect("data is JSON");
            assert_eq!(&text, data);
        }
        // A repeated `type` or `data` is refused outright (whichever error it gets).
        (Err(_), Ok(_)) => {
            let m = members(payload).expect("an object");
            let count = |k: &str| m.iter().filter(|(key, _)| key == k).count();
            assert!(
                count("type") > 1 || count("data") > 1,
                "typed: {got:?}, reference {want:?}"
            );
        }
        (got, want) => {
            let got = got.as_ref().map(|_| ()).map_err(|e| *e);
            let want = want.as_ref().map(|_| ()).map_err(|e| *e);
            let dup = members(payload).is_ok_and(|m| {
                let count = |k: &str| m.iter().filter(|(key, _)| key == k).count();
                count("type") > 1 || count("data") > 1
            });
            // A `type` that is not a string fails serde's typed field: refused as
            // `NotObject` rather than naming the field (the same 400, a vaguer message).
            let wrong_type =
                got == Err(PayloadError::NotObject) && want == Err(PayloadError::Field("type"));
            assert!(
                dup || wrong_type || same(got, want),
                "typed: {got:?}, reference {want:?}"
            );
        }
    }
    assert_eq!(
        check(PayloadRule::TypedEvent, payload).is_ok(),
        got.is_ok(),
        "check(TypedEvent) is typed_event"
    );
}
