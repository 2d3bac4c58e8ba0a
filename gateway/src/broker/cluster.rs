//! Redis Cluster topology: which master serves a channel. To a cluster a channel name is a
//! key: its slot is CRC16 of the name (or of its hash tag, the bytes between the first `{`
//! and the next `}`, when there are any) modulo 16,384, as Redis's `keyHashSlot` computes it,
//! and the slot map says which master serves each slot. Sharded pub/sub (`SSUBSCRIBE`,
//! `SPUBLISH`) lives on the slot's shard only, so both a subscription and a publish must go
//! to the channel's master.
//!
//! The map comes from `CLUSTER SLOTS` (each slot range with its master's address; Redis 7's
//! `CLUSTER SHARDS` says the same in a map per shard, but `CLUSTER SLOTS` is the same shape
//! on every Redis since 3.0, and Redis 7 still answers it). A Redis that is not a cluster
//! answers with an error; its map is then every slot on the node that answered, so the same
//! code serves one Redis.
//!
//! One [`Topology`] per core (shared-nothing, like every link). It asks the nodes of
//! `EVENTS_REDIS_STORAGE` in turn (from the one after the node that failed last), then the
//! masters it knows (every listed node may be down while the cluster is not), and asks again
//! whenever the map is known to be stale: a `MOVED` answer, a lost shard link, a
//! `sunsubscribe` Redis sent on its own (the channel's slot moved away). Refreshes are
//! coalesced: a caller arriving during one waits for it, and one that arrives within
//! [`REFRESH_EVERY`] of the last takes its map, so a failover that breaks a hundred channels
//! costs one `CLUSTER SLOTS` per core and not a hundred.
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::AsyncWriteRentExt;
use redis_protocol::resp2::types::BytesFrame;

use crate::broker::link::{connect_to, read_frame, RedisError, CONNECT_TIMEOUT};
use crate::broker::resp::{encode_command, Reader};
use crate::broker::target::{RedisTarget, Seed};
use crate::util::wait::{until, until_clear, wake_all};

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The shortest time between two `CLUSTER SLOTS` of one core: callers within it take the
/// last answer. A failover takes seconds (`cluster-node-timeout` and an election), so a
/// shard link retrying with its backoff (100 ms and up) sees the new master within one step
/// of this.
pub const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// Most slot ranges a map may hold: one per slot at worst.
const MAX_RANGES: usize = SLOTS as usize;

/// Most masters a map may name: Redis Cluster is designed for up to 1,000 nodes, and each
/// master costs every core a link or two, so a map naming more is refused as bad input.
pub const MAX_MASTERS: usize = 1000;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0, no reflection): Redis's `crc16.c`.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The cluster slot of `key` (a channel name): CRC16 of its hash tag when it has a non-empty
/// one (`{user1}.inbox` and `{user1}.outbox` share a slot), else of the whole name.
pub fn key_slot(key: &[u8]) -> u16 {
    let tag = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        match rest.iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => Some(&rest[..len]),
            _ => None,
        }
    });
    crc16(tag.unwrap_or(key)) & (SLOTS - 1)
}

/// One range of slots and the master that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    /// First slot of the range.
    pub first: u16,
    /// Last slot of the range (inclusive).
    pub last: u16,
    /// The master's address.
    pub master: Seed,
}

/// Which master serves which slots: ranges sorted by their first slot, never overlapping.
/// Slots in no range have no master now (a failed master not yet replaced): a channel there
/// can be neither subscribed nor published until the map changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMap {
    /// The ranges, sorted.
    ranges: Vec<SlotRange>,
}

impl SlotMap {
    /// Every slot on `node` (a Redis that is not a cluster).
    pub fn whole(node: Seed) -> SlotMap {
        SlotMap {
            ranges: vec![SlotRange {
                first: 0,
                last: SLOTS - 1,
                master: node,
            }],
        }
    }

