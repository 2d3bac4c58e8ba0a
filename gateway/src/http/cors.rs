//! Which browser origins get CORS headers (`SSE_CORS_ORIGINS`): the list as configured, the
//! check that each entry is written as browsers send it (once, at start-up), and the exact
//! match of a request's `Origin` (per request: a comparison, no allocation).
use url::{Origin, Url};

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
    pub fn parse(text: &str) -> Result<CorsOrigins, String> {
        let items = text.split(',').map(str::trim).filter(|s| !s.is_empty());
        let items: Vec<String> = items.map(String::from).collect();
        Ok(match items.as_slice() {
            [] => CorsOrigins::None,
            [one] if one == "*" => CorsOrigins::Any,
            _ => CorsOrigins::List(items),
        })
    }

    /// The first listed origin that is not written as browsers send it, and why: matching is
    /// exact, so an entry written any other way would never match.
    pub fn check(&self) -> Result<(), (&str, String)> {
        let list = match self {
            CorsOrigins::List(list) => &list[..],
            _ => &[],
        };
        list.iter()
            .try_for_each(|o| check_origin(o).map_err(|r| (o.as_str(), r)))
    }
}

/// Checks one origin: it must be its own serialization (`url`'s, as browsers send it: lower
/// case, no path, no trailing `/`, no user information, no default port).
fn check_origin(origin: &str) -> Result<(), String> {
    const FORM: &str = "must look like scheme://host[:port], e.g. https://example.com";
    if origin == "*" {
        return Err("`*` allows every origin and must be the only entry".into());
    }
    let url = Url::parse(origin).map_err(|e| format!("{FORM} ({e})"))?;
    let written = match url.origin() {
        origin @ Origin::Tuple(..) => origin.ascii_serialization(),
        // `url` gives a scheme other than http(s), ws(s) and ftp no origin; browsers send
        // such a page's (an app's, an extension's) as scheme://host[:port], in lower case.
        Origin::Opaque(_) => match url.host_str().filter(|h| !h.is_empty()) {
            None => return Err(format!("{FORM} (missing host)")),
            Some(host) => {
                let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{}{port}", url.scheme(), host.to_ascii_lowercase())
            }
        },
    };
    match url.port() {
        Some(0) => Err("port must be from 1 to 65535".into()),
        _ if written != origin => Err(format!("must be written as browsers send it: {written}")),
        _ => Ok(()),
    }
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
        let sent = "must be written as browsers send it: https://a.example";
        let cases: &[(&str, Result<(), &str>)] = &[
            ("https://a.example", Ok(())),
            ("http://b.example:8080", Ok(())),
            ("http://[::1]:8080", Ok(())),
            ("web+app://x", Ok(())),
            ("*", Err("only entry")),
            ("a.example", Err("scheme://host")),
            ("1http://a", Err("scheme://host")),
            ("https://a.example/", Err(sent)),
            ("https://a.example?x", Err(sent)),
            ("https://u@a.example", Err(sent)),
            ("https://a.example:443", Err(sent)),
            ("https://a.example:0", Err("from 1 to 65535")),
            ("https://", Err("empty host")),
            ("web+app://", Err("missing host")),
            ("https://A.example", Err(sent)),
            ("web+app://X", Err("browsers send it: web+app://x")),
            (
                "http://[0:0::1]:8080",
                Err("browsers send it: http://[::1]:8080"),
            ),
        ];
        for (origin, want) in cases {
            match (check_origin(origin), want) {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(want)) => assert!(got.contains(want), "{origin}: {got}"),
                (got, want) => panic!("{origin}: got {got:?}, want {want:?}"),
            }
        }
    }
}
