//! Where credentials are found in a request, what they are checked against, and
//! constant-time comparison of shared secrets.
use crate::auth::Secret;

/// The secrets stream requests are checked against (borrowed from the settings).
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// HS256 key of player and private-channel tokens (`SSE_AUTH_SECRET`); `None` turns
    /// those families off (401).
    pub secret: Option<&'a Secret>,
    /// API keys of game streams (`SSE_API_KEYS`); empty turns them off (401).
    pub api_keys: &'a [Secret],
    /// Seconds of clock skew allowed on a token's `exp` and `nbf` (`SSE_JWT_LEEWAY`).
    pub leeway: u64,
}

/// The bearer token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer(authorization: Option<&[u8]>) -> Option<&[u8]> {
    let v = authorization?;
    if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
        let t = v[7..].trim_ascii();
        (!t.is_empty()).then_some(t)
    } else {
        None
    }
}

/// Compares two secrets without an early exit, so response timing does not reveal how many
/// leading bytes of a guess were right.
pub fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_forms() {
        type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
        let cases: &[Case] = &[
            (Some(b"Bearer abc"), Some(b"abc")),
            (Some(b"bearer abc "), Some(b"abc")),
            (Some(b"BEARER  abc"), Some(b"abc")),
            (Some(b"Basic abc"), None),
            (Some(b"Bearer "), None),
            (Some(b"Bearer"), None),
            (None, None),
        ];
        for (h, want) in cases {
            assert_eq!(bearer(*h), *want, "{h:?}");
        }
    }

    #[test]
    fn secret_compare() {
        assert!(secret_eq(b"abc", b"abc"));
        assert!(!secret_eq(b"abc", b"abd"));
        assert!(!secret_eq(b"abc", b"ab"));
        assert!(secret_eq(b"", b""));
    }
}
