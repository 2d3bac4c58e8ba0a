//! A core's channel registry: which local streams subscribe to which channel, each channel's
//! event sequence and recent history, and the fan-out of one encoded event to its subscribers.
//!
//! Invariants: a channel exists while it has a subscriber or history worth keeping; every
//! event gets the next sequence number of this core (increasing within each channel, never
//! reused in a run), so an id names exactly one event on one core of one run.
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hashbrown::HashTable;
use slab::Slab;

use crate::broker::durable::{Durable, DurableId};
use crate::core::event_id::EventId;
use crate::core::subscriber::{Frame, Pushed, Subscriber};
use crate::route::resolve::Channels;

/// How long a channel with history but no subscriber is kept by default (`SSE_CHANNEL_IDLE`),
/// so a client that was cut or lost its network can still resume from it.
pub const IDLE_KEEP: Duration = Duration::from_secs(300);

/// How long a kept channel (one that greets new streams with its latest message) lives with
/// neither subscribers nor messages: long enough for any game between rounds, short enough
/// that publishing to ever new names (one channel per round, say) cannot grow memory forever.
pub const KEPT_IDLE: Duration = Duration::from_secs(3600);

/// One channel on one core.
#[derive(Debug)]
pub struct Channel {
    /// Its name, shared with the history order of the hub.
    name: Rc<str>,
    /// The hash of its name in the hub's table (set there; 32 bits, which fit in the
    /// struct's padding where 64 would move it to a larger allocation size): a rehash of
    /// the table reads it instead of every name, and a lookup compares it before the name.
    hash: u32,
    /// The family the channel belongs to (decides encoding and policies).
    pub family: usize,
    /// Local subscribers.
    subs: Slab<Rc<Subscriber>>,
    /// The last `SSE_HISTORY` encoded events with their sequence numbers, oldest first.
    history: VecDeque<(u64, Bytes)>,
    /// When the last subscriber left, for eviction.
    idle_since: Option<Instant>,
    /// The core's sequence counter when this channel was created: an id at or below it
    /// predates the channel (it was evicted since, and messages published while it did not
    /// exist here were dropped), so what the client missed is unknown.
    created_seq: u64,
    /// The newest sequence number published on the channel (0: none yet).
    newest_seq: u64,
    /// The newest sequence number no longer in history (0: history still holds everything).
    evicted_upto: u64,
    /// Kept even without subscribers, with its latest message (families that greet new
    /// streams with the latest message).
    keep: bool,
    /// The latest payload, its sequence number and its durable id if it has one, when
    /// `keep`.
    latest: Option<(u64, Option<Bytes>, Bytes)>,
    /// Its key in the hub's `idle` order while it has no subscriber of its own (0: it has).
    lru: u64,
}

/// The reason a reset gives when what the client missed exceeds the replay limit.
pub const OVER_REPLAY_LIMIT: &str = "missed events exceed the replay limit (SSE_REPLAY_LIMIT)";

/// What one replayed event costs against the replay limit beyond its bytes: the `Bytes`
/// handle (32 bytes) and the `iovec` (16 bytes) the writer holds for it until it is written.
/// Without it, a limit of 1 MiB of 20-byte events would let one resume hold 2.4 MiB of
/// handles.
pub const REPLAY_PART_COST: usize = 48;

/// What a reconnecting client with a `Last-Event-ID` gets before going live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Every event it missed, in order (empty when it missed nothing): the history's own
    /// shared `Bytes`, never a copy, so a hundred resumers of the same history cost a hundred
    /// lists of handles, not a hundred copies of the events.
    Replay(Vec<Bytes>),
    /// History does not reach back to its id (or the id is not this run's and core's): it
    /// gets a reset carrying the id of the channel's newest event, if there is one.
    Reset {
        /// Id of the newest event, so the client's next reconnect resumes from there.
        newest_id: Option<String>,
        /// Why, for the client and the logs.
        reason: &'static str,
    },
}

/// What one publish did on this core.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Subscribers the frame was queued for.
    pub queued: usize,
    /// Subscribers cut because their queue was full.
    pub cut: usize,
    /// Subscribers whose full queue was replaced by this event (conflating families).
    pub conflated: usize,
}

/// Where one stream sits in the hub; given back to [`Hub::unsubscribe`] when it ends.
#[derive(Debug)]
pub enum Membership {
    /// One channel (no allocation beyond the name: most streams are these).
    One {
        /// The channel.
        channel: Box<str>,
        /// Key in its subscriber slab.
        key: usize,
    },
    /// Several channels, each with its key.
    Many(Box<[(Box<str>, usize)]>),
    /// Every channel of a family.
    All {
        /// The family.
        family: usize,
        /// Key in the family's wildcard slab.
        key: usize,
    },
}

/// Most channels [`Hub::limit_channels`] sizes the table for up front (a higher limit grows
/// it past this as needed).
const MAX_PRESIZED: usize = 1 << 20;

/// The hasher of the channel table.
type ChannelHasher = foldhash::quality::RandomState;

/// The channel table: boxed channels found by the name each holds, so a slot is one 8-byte
/// pointer. A map keyed by a separate `Box<str>` took 24 bytes a slot (and the name
/// twice); sized up front for twice `SSE_CHANNEL_LIMIT` (262,144 slots at the default), random
/// hashing touches every page of the slots once a few thousand channels are held, so the
/// slots' size is resident per core: 6.3 MiB with the keyed map (1,170 bytes a stream at
/// 10,000 streams on two cores, `loadgen idle`), 2.3 MiB with pointers.
#[derive(Debug, Default)]
struct ChannelTable {
    /// The channels, each hashed by its name.
    table: HashTable<Box<Channel>>,
    /// foldhash, seeded per process.
    hasher: ChannelHasher,
}

impl ChannelTable {
    /// The hash of a channel named `name`, as kept in [`Channel::hash`].
    fn hash(&self, name: &str) -> u32 {
        self.hasher.hash_one(name) as u32
    }

    /// Number of channels held.
    fn len(&self) -> usize {
        self.table.len()
    }

    /// Room for `more` channels beyond those held without growing.
    fn reserve(&mut self, more: usize) {
        self.table.reserve(more, |c| spread(c.hash));
    }

    /// The channel named `name`.
    fn get(&self, name: &str) -> Option<&Channel> {
        let hash = self.hash(name);
        self.table
            .find(spread(hash), named(hash, name))
            .map(|c| &**c)
    }

    /// The channel named `name`, to change.
    fn get_mut(&mut self, name: &str) -> Option<&mut Channel> {
        let hash = self.hash(name);
        self.table
            .find_mut(spread(hash), named(hash, name))
            .map(|c| &mut **c)
    }

    /// Every channel, in no order.
    fn iter(&self) -> impl Iterator<Item = &Channel> {
        self.table.iter().map(|c| &**c)
    }

    /// Whether a channel named `name` is held.
    fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Takes the channel named `name` out.
    fn remove(&mut self, name: &str) -> Option<Box<Channel>> {
        let hash = self.hash(name);
        match self.table.find_entry(spread(hash), named(hash, name)) {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        }
    }

    /// The channel named `name`, made by `make` (which names it `name`) when absent.
    fn get_or_insert_with(
        &mut self,
        name: &str,
        make: impl FnOnce() -> Box<Channel>,
    ) -> &mut Channel {
        let hash = self.hash(name);
        let entry = self
            .table
            .entry(spread(hash), named(hash, name), |c| spread(c.hash));
        let made = || {
            let mut c = make();
            c.hash = hash;
            c
        };
        entry.or_insert_with(made).into_mut()
    }
}

/// A kept 32-bit hash as the table's 64: in both halves, since the table picks the slot from
/// the low bits and the byte it compares first from the top 7.
fn spread(hash: u32) -> u64 {
    u64::from(hash) * 0x1_0000_0001
}

/// Whether a channel is the one named `name`, whose hash is `hash`.
fn named(hash: u32, name: &str) -> impl Fn(&Box<Channel>) -> bool + '_ {
    move |c| c.hash == hash && &*c.name == name
}