    /// The map of a `CLUSTER SLOTS` answer from `asked` (the node whose empty address stands
    /// for itself). What Redis sends is an input: ranges out of bounds, overlapping, or of
    /// the wrong shape are refused, and a master of unknown address (`?`) serves nothing.
    pub fn parse(frame: &BytesFrame, asked: &Seed) -> Result<SlotMap, String> {
        let BytesFrame::Array(entries) = frame else {
            return Err(format!("CLUSTER SLOTS answered {frame:?}"));
        };
        if entries.len() > MAX_RANGES {
            return Err(format!("CLUSTER SLOTS named {} ranges", entries.len()));
        }
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let BytesFrame::Array(fields) = entry else {
                return Err(format!("a slot range of the wrong shape: {entry:?}"));
            };
            let (first, last, node) = match fields.as_slice() {
                [BytesFrame::Integer(a), BytesFrame::Integer(b), BytesFrame::Array(node), ..] => {
                    (*a, *b, node)
                }
                _ => return Err(format!("a slot range of the wrong shape: {fields:?}")),
            };
            let slot = |n: i64| u16::try_from(n).ok().filter(|s| *s < SLOTS);
            let (Some(first), Some(last)) = (slot(first), slot(last)) else {
                return Err(format!("slots {first}-{last} are out of range"));
            };
            if first > last {
                return Err(format!("slots {first}-{last} are reversed"));
            }
            let (host, port) = match node.as_slice() {
                [BytesFrame::BulkString(h), BytesFrame::Integer(p), ..] => (h, *p),
                _ => return Err(format!("a master of the wrong shape: {node:?}")),
            };
            let host = std::str::from_utf8(host).map_err(|_| "a master's host is not UTF-8")?;
            let port = u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("a master's port {port} is out of range"))?;
            let master = match host {
                // Unknown address: no master we can reach for these slots now.
                "?" => continue,
                "" => Seed::new(asked.host.clone(), port),
                h => Seed::new(h, port),
            };
            ranges.push(SlotRange {
                first,
                last,
                master,
            });
        }
        SlotMap::from_ranges(ranges)
    }

    /// A map of `ranges` (in any order), refused when two overlap or more than
    /// [`MAX_MASTERS`] masters are named.
    pub fn from_ranges(mut ranges: Vec<SlotRange>) -> Result<SlotMap, String> {
        ranges.sort_by_key(|r| r.first);
        let mut masters: Vec<&Seed> = ranges.iter().map(|r| &r.master).collect();
        masters.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        masters.dedup();
        if masters.len() > MAX_MASTERS {
            return Err(format!(
                "CLUSTER SLOTS named {} masters (at most {MAX_MASTERS})",
                masters.len()
            ));
        }
        if let Some(w) = ranges.windows(2).find(|w| w[1].first <= w[0].last) {
            return Err(format!(
                "slot ranges {}-{} and {}-{} overlap",
                w[0].first, w[0].last, w[1].first, w[1].last
            ));
        }
        Ok(SlotMap { ranges })
    }

    /// The master serving `slot`, if any.
    pub fn master_of(&self, slot: u16) -> Option<&Seed> {
        let i = self.ranges.partition_point(|r| r.first <= slot);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (slot <= r.last).then_some(&r.master)
    }

    /// The master serving `channel`'s slot, if any.
    pub fn master_of_channel(&self, channel: &[u8]) -> Option<&Seed> {
        self.master_of(key_slot(channel))
    }

    /// Whether `node` serves any slot.
    pub fn serves(&self, node: &Seed) -> bool {
        self.ranges.iter().any(|r| r.master == *node)
    }

    /// Every master, once each, in slot order.
    pub fn masters(&self) -> Vec<Seed> {
        let mut v: Vec<Seed> = Vec::new();
        for r in &self.ranges {
            if !v.contains(&r.master) {
                v.push(r.master.clone());
            }
        }
        v
    }

    /// Whether no slot has a master (never fetched, or nothing reachable).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[SlotRange] {
        &self.ranges
    }
}

