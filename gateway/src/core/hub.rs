//! A core's channel registry: which local streams subscribe to which channel, each channel's
//! event sequence and recent history, and the fan-out of one encoded event to its subscribers.
//!
//! Invariants: a channel exists while it has a subscriber or history worth keeping; every
//! event gets the next sequence number of this core (increasing within each channel, never
//! reused in a run), so an id names exactly one event on one core of one run.
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use slab::Slab;

use crate::core::subscriber::{Frame, Pushed, Subscriber};

/// How long a channel with history but no subscriber is kept, so a client that was cut or
/// lost its network can still resume from it.
pub const IDLE_KEEP: Duration = Duration::from_secs(300);

/// One channel on one core.
#[derive(Debug)]
pub struct Channel {
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
    /// The latest payload and its sequence number, when `keep`.
    latest: Option<(u64, Bytes)>,
}

/// What a reconnecting client with a `Last-Event-ID` gets before going live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Every event it missed, in order, as one frame (empty when it missed nothing).
    Replay(Bytes),
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

/// The registry of one core.
#[derive(Debug)]
pub struct Hub {
    /// Channels by name.
    channels: HashMap<Box<str>, Channel>,
    /// `SSE_HISTORY`.
    history: usize,
    /// The id prefix of this run and core, `<run>.<core>.`.
    id_prefix: String,
    /// The last sequence number given out. One counter for all channels of the core, so an id
    /// is never reused in a run, even by a channel that was evicted and created again.
    next_seq: u64,
}

impl Hub {
    /// An empty hub whose ids start with `<run>.<core>.`.
    pub fn new(run: &str, core: usize, history: usize) -> Hub {
        Hub {
            channels: HashMap::new(),
            history,
            id_prefix: format!("{run}.{core}."),
            next_seq: 0,
        }
    }

    fn entry(&mut self, channel: &str, family: usize) -> &mut Channel {
        let created_seq = self.next_seq;
        self.channels
            .entry(channel.into())
            .or_insert_with(|| Channel {
                family,
                subs: Slab::new(),
                history: VecDeque::new(),
                idle_since: None,
                created_seq,
                newest_seq: 0,
                evicted_upto: 0,
                keep: false,
                latest: None,
            })
    }

    /// Adds a subscriber to `channel`; returns its key for [`Hub::unsubscribe`].
    pub fn subscribe(&mut self, channel: &str, family: usize, sub: Rc<Subscriber>) -> usize {
        let ch = self.entry(channel, family);
        ch.idle_since = None;
        ch.subs.insert(sub)
    }

    /// Makes `channel` a kept channel (never evicted, remembers its latest message), so a
    /// stream opened later is greeted with that message.
    pub fn keep(&mut self, channel: &str, family: usize) {
        self.entry(channel, family).keep = true;
    }

    /// The latest message of a kept channel: its id and payload.
    pub fn latest(&self, channel: &str) -> Option<(String, Bytes)> {
        let (seq, payload) = self.channels.get(channel)?.latest.as_ref()?;
        Some((format!("{}{seq}", self.id_prefix), payload.clone()))
    }