/// The registry of one core.
#[derive(Debug)]
pub struct Hub {
    /// Channels by name, each boxed, hashed with foldhash. Under churn (a flood opening and
    /// evicting channels) the table is rebuilt now and then, grown or rehashed in place to
    /// clear the slots of removed channels, which rehashes and moves every entry: at 100,000
    /// channels, moving ~200-byte channels inline and SipHash on every name stalled the core
    /// for ~100 ms, then ~40 ms with boxes (`perf` in the hostile run: `reserve_rehash`,
    /// SipHash). foldhash (hashbrown's own default, seeded at random per process, so names
    /// chosen to collide cannot be precomputed) is several times faster on short names; now
    /// each channel keeps its hash, so a rebuild hashes no name (see [`ChannelTable`]).
    channels: ChannelTable,
    /// Subscribers of every channel of a family (`topics=all`), by family.
    wildcards: HashMap<usize, Slab<Rc<Subscriber>>>,
    /// Per family: the sequence counter when a message of the family was last dropped here
    /// for want of a channel (nobody subscribed). A client resuming from an id at or below it
    /// may have missed such a message on a channel that did not exist then, so it gets a
    /// reset rather than a silent gap.
    lost_upto: HashMap<usize, u64>,
    /// The sequence counter when this core's Redis subscription came back after an outage:
    /// messages published meanwhile never arrived, on any channel, so ids at or below it get
    /// a reset.
    gap_upto: u64,
    /// `SSE_HISTORY`.
    history: usize,
    /// `SSE_REPLAY_LIMIT`: most bytes (events plus [`REPLAY_PART_COST`] each) one resume
    /// replays; beyond it, a reset.
    replay_limit: usize,
    /// This run's tag, the first part of every id given out here.
    run: Box<str>,
    /// This core's index, the second part.
    core: usize,
    /// The last sequence number given out. One counter for all channels of the core, so an id
    /// is never reused in a run, even by a channel that was evicted and created again.
    next_seq: u64,
    /// `SSE_CHANNEL_LIMIT`: most channels held; unbounded until set.
    channel_limit: usize,
    /// Channels without a subscriber of their own, least recently used first (by the time
    /// they lost their last one or were created without one): what the channel budget evicts.
    /// A `BTreeMap` on a counter rather than a scan: finding the victim costs O(log n) at
    /// any number of channels.
    idle: BTreeMap<u64, Box<str>>,
    /// The last key handed out in `idle`.
    lru_clock: u64,
    /// Channels evicted by the budget so far.
    evicted: u64,
    /// Streams that joined or left so far (see [`Hub::subscription_changes`]).
    changes: u64,
    /// Where the next [`Hub::sweep`] starts in `idle`.
    sweep_from: u64,
    /// `SSE_HISTORY_BYTES`: most bytes of events all channels' histories hold together.
    history_budget: usize,
    /// Bytes of events in every channel's history.
    history_bytes: usize,
    /// Events in every channel's history.
    history_events: usize,
    /// Every event put in a history, oldest first, with its channel: what the byte budget
    /// trims first. Entries of events that already left their history are skipped when met
    /// and compacted away before they outnumber the live ones.
    history_order: VecDeque<(u64, Rc<str>)>,
    /// Events trimmed from history for the byte budget so far.
    history_trimmed: u64,
    /// Per family (by index): what a `topics=all` resume needs without visiting every
    /// channel.
    families: Vec<FamilyIndex>,
    /// The epoch of the durable events this core receives (the Redis data set's): a durable
    /// id of another epoch is never answered from memory.
    durable_epoch: Option<Bytes>,
    /// The durable seq from which on this core has received every durable event (the one
    /// before the first it received since it started, since its Redis subscription came back
    /// or since the epoch changed; `u64::MAX` until that first one): a resume from an older
    /// id may have missed events that never reached this core.
    durable_floor: u64,
    /// `(durable seq, core seq)` of the durable events published here, oldest first (both
    /// increase: Redis delivers in its order): turns a durable id into this core's sequence,
    /// so the resume bookkeeping above (created, evicted, lost, gap) answers for it too.
    /// Trimmed with history; `durable_floor` rises past what is trimmed.
    durable_marks: VecDeque<(u64, u64)>,
    /// How long a channel without streams is kept (`SSE_CHANNEL_IDLE`).
    idle_keep: Duration,
    /// By family: whether its dropped channels go to `gone` (see [`Hub::track_drops`]).
    tracked: Vec<bool>,
    /// Channels of tracked families dropped and not yet taken.
    gone: Vec<Box<str>>,
}

/// What a resume of every channel of one family needs, kept as events come and go, so that
/// it costs the channels with history rather than every channel (a flood leaves up to
/// `SSE_CHANNEL_LIMIT` channels that never had an event).
#[derive(Debug, Default)]
struct FamilyIndex {
    /// The family's channels whose history holds events.
    with_history: HashSet<Rc<str>>,
    /// The newest sequence number published on any channel of the family here.
    newest: u64,
    /// The highest `evicted_upto` of any channel of the family: a resume from below it
    /// missed an event that left some channel's history.
    evicted: u64,
}

/// The index of `family`, made when first needed.
fn family_index(families: &mut Vec<FamilyIndex>, family: usize) -> &mut FamilyIndex {
    if families.len() <= family {
        families.resize_with(family + 1, FamilyIndex::default);
    }
    &mut families[family]
}

impl Hub {
    /// An empty hub whose ids start with `<run>.<core>.`.
    pub fn new(run: &str, core: usize, history: usize) -> Hub {
        Hub {
            channels: ChannelTable::default(),
            wildcards: HashMap::new(),
            lost_upto: HashMap::new(),
            gap_upto: 0,
            history,
            replay_limit: usize::MAX,
            run: run.into(),
            core,
            next_seq: 0,
            channel_limit: usize::MAX,
            idle: BTreeMap::new(),
            lru_clock: 0,
            evicted: 0,
            changes: 0,
            sweep_from: 0,
            history_budget: usize::MAX,
            history_bytes: 0,
            history_events: 0,
            history_order: VecDeque::new(),
            history_trimmed: 0,
            families: Vec::new(),
            durable_epoch: None,
            durable_floor: u64::MAX,
            durable_marks: VecDeque::new(),
            idle_keep: IDLE_KEEP,
            tracked: Vec::new(),
            gone: Vec::new(),
        }
    }

    /// How long a channel without streams is kept (`SSE_CHANNEL_IDLE`; [`IDLE_KEEP`] until
    /// set).
    pub fn keep_idle(&mut self, d: Duration) {
        self.idle_keep = d;
    }

    /// Families whose channels, when dropped (swept or evicted), are reported by
    /// [`Hub::take_gone`]: the ones subscribed on Redis per channel, whose subscription lives
    /// exactly as long as the channel does here (so history kept for a resume never misses
    /// an event, and a reconnect storm reuses subscriptions instead of churning them).
    pub fn track_drops(&mut self, families: Vec<bool>) {
        self.tracked = families;
    }

    /// The channels of tracked families dropped since the last call.
    pub fn take_gone(&mut self) -> Vec<Box<str>> {
        std::mem::take(&mut self.gone)
    }

    /// Notes that `name` of `family` left the table.
    fn dropped(&mut self, family: usize, name: &str) {
        if self.tracked.get(family).copied().unwrap_or(false) {
            self.gone.push(name.into());
        }
    }

    /// Bounds what one resume may replay (`SSE_REPLAY_LIMIT`, in bytes); unbounded until set.
    pub fn limit_replay(&mut self, bytes: usize) {
        self.replay_limit = bytes;
    }

    /// The newest sequence number this core has given out (0: none yet).
    pub fn issued(&self) -> u64 {
        self.next_seq
    }

    /// Bounds the channels held (`SSE_CHANNEL_LIMIT`); unbounded until set.
    ///
    /// The table is sized for twice the limit up front (at the default 100,000: 262,144
    /// slots, 2.3 MiB per core, all resident once a few thousand channels are held, as
    /// hashing spreads them over every page; see [`ChannelTable`]): it never
    /// grows under a flood (a growth rebuilds it at once, ~50 ms at 60,000 channels in the
    /// hostile run), and the in-place rehash that clears removed channels' slots comes half
    /// as often as at the bare limit.
    pub fn limit_channels(&mut self, channels: usize) {
        self.channel_limit = channels;
        let slots = channels.min(MAX_PRESIZED).saturating_mul(2);
        self.channels
            .reserve(slots.saturating_sub(self.channels.len()));
    }

    /// Channels evicted by the budget so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Bounds the bytes of all channels' histories together (`SSE_HISTORY_BYTES`);
    /// unbounded until set.
    pub fn limit_history_bytes(&mut self, bytes: usize) {
        self.history_budget = bytes;
    }

    /// Bytes of events held in history, and events trimmed for the byte budget so far.
    pub fn history_use(&self) -> (usize, u64) {
        (self.history_bytes, self.history_trimmed)
    }

    /// Accounts for events that left history with their channel (evicted, swept) or all at
    /// once (a kept channel's history dropped).
    fn released(&mut self, family: usize, name: &str, history: &VecDeque<(u64, Bytes)>) {
        if history.is_empty() {
            return;
        }
        self.history_bytes -= history.iter().map(|(_, b)| b.len()).sum::<usize>();
        self.history_events -= history.len();
        family_index(&mut self.families, family)
            .with_history
            .remove(name);
    }

