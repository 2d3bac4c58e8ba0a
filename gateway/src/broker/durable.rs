//! The durable publish path's formats, pure: the Redis Function library the gateway loads
//! (`ssegw.lua`), the envelope it publishes, the ids it gives events and the history reply a
//! resume reads. Everything here parses bytes from Redis (anything on the unencrypted path
//! to it can write them): no panic, no allocation on a refusal, bounded lengths.
//!
//! Why a Redis Function and not `EVAL`: a function is loaded once per Redis and called by
//! name in one short line (`FCALL ssegw_publish 1 <channel> <payload>`), which is what a
//! service that publishes to Redis itself switches to; a script would have to be sent (or
//! its SHA managed) by every service. Redis 7 (Debian's) has functions; an older Redis makes
//! the gateway keep plain `PUBLISH` (said once at start-up).
use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

/// The library's source, loaded with `FUNCTION LOAD REPLACE` when absent or older.
pub const LIBRARY: &str = include_str!("ssegw.lua");

/// The library version this gateway ships (`local VERSION` in [`LIBRARY`]): a Redis holding
/// an older one gets this one; a newer one (a newer node's) is left alone.
pub const VERSION: i64 = 1;

/// What every envelope starts with: 0x1E (record separator, which starts no JSON text and no
/// payload any family accepts) and the envelope's format version.
pub const PREFIX: &[u8] = b"\x1essegw:1 ";

/// Longest id an envelope may carry (epoch, seq and seconds are far shorter).
const MAX_ID: usize = 64;

/// The key of a channel's history list.
pub fn history_key(channel: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(channel.len() + 8);
    k.extend_from_slice(b"ssegw:h:");
    k.extend_from_slice(channel);
    k
}

/// A durable event id, `<epoch>-<seq>-<unix_s>`: the same on every node and across restarts.
///
/// `epoch` names the Redis data set (a Redis restarted without persistence gets a new one),
/// `seq` is Redis's one counter over every channel (so ids of different channels order), and
/// `unix_s` is Redis's clock when the event was published: a channel's history expires after
/// `SSE_HISTORY_TTL` without a publish, and only the event's time tells whether a history
/// that is gone (or new) may have held events after it. Distinct from the per-node
/// `<run>.<core>.<seq>` (no `.` in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableId<'a> {
    /// The Redis data set's epoch (lowercase hex).
    pub epoch: &'a str,
    /// The position in Redis's total order (from 1).
    pub seq: u64,
    /// Redis's clock at publish, in seconds since the Unix epoch.
    pub unix_s: u64,
}

impl<'a> DurableId<'a> {
    /// Reads `<epoch>-<seq>-<unix_s>`; `None` for anything else.
    pub fn parse(text: &'a str) -> Option<DurableId<'a>> {
        if text.len() > MAX_ID {
            return None;
        }
        let mut parts = text.split('-');
        let (epoch, seq, unix_s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || epoch.is_empty()
            || epoch.len() > 16
            || !epoch
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            || !digits(seq)
            || !digits(unix_s)
        {
            return None;
        }
        Some(DurableId {
            epoch,
            seq: seq.parse().ok()?,
            unix_s: unix_s.parse().ok()?,
        })
    }
}

impl std::fmt::Display for DurableId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.epoch, self.seq, self.unix_s)
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

/// What an envelope says about its event: its id (text, shared with the envelope's bytes)
/// and the parts of it the hub orders and compares by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durable {
    /// `<epoch>-<seq>-<unix_s>`, as written on the wire.
    pub id: Bytes,
    /// The epoch part of `id`.
    pub epoch: Bytes,
    /// The seq part of `id`.
    pub seq: u64,
}

/// How a published payload reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// Not an envelope (no [`PREFIX`]): a plain `PUBLISH`, delivered as today.
    Plain,
    /// An envelope: its event's id and payload (both slices of the message, no copy).
    Durable(Durable, Bytes),
    /// Starts like an envelope but is not one: dropped and counted.
    Malformed,
}

/// Reads a published (or stored) payload.
pub fn open(payload: &Bytes) -> Envelope {
    let Some(rest) = payload.strip_prefix(PREFIX) else {
        return Envelope::Plain;
    };
    let start = PREFIX.len();
    let Some(nl) = rest.iter().take(MAX_ID + 1).position(|&b| b == b'\n') else {
        return Envelope::Malformed;
    };
    let Ok(text) = std::str::from_utf8(&rest[..nl]) else {
        return Envelope::Malformed;
    };
    let Some(id) = DurableId::parse(text) else {
        return Envelope::Malformed;
    };
    let epoch = payload.slice(start..start + id.epoch.len());
    let tag = Durable {
        id: payload.slice(start..start + nl),
        epoch,
        seq: id.seq,
    };
    Envelope::Durable(tag, payload.slice(start + nl + 1..))
}

