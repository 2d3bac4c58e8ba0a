//! Subscription by channel (`SSE_REDIS_SUBSCRIBE=channel`): which channels one core's Redis
//! link must `SUBSCRIBE` and `UNSUBSCRIBE`, batched per turn of the link's loop, and which
//! are confirmed by Redis. Pure bookkeeping (no I/O), shared by the core (which wants and
//! drops channels as streams come and channels are swept) and its link (which sends the
//! batches and reports Redis's confirmations).
//!
//! Why confirmations matter: a stream whose channel is not yet subscribed on Redis would miss
//! an event published right after its `200` head. A stream therefore opens only once its
//! channels are [`ChannelSubs::is_live`]; one already live (another stream holds it) opens at
//! once.
//!
//! Order: Redis answers the commands of one connection in order, one confirmation per channel
//! of each `SUBSCRIBE`/`UNSUBSCRIBE`. A channel whose commands are all confirmed is in the
//! state of the last one sent; so each entry counts its unconfirmed commands, and is live
//! when that count is 0, it is wanted and the last command sent was a `SUBSCRIBE`.
//!
//! Bounds: a channel is wanted only while the core's channel table holds it (or a stream
//! waits for it), so the set and its queues are bounded by `SSE_CHANNEL_LIMIT` plus the
//! streams being opened (bounded by `SSE_CONNECTION_LIMIT`); one command names at most
//! [`MAX_PER_COMMAND`] channels.
use std::collections::{HashMap, VecDeque};
use std::task::Waker;

/// Most channels one `SUBSCRIBE` or `UNSUBSCRIBE` names: a 50,000-stream reconnect storm is
/// about 50 commands, each well under Redis's 1 GiB query buffer and 1,024 arguments of at
/// most 1 KiB each (about 1 MiB).
pub const MAX_PER_COMMAND: usize = 1024;

/// One command's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SUBSCRIBE`.
    Subscribe,
    /// `UNSUBSCRIBE`.
    Unsubscribe,
}

/// One channel's standing.
#[derive(Debug, Default)]
struct Entry {
    /// Whether the core wants it subscribed.
    want: bool,
    /// Whether it waits in a queue for the next batch, and for which command.
    queued: Option<Kind>,
    /// The last command sent for it on the current link (`None`: none since the link came up).
    sent: Option<Kind>,
    /// Commands sent for it on the current link and not yet confirmed.
    unconfirmed: u32,
    /// Streams waiting for it to be live: it stays wanted meanwhile.
    waiting: u32,
    /// Their wake-ups.
    wakers: Vec<Waker>,
}

impl Entry {
    fn live(&self) -> bool {
        self.want
            && self.unconfirmed == 0
            && self.sent == Some(Kind::Subscribe)
            && self.queued.is_none()
    }

    /// Nothing left to track: not wanted, nothing in flight or queued, nobody waiting.
    fn idle(&self) -> bool {
        !self.want && self.unconfirmed == 0 && self.queued.is_none() && self.waiting == 0
    }
}

/// The commands of one turn of the link's loop.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Channels to `SUBSCRIBE`, in the order they were wanted.
    pub subscribe: Vec<Box<str>>,
    /// Channels to `UNSUBSCRIBE`.
    pub unsubscribe: Vec<Box<str>>,
}

impl Batch {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.unsubscribe.is_empty()
    }
}

/// A channel's standing taken from one link's bookkeeping to be adopted by another's
/// (sharded mode: its slot moved to another master).
#[derive(Debug)]
pub struct Moved {
    /// Streams waiting for it to be live.
    waiting: u32,
    /// Their wake-ups.
    wakers: Vec<Waker>,
}

/// Figures of the bookkeeping, for the core's stats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Channels subscribed and confirmed now (gauge).
    pub live: u64,
    /// `SUBSCRIBE` commands sent.
    pub subscribe_commands: u64,
    /// Channels named in them.
    pub subscribe_channels: u64,
    /// `UNSUBSCRIBE` commands sent.
    pub unsubscribe_commands: u64,
    /// Channels named in them.
    pub unsubscribe_channels: u64,
}

impl Counts {
    /// Adds `other`'s figures to these.
    pub fn add(&mut self, other: &Counts) {
        self.live += other.live;
        self.subscribe_commands += other.subscribe_commands;
        self.subscribe_channels += other.subscribe_channels;
        self.unsubscribe_commands += other.unsubscribe_commands;
        self.unsubscribe_channels += other.unsubscribe_channels;
    }
}