    /// Trims the oldest events of the whole core until history fits its byte budget; a
    /// channel that lost events this way resets resumes from before them. Then drops the
    /// order's entries of events no longer held (a few per call, all of them when they
    /// outnumber the held ones: amortized O(1) per event).
    fn trim_history(&mut self) {
        while self.history_bytes > self.history_budget {
            let Some((seq, name)) = self.history_order.pop_front() else {
                break;
            };
            let Some(c) = self.channels.get_mut(&name) else {
                continue;
            };
            if c.history.front().is_some_and(|(s, _)| *s == seq) {
                if let Some((_, b)) = c.history.pop_front() {
                    c.evicted_upto = seq;
                    self.history_bytes -= b.len();
                    self.history_events -= 1;
                    self.history_trimmed += 1;
                    let f = family_index(&mut self.families, c.family);
                    f.evicted = f.evicted.max(seq);
                    if c.history.is_empty() {
                        f.with_history.remove(&name);
                    }
                }
            }
        }
        let channels = &self.channels;
        let held = |(seq, name): &(u64, Rc<str>)| {
            channels
                .get(name)
                .is_some_and(|c| c.history.binary_search_by_key(seq, |(s, _)| *s).is_ok())
        };
        for _ in 0..2 {
            match self.history_order.front() {
                Some(e) if !held(e) => self.history_order.pop_front(),
                _ => break,
            };
        }
        if self.history_order.len() > 2 * self.history_events + 1024 {
            self.history_order.retain(held);
        }
        // Marks of events long gone from history answer no resume: as many as history
        // holds events (twice, for slack), and the floor rises past the ones dropped.
        while self.durable_marks.len() > 2 * self.history_events + 1024 {
            if let Some((d, _)) = self.durable_marks.pop_front() {
                self.durable_floor = self.durable_floor.max(d);
            }
        }
    }

    /// Makes room for `new` more channels within the budget by evicting the least recently
    /// used channels without subscribers of their own, none of them named in `keep`. `false`
    /// (and nothing evicted) when there are not enough such channels: every channel a stream
    /// needs stays.
    fn make_room(&mut self, new: usize, keep: &[&str]) -> bool {
        let over = (self.channels.len() + new).saturating_sub(self.channel_limit);
        if over == 0 {
            return true;
        }
        let victims: Vec<u64> = self
            .idle
            .iter()
            .filter(|(_, name)| !keep.contains(&&***name))
            .take(over)
            .map(|(k, _)| *k)
            .collect();
        if victims.len() < over {
            return false;
        }
        for k in victims {
            let Some(name) = self.idle.remove(&k) else {
                continue;
            };
            if let Some(c) = self.channels.remove(&name) {
                self.released(c.family, &name, &c.history);
                self.dropped(c.family, &name);
                if c.newest_seq > 0 {
                    // Its history goes: resuming across this point is a gap (a reset).
                    self.lost_upto.insert(c.family, self.next_seq);
                }
                self.evicted += 1;
            }
        }
        true
    }

    /// Whether the channels a stream asks for fit the budget, evicting idle ones to make
    /// room; `false`: the stream must be refused (every channel has a live stream).
    pub fn admit(&mut self, channels: &Channels) -> bool {
        match channels {
            Channels::All => true,
            Channels::One(c) => self.channels.contains_key(c) || self.make_room(1, &[]),
            Channels::Many(list) => {
                let named: Vec<&str> = list.iter().map(|c| &**c).collect();
                let new = named
                    .iter()
                    .filter(|c| !self.channels.contains_key(c))
                    .count();
                new == 0 || self.make_room(new, &named)
            }
        }
    }

    /// Puts `channel` (now without subscribers of its own) at the young end of the idle
    /// order.
    fn mark_idle(&mut self, channel: &str) {
        let Some(c) = self.channels.get_mut(channel) else {
            return;
        };
        if c.lru != 0 {
            self.idle.remove(&c.lru);
        }
        self.lru_clock += 1;
        c.lru = self.lru_clock;
        self.idle.insert(self.lru_clock, channel.into());
    }

    /// The id of this core's event `seq`.
    fn id(&self, seq: u64) -> String {
        id_of(&self.run, self.core, seq)
    }

    fn entry(&mut self, channel: &str, family: usize) -> &mut Channel {
        let created_seq = self.next_seq;
        self.channels.get_or_insert_with(channel, || {
            Box::new(Channel {
                name: channel.into(),
                hash: 0,
                family,
                subs: Slab::new(),
                history: VecDeque::new(),
                idle_since: None,
                created_seq,
                newest_seq: 0,
                evicted_upto: 0,
                keep: false,
                latest: None,
                lru: 0,
            })
        })
    }

    /// Adds a subscriber to `channels` of `family`; the membership is what
    /// [`Hub::unsubscribe`] takes back.
    pub fn subscribe(
        &mut self,
        channels: Channels,
        family: usize,
        sub: Rc<Subscriber>,
    ) -> Membership {
        self.changes += 1;
        match channels {
            Channels::One(channel) => {
                let key = self.subscribe_one(&channel, family, sub);
                Membership::One { channel, key }
            }
            Channels::Many(list) => Membership::Many(
                list.into_vec()
                    .into_iter()
                    .map(|c| {
                        let key = self.subscribe_one(&c, family, sub.clone());
                        (c, key)
                    })
                    .collect(),
            ),
            Channels::All => {
                let key = self.wildcards.entry(family).or_default().insert(sub);
                Membership::All { family, key }
            }
        }
    }

    fn subscribe_one(&mut self, channel: &str, family: usize, sub: Rc<Subscriber>) -> usize {
        let ch = self.entry(channel, family);
        ch.idle_since = None;
        let lru = std::mem::take(&mut ch.lru);
        let key = ch.subs.insert(sub);
        if lru != 0 {
            self.idle.remove(&lru);
        }
        key
    }

    /// Whether some stream here subscribes to every channel of `family`: its messages then
    /// create their channel instead of being dropped.
    pub fn watches(&self, family: usize) -> bool {
        self.wildcards.get(&family).is_some_and(|w| !w.is_empty())
    }

    /// Creates `channel` (no subscriber yet) so a message can be published on it; it is
    /// swept like any idle channel once no stream watches its family. `false` when the
    /// channel budget has no room (every channel has a live stream): the message is dropped.
    pub fn create(&mut self, channel: &str, family: usize) -> bool {
        if !self.channels.contains_key(channel) && !self.make_room(1, &[]) {
            return false;
        }
        let now = Instant::now();
        let ch = self.entry(channel, family);
        if ch.subs.is_empty() && ch.idle_since.is_none() && !ch.keep {
            ch.idle_since = Some(now);
        }
        if ch.subs.is_empty() && ch.lru == 0 {
            self.mark_idle(channel);
        }
        true
    }

    /// Records an outage of the message source (Redis): every id given out so far may be
    /// followed by messages this core never got.
    pub fn mark_gap(&mut self) {
        self.gap_upto = self.next_seq;
        self.durable_floor = u64::MAX;
        self.durable_marks.clear();
    }

    /// A durable event reached this core (whether or not a channel here takes it): sets the
    /// floor after a start, an outage or a new epoch (see `durable_floor`).
    pub fn durable_arrived(&mut self, tag: &Durable) {
        if self.durable_epoch.as_deref() != Some(&tag.epoch[..]) {
            // A Redis restarted without persistence: its seqs start again, so nothing kept
            // may be matched against them.
            if self.durable_epoch.is_some() {
                self.gap_upto = self.next_seq;
            }
            self.durable_epoch = Some(Bytes::copy_from_slice(&tag.epoch));
            self.durable_marks.clear();
            self.durable_floor = u64::MAX;
        }
        if self.durable_floor == u64::MAX {
            self.durable_floor = tag.seq.saturating_sub(1);
        }
    }

    /// What a client resuming `channels` of `family` from the durable id `from` missed, when
    /// this core's memory provably holds all of it: every durable event after `from` reached
    /// this core (its floor), and the resume bookkeeping of this core's own sequence (from
    /// the first durable event after `from` published here) finds no gap. `None`: memory
    /// cannot answer (ask Redis).
    pub fn resume_durable(
        &self,
        channels: &Channels,
        family: usize,
        from: &DurableId,
    ) -> Option<Vec<Bytes>> {
        if self.durable_epoch.as_deref() != Some(from.epoch.as_bytes())
            || from.seq < self.durable_floor
        {
            return None;
        }
        let first_after = self.durable_marks.partition_point(|(d, _)| *d <= from.seq);
        let seq = match self.durable_marks.get(first_after) {
            Some((_, core_seq)) => core_seq - 1,
            None => self.next_seq,
        };
        // The floor stands for the outage check: every durable event after `from` arrived.
        match self.replay_from(channels, family, seq, false) {
            Resume::Replay(parts) => Some(parts),
            Resume::Reset { .. } => None,
        }
    }