/// The floor entry that heads every history list: `F <trimmed_upto> <created_s>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    /// The newest seq trimmed from the list (0: none).
    pub trimmed_upto: u64,
    /// When the list was made (Redis's clock, seconds).
    pub created_s: u64,
}

impl Floor {
    /// Reads a floor entry; `None` for anything else.
    pub fn parse(entry: &[u8]) -> Option<Floor> {
        let text = std::str::from_utf8(entry).ok()?;
        let rest = text.strip_prefix("F ")?;
        let (t, c) = rest.split_once(' ')?;
        if !digits(t) || !digits(c) {
            return None;
        }
        Some(Floor {
            trimmed_upto: t.parse().ok()?,
            created_s: c.parse().ok()?,
        })
    }
}

/// Whether one channel's history in Redis holds every event after `from`: nothing after it
/// was trimmed, and no earlier list of the channel can have expired with events after it (a
/// list expires `ttl_s` after its last publish, so one made, or found missing, less than
/// `ttl_s` after `from`'s event cannot have lost any).
pub fn complete(floor: Option<Floor>, from: DurableId, now_s: u64, ttl_s: u64) -> bool {
    let horizon = from.unix_s.saturating_add(ttl_s);
    match floor {
        None => now_s < horizon,
        Some(f) => f.trimmed_upto <= from.seq && f.created_s < horizon,
    }
}

/// What `ssegw_read` answered: the data set's epoch, the counter and clock when it ran, and
/// per history key asked (in order) its floor (`None`: no such list) and the envelopes after
/// the seq asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// `ssegw:epoch` (empty: nothing published since Redis started empty).
    pub epoch: Bytes,
    /// `ssegw:seq`: every event up to it is in the lists (or was trimmed or expired).
    pub counter: u64,
    /// Redis's clock, seconds.
    pub now_s: u64,
    /// The envelopes would have exceeded the bytes asked for (the lists are then empty).
    pub over: bool,
    /// Per key: its floor and envelopes.
    pub lists: Vec<(Option<Floor>, Vec<Bytes>)>,
}

