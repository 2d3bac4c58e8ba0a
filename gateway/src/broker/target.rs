//! The Redis broker's address (`EVENTS_REDIS_STORAGE`): a `redis://` URL or a bare
//! `host:port`, or a comma-separated list of nodes in either form (the seed nodes of a Redis
//! Cluster: `redis://[user:pass@]h1:p1,h2:p2[/db]`, `h1:p1,h2:p2`), read with the `url`
//! crate and shown with its password redacted.
use std::fmt;
use std::net::Ipv6Addr;

use url::{Host, ParseError, Url};

use crate::auth::secret::{Secret, REDACTED};
use crate::http::query::{percent_decode, BadEncoding};

/// The forms an error message offers.
const FORMS: &str = "expected redis://[user:pass@]host:port[/db] or host:port";

/// The forms an error about a list offers.
const LIST_FORMS: &str =
    "expected redis://[user:pass@]host1:port1,host2:port2[/db] or host1:port1,host2:port2";

/// Most nodes a list may name: a cluster is reached through any one of them, so a few per
/// shard is plenty, and each failed one costs a connect attempt (up to 2 s) per link.
pub const MAX_SEEDS: usize = 64;

/// One node's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Seed {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (6379 when a `redis://` URL names none).
    pub port: u16,
}

impl Seed {
    /// A node's address.
    pub fn new(host: impl Into<String>, port: u16) -> Seed {
        Seed {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Where the Redis broker lives, parsed from `EVENTS_REDIS_STORAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// The nodes to connect to, in the order given (at least one): one Redis, or seed nodes
    /// of a Redis Cluster. Every link tries them in turn, starting after the last that failed.
    pub seeds: Vec<Seed>,
    /// ACL user name for `AUTH`, percent-decoded (one for every node).
    pub username: Option<String>,
    /// Password for `AUTH`, percent-decoded (one for every node).
    pub password: Option<Secret>,
    /// Database index for `SELECT` (0 when none is given).
    pub db: u32,
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.username.as_deref().unwrap_or_default();
        match &self.password {
            Some(_) => write!(f, "redis://{user}:{REDACTED}@")?,
            // A lone user info is most often a password written without its `:`
            // (`redis://PASSWORD@host`); Redis has no password-less user to name, so hide it.
            None if !user.is_empty() => write!(f, "redis://{REDACTED}@")?,
            None => f.write_str("redis://")?,
        }
        for (i, seed) in self.seeds.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{seed}")?;
        }
        write!(f, "/{}", self.db)
    }
}

impl RedisTarget {
    /// A target of one node, without credentials, database 0.
    pub fn single(host: impl Into<String>, port: u16) -> RedisTarget {
        RedisTarget {
            seeds: vec![Seed::new(host, port)],
            username: None,
            password: None,
            db: 0,
        }
    }

    /// What a hand-built target can get wrong: no node, too many, a host's form and a zero
    /// port.
    pub fn check(&self) -> Result<(), String> {
        if self.seeds.is_empty() {
            return Err("missing host".into());
        }
        if self.seeds.len() > MAX_SEEDS {
            return Err(format!("at most {MAX_SEEDS} nodes may be listed"));
        }
        for seed in &self.seeds {
            check_host(&seed.host)?;
            if seed.port == 0 {
                return Err(PORT.to_string());
            }
        }
        Ok(())
    }
}

/// Why a port is refused.
const PORT: &str = "port must be from 1 to 65535";

/// Parses `redis://[user:pass@]host[:port][/db]` or bare `host:port` (read as `redis://`
/// after checking it holds neither credentials nor a database), or a comma-separated list of
/// nodes in either form, with one set of credentials and one database for all
/// (`redis://[user:pass@]h1:p1,h2:p2[/db]`, `h1:p1,h2:p2`).
pub fn parse(text: &str) -> Result<RedisTarget, String> {
    let s = text.trim();
    // The nodes sit between the credentials (up to the last `@`, as for one node) and the
    // first `/`, `?` or `#` after them.
    let start = s.find("://").map_or(0, |i| i + 3);
    let start = s[start..].rfind('@').map_or(start, |i| start + i + 1);
    let end = s[start..]
        .find(['/', '?', '#'])
        .map_or(s.len(), |i| start + i);
    let nodes = &s[start..end];
    if !nodes.contains(',') {
        return parse_one(s);
    }
    let (before, after) = (&s[..start], &s[end..]);
    let pieces: Vec<&str> = nodes.split(',').map(str::trim).collect();
    if pieces.len() > MAX_SEEDS {
        return Err(format!("at most {MAX_SEEDS} nodes may be listed"));
    }
    let mut target: Option<RedisTarget> = None;
    for (i, piece) in pieces.iter().enumerate() {
        let n = i + 1;
        if piece.is_empty() {
            return Err(format!(
                "node {n} of the list is empty (a stray `,`?); {LIST_FORMS}"
            ));
        }
        let one = parse_one(&format!("{before}{piece}{after}"))
            .map_err(|e| format!("node {n} of the list (`{piece}`): {e}"))?;
        match &mut target {
            None => target = Some(one),
            Some(t) => {
                // Credentials and database are the ones written once, so they agree.
                let seed = one.seeds.into_iter().next().ok_or("missing host")?;
                if t.seeds.contains(&seed) {
                    return Err(format!("node `{seed}` is listed twice"));
                }
                t.seeds.push(seed);
            }
        }
    }
    target.ok_or_else(|| format!("must not be empty; {LIST_FORMS}"))
}