    /// A reset's cursor for `channels` of `family`: see [`Hub::resume`].
    pub fn reset_cursor(&mut self, channels: &Channels, family: usize) -> String {
        let newest = self.newest_of(channels, family);
        let lost = self.lost_upto.get(&family).copied().unwrap_or(0);
        let cursor = if newest > self.gap_upto && newest > lost {
            newest
        } else {
            self.next_seq += 1;
            self.next_seq
        };
        self.id(cursor)
    }

    /// Records that a message of `family` was dropped because nobody here subscribes to its
    /// channel (see `lost_upto`).
    pub fn note_dropped(&mut self, family: usize) {
        self.lost_upto.insert(family, self.next_seq);
    }

    /// Makes `channel` a kept channel (remembers its latest message), so a stream opened
    /// later is greeted with that message. `false` when the channel budget has no room.
    pub fn keep(&mut self, channel: &str, family: usize) -> bool {
        if !self.channels.contains_key(channel) && !self.make_room(1, &[]) {
            return false;
        }
        let ch = self.entry(channel, family);
        ch.keep = true;
        if ch.subs.is_empty() {
            // Idle from now (until its next message or subscriber) for the sweep.
            ch.idle_since = Some(Instant::now());
            if ch.lru == 0 {
                self.mark_idle(channel);
            }
        }
        true
    }

    /// The latest message of a kept channel: its id and payload.
    pub fn latest(&self, channel: &str) -> Option<(String, Bytes)> {
        let (seq, durable, payload) = self.channels.get(channel)?.latest.as_ref()?;
        let id = match durable {
            Some(id) => String::from_utf8_lossy(id).into_owned(),
            None => self.id(*seq),
        };
        Some((id, payload.clone()))
    }

    /// Removes a stream's membership; a channel left without subscribers stays for
    /// `SSE_CHANNEL_IDLE` (so a client that comes back can resume), then is swept.
    pub fn unsubscribe(&mut self, m: &Membership) {
        self.changes += 1;
        match m {
            Membership::One { channel, key } => self.unsubscribe_one(channel, *key),
            Membership::Many(list) => {
                for (c, k) in list.iter() {
                    self.unsubscribe_one(c, *k);
                }
            }
            Membership::All { family, key } => {
                if let Some(w) = self.wildcards.get_mut(family) {
                    w.try_remove(*key);
                }
            }
        }
    }

    /// A channel left without subscribers stays for `SSE_CHANNEL_IDLE`, so a client that comes
    /// back resumes from it (even one that had no event yet: a message published meanwhile
    /// is kept for it rather than dropped), unless the channel budget needs its place first:
    /// then the least recently used go (see [`Hub::admit`]).
    fn unsubscribe_one(&mut self, channel: &str, key: usize) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        ch.subs.try_remove(key);
        if !ch.subs.is_empty() {
            return;
        }
        ch.idle_since = Some(Instant::now());
        self.mark_idle(channel);
    }

    /// The family of a channel known on this core.
    pub fn family_of(&self, channel: &str) -> Option<usize> {
        self.channels.get(channel).map(|c| c.family)
    }

    /// Number of subscribers of `channel` here.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |c| c.subs.len())
    }

    /// Number of channels held.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Publishes to a known channel: assigns the next id, lets `encode` write the frame once
    /// (given the id), keeps it in history and queues it for every subscriber. Returns `None`
    /// when the channel is unknown here (nobody subscribed on this core).
    pub fn publish(
        &mut self,
        channel: &str,
        payload: &Bytes,
        arrived: Instant,
        scratch: &mut BytesMut,
        encode: impl FnOnce(&str, &mut BytesMut),
    ) -> Option<Fanout> {
        self.publish_as(channel, payload, arrived, None, scratch, encode)
    }

    /// [`Hub::publish`] of an event that may have a durable id (`durable`, from its
    /// envelope): it is then the id on the wire, and the event's place in Redis's order is
    /// remembered, so a resume from a durable id can be answered from this core's memory
    /// when that is provably complete ([`Hub::resume_durable`]).
    pub fn publish_as(
        &mut self,
        channel: &str,
        payload: &Bytes,
        arrived: Instant,
        durable: Option<&Durable>,
        scratch: &mut BytesMut,
        encode: impl FnOnce(&str, &mut BytesMut),
    ) -> Option<Fanout> {
        let ch = self.channels.get_mut(channel)?;
        self.next_seq += 1;
        let seq = self.next_seq;
        scratch.clear();
        let dseq = match durable {
            Some(d) => {
                // The envelope's parser took the id from UTF-8 text.
                encode(std::str::from_utf8(&d.id).unwrap_or_default(), scratch);
                if self.durable_marks.back().is_none_or(|(s, _)| *s < d.seq) {
                    self.durable_marks.push_back((d.seq, seq));
                }
                d.seq
            }
            None => {
                // Not `self.id`: `ch` borrows the channel map mutably meanwhile.
                encode(&id_of(&self.run, self.core, seq), scratch);
                0
            }
        };
        // An exact-size copy, not a split of the scratch buffer: a split would share (and so
        // pin) the whole scratch allocation for as long as history keeps this one event.
        let bytes = Bytes::copy_from_slice(scratch);
        ch.newest_seq = seq;
        if ch.keep {
            // A copy: a payload from Redis is a slice of a 64 KiB read buffer, which a kept
            // reference would pin for as long as the channel lives.
            ch.latest = Some((
                seq,
                durable.map(|d| Bytes::copy_from_slice(&d.id)),
                Bytes::copy_from_slice(payload),
            ));
            if ch.subs.is_empty() {
                ch.idle_since = Some(Instant::now());
            }
        }
        let family = family_index(&mut self.families, ch.family);
        family.newest = seq;
        if self.history > 0 {
            if ch.history.len() == self.history {
                if let Some((old, b)) = ch.history.pop_front() {
                    ch.evicted_upto = old;
                    family.evicted = family.evicted.max(old);
                    self.history_bytes -= b.len();
                    self.history_events -= 1;
                }
            }
            if ch.history.is_empty() {
                family.with_history.insert(ch.name.clone());
            }
            self.history_bytes += bytes.len();
            self.history_events += 1;
            ch.history.push_back((seq, bytes.clone()));
            self.history_order.push_back((seq, ch.name.clone()));
        } else {
            ch.evicted_upto = seq;
            family.evicted = seq;
        }
        let mut out = Fanout::default();
        let wild = self.wildcards.get(&ch.family).into_iter().flatten();
        for (_, sub) in ch.subs.iter().chain(wild) {
            if dseq != 0 && !sub.admits(dseq) {
                continue;
            }
            match sub.push(Frame {
                bytes: bytes.clone(),
                arrived: Some(arrived),
            }) {
                Pushed::Queued => out.queued += 1,
                Pushed::Cut => out.cut += 1,
                Pushed::Conflated => out.conflated += 1,
            }
        }
        self.trim_history();
        Some(out)
    }

    /// What a client resuming `channels` of `family` from `last_event_id` missed, merged in
    /// id order. Call it in the same synchronous step as [`Hub::subscribe`], so nothing falls
    /// between replay and live.
    ///
    /// A reset carries the id of the newest event of those channels, so the client's next
    /// reconnect resumes from there; when that id would itself be reset (no event yet, or
    /// it predates a Redis outage or a dropped message), a fresh id of this core is given
    /// instead: it names no event, and resuming from it replays what came after it.
    pub fn resume(&mut self, channels: &Channels, family: usize, last_event_id: &str) -> Resume {
        match self.replay(channels, family, last_event_id) {
            Resume::Reset { reason, .. } => Resume::Reset {
                newest_id: Some(self.reset_cursor(channels, family)),
                reason,
            },
            replay => replay,
        }
    }

    /// The newest sequence number on `channels` of `family` here (0: none).
    fn newest_of(&self, channels: &Channels, family: usize) -> u64 {
        let newest = |c: &Channel| c.newest_seq;
        match channels {
            Channels::One(c) => self.channels.get(c).map_or(0, &newest),
            Channels::Many(list) => list
                .iter()
                .filter_map(|c| self.channels.get(c))
                .map(newest)
                .max()
                .unwrap_or(0),
            Channels::All => self.families.get(family).map_or(0, |f| f.newest),
        }
    }

    fn replay(&self, channels: &Channels, family: usize, last_event_id: &str) -> Resume {
        let Some(seq) = EventId::of_run(last_event_id, &self.run)
            .filter(|id| id.core == self.core)
            .map(|id| id.seq)
            .filter(|s| *s <= self.next_seq)
        else {
            return Resume::Reset {
                newest_id: None,
                reason: "unknown Last-Event-ID (from another node, core or run)",
            };
        };
        self.replay_from(channels, family, seq, true)
    }

    /// What followed this core's event `seq` on `channels`, or why that is unknown.
    /// `outages`: whether a Redis outage since `seq` is a reset (see `gap_upto`).
    fn replay_from(&self, channels: &Channels, family: usize, seq: u64, outages: bool) -> Resume {
        let reset = |reason| Resume::Reset {
            newest_id: None,
            reason,
        };
        if outages && seq <= self.gap_upto {
            return reset("events published while Redis was unreachable are lost");
        }
        let lost = self.lost_upto.get(&family).copied().unwrap_or(0);
        // A channel unknown here (or created after `seq`) may have had messages dropped
        // since `seq`, unless none of the family was dropped since.
        let gap = |c: Option<&Channel>| match c {
            None => seq <= lost,
            Some(c) => seq < c.evicted_upto || (seq <= c.created_seq && seq <= lost),
        };
        let mut parts: Vec<&(u64, Bytes)> = Vec::new();
        let mut gone = false;
        let named: Vec<Option<&Channel>> = match channels {
            Channels::One(c) => vec![self.channels.get(c)],
            Channels::Many(list) => list.iter().map(|c| self.channels.get(c)).collect(),
            Channels::All => {
                // Only the channels with history: a channel without any has nothing to
                // replay, and what left any history is in the family's watermark.
                gone |= seq <= lost;
                if let Some(f) = self.families.get(family) {
                    gone |= seq < f.evicted;
                    let held = f.with_history.iter().filter_map(|n| self.channels.get(n));
                    for c in held {
                        parts.extend(c.history.iter().filter(|(s, _)| *s > seq));
                    }
                }
                Vec::new()
            }
        };
        for ch in named {
            gone |= gap(ch);
            if let Some(c) = ch {
                parts.extend(c.history.iter().filter(|(s, _)| *s > seq));
            }
        }
        if gone {
            return reset("history does not reach back to Last-Event-ID");
        }
        // Weighed before anything is cloned: an over-limit resume costs a scan, not a copy.
        let cost: usize = parts.iter().map(|(_, b)| b.len() + REPLAY_PART_COST).sum();
        if cost > self.replay_limit {
            return reset(OVER_REPLAY_LIMIT);
        }
        parts.sort_unstable_by_key(|(s, _)| *s);
        Resume::Replay(parts.into_iter().map(|(_, b)| b.clone()).collect())
    }

    /// Subscriber counts of `family`'s channels here (`(channel, n)`, borrowed: nothing is
    /// copied for channels the caller does not keep), and of its wildcard.
    pub fn subscriber_counts(
        &self,
        family: usize,
    ) -> (impl Iterator<Item = (&str, usize)> + '_, usize) {
        let named = self
            .channels
            .iter()
            .filter(move |c| c.family == family && !c.subs.is_empty())
            .map(|c| (&*c.name, c.subs.len()));
        let wild = self.wildcards.get(&family).map_or(0, Slab::len);
        (named, wild)
    }

    /// How many times a stream joined or left here so far: subscriber counts taken at the
    /// same value are still true.
    pub fn subscription_changes(&self) -> u64 {
        self.changes
    }

    /// Drops channels idle for longer than `SSE_CHANNEL_IDLE` (kept ones: [`KEPT_IDLE`]), a slice
    /// at a time: each call visits the next `1 / rounds` of the channels without a
    /// subscriber of their own (at least [`SWEEP_SLICE`]), after where the last call
    /// stopped, so `rounds` calls visit every one of them.
    ///
    /// Why slices: a sweep of every channel at once stalled the core for the whole table
    /// (about 3 ms per 100,000 channels every 10 s, and 57-72 ms at the 1.3 M channels of an
    /// unbounded flood); events wait meanwhile. Channels with a subscriber are never
    /// candidates, so they are not visited at all.
    pub fn sweep(&mut self, now: Instant, rounds: usize) {
        let visits = SWEEP_SLICE.max(self.idle.len().div_ceil(rounds.max(1)));
        let mut keys: Vec<u64> = self
            .idle
            .range(self.sweep_from..)
            .take(visits)
            .map(|(k, _)| *k)
            .collect();
        if keys.len() < visits {
            // Past the end: wrap around to the oldest.
            let more = visits - keys.len();
            let from = self.sweep_from;
            keys.extend(self.idle.range(..from).take(more).map(|(k, _)| *k));
            self.sweep_from = 0;
        }
        if let Some(last) = keys.last() {
            if *last >= self.sweep_from {
                self.sweep_from = last + 1;
            }
        }
        for k in keys {
            let Some(name) = self.idle.get(&k) else {
                continue;
            };
            let Some(c) = self.channels.get(name) else {
                continue;
            };
            // A channel a wildcard stream watches stays (its messages are that stream's).
            if self.watches(c.family) {
                continue;
            }
            let c = self.channels.get_mut(name).expect("looked up above");
            let idle_for = c.idle_since.map(|t| now.saturating_duration_since(t));
            // A kept channel nobody has watched for the idle time keeps only its latest message
            // (the greeting), not its history: history is for clients that come back soon.
            let mut dropped = VecDeque::new();
            if c.keep && idle_for.is_some_and(|d| d >= self.idle_keep) && !c.history.is_empty() {
                c.evicted_upto = c.newest_seq;
                dropped = std::mem::take(&mut c.history);
                let f = family_index(&mut self.families, c.family);
                f.evicted = f.evicted.max(c.newest_seq);
            }
            let ttl = if c.keep { KEPT_IDLE } else { self.idle_keep };
            let (family, published) = (c.family, c.newest_seq > 0);
            let name = c.name.clone();
            self.released(family, &name, &dropped);
            if idle_for.is_none_or(|d| d < ttl) {
                continue;
            }
            if let Some(name) = self.idle.remove(&k) {
                if let Some(c) = self.channels.remove(&name) {
                    self.released(family, &name, &c.history);
                    self.dropped(family, &name);
                }
            }
            if published {
                // Its history goes: resuming across this point is a gap.
                self.lost_upto.insert(family, self.next_seq);
            }
        }
    }
}