/// Reads `ssegw_read`'s answer; `None` when it has another shape (an error reply included).
pub fn parse_history(frame: BytesFrame) -> Option<History> {
    let BytesFrame::Array(items) = frame else {
        return None;
    };
    let mut items = items.into_iter();
    let bulk = |f: Option<BytesFrame>| match f {
        Some(BytesFrame::BulkString(b)) => Some(b),
        _ => None,
    };
    let number = |b: &Bytes| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
    let epoch = bulk(items.next())?;
    let counter = number(&bulk(items.next())?)?;
    let now_s = number(&bulk(items.next())?)?;
    let over = match items.next()? {
        BytesFrame::Integer(n) => n != 0,
        _ => return None,
    };
    let mut lists = Vec::new();
    for item in items {
        let BytesFrame::Array(entries) = item else {
            return None;
        };
        let mut entries = entries.into_iter();
        let floor = bulk(entries.next())?;
        let floor = if floor.is_empty() {
            None
        } else {
            Some(Floor::parse(&floor)?)
        };
        let rest = entries
            .map(|e| bulk(Some(e)))
            .collect::<Option<Vec<Bytes>>>()?;
        lists.push((floor, rest));
    }
    Some(History {
        epoch,
        counter,
        now_s,
        over,
        lists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_back_and_nothing_else_does() {
        let id = DurableId {
            epoch: "5f3a1b2c4d5e6",
            seq: 42,
            unix_s: 1_764_660_000,
        };
        assert_eq!(id.to_string(), "5f3a1b2c4d5e6-42-1764660000");
        assert_eq!(DurableId::parse("5f3a1b2c4d5e6-42-1764660000"), Some(id));
        for bad in [
            "",
            "a-1",
            "a-1-",
            "-1-2",
            "a--2",
            "a-1-2-3",
            "A-1-2",
            "g-1-2",
            "a-+1-2",
            "a-1-x",
            "a- 1-2",
            "r.1.5",
            "a-99999999999999999999-1",
            "aaaaaaaaaaaaaaaaa-1-2",
        ] {
            assert_eq!(DurableId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn envelopes_open_into_id_and_payload_or_are_refused() {
        let plain = Bytes::from_static(b"{\"a\":1}");
        assert_eq!(open(&plain), Envelope::Plain);
        let env = Bytes::from_static(b"\x1essegw:1 ab-7-100\n{\"a\":1}");
        let Envelope::Durable(tag, payload) = open(&env) else {
            panic!("an envelope");
        };
        assert_eq!(
            (&tag.id[..], &tag.epoch[..], tag.seq),
            (&b"ab-7-100"[..], &b"ab"[..], 7)
        );
        assert_eq!(&payload[..], b"{\"a\":1}");
        let empty = Bytes::from_static(b"\x1essegw:1 ab-7-100\n");
        assert!(matches!(open(&empty), Envelope::Durable(_, p) if p.is_empty()));
        let long = format!("\x1essegw:1 {}\n", "1".repeat(100));
        for bad in [
            &b"\x1essegw:1 "[..],
            b"\x1essegw:1 ab-7-100",
            b"\x1essegw:1 ab-7\n{}",
            b"\x1essegw:1 \n{}",
            b"\x1essegw:1 ab-7-1\xff\n{}",
            long.as_bytes(),
        ] {
            assert_eq!(
                open(&Bytes::copy_from_slice(bad)),
                Envelope::Malformed,
                "{bad:?}"
            );
        }
        // Another envelope version is not ours: delivered as a plain payload would be (and
        // refused by every family's payload rule, as no JSON starts with 0x1E).
        assert_eq!(
            open(&Bytes::from_static(b"\x1essegw:2 a-1-1\n{}")),
            Envelope::Plain
        );
    }

    #[test]
    fn a_history_is_complete_unless_trimmed_or_possibly_expired_after_the_id() {
        let from = DurableId {
            epoch: "a",
            seq: 10,
            unix_s: 1000,
        };
        let floor = |t, c| {
            Some(Floor {
                trimmed_upto: t,
                created_s: c,
            })
        };
        assert_eq!(
            Floor::parse(b"F 3 1000"),
            Some(Floor {
                trimmed_upto: 3,
                created_s: 1000
            })
        );
        for bad in [&b"F 3"[..], b"F x 1", b"G 1 2", b"F 1 2 3", b""] {
            assert_eq!(Floor::parse(bad), None);
        }
        let cases = [
            (floor(0, 900), true),
            (floor(10, 900), true),
            (floor(11, 900), false),
            (floor(0, 1099), true),
            (floor(0, 1100), false),
            (None, true),
        ];
        for (f, want) in cases {
            assert_eq!(complete(f, from, 1050, 100), want, "{f:?}");
        }
        assert!(
            !complete(None, from, 1100, 100),
            "missing, and could have expired"
        );
    }

    #[test]
    fn history_replies_parse_or_are_refused() {
        let b = |s: &'static [u8]| BytesFrame::BulkString(Bytes::from_static(s));
        let list = |items: Vec<BytesFrame>| BytesFrame::Array(items);
        let reply = list(vec![
            b(b"ab"),
            b(b"9"),
            b(b"1000"),
            BytesFrame::Integer(0),
            list(vec![b(b"F 2 900"), b(b"\x1essegw:1 ab-9-1000\n{}")]),
            list(vec![b(b"")]),
        ]);
        let h = parse_history(reply).expect("a history");
        assert_eq!(
            (&h.epoch[..], h.counter, h.now_s, h.over),
            (&b"ab"[..], 9, 1000, false)
        );
        assert_eq!(h.lists.len(), 2);
        assert_eq!(
            h.lists[0].0,
            Some(Floor {
                trimmed_upto: 2,
                created_s: 900
            })
        );
        assert_eq!(h.lists[0].1.len(), 1);
        assert_eq!(h.lists[1], (None, vec![]));
        for bad in [
            BytesFrame::Error("ERR".into()),
            list(vec![b(b"ab"), b(b"x"), b(b"1"), BytesFrame::Integer(0)]),
            list(vec![b(b"ab"), b(b"1"), b(b"1")]),
            list(vec![
                b(b"ab"),
                b(b"1"),
                b(b"1"),
                BytesFrame::Integer(0),
                b(b"F 1 1"),
            ]),
            list(vec![
                b(b"ab"),
                b(b"1"),
                b(b"1"),
                BytesFrame::Integer(0),
                list(vec![b(b"G")]),
            ]),
            list(vec![
                b(b"ab"),
                b(b"1"),
                b(b"1"),
                BytesFrame::Integer(0),
                list(vec![]),
            ]),
        ] {
            assert_eq!(parse_history(bad.clone()), None, "{bad:?}");
        }
    }
}