/// One core's channel subscriptions (see the module's doc).
#[derive(Debug, Default)]
pub struct ChannelSubs {
    /// Every channel wanted, in flight or waited for.
    chans: HashMap<Box<str>, Entry>,
    /// Channels to subscribe in the next batch, oldest first (an entry whose `queued` no
    /// longer says so is skipped).
    to_subscribe: VecDeque<Box<str>>,
    /// Channels to unsubscribe in the next batch.
    to_unsubscribe: VecDeque<Box<str>>,
    /// Whether a link is up to send batches on.
    link_up: bool,
    /// The link's writer, woken when a batch is due.
    writer: Option<Waker>,
    /// Figures.
    counts: Counts,
}

impl ChannelSubs {
    /// An empty set, no link up.
    pub fn new() -> ChannelSubs {
        ChannelSubs::default()
    }

    /// Whether `channel` is subscribed and confirmed on the current link.
    pub fn is_live(&self, channel: &str) -> bool {
        self.chans.get(channel).is_some_and(Entry::live)
    }

    /// Whether `channel` is wanted or waited for here.
    pub fn is_wanted(&self, channel: &str) -> bool {
        self.chans
            .get(channel)
            .is_some_and(|e| e.want || e.waiting > 0)
    }

    /// The core wants `channel` subscribed (idempotent). `true` when it is live already.
    pub fn want(&mut self, channel: &str) -> bool {
        let e = self.chans.entry(channel.into()).or_default();
        let was = e.live();
        e.want = true;
        let queue = match (e.queued, e.sent) {
            // An unsubscribe not sent yet: cancel it, the subscription stands.
            (Some(Kind::Unsubscribe), Some(Kind::Subscribe)) => {
                e.queued = None;
                false
            }
            // Queued, or sent as a subscribe and not undone: on its way or live.
            (Some(Kind::Subscribe), _) | (None, Some(Kind::Subscribe)) => false,
            _ => true,
        };
        let now = e.live();
        self.changed(was, now);
        if queue {
            self.queue(channel, Kind::Subscribe);
        }
        now
    }

    /// The core no longer holds `channel` (its table dropped it): unsubscribe unless a
    /// stream waits for it.
    pub fn unwant(&mut self, channel: &str) {
        let Some(e) = self.chans.get_mut(channel) else {
            return;
        };
        if e.waiting > 0 || !e.want {
            return;
        }
        let was = e.live();
        e.want = false;
        let queue = match (e.queued, e.sent) {
            // Never sent since the last unsubscribe (or the link came up): just forget it.
            (Some(Kind::Subscribe), _) => {
                e.queued = None;
                false
            }
            // Sent as a subscribe: undo it.
            (None, Some(Kind::Subscribe)) => true,
            _ => false,
        };
        self.changed(was, false);
        if queue {
            self.queue(channel, Kind::Unsubscribe);
        }
        self.forget_if_idle(channel);
    }

    /// A stream starts waiting for `channel` (it stays wanted until [`ChannelSubs::done`]).
    pub fn wait(&mut self, channel: &str, waker: &Waker) {
        let e = self.chans.entry(channel.into()).or_default();
        if !e.wakers.iter().any(|w| w.will_wake(waker)) {
            e.wakers.push(waker.clone());
        }
    }

    /// A stream waits for `channel` from now on (counted, so the channel is not dropped).
    pub fn hold(&mut self, channel: &str) {
        self.chans.entry(channel.into()).or_default().waiting += 1;
    }

    /// A stream stopped waiting for `channel` (opened, or gave up); `held`: whether the
    /// core's table holds it now (else it is dropped, unless another stream waits).
    pub fn done(&mut self, channel: &str, held: bool) {
        if let Some(e) = self.chans.get_mut(channel) {
            e.waiting = e.waiting.saturating_sub(1);
            if e.waiting == 0 {
                e.wakers.clear();
            }
        }
        if !held {
            self.unwant(channel);
        }
    }

    /// The link is up: batches may be sent (every wanted channel is queued already).
    pub fn link_up(&mut self) {
        self.link_up = true;
    }

    /// The link is gone: nothing is subscribed any more; every wanted channel is queued for
    /// the next link, everything else forgotten.
    pub fn link_down(&mut self) {
        self.link_up = false;
        self.to_subscribe.clear();
        self.to_unsubscribe.clear();
        self.counts.live = 0;
        let mut again = Vec::new();
        self.chans.retain(|name, e| {
            e.sent = None;
            e.unconfirmed = 0;
            e.queued = None;
            if e.want || e.waiting > 0 {
                e.want = true;
                again.push(name.clone());
                true
            } else {
                false
            }
        });
        for name in again {
            if let Some(e) = self.chans.get_mut(&name) {
                e.queued = Some(Kind::Subscribe);
            }
            self.to_subscribe.push_back(name);
        }
    }

