//! `auth::jwt::verify_hs256`: arbitrary tokens never panic, and tokens signed here with any
//! header and claims are judged as the rules in `auth/jwt.rs` say: only an `HS256` header
//! without `crit`, a matching signature, and claims with a future `exp` pass; a token that
//! verifies fails once any single byte of it changes or the secret differs.

use crate::{fields, number, text};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gateway::internals::jwt::{sign_hs256, verify_hs256, AuthError, Claims};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Tokens over this many bytes are refused without any work.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A token with a hand-written header, signed with `secret`.
fn forge(header: &[u8], claims: &[u8], secret: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    token
}

/// What the rules make of claims JSON behind a valid signature.
fn expected(claims: &[u8], now: u64) -> std::result::Result<Claims, AuthError> {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(claims) else {
        return Err(AuthError::Malformed);
    };
    let exp = m
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(AuthError::Malformed)?;
    if exp <= now {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = m.get("nbf") {
        if nbf.as_u64().ok_or(AuthError::Malformed)? > now {
            return Err(AuthError::NotYetValid);
        }
    }
    let channels = match m.get("channels") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|c| c.as_str().map(String::from).ok_or(AuthError::Malformed))
            .collect::<std::result::Result<_, _>>()?,
        Some(_) => return Err(AuthError::Malformed),
    };
    Ok(Claims {
        brand_id: m.get("brand_id").and_then(Value::as_i64),
        player_id: m.get("player_id").and_then(Value::as_i64),
        channels,
        exp,
    })
}

/// Whether two secrets are different HMAC keys (keys up to the block size are zero-padded,
/// so `k` and `k\0` are the same key; longer ones are hashed first).
fn different_keys(a: &[u8], b: &[u8]) -> bool {
    let trim = |k: &[u8]| k.len() - k.iter().rev().take_while(|&&b| b == 0).count();
    a.len() <= 64 && b.len() <= 64 && a[..trim(a)] != b[..trim(b)]
}

/// The input: `MODE 0xFF secret 0xFF now 0xFF a 0xFF b 0xFF other secret 0xFF flip`. MODE
/// `r`: `a` is a raw token; `s`: `a` is claims JSON, signed with the gateway's header; `f`:
/// `a` is any header and `b` any claims, signed. `now` is decimal seconds; `flip` (decimal)
/// picks the byte of a verified token to change.
fn check(data: &[u8]) -> Option<()> {
    let f = fields(data, 7);
    let (secret, now) = (f[1], number(f[2]));
    let token = match f[0].first().copied().unwrap_or(b'r') {
        // Raw bytes: nothing to expect but an answer.
        b'r' => {
            let token = f[3];
            if let Ok(c) = verify_hs256(token, secret, now, 0) {
                assert!(c.exp > now);
                assert_eq!(token.iter().filter(|&&b| b == b'.').count(), 2);
            }
            return Some(());
        }
        // The gateway's own header, any claims.
        b's' => {
            let claims = text(f[3])?;
            let token = sign_hs256(claims, secret);
            let got = verify_hs256(token.as_bytes(), secret, now, 0);
            if token.len() > MAX_TOKEN_LEN {
                assert_eq!(got, Err(AuthError::Malformed));
                return Some(());
            }
            assert_eq!(got, expected(claims.as_bytes(), now), "claims {claims:?}");
            token
        }
        // Any header and claims, correctly signed.
        b'f' => {
            let (header, claims) = (f[3], f[4]);
            let token = forge(header, claims, secret);
            let got = verify_hs256(token.as_bytes(), secret, now, 0);
            if token.len() > MAX_TOKEN_LEN {
                assert_eq!(got, Err(AuthError::Malformed));
                return Some(());
            }
            // Lossy: serde_json skips an ignored member's string without checking its UTF-8,
            // so the gateway may read a header that is not all UTF-8; its `alg` is.
            let h: Option<serde_json::Map<String, Value>> =
                serde_json::from_str(&String::from_utf8_lossy(header)).ok();
            let alg = h.as_ref().and_then(|h| h.get("alg"));
            match got {
                Err(AuthError::Missing | AuthError::BadSignature) => panic!("{got:?}"),
                Err(AuthError::BadAlgorithm) => {
                    assert!(
                        alg.is_some_and(|a| a.is_string() && a != "HS256"),
                        "{alg:?}"
                    )
                }
                Err(AuthError::Malformed) => {}
                Ok(_) | Err(AuthError::Expired | AuthError::NotYetValid) => {
                    let h = h.expect("a header that passes is a JSON object");
                    assert_eq!(h.get("alg"), Some(&"HS256".into()));
                    assert!(!h.contains_key("crit"));
                    assert_eq!(got, expected(claims, now));
                }
            }
            token
        }
        _ => return None,
    };
    if verify_hs256(token.as_bytes(), secret, now, 0).is_err() {
        return Some(());
    }
    // A verified token: another key, or any one byte changed, and it no longer verifies.
    let other = f[5];
    if different_keys(secret, other) {
        assert!(
            verify_hs256(token.as_bytes(), other, now, 0).is_err(),
            "other key"
        );
    }
    let mut bent = token.into_bytes();
    let flip = number(f[6]) as usize;
    let at = flip % bent.len();
    let to = bent[at].wrapping_add(1 + (flip / bent.len() % 255) as u8);
    bent[at] = to;
    let got = verify_hs256(&bent, secret, now, 0);
    assert!(got.is_err(), "byte {at} changed to {to:?}: {got:?}");
    Some(())
}

/// One input.
pub fn run(data: &[u8]) {
    let _ = check(data);
}
