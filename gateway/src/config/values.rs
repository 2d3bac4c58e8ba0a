//! The settings' own value types, and parsers for the plain ones. A parser's error is the
//! reason alone: the caller names the setting and the value.
use std::net::SocketAddr;

use crate::auth::Secret;

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
    /// Reads `auto`, `io_uring` or `epoll`, surrounding whitespace allowed.
    pub(super) fn parse(text: &str) -> Result<IoDriverChoice, String> {
        match text.trim() {
            "auto" => Ok(IoDriverChoice::Auto),
            "io_uring" => Ok(IoDriverChoice::IoUring),
            "epoll" => Ok(IoDriverChoice::Epoll),
            _ => Err("must be one of auto, io_uring, epoll".into()),
        }
    }
}

/// How a core subscribes on Redis (`SSE_REDIS_SUBSCRIBE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisSubscribe {
    /// One `PSUBSCRIBE` of every family's pattern per core: every core receives every event
    /// (the default; cheapest for a few nodes).
    #[default]
    Pattern,
    /// Unicast families (`Family::unicast`) by `SUBSCRIBE` of each channel on the core that
    /// holds its streams; broadcast families by pattern.
    Channel,
    /// As `Channel`, with sharded pub/sub (Redis 7): each unicast channel by `SSUBSCRIBE` on
    /// the master of its slot, and published with `SPUBLISH` there; broadcast families by
    /// pattern. Publishers of unicast channels must `SPUBLISH` too.
    Sharded,
}

impl RedisSubscribe {
    /// Reads `pattern` or `channel`, surrounding whitespace allowed.
    pub(super) fn parse(text: &str) -> Result<RedisSubscribe, String> {
        match text.trim() {
            "pattern" => Ok(RedisSubscribe::Pattern),
            "channel" => Ok(RedisSubscribe::Channel),
            "sharded" => Ok(RedisSubscribe::Sharded),
            _ => Err("must be one of pattern, channel, sharded".into()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_driver_texts() {
        let drivers = [
            (" auto ", IoDriverChoice::Auto),
            ("io_uring", IoDriverChoice::IoUring),
            ("epoll\n", IoDriverChoice::Epoll),
        ];
        for (text, d) in drivers {
            assert_eq!(IoDriverChoice::parse(text), Ok(d));
        }
        assert!(IoDriverChoice::parse("uring").is_err());
        assert_eq!(
            RedisSubscribe::parse(" channel\n"),
            Ok(RedisSubscribe::Channel)
        );
        assert_eq!(
            RedisSubscribe::parse("pattern"),
            Ok(RedisSubscribe::Pattern)
        );
        assert_eq!(
            RedisSubscribe::parse("sharded"),
            Ok(RedisSubscribe::Sharded)
        );
        assert!(RedisSubscribe::parse("channels").is_err());
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