/// [`parse`] of one node.
fn parse_one(s: &str) -> Result<RedisTarget, String> {
    let (scheme, rest) = s.split_once("://").unwrap_or(("", s));
    let reason = match scheme.to_ascii_lowercase().as_str() {
        _ if s.is_empty() => format!("must not be empty; {FORMS}"),
        "" if s.contains(['@', '/', '?', '#']) => {
            format!("credentials and a database need the redis:// form; {FORMS}")
        }
        "" | "redis" => String::new(),
        "rediss" => {
            "TLS is not supported (rediss://); use redis:// to a TLS-terminating proxy".into()
        }
        _ => format!("unsupported scheme `{scheme}`; {FORMS}"),
    };
    if !reason.is_empty() {
        return Err(reason);
    }
    // The last `@` ends the credentials, so an unencoded `@`, `/`, `?` or `#` in a password
    // still works: they are encoded before `url` reads the text.
    let (userinfo, host_path) = match rest.rsplit_once('@') {
        Some((info, host_path)) => {
            let info = info
                .replace('/', "%2F")
                .replace('?', "%3F")
                .replace('#', "%23");
            (format!("{info}@"), host_path)
        }
        None => (String::new(), rest),
    };
    // `url` takes `r:` for `r` and has no word for an unbracketed IPv6 address.
    let authority = host_path.split(['/', '?', '#']).next().unwrap_or_default();
    let host_text = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    if authority.ends_with(':') {
        return Err("missing port after `:`".into());
    }
    if !authority.starts_with('[') && authority.matches(':').count() > 1 {
        return Err("an IPv6 address must be written in brackets, as [::1]:6379".into());
    }
    let url = Url::parse(&format!("redis://{userinfo}{host_path}")).map_err(|e| match e {
        ParseError::EmptyHost => "missing host".to_string(),
        ParseError::InvalidPort => PORT.to_string(),
        ParseError::InvalidIpv6Address => {
            format!("`{authority}` must be an IPv6 address in brackets, then :port")
        }
        ParseError::InvalidDomainCharacter => {
            check_host(host_text).err().unwrap_or_else(|| e.to_string())
        }
        e => format!("{e}; {FORMS}"),
    })?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "query strings and fragments are not supported; {FORMS}"
        ));
    }
    let host = match url.host() {
        Some(Host::Ipv6(ip)) => ip.to_string(),
        // Checked as written: `url` percent-encodes what a host name cannot hold.
        Some(Host::Domain(_)) => check_host(host_text)?.to_string(),
        _ => return Err("missing host".into()),
    };
    let port = match url.port() {
        Some(0) => return Err(PORT.into()),
        None if scheme.is_empty() => return Err(format!("missing port; {FORMS}")),
        port => port.unwrap_or(6379),
    };
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        db => db
            .parse()
            .map_err(|_| format!("database `{db}` must be a whole number"))?,
    };
    let user = decode(url.username(), "user name")?;
    let pass = decode(url.password().unwrap_or_default(), "password")?;
    Ok(RedisTarget {
        seeds: vec![Seed { host, port }],
        username: (!user.is_empty()).then_some(user),
        password: (!pass.is_empty()).then(|| Secret::new(pass)),
        db,
    })
}

/// Percent-decodes a user name or password; the error says which and how it is broken.
fn decode(text: &str, what: &str) -> Result<String, String> {
    let reason = match percent_decode(text) {
        Ok(text) => return Ok(text.into_owned()),
        Err(BadEncoding::Escape) => "has a `%` not followed by two hex digits",
        Err(BadEncoding::Utf8) => "is not UTF-8 once percent-decoded",
    };
    Err(format!("{what} {reason}"))
}