/// One core's view of the cluster (see the module's doc).
pub struct Topology {
    /// The nodes listed, and the credentials every connection uses.
    target: RedisTarget,
    /// The node of the list the next fetch asks first.
    next: Cell<usize>,
    /// The last map fetched (empty before the first).
    map: RefCell<Rc<SlotMap>>,
    /// Bumped whenever the map changes, so a holder of an older one knows.
    version: Cell<u64>,
    /// A fetch in progress (callers arriving meanwhile wait for it).
    fetching: Cell<bool>,
    /// Callers waiting for it.
    waiting: RefCell<Vec<Waker>>,
    /// When the last fetch ended (see [`REFRESH_EVERY`]).
    fetched_at: Cell<Option<Instant>>,
    /// Fetches made (a figure for tests and stats).
    fetches: Cell<u64>,
    /// Tasks waiting for the map to change ([`Topology::changed`]).
    watchers: RefCell<Vec<Waker>>,
}

impl Topology {
    /// The topology of `target`, asking the node `first` of its list first; empty until
    /// [`Topology::refresh`].
    pub fn new(target: RedisTarget, first: usize) -> Topology {
        Topology {
            target,
            next: Cell::new(first),
            map: RefCell::new(Rc::default()),
            version: Cell::new(0),
            fetching: Cell::new(false),
            waiting: RefCell::new(Vec::new()),
            fetched_at: Cell::new(None),
            fetches: Cell::new(0),
            watchers: RefCell::new(Vec::new()),
        }
    }

    /// The map as last fetched.
    pub fn map(&self) -> Rc<SlotMap> {
        self.map.borrow().clone()
    }

    /// Replaces the map as a fetch that found it would (tests drive placement with it).
    pub fn install(&self, map: SlotMap) {
        self.fetched_at.set(Some(Instant::now()));
        self.adopt(map);
    }

    /// Takes `map` as the current one if it differs: a new version, and the watchers woken.
    /// `true` when it differed.
    fn adopt(&self, map: SlotMap) -> bool {
        if **self.map.borrow() == map {
            return false;
        }
        *self.map.borrow_mut() = Rc::new(map);
        self.version.set(self.version.get() + 1);
        wake_all(&self.watchers);
        true
    }

    /// Ready once the map's version is no longer `since`: whoever fetched a new map (a
    /// publish's `MOVED`, a lost shard link) wakes the core's subscriptions, which then place
    /// their channels and start a link to each new master without waiting for a stream to ask.
    pub async fn changed(&self, since: u64) {
        until(|| self.version.get() != since, &self.watchers).await
    }

    /// How many times the map changed.
    pub fn version(&self) -> u64 {
        self.version.get()
    }

    /// `CLUSTER SLOTS` answers asked for so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.get()
    }

    /// The map, fetched first when there is none yet.
    pub async fn ensure(&self) -> Result<Rc<SlotMap>, RedisError> {
        if self.map.borrow().is_empty() {
            self.refresh().await?;
        }
        Ok(self.map())
    }

    /// Fetches the map again (the current one is stale), unless a fetch is in progress (then
    /// waits for it) or ended less than [`REFRESH_EVERY`] ago. `true` when the map changed.
    pub async fn refresh(&self) -> Result<bool, RedisError> {
        let before = self.version.get();
        if self.fetching.get() {
            until_clear(&self.fetching, &self.waiting).await;
            return Ok(self.version.get() != before);
        }
        let recent = self
            .fetched_at
            .get()
            .is_some_and(|t| t.elapsed() < REFRESH_EVERY);
        if recent && !self.map.borrow().is_empty() {
            return Ok(false);
        }
        self.fetching.set(true);
        let r = self.fetch().await;
        self.fetching.set(false);
        self.fetched_at.set(Some(Instant::now()));
        wake_all(&self.waiting);
        let map = r?;
        self.fetches.set(self.fetches.get() + 1);
        Ok(self.adopt(map))
    }

    /// Asks the listed nodes in turn, then the masters of the current map.
    async fn fetch(&self) -> Result<SlotMap, RedisError> {
        let seeds = &self.target.seeds;
        let n = seeds.len();
        let mut last = RedisError::Protocol("no Redis node to ask for the slot map".into());
        for _ in 0..n {
            let i = self.next.get() % n;
            match self.ask(&seeds[i]).await {
                Ok(map) => return Ok(map),
                Err(e) => {
                    self.next.set((i + 1) % n);
                    last = e;
                }
            }
        }
        let known = self.map.borrow().masters();
        for master in known.iter().filter(|m| !seeds.contains(m)) {
            if let Ok(map) = self.ask(master).await {
                return Ok(map);
            }
        }
        Err(last)
    }

    /// One `CLUSTER SLOTS` of `node`, on a connection of its own.
    async fn ask(&self, node: &Seed) -> Result<SlotMap, RedisError> {
        let ask = async {
            let (mut stream, mut buf) = connect_to(&self.target, node).await?;
            let mut cmd = BytesMut::new();
            encode_command(&[b"CLUSTER", b"SLOTS"], &mut cmd);
            let (r, _) = stream.write_all(cmd.freeze()).await;
            r.map_err(RedisError::Io)?;
            match read_frame(&mut stream, &mut Reader::new(), &mut buf).await? {
                BytesFrame::Error(e) if e.contains("cluster support disabled") => {
                    Ok(SlotMap::whole(node.clone()))
                }
                BytesFrame::Error(e) => Err(RedisError::Refused(e.to_string())),
                f => SlotMap::parse(&f, node).map_err(RedisError::Protocol),
            }
        };
        match monoio::time::timeout(CONNECT_TIMEOUT, ask).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::Timeout("CLUSTER SLOTS")),
        }
    }
}