    /// Removes a subscriber; a channel left without subscribers and without history goes.
    pub fn unsubscribe(&mut self, channel: &str, key: usize) {
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.subs.try_remove(key);
            if ch.subs.is_empty() && !ch.keep {
                if ch.history.is_empty() {
                    self.channels.remove(channel);
                } else {
                    ch.idle_since = Some(Instant::now());
                }
            }
        }
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
        let ch = self.channels.get_mut(channel)?;
        self.next_seq += 1;
        let seq = self.next_seq;
        let id = format!("{}{seq}", self.id_prefix);
        scratch.clear();
        encode(&id, scratch);
        // An exact-size copy, not a split of the scratch buffer: a split would share (and so
        // pin) the whole scratch allocation for as long as history keeps this one event.
        let bytes = Bytes::copy_from_slice(scratch);
        ch.newest_seq = seq;
        if ch.keep {
            ch.latest = Some((seq, payload.clone()));
        }
        if self.history > 0 {
            if ch.history.len() == self.history {
                if let Some((old, _)) = ch.history.pop_front() {
                    ch.evicted_upto = old;
                }
            }
            ch.history.push_back((seq, bytes.clone()));
        } else {
            ch.evicted_upto = seq;
        }
        let mut out = Fanout::default();
        for (_, sub) in ch.subs.iter() {
            match sub.push(Frame {
                bytes: bytes.clone(),
                arrived: Some(arrived),
            }) {
                Pushed::Queued => out.queued += 1,
                Pushed::Cut => out.cut += 1,
                Pushed::Conflated => out.conflated += 1,
            }
        }
        Some(out)
    }

    /// What a client resuming `channel` from `last_event_id` missed. Call it in the same
    /// synchronous step as [`Hub::subscribe`], so nothing falls between replay and live.
    pub fn resume(&self, channel: &str, last_event_id: &str) -> Resume {
        let ch = self.channels.get(channel);
        let newest_id = ch
            .filter(|c| c.newest_seq > 0)
            .map(|c| format!("{}{}", self.id_prefix, c.newest_seq));
        let reset = |reason| Resume::Reset {
            newest_id: newest_id.clone(),
            reason,
        };
        let Some(seq) = last_event_id
            .strip_prefix(self.id_prefix.as_str())
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s <= self.next_seq)
        else {
            return reset("unknown Last-Event-ID (from another node, core or run)");
        };
        let Some(ch) = ch else {
            return reset("history does not reach back to Last-Event-ID");
        };
        if seq <= ch.created_seq || seq < ch.evicted_upto {
            return reset("history does not reach back to Last-Event-ID");
        }
        let missed = ch.history.iter().filter(|(s, _)| *s > seq);
        let mut out = BytesMut::with_capacity(missed.clone().map(|(_, b)| b.len()).sum());
        for (_, b) in missed {
            out.extend_from_slice(b);
        }
        Resume::Replay(out.freeze())
    }

    /// Drops channels idle for longer than [`IDLE_KEEP`]; called from the core's timer.
    pub fn sweep(&mut self, now: Instant) {
        self.channels.retain(|_, c| {
            !c.subs.is_empty()
                || c.idle_since
                    .is_none_or(|t| now.duration_since(t) < IDLE_KEEP)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::subscriber::State;

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
        let ka = hub.subscribe("c", 0, a.clone());
        let _kb = hub.subscribe("c", 0, b.clone());
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
        hub.unsubscribe("c", ka);
        assert_eq!(hub.subscribers("c"), 1);
    }

    #[test]
    fn resume_replays_exactly_what_was_missed_or_resets() {
        let mut hub = Hub::new("r", 1, 3);
        let a = Rc::new(Subscriber::new(0, 0, 10));
        hub.subscribe("c", 0, a.clone());
        let mut scratch = BytesMut::new();
        for _ in 0..5 {
            hub.publish("c", &Bytes::new(), Instant::now(), &mut scratch, enc);
        }
        // history holds 3, 4, 5
        let replay = |id: &str| match hub.resume("c", id) {
            Resume::Replay(b) => String::from_utf8(b.to_vec()).unwrap(),
            Resume::Reset { newest_id, .. } => format!("reset {newest_id:?}"),
        };
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
        assert!(matches!(
            hub.resume("other", "r.1.4"),
            Resume::Reset {
                newest_id: None,
                ..
            }
        ));
    }

    #[test]
    fn resume_without_history_only_accepts_the_newest_id() {
        let mut hub = Hub::new("r", 0, 0);
        let a = Rc::new(Subscriber::new(0, 0, 10));
        hub.subscribe("c", 0, a);
        hub.publish(
            "c",
            &Bytes::new(),
            Instant::now(),
            &mut BytesMut::new(),
            enc,
        );
        hub.publish(
            "c",
            &Bytes::new(),
            Instant::now(),
            &mut BytesMut::new(),
            enc,
        );
        assert_eq!(hub.resume("c", "r.0.2"), Resume::Replay(Bytes::new()));
        assert!(matches!(hub.resume("c", "r.0.1"), Resume::Reset { .. }));
    }

    #[test]
    fn kept_channels_remember_their_latest_and_survive_sweeps() {
        let mut hub = Hub::new("r", 0, 0);
        hub.keep("g", 1);
        assert_eq!(hub.latest("g"), None);
        let p = Bytes::from_static(b"{\"round\":1}");
        hub.publish("g", &p, Instant::now(), &mut BytesMut::new(), enc);
        assert_eq!(hub.latest("g"), Some(("r.0.1".to_string(), p)));
        let a = Rc::new(Subscriber::new(1, 0, 10));
        let k = hub.subscribe("g", 1, a);
        hub.unsubscribe("g", k);
        hub.sweep(Instant::now() + IDLE_KEEP * 2);
        assert_eq!(hub.channel_count(), 1);
    }

    #[test]
    fn ids_are_never_reused_when_a_channel_comes_back() {
        let mut hub = Hub::new("r", 0, 0);
        let a = Rc::new(Subscriber::new(0, 0, 10));
        let k = hub.subscribe("c", 0, a.clone());
        hub.publish(
            "c",
            &Bytes::new(),
            Instant::now(),
            &mut BytesMut::new(),
            enc,
        );
        hub.unsubscribe("c", k);
        assert_eq!(hub.channel_count(), 0);
        hub.subscribe("c", 0, a.clone());
        hub.publish(
            "c",
            &Bytes::new(),
            Instant::now(),
            &mut BytesMut::new(),
            enc,
        );
        let mut out = BytesMut::new();
        a.take_into(&mut out, &mut Vec::new());
        assert_eq!(&out[..], b"id: r.0.1\n\nid: r.0.2\n\n");
    }

    #[test]
    fn empty_channels_go_idle_then_swept() {
        let mut hub = Hub::new("r", 0, 4);
        let a = Rc::new(Subscriber::new(0, 0, 10));
        let k = hub.subscribe("c", 0, a.clone());
        hub.unsubscribe("c", k);
        assert_eq!(hub.channel_count(), 0, "no history: gone at once");
        let k = hub.subscribe("c", 0, a);
        hub.publish(
            "c",
            &Bytes::new(),
            Instant::now(),
            &mut BytesMut::new(),
            enc,
        );
        hub.unsubscribe("c", k);
        assert_eq!(hub.channel_count(), 1, "history kept for resume");
        hub.sweep(Instant::now());
        assert_eq!(hub.channel_count(), 1);
        hub.sweep(Instant::now() + IDLE_KEEP + Duration::from_secs(1));
        assert_eq!(hub.channel_count(), 0);
    }
}
