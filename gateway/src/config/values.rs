//! The settings' own value types, and parsers for the plain ones. A parser's error is the
//! reason alone: the caller names the setting and the value.
use std::fmt;
use std::net::SocketAddr;

use crate::auth::Secret;

/// Which browser origins get CORS headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// No `Access-Control-*` headers at all (the default).
    #[default]
    None,
    /// Every origin (`*`).
    Any,
    /// Exactly these origins (`scheme://host[:port]`).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Whether a request's `Origin` header value is allowed: exact, case-sensitive match.
    pub fn allows(&self, origin: &[u8]) -> bool {
        match self {
            CorsOrigins::None => false,
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => list.iter().any(|o| o.as_bytes() == origin),
        }
    }

    /// Comma-separated origins, trimmed, empty ones dropped: none is none, `*` alone any.
    pub(super) fn parse(text: &str) -> Result<CorsOrigins, String> {
        let items = text.split(',').map(str::trim).filter(|s| !s.is_empty());
        let items: Vec<String> = items.map(String::from).collect();
        Ok(match items.as_slice() {
            [] => CorsOrigins::None,
            [one] if one == "*" => CorsOrigins::Any,
            _ => CorsOrigins::List(items),
        })
    }

    /// The first listed origin that is not `scheme://host[:port]` in lower case, and why.
    pub(super) fn check(&self) -> Result<(), (&str, String)> {
        let list = if let CorsOrigins::List(list) = self {
            &list[..]
        } else {
            &[]
        };
        list.iter()
            .try_for_each(|o| check_origin(o).map_err(|r| (o.as_str(), r)))
    }
}

/// Which I/O driver the cores run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoDriverChoice {
    /// io_uring where the kernel allows it, epoll otherwise (the default).
    #[default]
    Auto,
    /// io_uring only; start-up fails where it is unavailable.
    IoUring,
    /// epoll only (lets operators and tests force the fallback).
    Epoll,
}

impl IoDriverChoice {
    /// The setting's text form: `auto`, `io_uring` or `epoll`.
    pub fn as_str(self) -> &'static str {
        match self {
            IoDriverChoice::Auto => "auto",
            IoDriverChoice::IoUring => "io_uring",
            IoDriverChoice::Epoll => "epoll",
        }
    }

    /// Reads the text form, surrounding whitespace allowed.
    pub(super) fn parse(text: &str) -> Result<IoDriverChoice, String> {
        let all = [Self::Auto, Self::IoUring, Self::Epoll];
        let found = all.into_iter().find(|d| d.as_str() == text.trim());
        found.ok_or_else(|| "must be one of auto, io_uring, epoll".to_string())
    }
}

impl fmt::Display for IoDriverChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A count: digits only (no sign), surrounding whitespace allowed.
pub(super) fn count(text: &str) -> Result<usize, String> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a whole number".to_string());
    }
    t.parse().map_err(|_| "is too large".to_string())
}

/// A listen address: `IP:port`, IPv6 in brackets.
pub(super) fn listen(text: &str) -> Result<SocketAddr, String> {
    let form = "must be an IP address and port, such as 0.0.0.0:8080 or [::]:8080";
    text.trim().parse().map_err(|_| form.to_string())
}

/// A secret, exactly as given ([`super::Config::validate`] rejects surrounding whitespace).
pub(super) fn secret(text: &str) -> Result<Secret, String> {
    Ok(Secret::new(text))
}

/// One API key of a list, trimmed (an empty one is dropped after parsing).
pub(super) fn key(text: &str) -> Result<Secret, String> {
    Ok(Secret::new(text.trim()))
}

/// Checks one CORS origin: `scheme://host[:port]`, lower case, nothing after.
fn check_origin(origin: &str) -> Result<(), String> {
    const FORM: &str = "must look like scheme://host[:port], e.g. https://example.com";
    let (scheme, rest) = origin.split_once("://").unwrap_or_default();
    let scheme_byte = |b: u8| b.is_ascii_alphanumeric() || b"+-.".contains(&b);
    let scheme_ok =
        scheme.starts_with(|c: char| c.is_ascii_alphabetic()) && scheme.bytes().all(scheme_byte);
    Err(if origin == "*" {
        "`*` allows every origin and must be the only entry".into()
    } else if !scheme_ok {
        FORM.into()
    } else if rest.contains(['/', '?', '#']) {
        format!("{FORM}, without a path or trailing `/` (browsers send origins without one)")
    } else if rest.contains('@') {
        format!("{FORM}, without user information")
    } else if let Err(reason) = super::redis::parse_host_port(rest) {
        reason
    } else if origin.bytes().any(|b| b.is_ascii_uppercase()) {
        "must be lower case: browsers send origins in lower case and matching is exact".into()
    } else {
        return Ok(());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_allow() {
        let list = CorsOrigins::List(vec![
            "https://a.example".into(),
            "http://b.example:8080".into(),
        ]);
        let cases: &[(&CorsOrigins, &[u8], bool)] = &[
            (&CorsOrigins::None, b"https://a.example", false),
            (&CorsOrigins::Any, b"https://anything.example", true),
            (&list, b"https://a.example", true),
            (&list, b"http://b.example:8080", true),
            (&list, b"http://b.example", false),
            (&list, b"https://A.example", false),
            (&list, b"https://a.example/", false),
            (&list, b"", false),
        ];
        for (cors, origin, want) in cases {
            assert_eq!(
                cors.allows(origin),
                *want,
                "{cors:?} {:?}",
                String::from_utf8_lossy(origin)
            );
        }
    }

    #[test]
    fn origin_forms() {
        let cases: &[(&str, Result<(), &str>)] = &[
            ("https://a.example", Ok(())),
            ("http://b.example:8080", Ok(())),
            ("http://[::1]:8080", Ok(())),
            ("web+app://x", Ok(())),
            ("*", Err("only entry")),
            ("a.example", Err("scheme://host")),
            ("1http://a", Err("scheme://host")),
            ("https://a.example/", Err("without a path")),
            ("https://a.example?x", Err("without a path")),
            ("https://u@a.example", Err("user information")),
            ("https://a.example:0", Err("from 1 to 65535")),
            ("https://", Err("missing host")),
            ("https://A.example", Err("lower case")),
        ];
        for (origin, want) in cases {
            match (check_origin(origin), want) {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(want)) => assert!(got.contains(want), "{origin}: {got}"),
                (got, want) => panic!("{origin}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn io_driver_text_round_trips() {
        for d in [
            IoDriverChoice::Auto,
            IoDriverChoice::IoUring,
            IoDriverChoice::Epoll,
        ] {
            assert_eq!(IoDriverChoice::parse(&format!(" {d} ")), Ok(d));
        }
        assert!(IoDriverChoice::parse("uring").is_err());
    }

    #[test]
    fn counts() {
        let cases: &[(&str, Result<usize, &str>)] = &[
            ("0", Ok(0)),
            (" 12 ", Ok(12)),
            ("", Err("whole number")),
            ("-1", Err("whole number")),
            ("+1", Err("whole number")),
            ("1e3", Err("whole number")),
            ("99999999999999999999999", Err("too large")),
        ];
        for (text, want) in cases {
            match (count(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{text}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }
}