/// The address of a `MOVED <slot> <host>:<port>` error, if `error` is one.
pub fn moved_to(error: &str) -> Option<Seed> {
    let mut words = error.split_whitespace();
    if words.next()? != "MOVED" {
        return None;
    }
    let _slot: u16 = words.next()?.parse().ok()?;
    let addr = words.next()?;
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(Seed::new(host, port.parse().ok().filter(|p| *p != 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn slots_are_redis_own() {
        // CRC16/XMODEM's check value, and `CLUSTER KEYSLOT` answers from Redis's documentation
        // and its cluster tests (e2e `cluster` compares channel names with a live cluster).
        assert_eq!(crc16(b"123456789"), 0x31C3);
        let cases: &[(&[u8], u16)] = &[
            (b"123456789", 12739),
            (b"foo", 12182),
            (b"bar", 5061),
            (b"somekey", 11058),
            (b"foo{hash_tag}", 2515),
            (b"bar{hash_tag}", 2515),
            (b"hash_tag", 2515),
            (b"", 0),
            (b"{user1000}.following", key_slot(b"user1000")),
            (b"{user1000}.followers", key_slot(b"user1000")),
            // Only the first `{` and the `}` after it count.
            (b"foo{{bar}}zap", key_slot(b"{bar")),
            (b"foo{bar}{zap}", key_slot(b"bar")),
        ];
        for (key, slot) in cases {
            assert_eq!(key_slot(key), *slot, "{}", String::from_utf8_lossy(key));
        }
        // An empty tag is no tag: the whole name is hashed, braces included.
        assert_eq!(key_slot(b"{}foo"), crc16(b"{}foo") & (SLOTS - 1));
        assert_ne!(key_slot(b"{}foo"), key_slot(b"foo"));
        assert!((0..2000).all(|i| key_slot(format!("SSE::1::{i}").as_bytes()) < SLOTS));
    }

    fn node(host: &str, port: i64) -> BytesFrame {
        BytesFrame::Array(vec![
            BytesFrame::BulkString(Bytes::copy_from_slice(host.as_bytes())),
            BytesFrame::Integer(port),
            BytesFrame::BulkString(Bytes::from_static(
                b"09dbe9720cda62f7865eabc5fd8857c5d2678366",
            )),
            BytesFrame::Array(vec![]),
        ])
    }

    fn range(first: i64, last: i64, master: BytesFrame) -> BytesFrame {
        BytesFrame::Array(vec![
            BytesFrame::Integer(first),
            BytesFrame::Integer(last),
            master,
            node("10.0.0.9", 7009),
        ])
    }

    #[test]
    fn the_slot_map_of_cluster_slots() {
        let asked = Seed::new("seed.example", 7000);
        let frame = BytesFrame::Array(vec![
            range(10923, 16383, node("10.0.0.3", 7002)),
            range(0, 5460, node("10.0.0.1", 7000)),
            range(5461, 10922, node("", 7001)),
        ]);
        let map = SlotMap::parse(&frame, &asked).unwrap();
        let at = |slot| map.master_of(slot).map(ToString::to_string);
        assert_eq!(at(0).as_deref(), Some("10.0.0.1:7000"));
        assert_eq!(at(5460).as_deref(), Some("10.0.0.1:7000"));
        // An empty address is the node asked.
        assert_eq!(at(5461).as_deref(), Some("seed.example:7001"));
        assert_eq!(at(16383).as_deref(), Some("10.0.0.3:7002"));
        assert_eq!(
            map.master_of_channel(b"foo")
                .map(ToString::to_string)
                .as_deref(),
            Some("10.0.0.3:7002")
        );
        assert_eq!(map.masters().len(), 3);

        // A hole (a master failed, no replica yet) and an unknown address serve nothing.
        let holes = BytesFrame::Array(vec![
            range(0, 99, node("a", 1)),
            range(200, 299, node("?", 2)),
        ]);
        let map = SlotMap::parse(&holes, &asked).unwrap();
        assert!(map.master_of(99).is_some());
        assert!(map.master_of(100).is_none());
        assert!(map.master_of(250).is_none());
        assert!(map.master_of(16383).is_none());
        assert!(SlotMap::default().master_of(0).is_none());
        assert_eq!(SlotMap::whole(asked.clone()).master_of(16383), Some(&asked));

        let bad: &[(BytesFrame, &str)] = &[
            (BytesFrame::Integer(1), "answered"),
            (
                BytesFrame::Array(vec![range(0, 16384, node("a", 1))]),
                "out of range",
            ),
            (
                BytesFrame::Array(vec![range(-1, 5, node("a", 1))]),
                "out of range",
            ),
            (
                BytesFrame::Array(vec![range(9, 5, node("a", 1))]),
                "reversed",
            ),
            (BytesFrame::Array(vec![range(0, 5, node("a", 0))]), "port 0"),
            (
                BytesFrame::Array(vec![range(0, 5, node("a", 70000))]),
                "port 70000",
            ),
            (
                BytesFrame::Array(vec![
                    range(0, 10, node("a", 1)),
                    range(10, 20, node("b", 1)),
                ]),
                "overlap",
            ),
            (
                BytesFrame::Array(vec![BytesFrame::Array(vec![BytesFrame::Integer(0)])]),
                "wrong shape",
            ),
            (
                BytesFrame::Array(vec![range(0, 5, BytesFrame::Integer(3))]),
                "wrong shape",
            ),
        ];
        for (frame, want) in bad {
            let err = SlotMap::parse(frame, &asked).unwrap_err();
            assert!(err.contains(want), "{frame:?}: {err}");
        }
        let many =
            |n: i64| BytesFrame::Array((0..n).map(|i| range(i, i, node("h", i + 1))).collect());
        assert_eq!(
            SlotMap::parse(&many(1000), &asked).unwrap().masters().len(),
            1000
        );
        let err = SlotMap::parse(&many(1001), &asked).unwrap_err();
        assert!(err.contains("1001 masters"), "{err}");
    }

    #[test]
    fn moved_errors() {
        let cases: &[(&str, Option<&str>)] = &[
            ("MOVED 3999 127.0.0.1:6381", Some("127.0.0.1:6381")),
            ("MOVED 3999 [::1]:6381", Some("[::1]:6381")),
            (
                "MOVED 3999 redis-2.example:7000",
                Some("redis-2.example:7000"),
            ),
            ("ASK 3999 127.0.0.1:6381", None),
            ("MOVED x 127.0.0.1:6381", None),
            ("MOVED 3999 127.0.0.1:0", None),
            ("MOVED 3999", None),
            ("ERR unknown command", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                moved_to(text).map(|s| s.to_string()).as_deref(),
                *want,
                "{text}"
            );
        }
    }
}
