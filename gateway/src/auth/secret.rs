//! A secret value (HS256 key, API key, bearer token) that never prints and compares in
//! constant time.
use std::fmt;

use crate::auth::credentials::secret_eq;

/// What a secret prints as, in `Debug`, `Display` and the configuration's error messages.
pub const REDACTED: &str = "[redacted]";

/// A secret: prints as `[redacted]`; only [`Secret::expose`] gives the value to the code that
/// must use it.
#[derive(Clone, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the code that must use it (never for logging).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` equals the secret, compared without an early exit so timing does
    /// not reveal how many leading bytes of a guess were right (the length is not hidden).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        secret_eq(self.0.as_bytes(), candidate)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_redaction_and_comparison() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.to_string(), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter3"));
        assert!(!s.matches(b"hunter"));
        assert_eq!(s, Secret::new("hunter2"));
        assert_ne!(s, Secret::new("Hunter2"));
    }
}