/// A host name or an IP address (IPv6 without brackets), given back.
fn check_host(host: &str) -> Result<&str, String> {
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    match host {
        "" => Err("missing host".to_string()),
        _ if host.parse::<Ipv6Addr>().is_ok() || host.bytes().all(name_byte) => Ok(host),
        _ => Err(format!(
            "host `{host}` has characters a host name cannot have"
        )),
    }
}

/// The value as an error may show it: a URL's password (everything between the user name and
/// the last `@`) becomes `[redacted]`; user info without a `:` (`redis://PASSWORD@host`,
/// which the `url` crate reads as a user name) is redacted whole; a value with `@` but no
/// `://` loses all before the `@`.
pub fn redact_url(text: &str) -> String {
    let (prefix, rest) = text.split_at(text.find("://").map_or(0, |i| i + 3));
    match (rest.rsplit_once('@'), prefix) {
        (None, _) => text.to_string(),
        (Some((_, host)), "") => format!("{REDACTED}@{host}"),
        (Some((info, host)), _) => match info.split_once(':') {
            Some((user, _)) => format!("{prefix}{user}:{REDACTED}@{host}"),
            None => format!("{prefix}{REDACTED}@{host}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        host: &str,
        port: u16,
        user: Option<&str>,
        pass: Option<&str>,
        db: u32,
    ) -> RedisTarget {
        RedisTarget {
            seeds: vec![Seed::new(host, port)],
            username: user.map(Into::into),
            password: pass.map(Secret::new),
            db,
        }
    }

    #[test]
    fn redis_url_forms() {
        let ok: &[(&str, RedisTarget)] = &[
            ("redis://r:6379", target("r", 6379, None, None, 0)),
            ("redis://r", target("r", 6379, None, None, 0)),
            ("redis://r/", target("r", 6379, None, None, 0)),
            ("REDIS://r:1/15", target("r", 1, None, None, 15)),
            (
                "redis://u:p@r:7000/3",
                target("r", 7000, Some("u"), Some("p"), 3),
            ),
            ("redis://:p@r", target("r", 6379, None, Some("p"), 0)),
            ("redis://u@r", target("r", 6379, Some("u"), None, 0)),
            ("redis://u:@r", target("r", 6379, Some("u"), None, 0)),
            (
                "redis://u:p%40ss%3Aw%2Fd@r:1",
                target("r", 1, Some("u"), Some("p@ss:w/d"), 0),
            ),
            (
                "redis://u:p@ss@r:1",
                target("r", 1, Some("u"), Some("p@ss"), 0),
            ),
            (
                "redis://u:p/w?x#y@r:1",
                target("r", 1, Some("u"), Some("p/w?x#y"), 0),
            ),
            (
                "redis://u:p+s@r:1",
                target("r", 1, Some("u"), Some("p+s"), 0),
            ),
            ("redis://[::1]:6380", target("::1", 6380, None, None, 0)),
            ("10.0.0.5:6379", target("10.0.0.5", 6379, None, None, 0)),
            (
                " redis-main:6379 ",
                target("redis-main", 6379, None, None, 0),
            ),
            ("[::1]:1", target("::1", 1, None, None, 0)),
        ];
        for (text, want) in ok {
            assert_eq!(parse(text).as_ref(), Ok(want), "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("redis-main", "missing port"),
            ("redis-main:", "missing port"),
            ("redis://r:", "missing port"),
            ("r:0", "from 1 to 65535"),
            ("r:65536", "from 1 to 65535"),
            ("redis://r:http", "from 1 to 65535"),
            ("redis://r:+1", "from 1 to 65535"),
            ("rediss://r:6379", "TLS is not supported"),
            ("http://r:6379", "unsupported scheme"),
            ("redis://r/x", "database `x`"),
            ("redis://r/-1", "database"),
            ("redis://r?db=1", "query"),
            ("redis://:6379", "missing host"),
            ("redis://r r:1", "host `r r` has characters"),
            ("redis://é:1", "host `é` has characters"),
            ("redis://r!:1", "host `r!` has characters"),
            (
                "redis://[::1:1",
                "`[::1:1` must be an IPv6 address in brackets",
            ),
            (
                "redis://[r]:1",
                "`[r]:1` must be an IPv6 address in brackets",
            ),
            ("redis://[::1]x", "IPv6 address in brackets, then :port"),
            ("redis://[::1]:", "missing port after"),
            ("::1:6379", "brackets"),
            ("u:p@r:1", "redis:// form"),
            ("redis://u:%zz@r", "password has a `%`"),
            ("redis://u:%ff@r", "password is not UTF-8"),
            ("redis://%zz:p@r", "user name has a `%`"),
            ("", "empty"),
        ];
        for (text, want) in bad {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn lists_of_nodes() {
        let seeds =
            |t: &RedisTarget| -> Vec<String> { t.seeds.iter().map(ToString::to_string).collect() };
        let ok: &[(&str, &[&str], Option<&str>, u32)] = &[
            ("redis://a:1,b:2", &["a:1", "b:2"], None, 0),
            ("a:1,b:2,c:3", &["a:1", "b:2", "c:3"], None, 0),
            (" a:1 , b:2 ", &["a:1", "b:2"], None, 0),
            ("redis://u:p@a:1,b:2/3", &["a:1", "b:2"], Some("p"), 3),
            // The last `@` ends the credentials, so a `,` or `@` in a password is no node.
            ("redis://u:p,w@x@a:1,b:2", &["a:1", "b:2"], Some("p,w@x"), 0),
            ("redis://a,b:7000", &["a:6379", "b:7000"], None, 0),
            ("[::1]:1,[::1]:2", &["[::1]:1", "[::1]:2"], None, 0),
        ];
        for (text, want, pass, db) in ok {
            let t = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(seeds(&t), *want, "{text}");
            assert_eq!(t.password.as_ref().map(|p| p.expose()), *pass, "{text}");
            assert_eq!(t.db, *db, "{text}");
        }
        // One node is read exactly as before.
        assert_eq!(parse("a:1").unwrap(), target("a", 1, None, None, 0));
        let bad: &[(&str, &str)] = &[
            ("a:1,", "node 2 of the list is empty"),
            (",a:1", "node 1 of the list is empty"),
            ("a:1,,b:2", "node 2 of the list is empty"),
            ("a:1,b", "node 2 of the list (`b`): missing port"),
            ("a:1,b:0", "node 2 of the list (`b:0`): port must be"),
            ("redis://a:1,b!:2", "node 2 of the list (`b!:2`): host `b!`"),
            (
                "u:p@a:1,b:2",
                "node 1 of the list (`a:1`): credentials and a database",
            ),
            ("a:1,a:1", "node `a:1` is listed twice"),
            ("redis://a,a:6379", "node `a:6379` is listed twice"),
            ("rediss://a:1,b:2", "TLS is not supported"),
        ];
        for (text, want) in bad {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        let many: Vec<String> = (1..=MAX_SEEDS + 1).map(|p| format!("h:{p}")).collect();
        assert!(parse(&many.join(",")).unwrap_err().contains("at most 64"));
        assert_eq!(parse(&many[..MAX_SEEDS].join(",")).unwrap().seeds.len(), 64);
        let t = parse("redis://u:hunter2@a:1,[::1]:2/4").unwrap();
        assert_eq!(t.to_string(), "redis://u:[redacted]@a:1,[::1]:2/4");
    }

    #[test]
    fn redis_target_display_hides_the_password() {
        let mut t = parse("redis://u:hunter2@r:1/2").unwrap();
        assert_eq!(t.to_string(), "redis://u:[redacted]@r:1/2");
        assert!(!format!("{t:?}").contains("hunter2"));
        t.username = None;
        assert_eq!(t.to_string(), "redis://:[redacted]@r:1/2");
        t.password = None;
        assert_eq!(t.to_string(), "redis://r:1/2");
        t.username = Some("u".into());
        t.seeds[0].host = "::1".into();
        assert_eq!(t.to_string(), "redis://[redacted]@[::1]:1/2");
    }

    #[test]
    fn redact_url_forms() {
        let cases = [
            ("redis://u:p@h:1", "redis://u:[redacted]@h:1"),
            ("redis://:p/q@h:1/0", "redis://:[redacted]@h:1/0"),
            ("redis://u:p@q@h:1", "redis://u:[redacted]@h:1"),
            ("redis://u@h:1", "redis://[redacted]@h:1"),
            ("redis://S3cret@h:1/0", "redis://[redacted]@h:1/0"),
            ("redis://S3cret@", "redis://[redacted]@"),
            ("redis://h:1", "redis://h:1"),
            ("p@h:1", "[redacted]@h:1"),
            ("h:1", "h:1"),
        ];
        for (text, want) in cases {
            assert_eq!(redact_url(text), want);
        }
    }

    #[test]
    fn hand_built_targets_are_checked() {
        assert!(target("r", 1, None, None, 0).check().is_ok());
        let mut none = target("r", 1, None, None, 0);
        none.seeds.clear();
        assert!(none.check().unwrap_err().contains("missing host"));
        assert!(target("", 1, None, None, 0)
            .check()
            .unwrap_err()
            .contains("missing host"));
        assert!(target("r", 0, None, None, 0)
            .check()
            .unwrap_err()
            .contains("port"));
        assert!(target("a b", 1, None, None, 0)
            .check()
            .unwrap_err()
            .contains("host"));
    }
}