    /// Whether a batch is due; registers `writer` to be woken when one becomes due.
    pub fn poll_due(&mut self, writer: &Waker) -> bool {
        if self.link_up && !(self.to_subscribe.is_empty() && self.to_unsubscribe.is_empty()) {
            return true;
        }
        self.writer = Some(writer.clone());
        false
    }

    /// Takes everything queued, to be sent now (as commands of at most
    /// [`MAX_PER_COMMAND`] channels each); nothing while no link is up.
    pub fn take_batch(&mut self) -> Batch {
        let mut batch = Batch::default();
        if !self.link_up {
            return batch;
        }
        for (queue, kind) in [
            (&mut self.to_unsubscribe, Kind::Unsubscribe),
            (&mut self.to_subscribe, Kind::Subscribe),
        ] {
            let out = match kind {
                Kind::Subscribe => &mut batch.subscribe,
                Kind::Unsubscribe => &mut batch.unsubscribe,
            };
            for name in queue.drain(..) {
                let Some(e) = self.chans.get_mut(&name) else {
                    continue;
                };
                if e.queued != Some(kind) {
                    continue;
                }
                e.queued = None;
                e.sent = Some(kind);
                e.unconfirmed += 1;
                out.push(name);
            }
        }
        self.counts.subscribe_channels += batch.subscribe.len() as u64;
        self.counts.unsubscribe_channels += batch.unsubscribe.len() as u64;
        batch
    }

    /// The link sent a batch as `subscribe` and `unsubscribe` commands (how many depends on
    /// the link: sharded commands are one slot's channels each).
    pub fn sent_commands(&mut self, subscribe: u64, unsubscribe: u64) {
        self.counts.subscribe_commands += subscribe;
        self.counts.unsubscribe_commands += unsubscribe;
    }