/// The fewest channels one [`Hub::sweep`] visits: about 1 us of work. The core sweeps ten
/// times a second; a floor of 1,024 made 9,000 idle channels cost 5% of a core at a hundred
/// sweeps a second (`perf`: `Hub::sweep` 6.9% of the gateway's samples), each channel visited
/// ten times a second instead of once per 10 s.
pub const SWEEP_SLICE: usize = 16;

/// The id of event `seq` of `core` in run `run`.
fn id_of(run: &str, core: usize, seq: u64) -> String {
    EventId { run, core, seq }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::subscriber::State;

    fn one(c: &str) -> Channels {
        Channels::One(c.into())
    }

    fn enc(id: &str, out: &mut BytesMut) {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    #[test]
    fn fanout_ids_history_and_cut() {
        let mut hub = Hub::new("r", 1, 2);
        let a = Rc::new(Subscriber::new(0, 0, 10));
        let b = Rc::new(Subscriber::new(0, 0, 1));
        let ka = hub.subscribe(one("c"), 0, a.clone());
        let _kb = hub.subscribe(one("c"), 0, b.clone());
        let mut scratch = BytesMut::new();
        let now = Instant::now();
        assert_eq!(
            hub.publish("nobody", &Bytes::new(), now, &mut scratch, enc),
            None
        );
        assert_eq!(
            hub.publish("c", &Bytes::new(), now, &mut scratch, enc),
            Some(Fanout {
                queued: 2,
                cut: 0,
                conflated: 0
            })
        );
        assert_eq!(
            hub.publish("c", &Bytes::new(), now, &mut scratch, enc),
            Some(Fanout {
                queued: 1,
                cut: 1,
                conflated: 0
            })
        );
        assert_eq!(b.state(), State::Cut);
        hub.publish("c", &Bytes::new(), now, &mut scratch, enc);
        let mut out = BytesMut::new();
        a.take_into(&mut out, &mut Vec::new());
        assert_eq!(&out[..], b"id: r.1.1\n\nid: r.1.2\n\nid: r.1.3\n\n");
        let ch = hub.channels.get("c").unwrap();
        assert_eq!(
            ch.history.iter().map(|h| h.0).collect::<Vec<_>>(),
            vec![2, 3]
        );
        hub.unsubscribe(&ka);
        assert_eq!(hub.subscribers("c"), 1);
    }

    #[test]
    fn resume_replays_exactly_what_was_missed_or_resets() {
        let mut hub = Hub::new("r", 1, 3);
        let a = Rc::new(Subscriber::new(0, 0, 10));
        hub.subscribe(one("c"), 0, a.clone());
        let mut scratch = BytesMut::new();
        for _ in 0..5 {
            hub.publish("c", &Bytes::new(), Instant::now(), &mut scratch, enc);
        }
        // history holds 3, 4, 5
        let mut replay = |id: &str| text(hub.resume(&one("c"), 0, id));
        let cases: &[(&str, &str)] = &[
            ("r.1.5", ""),
            ("r.1.4", "id: r.1.5\n\n"),
            ("r.1.2", "id: r.1.3\n\nid: r.1.4\n\nid: r.1.5\n\n"),
            ("r.1.1", "reset Some(\"r.1.5\")"),
            ("r.1.0", "reset Some(\"r.1.5\")"),
            ("r.1.9", "reset Some(\"r.1.5\")"),
            ("r.0.4", "reset Some(\"r.1.5\")"),
            ("old.1.4", "reset Some(\"r.1.5\")"),
            ("r.1.x", "reset Some(\"r.1.5\")"),
            ("", "reset Some(\"r.1.5\")"),
        ];
        for (id, want) in cases {
            assert_eq!(replay(id), *want, "Last-Event-ID {id:?}");
        }
        // A channel unknown here missed nothing unless a message of the family was dropped.
        assert_eq!(
            hub.resume(&one("other"), 0, "r.1.4"),
            Resume::Replay(Vec::new())
        );
        hub.note_dropped(0);
        assert_eq!(
            hub.resume(&one("other"), 0, "r.1.4"),
            Resume::Reset {
                newest_id: Some("r.1.6".into()),
                reason: "history does not reach back to Last-Event-ID",
            },
            "no event on `other` yet: a fresh id to resume from"
        );
    }

    #[test]
    fn a_replay_over_the_limit_is_a_reset_and_a_replay_shares_the_history() {
        let mut hub = Hub::new("r", 0, 8);
        hub.subscribe(one("c"), 0, Rc::new(Subscriber::new(0, 0, 10)));
        for _ in 0..5 {
            publish(&mut hub, "c"); // "id: r.0.N\n\n": 11 bytes each
        }
        let per = 11 + REPLAY_PART_COST;
        hub.limit_replay(3 * per);
        let Resume::Replay(parts) = hub.resume(&one("c"), 0, "r.0.2") else {
            panic!("three events fit the limit");
        };
        let kept = &hub.channels.get("c").unwrap().history;
        assert!(
            parts
                .iter()
                .zip(kept.iter().skip(2))
                .all(|(p, (_, h))| p.as_ptr() == h.as_ptr()),
            "the replay is the history's own bytes, not a copy"
        );
        assert_eq!(
            hub.resume(&one("c"), 0, "r.0.1"),
            Resume::Reset {
                newest_id: Some("r.0.5".into()),
                reason: OVER_REPLAY_LIMIT,
            },
            "four do not"
        );
    }

    #[test]
    fn the_channel_table_finds_each_channel_by_its_own_name_through_churn() {
        let mut hub = Hub::new("r", 0, 8);
        hub.limit_channels(64);
        let capacity = hub.channels.table.capacity();
        let bytes = hub.channels.table.allocation_size();
        // Ten times the table's capacity in inserts and removals: every channel is found by
        // the name inside it throughout, a removed one is gone, and the table never grows.
        // (`capacity()` is not the measure of that: a removal may leave a tombstone, which
        // lowers it until the table next rehashes in place, and the hash seed is random, so
        // how many tombstones a run leaves differs from run to run.)
        for round in 0..10 * capacity / 32 {
            for i in 0..32 {
                let name = format!("c{round}.{i}");
                hub.entry(&name, i % 3).keep = true;
                assert_eq!(hub.channels.get(&name).map(|c| c.family), Some(i % 3));
            }
            assert_eq!(hub.channels.len(), 32 + 32 * usize::from(round > 0));
            if round > 0 {
                for i in 0..32 {
                    let name = format!("c{}.{i}", round - 1);
                    let c = hub.channels.remove(&name).expect("held");
                    assert_eq!(&*c.name, name);
                    assert!(!hub.channels.contains_key(&name));
                    assert!(hub.channels.remove(&name).is_none());
                }
            }
            assert_eq!(hub.channels.table.allocation_size(), bytes, "never grown");
            assert!(hub.channels.table.capacity() <= capacity, "never grown");
        }
        // Without a limit the table grows as channels come, rehashing every channel by the
        // hash it keeps.
        let mut grown = Hub::new("r", 0, 8);
        for i in 0..1000 {
            grown.entry(&format!("g{i}"), 1);
        }
        assert!(grown.channels.table.capacity() >= 1000);
        assert!((0..1000).all(|i| grown.channels.contains_key(&format!("g{i}"))));
        assert!(!grown.channels.contains_key("g1000"));
        let c = hub.entry("c0.0", 2);
        assert_eq!(c.family, 2, "made again after its removal");
        assert!(!c.keep, "a new channel, not the old one");
        hub.channels.get_mut("c0.0").expect("held").keep = true;
        let c = hub.entry("c0.0", 1);
        assert!(
            c.keep && c.family == 2,
            "a held channel is found, not made again"
        );
    }

    #[test]
    fn the_table_sized_for_the_default_limit_holds_a_pointer_a_slot() {
        // Sized up front for twice the limit, the slots are spread over by random hashing
        // and all resident once a few thousand channels are held, whatever the streams: a
        // slot of 24 bytes (a map keyed by a separate name) made 6.3 MiB per core here.
        let mut hub = Hub::new("r", 0, 8);
        hub.limit_channels(100_000);
        let bytes = hub.channels.table.allocation_size();
        assert!(hub.channels.table.capacity() >= 200_000);
        assert!(bytes <= 9 * 262_144 + 4096, "{bytes} bytes of slots");
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used_idle_channels_or_refuses() {
        let mut hub = Hub::new("r", 0, 8);
        hub.limit_channels(3);
        let sub = || Rc::new(Subscriber::new(0, 0, 10));
        let mut ks = Vec::new();
        for c in ["a", "b", "c"] {
            assert!(hub.admit(&one(c)));
            ks.push(hub.subscribe(one(c), 0, sub()));
            publish(&mut hub, c);
        }
        assert!(!hub.admit(&one("d")), "every channel has a live stream");
        assert!(!hub.create("d", 0), "nor may a message create one");
        assert!(hub.admit(&one("a")), "a known channel needs no room");
        hub.unsubscribe(&ks[1]); // b idle first
        hub.unsubscribe(&ks[0]); // then a
        let many = Channels::Many(vec!["a".into(), "x".into()].into_boxed_slice());
        assert!(
            hub.admit(&many),
            "room made by evicting b, not a (asked for)"
        );
        assert_eq!(hub.family_of("b"), None);
        assert_eq!(hub.family_of("a"), Some(0));
        assert_eq!(hub.evicted(), 1);
        assert_eq!(
            text(hub.resume(&one("b"), 0, "r.0.3")),
            "reset Some(\"r.0.4\")",
            "an evicted channel's resumers get a reset"
        );
    }

    #[test]
    fn resume_without_history_only_accepts_the_newest_id() {
        let mut hub = Hub::new("r", 0, 0);
        let a = Rc::new(Subscriber::new(0, 0, 10));
        hub.subscribe(one("c"), 0, a);
        publish(&mut hub, "c");
        publish(&mut hub, "c");
        assert_eq!(
            hub.resume(&one("c"), 0, "r.0.2"),
            Resume::Replay(Vec::new())
        );
        assert!(matches!(
            hub.resume(&one("c"), 0, "r.0.1"),
            Resume::Reset { .. }
        ));
    }

    #[test]
    fn kept_channels_remember_their_latest_and_survive_sweeps() {
        let mut hub = Hub::new("r", 0, 0);
        hub.keep("g", 1);
        assert_eq!(hub.latest("g"), None);
        let p = Bytes::from_static(b"{\"round\":1}");
        hub.publish("g", &p, Instant::now(), &mut BytesMut::new(), enc);
        assert_eq!(hub.latest("g"), Some(("r.0.1".to_string(), p.clone())));
        let a = Rc::new(Subscriber::new(1, 0, 10));
        let k = hub.subscribe(one("g"), 1, a);
        hub.unsubscribe(&k);
        hub.sweep(Instant::now() + IDLE_KEEP * 2, 1);
        assert_eq!(hub.channel_count(), 1);
        assert_eq!(
            hub.latest("g").map(|l| l.1),
            Some(p.clone()),
            "the greeting stays"
        );
        hub.sweep(Instant::now() + KEPT_IDLE * 2, 1);
        assert_eq!(hub.channel_count(), 0, "but not forever");
    }

    #[test]
    fn ids_are_never_reused_when_a_channel_comes_back() {
        let mut hub = Hub::new("r", 0, 0);
        let a = Rc::new(Subscriber::new(0, 0, 10));
        let k = hub.subscribe(one("c"), 0, a.clone());
        publish(&mut hub, "c");
        hub.unsubscribe(&k);
        hub.sweep(Instant::now() + IDLE_KEEP * 2, 1);
        assert_eq!(hub.channel_count(), 0);
        hub.subscribe(one("c"), 0, a.clone());
        publish(&mut hub, "c");
        let mut out = BytesMut::new();
        a.take_into(&mut out, &mut Vec::new());
        assert_eq!(&out[..], b"id: r.0.1\n\nid: r.0.2\n\n");
    }

    #[test]
    fn a_sweep_visits_a_slice_and_rounds_of_them_visit_every_idle_channel() {
        let mut hub = Hub::new("r", 0, 8);
        let n = SWEEP_SLICE * 3;
        for i in 0..n {
            hub.create(&format!("c{i}"), 0);
        }
        // A subscribed channel is never a candidate.
        let sub = Rc::new(Subscriber::new(0, 0, 10));
        let m = hub.subscribe(one("live"), 0, sub);
        let later = Instant::now() + IDLE_KEEP * 2;
        // Ten rounds per cycle, at least SWEEP_SLICE per round: three rounds visit all.
        for round in 1..=3 {
            hub.sweep(later, 10);
            assert_eq!(
                hub.channel_count(),
                n - round * SWEEP_SLICE + 1,
                "round {round}"
            );
        }
        assert_eq!(hub.subscribers("live"), 1);
        // Wrapping around: channels made idle after the cursor passed are reached too.
        hub.unsubscribe(&m);
        hub.create("late", 0);
        hub.sweep(later, 10);
        assert_eq!(hub.channel_count(), 0);
    }

    #[test]
    fn history_fits_its_byte_budget_by_trimming_the_core_s_oldest_events() {
        let mut hub = Hub::new("r", 0, 64);
        // Each encoded event is `id: r.0.N\n\n` plus 100 bytes of payload.
        let enc = |id: &str, out: &mut BytesMut| {
            out.extend_from_slice(format!("id: {id}\n\n").as_bytes());
            out.extend_from_slice(&[b'x'; 100]);
        };
        hub.limit_history_bytes(1_000);
        let subs: Vec<Membership> = ["a", "b"]
            .iter()
            .map(|c| hub.subscribe(one(c), 0, Rc::new(Subscriber::new(0, 0, 1000))))
            .collect();
        for i in 0..40 {
            let c = if i % 4 == 0 { "a" } else { "b" };
            hub.publish(c, &Bytes::new(), Instant::now(), &mut BytesMut::new(), enc);
        }
        let (bytes, trimmed) = hub.history_use();
        assert!(bytes <= 1_000 && bytes > 800, "{bytes}");
        // The newest events stay (of both channels); the oldest of the core went first.
        assert_eq!(trimmed, 40 - hub.history_events as u64);
        assert!(matches!(hub.resume(&one("b"), 0, "r.0.36"), Resume::Replay(v) if v.len() == 3));
        assert!(matches!(
            hub.resume(&one("a"), 0, "r.0.1"),
            Resume::Reset { .. }
        ));
        // The order of history holds no more than about what history holds.
        assert!(hub.history_order.len() <= 2 * hub.history_events + 1024);
        for m in &subs {
            hub.unsubscribe(m);
        }
        hub.sweep(Instant::now() + IDLE_KEEP * 2, 1);
        assert_eq!(hub.history_use().0, 0);
        assert_eq!(hub.history_events, 0);
    }

    #[test]
    fn a_resume_of_every_channel_visits_only_channels_with_history() {
        let mut hub = Hub::new("r", 0, 2);
        let w = Rc::new(Subscriber::new(0, 0, 100));
        hub.subscribe(Channels::All, 0, w);
        // A flood of channels that never had an event: not in the family's index.
        for i in 0..5_000 {
            hub.create(&format!("empty{i}"), 0);
        }
        hub.create("a", 0);
        hub.create("b", 0);
        for c in ["a", "b", "a", "a"] {
            publish(&mut hub, c);
        }
        assert_eq!(hub.families[0].with_history.len(), 2);
        // `a` holds r.0.3 and r.0.4 (history 2): r.0.1 left it, so resuming from before it
        // is a reset; from r.0.2 on, a replay merged in id order.
        assert!(matches!(
            hub.resume(&Channels::All, 0, "r.0.0"),
            Resume::Reset { .. }
        ));
        assert_eq!(
            text(hub.resume(&Channels::All, 0, "r.0.1")),
            "id: r.0.2\n\nid: r.0.3\n\nid: r.0.4\n\n"
        );
        // A reset names the family's newest event.
        match hub.resume(&Channels::All, 0, "x.0.1") {
            Resume::Reset { newest_id, .. } => assert_eq!(newest_id.as_deref(), Some("r.0.4")),
            r => panic!("{r:?}"),
        }
    }

    /// Channels of tracked families (subscribed on Redis per channel) are reported when the
    /// table drops them, swept or evicted, and only then; others never are.
    #[test]
    fn dropped_channels_of_tracked_families_are_reported() {
        let mut hub = Hub::new("run", 0, 8);
        hub.limit_channels(2);
        hub.keep_idle(Duration::from_secs(1));
        hub.track_drops(vec![true, false]);
        let s = |f| Rc::new(Subscriber::new(f, 0, 8));
        let a = hub.subscribe(one("a"), 0, s(0));
        let b = hub.subscribe(one("b"), 1, s(1));
        hub.unsubscribe(&a);
        hub.unsubscribe(&b);
        // Idle, not yet old enough: kept, nothing reported.
        hub.sweep(Instant::now(), 1);
        assert!(hub.take_gone().is_empty());
        hub.sweep(Instant::now() + Duration::from_secs(2), 1);
        assert_eq!(hub.take_gone(), vec![Box::from("a")]);
        assert_eq!(hub.channel_count(), 0);
        // Evicted for room: reported too.
        let c = hub.subscribe(one("c"), 0, s(0));
        hub.unsubscribe(&c);
        let _d = hub.subscribe(one("d"), 0, s(0));
        assert!(hub.admit(&one("e")));
        assert_eq!(hub.take_gone(), vec![Box::from("c")]);
        assert!(hub.take_gone().is_empty());
    }

    #[test]
    fn empty_channels_go_idle_then_swept() {
        let mut hub = Hub::new("r", 0, 4);
        let a = Rc::new(Subscriber::new(0, 0, 10));
        let k = hub.subscribe(one("c"), 0, a.clone());
        hub.unsubscribe(&k);
        assert_eq!(
            hub.channel_count(),
            1,
            "kept idle, so a returning client can resume"
        );
        let k = hub.subscribe(one("c"), 0, a);
        publish(&mut hub, "c");
        hub.unsubscribe(&k);
        assert_eq!(hub.channel_count(), 1, "history kept for resume");
        hub.sweep(Instant::now(), 1);
        assert_eq!(hub.channel_count(), 1);
        hub.sweep(Instant::now() + IDLE_KEEP + Duration::from_secs(1), 1);
        assert_eq!(hub.channel_count(), 0);
    }

    fn text(r: Resume) -> String {
        match r {
            Resume::Replay(parts) => String::from_utf8(parts.concat()).unwrap(),
            Resume::Reset { newest_id, .. } => format!("reset {newest_id:?}"),
        }
    }

    fn publish(hub: &mut Hub, c: &str) {
        hub.publish(c, &Bytes::new(), Instant::now(), &mut BytesMut::new(), enc);
    }

    #[test]
    fn many_channels_merge_in_id_order_and_wildcards_see_every_channel() {
        let mut hub = Hub::new("r", 0, 8);
        let many = Channels::Many(vec!["a".into(), "b".into()].into_boxed_slice());
        let m = Rc::new(Subscriber::new(0, 0, 10));
        let w = Rc::new(Subscriber::new(0, 0, 10));
        let km = hub.subscribe(many.clone(), 0, m.clone());
        let kw = hub.subscribe(Channels::All, 0, w.clone());
        assert!(hub.watches(0) && !hub.watches(1));
        // `c` has no named subscriber: the shard creates it because the family is watched.
        hub.create("c", 0);
        for c in ["a", "c", "b", "a"] {
            publish(&mut hub, c);
        }
        let (mut got_m, mut got_w) = (BytesMut::new(), BytesMut::new());
        m.take_into(&mut got_m, &mut Vec::new());
        w.take_into(&mut got_w, &mut Vec::new());
        assert_eq!(&got_m[..], b"id: r.0.1\n\nid: r.0.3\n\nid: r.0.4\n\n");
        assert_eq!(
            &got_w[..],
            b"id: r.0.1\n\nid: r.0.2\n\nid: r.0.3\n\nid: r.0.4\n\n"
        );
        assert_eq!(
            text(hub.resume(&many, 0, "r.0.1")),
            "id: r.0.3\n\nid: r.0.4\n\n"
        );
        assert_eq!(
            text(hub.resume(&Channels::All, 0, "r.0.1")),
            "id: r.0.2\n\nid: r.0.3\n\nid: r.0.4\n\n"
        );
        let changes = hub.subscription_changes();
        let (named, wild) = hub.subscriber_counts(0);
        let mut named: Vec<(&str, usize)> = named.collect();
        named.sort_unstable();
        assert_eq!((named, wild), (vec![("a", 1), ("b", 1)], 1));
        hub.unsubscribe(&km);
        hub.unsubscribe(&kw);
        assert!(!hub.watches(0));
        assert_eq!(hub.subscription_changes(), changes + 2);
        let (named, wild) = hub.subscriber_counts(0);
        assert_eq!((named.count(), wild), (0, 0));
    }

    #[test]
    fn a_drop_after_the_last_seen_id_resets_channels_that_did_not_exist() {
        let mut hub = Hub::new("r", 0, 8);
        let k = hub.subscribe(one("a"), 0, Rc::new(Subscriber::new(0, 0, 10)));
        publish(&mut hub, "a"); // r.0.1
        let many = Channels::Many(vec!["a".into(), "b".into()].into_boxed_slice());
        assert_eq!(
            text(hub.resume(&many, 0, "r.0.1")),
            "",
            "nothing dropped: no gap"
        );
        hub.note_dropped(0); // a message on unknown `b` was dropped after r.0.1
                             // r.0.1 is no resume point any more (it predates the drop): the reset carries a
                             // fresh id of this core instead, which names no event.
        assert_eq!(text(hub.resume(&many, 0, "r.0.1")), "reset Some(\"r.0.2\")");
        assert_eq!(
            text(hub.resume(&Channels::All, 0, "r.0.1")),
            "reset Some(\"r.0.3\")"
        );
        assert_eq!(
            text(hub.resume(&one("a"), 0, "r.0.1")),
            "",
            "`a` existed all along"
        );
        // From the fresh id: nothing missed yet, then what comes after it.
        assert_eq!(text(hub.resume(&many, 0, "r.0.2")), "");
        publish(&mut hub, "a"); // r.0.4, after the drop
        assert_eq!(text(hub.resume(&many, 0, "r.0.2")), "id: r.0.4\n\n");
        assert_eq!(text(hub.resume(&many, 0, "r.0.4")), "");
        // Sweeping a channel with history is a gap for ids before it.
        hub.unsubscribe(&k);
        hub.sweep(Instant::now() + IDLE_KEEP * 2, 1);
        assert_eq!(
            text(hub.resume(&one("a"), 0, "r.0.4")),
            "reset Some(\"r.0.5\")"
        );
    }

    #[test]
    fn a_durable_id_resumes_from_memory_only_when_every_event_after_it_arrived_here() {
        let mut hub = Hub::new("r", 0, 8);
        let tag = |epoch: &'static str, seq: u64| Durable {
            id: Bytes::from(format!("{epoch}-{seq}-100")),
            epoch: Bytes::from_static(epoch.as_bytes()),
            seq,
        };
        let durable = |hub: &mut Hub, c: &str, t: Durable| {
            hub.durable_arrived(&t);
            let now = Instant::now();
            hub.publish_as(c, &Bytes::new(), now, Some(&t), &mut BytesMut::new(), enc);
        };
        let sub = Rc::new(Subscriber::new(0, 0, 100));
        hub.subscribe(one("a"), 0, sub.clone());
        hub.subscribe(one("b"), 0, sub.clone());
        let from = |seq| DurableId {
            epoch: "e",
            seq,
            unix_s: 100,
        };
        let ab = Channels::Many(vec!["a".into(), "b".into()].into_boxed_slice());
        let resume = |hub: &Hub, ch: &Channels, seq| {
            hub.resume_durable(ch, 0, &from(seq))
                .map(|p| String::from_utf8(p.concat()).unwrap())
        };
        assert_eq!(resume(&hub, &ab, 3), None, "nothing received here yet");
        // The first durable event here is 5: from 4 on, every later one arrived.
        durable(&mut hub, "a", tag("e", 5));
        durable(&mut hub, "b", tag("e", 6));
        publish(&mut hub, "a"); // a plain event in between: r.0.3
        durable(&mut hub, "a", tag("e", 9));
        let cases: &[(&Channels, u64, Option<&str>)] = &[
            // From before the core's very first event: its own sequence has nothing before
            // it to hold on to, so memory does not claim it (Redis answers).
            (&ab, 4, None),
            (&ab, 5, Some("id: e-6-100\n\nid: r.0.3\n\nid: e-9-100\n\n")),
            (&ab, 7, Some("id: e-9-100\n\n")),
            (&ab, 9, Some("")),
            (&ab, 12, Some("")),
            (&ab, 3, None),
            (
                &Channels::All,
                5,
                Some("id: e-6-100\n\nid: r.0.3\n\nid: e-9-100\n\n"),
            ),
        ];
        for (ch, seq, want) in cases {
            assert_eq!(
                resume(&hub, ch, *seq).as_deref(),
                *want,
                "from {seq} on {ch:?}"
            );
        }
        // A channel this core does not hold: unknown (a message of the family was dropped
        // for want of it, or may have been).
        hub.note_dropped(0);
        assert_eq!(resume(&hub, &one("c"), 5), None);
        assert_eq!(
            resume(&hub, &one("a"), 5).as_deref(),
            Some("id: r.0.3\n\nid: e-9-100\n\n")
        );
        let other = DurableId {
            epoch: "f",
            seq: 5,
            unix_s: 100,
        };
        assert_eq!(
            hub.resume_durable(&one("a"), 0, &other),
            None,
            "another epoch"
        );
        // An outage: nothing before the first event after it is provable.
        hub.mark_gap();
        assert_eq!(resume(&hub, &one("a"), 9), None);
        durable(&mut hub, "a", tag("e", 12));
        assert_eq!(resume(&hub, &one("a"), 9), None, "10 and 11 may be lost");
        assert_eq!(
            resume(&hub, &one("a"), 11).as_deref(),
            Some("id: e-12-100\n\n")
        );
        // A new epoch (Redis restarted empty): its seqs start again; nothing older matches.
        durable(&mut hub, "a", tag("g", 1));
        let new = DurableId {
            epoch: "g",
            seq: 0,
            unix_s: 100,
        };
        let got = hub.resume_durable(&one("a"), 0, &new).map(|p| p.concat());
        assert_eq!(got.as_deref(), Some(&b"id: g-1-100\n\n"[..]));
        assert_eq!(resume(&hub, &one("a"), 11), None);
        // Live frames skip what a resume replayed.
        let mut out = BytesMut::new();
        sub.take_into(&mut out, &mut Vec::new());
        sub.skip_upto(2);
        durable(&mut hub, "a", tag("g", 2));
        durable(&mut hub, "a", tag("g", 3));
        out.clear();
        sub.take_into(&mut out, &mut Vec::new());
        assert_eq!(&out[..], b"id: g-3-100\n\n");
    }

    #[test]
    fn an_outage_resets_resumes_from_before_it() {
        let mut hub = Hub::new("r", 0, 8);
        hub.subscribe(one("a"), 0, Rc::new(Subscriber::new(0, 0, 10)));
        publish(&mut hub, "a"); // r.0.1
        hub.mark_gap();
        publish(&mut hub, "a"); // r.0.2
        assert_eq!(
            text(hub.resume(&one("a"), 0, "r.0.1")),
            "reset Some(\"r.0.2\")"
        );
        assert_eq!(text(hub.resume(&one("a"), 0, "r.0.2")), "");
    }

    #[test]
    fn an_unwatched_kept_channel_drops_its_history_but_not_its_latest() {
        let mut hub = Hub::new("r", 0, 8);
        hub.keep("g", 1);
        for _ in 0..3 {
            publish(&mut hub, "g"); // r.0.1 .. r.0.3
        }
        assert_eq!(
            text(hub.resume(&one("g"), 1, "r.0.1")),
            "id: r.0.2\n\nid: r.0.3\n\n"
        );
        hub.sweep(Instant::now() + IDLE_KEEP + Duration::from_secs(1), 1);
        assert_eq!(hub.channel_count(), 1);
        assert!(hub.latest("g").is_some());
        assert_eq!(
            text(hub.resume(&one("g"), 1, "r.0.1")),
            "reset Some(\"r.0.3\")"
        );
        assert_eq!(text(hub.resume(&one("g"), 1, "r.0.3")), "");
    }
}