    /// Channels wanted or waited for (the ones a move of their slot must carry along).
    pub fn names(&self) -> Vec<Box<str>> {
        self.chans
            .iter()
            .filter(|(_, e)| e.want || e.waiting > 0)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Takes `channel` out of this bookkeeping (its slot moved to another link's master):
    /// its standing, when it is wanted or waited for. What was sent for it on this link is
    /// forgotten (a late confirmation of an unknown channel is ignored).
    pub fn take(&mut self, channel: &str) -> Option<Moved> {
        let e = self.chans.remove(channel)?;
        self.changed(e.live(), false);
        (e.want || e.waiting > 0).then_some(Moved {
            waiting: e.waiting,
            wakers: e.wakers,
        })
    }

    /// Adopts a channel taken from another link's bookkeeping: wanted here, queued for
    /// subscription, with the streams that wait for it.
    pub fn adopt(&mut self, channel: &str, moved: Moved) {
        let e = self.chans.entry(channel.into()).or_default();
        e.waiting += moved.waiting;
        for w in moved.wakers {
            if !e.wakers.iter().any(|x| x.will_wake(&w)) {
                e.wakers.push(w);
            }
        }
        self.want(channel);
    }

    /// Redis confirmed one channel of a `SUBSCRIBE` or `UNSUBSCRIBE` (which one needs no
    /// telling: Redis answers in order, see the module's doc); wakes the streams waiting for
    /// the channel when it is now live. `false` when Redis reported a channel this link
    /// tracks with no command of ours in flight: an unsubscription Redis made on its own
    /// (sharded pub/sub does so when the channel's slot leaves the node).
    pub fn confirmed(&mut self, channel: &[u8]) -> bool {
        let Ok(name) = std::str::from_utf8(channel) else {
            return true;
        };
        let Some(e) = self.chans.get_mut(name) else {
            return true;
        };
        if e.unconfirmed == 0 {
            return false;
        }
        let was = e.live();
        e.unconfirmed -= 1;
        let now = e.live();
        if now && !was {
            for w in std::mem::take(&mut e.wakers) {
                w.wake();
            }
        }
        self.changed(was, now);
        self.forget_if_idle(name);
        true
    }

    /// Figures so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Channels tracked (wanted, in flight or waited for).
    pub fn tracked(&self) -> usize {
        self.chans.len()
    }

    fn queue(&mut self, channel: &str, kind: Kind) {
        let Some(e) = self.chans.get_mut(channel) else {
            return;
        };
        e.queued = Some(kind);
        let q = match kind {
            Kind::Subscribe => &mut self.to_subscribe,
            Kind::Unsubscribe => &mut self.to_unsubscribe,
        };
        q.push_back(channel.into());
        if self.link_up {
            if let Some(w) = self.writer.take() {
                w.wake();
            }
        }
    }

    /// Keeps the live gauge: a channel went from live `was` to live `now`.
    fn changed(&mut self, was: bool, now: bool) {
        match (was, now) {
            (false, true) => self.counts.live += 1,
            (true, false) => self.counts.live = self.counts.live.saturating_sub(1),
            _ => {}
        }
    }

    fn forget_if_idle(&mut self, channel: &str) {
        if self.chans.get(channel).is_some_and(Entry::idle) {
            self.chans.remove(channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a scenario and what it says.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Want(&'static str),
        Unwant(&'static str),
        Hold(&'static str),
        Done(&'static str, bool),
        Up,
        Down,
        /// Take the batch: the channels it subscribes and unsubscribes.
        Batch(&'static [&'static str], &'static [&'static str]),
        Confirm(&'static str),
        /// Which of these channels are live.
        Live(&'static [&'static str], &'static [&'static str]),
        /// Channels tracked and the live gauge.
        Tracked(usize, u64),
    }
    use Op::*;

    fn run(name: &str, ops: &[Op]) {
        let mut s = ChannelSubs::new();
        for (i, op) in ops.iter().enumerate() {
            let at = format!("{name}, step {i}: {op:?}");
            match *op {
                Want(c) => {
                    s.want(c);
                }
                Unwant(c) => s.unwant(c),
                Hold(c) => s.hold(c),
                Done(c, held) => s.done(c, held),
                Up => s.link_up(),
                Down => s.link_down(),
                Batch(sub, unsub) => {
                    let b = s.take_batch();
                    // Sorted: a lost link queues its channels in the table's order.
                    let names = |v: &[Box<str>]| {
                        let mut v: Vec<String> = v.iter().map(|c| c.to_string()).collect();
                        v.sort();
                        v
                    };
                    assert_eq!(names(&b.subscribe), *sub, "{at}");
                    assert_eq!(names(&b.unsubscribe), *unsub, "{at}");
                }
                Confirm(c) => {
                    s.confirmed(c.as_bytes());
                }
                Live(yes, no) => {
                    for c in yes {
                        assert!(s.is_live(c), "{at}: {c} should be live");
                    }
                    for c in no {
                        assert!(!s.is_live(c), "{at}: {c} should not be live");
                    }
                }
                Tracked(n, live) => {
                    assert_eq!(s.tracked(), n, "{at}: tracked");
                    assert_eq!(s.counts().live, live, "{at}: live gauge");
                }
            }
        }
    }

    #[test]
    fn subscriptions_are_batched_confirmed_and_undone() {
        #[rustfmt::skip]
        let scenarios: &[(&str, &[Op])] = &[
            ("nothing is sent while the link is down, everything wanted goes in one batch", &[
                Want("a"), Want("b"), Want("a"), Batch(&[], &[]),
                Up, Batch(&["a", "b"], &[]), Batch(&[], &[]),
                Live(&[], &["a", "b"]),
                Confirm("a"), Live(&["a"], &["b"]), Confirm("b"), Live(&["a", "b"], &[]),
                Tracked(2, 2),
                // Wanting a live channel again sends nothing.
                Want("a"), Batch(&[], &[]),
            ]),
            ("dropped channels are unsubscribed in one batch and forgotten when confirmed", &[
                Up, Want("a"), Want("b"), Want("c"), Batch(&["a", "b", "c"], &[]),
                Confirm("a"), Confirm("b"), Confirm("c"),
                Unwant("a"), Unwant("c"), Live(&["b"], &["a", "c"]), Tracked(3, 1),
                Batch(&[], &["a", "c"]), Confirm("a"), Confirm("c"), Tracked(1, 1),
            ]),
            ("a channel dropped before it was sent is never sent", &[
                Want("a"), Unwant("a"), Up, Batch(&[], &[]), Tracked(0, 0),
            ]),
            ("an unsubscribe not sent yet is cancelled by a new stream: live at once", &[
                Up, Want("a"), Batch(&["a"], &[]), Confirm("a"),
                Unwant("a"), Live(&[], &["a"]), Want("a"), Live(&["a"], &[]),
                Batch(&[], &[]), Tracked(1, 1),
            ]),
            ("wanted again while its unsubscribe is in flight: subscribed again, live once confirmed", &[
                Up, Want("a"), Batch(&["a"], &[]), Confirm("a"),
                Unwant("a"), Batch(&[], &["a"]),
                Want("a"), Batch(&["a"], &[]),
                // The unsubscribe's confirmation is not the subscribe's.
                Confirm("a"), Live(&[], &["a"]), Confirm("a"), Live(&["a"], &[]), Tracked(1, 1),
            ]),
            ("dropped while its subscribe is in flight: undone after, never live", &[
                Up, Want("a"), Batch(&["a"], &[]), Unwant("a"), Batch(&[], &["a"]),
                Confirm("a"), Live(&[], &["a"]), Confirm("a"), Tracked(0, 0),
            ]),
            ("a lost link re-subscribes every wanted channel in one batch", &[
                Up, Want("a"), Want("b"), Batch(&["a", "b"], &[]), Confirm("a"),
                Unwant("b"), Want("c"),
                Down, Live(&[], &["a", "c"]), Tracked(2, 0),
                // Confirmations of the old link mean nothing.
                Confirm("a"), Live(&[], &["a"]),
                Up, Batch(&["a", "c"], &[]), Confirm("a"), Confirm("c"),
                Live(&["a", "c"], &["b"]), Tracked(2, 2),
            ]),
            ("a channel a stream waits for is not dropped; given up and not held, it is", &[
                Up, Hold("a"), Want("a"), Batch(&["a"], &[]),
                Unwant("a"), Batch(&[], &[]), Confirm("a"), Live(&["a"], &[]),
                Done("a", false), Batch(&[], &["a"]), Confirm("a"), Tracked(0, 0),
                // Opened: the table holds it, it stays.
                Hold("b"), Want("b"), Batch(&["b"], &[]), Confirm("b"), Done("b", true),
                Live(&["b"], &[]), Tracked(1, 1),
            ]),
        ];
        for (name, ops) in scenarios {
            run(name, ops);
        }
    }

    #[test]
    fn a_channel_moves_to_another_links_bookkeeping_with_its_waiters() {
        let mut from = ChannelSubs::new();
        let mut to = ChannelSubs::new();
        from.link_up();
        to.link_up();
        from.want("a");
        from.hold("b");
        from.want("b");
        from.want("c");
        from.unwant("c");
        let _ = from.take_batch();
        from.confirmed(b"a");
        assert!(from.is_live("a"));
        assert_eq!(from.counts().live, 1);
        // Only what is wanted or waited for moves.
        let mut names = from.names();
        names.sort();
        assert_eq!(names, vec!["a".into(), "b".into()] as Vec<Box<str>>);
        for name in ["a", "b"] {
            let moved = from.take(name).expect("wanted");
            to.adopt(name, moved);
        }
        assert_eq!((from.counts().live, from.tracked()), (0, 0));
        // A late confirmation of a channel gone is ignored; one Redis sends on its own for a
        // channel still tracked is reported.
        assert!(from.confirmed(b"b"));
        assert!(!to.is_live("a"));
        let b = to.take_batch();
        assert_eq!(b.subscribe.len(), 2);
        assert!(to.confirmed(b"a") && to.confirmed(b"b"));
        assert!(to.is_live("a") && to.is_live("b"));
        assert!(
            !to.confirmed(b"a"),
            "nothing in flight for a: Redis dropped it"
        );
        // `b` is still held by its stream there: released and not held, it is unsubscribed.
        to.done("b", false);
        assert_eq!(
            to.take_batch().unsubscribe,
            vec!["b".into()] as Vec<Box<str>>
        );
    }

    #[test]
    fn a_storm_is_a_few_commands_and_waiters_are_woken_once_live() {
        let mut s = ChannelSubs::new();
        s.link_up();
        for i in 0..50_000 {
            s.want(&format!("SSE::1::{i}"));
        }
        let b = s.take_batch();
        assert_eq!(b.subscribe.len(), 50_000);
        let c = s.counts();
        assert_eq!(c.subscribe_channels, 50_000);

        struct Flag(std::sync::atomic::AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let flag = std::sync::Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        s.hold("SSE::1::7");
        s.wait("SSE::1::7", &waker);
        s.confirmed(b"SSE::1::6");
        assert!(!flag.0.load(std::sync::atomic::Ordering::Relaxed));
        s.confirmed(b"SSE::1::7");
        assert!(flag.0.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(s.counts().live, 2);
    }
}
