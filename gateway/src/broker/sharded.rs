//! Sharded subscriptions (`SSE_REDIS_SUBSCRIBE=sharded`): a core's unicast channels, each
//! subscribed with `SSUBSCRIBE` on the master of its slot ([`crate::broker::cluster`]), through
//! one link per master the core needs channels from. Each master's link has its own
//! [`ChannelSubs`] (batches, confirmations, re-subscription after a loss); this router places
//! each channel in the bookkeeping of its slot's master, and moves channels when the slot map
//! changes (a failover, a slot moved), so the core sees one set of subscriptions ([`Subs`]).
//!
//! A channel whose slot has no known master (no map yet, or a failed master not yet replaced)
//! waits in `unrouted`, whose bookkeeping is never sent anywhere, so it is never live there:
//! a stream on it waits for its confirmation (at most 2 s) and is refused without one, as on
//! a core whose link is down. A fetch of the map is started then, and the channel moves to its
//! master when the map names one.
//!
//! **Every master of the map has a link**, channels or not: [`ShardedSubs::follow_map`]
//! fetches the map at start-up and starts a link to each of its masters, and again whenever
//! the map changes. A core's links are then the node's readiness for sharded channels: it says
//! `503` while any of them is not subscribed (`core::shard`), because a client a load
//! balancer sends may ask for a channel of any master. Links made only for the masters a core
//! had channels on (as before) left a node just started, or one whose streams happened to
//! miss a shard, ready while it could serve none of that shard's channels; at any real load
//! every core holds channels of every master anyway, so the eager links cost an idle
//! connection per master and core only where there is no load.
//!
//! Bounds: the channels are those of the core's table (`SSE_CHANNEL_LIMIT`) plus streams
//! being opened, wherever they are placed; links, one per master of the map (at most
//! [`crate::broker::cluster::MAX_MASTERS`]).
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::task::Waker;

use crate::broker::channels::{ChannelSubs, Counts};
use crate::broker::cluster::{SlotMap, Topology};
use crate::broker::target::Seed;
use crate::util::jitter::Backoff;

/// Starts the subscriber link of a master seen for the first time, sending and confirming
/// the batches of its bookkeeping.
pub type StartLink = Box<dyn Fn(Seed, Rc<RefCell<ChannelSubs>>)>;

/// One core's sharded subscriptions (see the module's doc).
pub struct ShardedSubs {
    /// The slot map, shared with the core's publisher.
    topology: Rc<Topology>,
    /// By master: the bookkeeping its link sends and confirms.
    shards: RefCell<HashMap<Seed, Rc<RefCell<ChannelSubs>>>>,
    /// Channels whose slot has no known master now: never sent, never live.
    unrouted: Rc<RefCell<ChannelSubs>>,
    /// The map version the channels are placed by.
    placed: Cell<u64>,
    /// Starts a master's link (set by the server once the core exists).
    start_link: RefCell<Option<StartLink>>,
    /// A fetch of the map started for unrouted channels is running.
    fetching: Cell<bool>,
    /// Figures of the bookkeeping of masters no longer in the map, so the counters summed
    /// over masters never go back.
    retired: Cell<Counts>,
}

impl ShardedSubs {
    /// No channel yet; the map comes from `topology`.
    pub fn new(topology: Rc<Topology>) -> ShardedSubs {
        ShardedSubs {
            topology,
            shards: RefCell::new(HashMap::new()),
            unrouted: Rc::new(RefCell::new(ChannelSubs::new())),
            placed: Cell::new(0),
            start_link: RefCell::new(None),
            fetching: Cell::new(false),
            retired: Cell::new(Counts::default()),
        }
    }

    /// How a master's link is started (the server's part: it knows the core's sink).
    pub fn set_start_link(&self, start: StartLink) {
        *self.start_link.borrow_mut() = Some(start);
    }

    /// The slot map.
    pub fn topology(&self) -> &Rc<Topology> {
        &self.topology
    }

    /// Whether the link of `master` that sends `subs` is still that master's: a link whose
    /// master left the map (failed over, emptied) ends, and so does one whose master left
    /// and came back meanwhile (a new link with new bookkeeping serves it now).
    pub fn serves(&self, master: &Seed, subs: &Rc<RefCell<ChannelSubs>>) -> bool {
        self.shards
            .borrow()
            .get(master)
            .is_some_and(|s| Rc::ptr_eq(s, subs))
    }

    /// After `master`'s link was lost: fetches the map again (coalesced, see
    /// [`Topology::refresh`]) and moves every channel whose slot now has another master.
    /// Whether the link should go on trying its master.
    pub async fn after_loss(
        self: &Rc<Self>,
        master: &Seed,
        subs: &Rc<RefCell<ChannelSubs>>,
    ) -> bool {
        let _ = self.topology.refresh().await;
        self.place();
        self.serves(master, subs)
    }

    /// Runs for the core's life: places the channels and starts a link to every master of
    /// the slot map, and again each time the map changes (whoever fetched it); while the map
    /// is empty (none fetched yet, or a cluster with no slot assigned) fetches it, waiting
    /// `backoff` between tries (the server gives it a shard link's). `placed` hears of every
    /// map placed, empty ones too, for the core's readiness and the descriptor check.
    pub async fn follow_map(self: Rc<Self>, mut backoff: Backoff, placed: impl Fn(&SlotMap)) {
        loop {
            self.place();
            let version = self.placed.get();
            let map = self.topology.map();
            placed(&map);
            if map.is_empty() {
                let fetched = self.topology.refresh().await;
                if fetched.is_err() || self.topology.version() == version {
                    monoio::time::sleep(backoff.delay()).await;
                }
                continue;
            }
            backoff.reset();
            self.topology.changed(version).await;
        }
    }

    /// Channels of masters: the bookkeeping of `channel`'s master by the current map (its
    /// link started if it is new), or `unrouted` (a fetch of the map started).
    fn subs_for(self: &Rc<Self>, channel: &str) -> Rc<RefCell<ChannelSubs>> {
        self.place();
        let map = self.topology.map();
        match map.master_of_channel(channel.as_bytes()) {
            Some(master) => self.shard(master),
            None => {
                self.fetch_soon();
                self.unrouted.clone()
            }
        }
    }

    /// `master`'s bookkeeping, made (and its link started) on first use.
    fn shard(&self, master: &Seed) -> Rc<RefCell<ChannelSubs>> {
        if let Some(s) = self.shards.borrow().get(master) {
            return s.clone();
        }
        let subs = Rc::new(RefCell::new(ChannelSubs::new()));
        self.shards
            .borrow_mut()
            .insert(master.clone(), subs.clone());
        if let Some(start) = &*self.start_link.borrow() {
            start(master.clone(), subs.clone());
        }
        subs
    }

    /// Starts one fetch of the map (unless one runs), placing the channels after it.
    fn fetch_soon(self: &Rc<Self>) {
        if self.fetching.replace(true) {
            return;
        }
        let me = self.clone();
        monoio::spawn(async move {
            let _ = me.topology.refresh().await;
            me.fetching.set(false);
            me.place();
        });
    }

    /// Moves every channel to the bookkeeping of its master by the current map, when the
    /// map changed since they were placed; forgets masters no longer in it.
    pub fn place(&self) {
        let version = self.topology.version();
        if version == self.placed.get() {
            return;
        }
        self.placed.set(version);
        let map = self.topology.map();
        let mut all: Vec<(Option<Seed>, Rc<RefCell<ChannelSubs>>)> = self
            .shards
            .borrow()
            .iter()
            .map(|(m, s)| (Some(m.clone()), s.clone()))
            .collect();
        all.push((None, self.unrouted.clone()));
        for (from, subs) in all {
            let names = subs.borrow().names();
            for name in names {
                let to = map.master_of_channel(name.as_bytes()).cloned();
                if to == from {
                    continue;
                }
                let Some(moved) = subs.borrow_mut().take(&name) else {
                    continue;
                };
                let dest = match &to {
                    Some(m) => self.shard(m),
                    None => self.unrouted.clone(),
                };
                dest.borrow_mut().adopt(&name, moved);
            }
        }
        let masters = map.masters();
        let mut retired = self.retired.get();
        self.shards.borrow_mut().retain(|m, subs| {
            let keep = masters.contains(m);
            if !keep {
                retired.add(&subs.borrow().counts());
            }
            keep
        });
        self.retired.set(retired);
        // A link to every master, channels or not (see the module's doc).
        for m in &masters {
            self.shard(m);
        }
    }

    /// Masters with a link now.
    pub fn masters(&self) -> Vec<Seed> {
        self.shards.borrow().keys().cloned().collect()
    }

    /// Figures summed over every master (and those gone).
    pub fn counts(&self) -> Counts {
        let mut c = self.retired.get();
        c.live = 0;
        for s in self.shards.borrow().values() {
            c.add(&s.borrow().counts());
        }
        c
    }

    /// Channels tracked, wherever placed.
    pub fn tracked(&self) -> usize {
        let placed: usize = self
            .shards
            .borrow()
            .values()
            .map(|s| s.borrow().tracked())
            .sum();
        placed + self.unrouted.borrow().tracked()
    }
}

/// A core's channel subscriptions, one link's or sharded: the verbs `core::by_channel` uses.
#[derive(Clone)]
pub enum Subs {
    /// Channel mode: every channel on the core's one subscriber link.
    One(Rc<RefCell<ChannelSubs>>),
    /// Sharded mode: each channel on its master's link.
    Sharded(Rc<ShardedSubs>),
}

impl Subs {
    fn of(&self, channel: &str) -> Rc<RefCell<ChannelSubs>> {
        match self {
            Subs::One(s) => s.clone(),
            Subs::Sharded(s) => s.subs_for(channel),
        }
    }

    /// See [`ChannelSubs::want`].
    pub fn want(&self, channel: &str) -> bool {
        self.of(channel).borrow_mut().want(channel)
    }

    /// See [`ChannelSubs::unwant`].
    pub fn unwant(&self, channel: &str) {
        self.of(channel).borrow_mut().unwant(channel)
    }

    /// See [`ChannelSubs::hold`].
    pub fn hold(&self, channel: &str) {
        self.of(channel).borrow_mut().hold(channel)
    }

    /// See [`ChannelSubs::done`].
    pub fn done(&self, channel: &str, held: bool) {
        self.of(channel).borrow_mut().done(channel, held)
    }

    /// See [`ChannelSubs::is_live`].
    pub fn is_live(&self, channel: &str) -> bool {
        self.of(channel).borrow().is_live(channel)
    }

    /// See [`ChannelSubs::is_wanted`].
    pub fn is_wanted(&self, channel: &str) -> bool {
        self.of(channel).borrow().is_wanted(channel)
    }

    /// See [`ChannelSubs::wait`].
    pub fn wait(&self, channel: &str, waker: &Waker) {
        self.of(channel).borrow_mut().wait(channel, waker)
    }

    /// Figures, summed over masters in sharded mode.
    pub fn counts(&self) -> Counts {
        match self {
            Subs::One(s) => s.borrow().counts(),
            Subs::Sharded(s) => s.counts(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::cluster::{key_slot, SlotMap, SlotRange, SLOTS};
    use crate::broker::target::RedisTarget;

    /// Slot of hash tag `a` on `on_a`, every other slot on `rest`.
    fn map(on_a: &Seed, rest: &Seed) -> SlotMap {
        let a = key_slot(b"a");
        let range = |first, last, master: &Seed| SlotRange {
            first,
            last,
            master: master.clone(),
        };
        let mut ranges = vec![range(a, a, on_a)];
        if a > 0 {
            ranges.push(range(0, a - 1, rest));
        }
        if a < SLOTS - 1 {
            ranges.push(range(a + 1, SLOTS - 1, rest));
        }
        SlotMap::from_ranges(ranges).unwrap()
    }

    type Started = Rc<RefCell<Vec<(Seed, Rc<RefCell<ChannelSubs>>)>>>;

    /// A core's router with no map yet, recording the links it starts instead of running them.
    fn router() -> (Rc<Topology>, Rc<ShardedSubs>, Started) {
        let topology = Rc::new(Topology::new(RedisTarget::single("127.0.0.1", 1), 0));
        let router = Rc::new(ShardedSubs::new(topology.clone()));
        let started: Started = Rc::default();
        let record = started.clone();
        router.set_start_link(Box::new(move |m, s| record.borrow_mut().push((m, s))));
        (topology, router, started)
    }

    /// The bookkeeping of the newest link started for `master`.
    fn link_of(started: &Started, master: &Seed) -> Rc<RefCell<ChannelSubs>> {
        started
            .borrow()
            .iter()
            .rev()
            .find(|(m, _)| m == master)
            .map(|(_, s)| s.clone())
            .expect("a link for the master")
    }

    /// Confirms everything `master`'s link would send now.
    fn confirm_all(started: &Started, master: &Seed) {
        let subs = started
            .borrow()
            .iter()
            .find(|(m, _)| m == master)
            .map(|(_, s)| s.clone())
            .expect("a link for the master");
        let mut subs = subs.borrow_mut();
        subs.link_up();
        let batch = subs.take_batch();
        for c in batch.unsubscribe.iter().chain(&batch.subscribe) {
            subs.confirmed(c.as_bytes());
        }
    }

    #[test]
    fn channels_follow_their_slots_master_with_the_streams_waiting_for_them() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let (topology, router, started) = router();
            let subs = Subs::Sharded(router.clone());
            let (a, b, c) = (Seed::new("a", 1), Seed::new("b", 2), Seed::new("c", 3));

            // No map yet: wanted and waited for, never live, no link.
            assert!(!subs.want("{a}1"));
            subs.hold("{a}1");
            assert!(!subs.is_live("{a}1") && subs.is_wanted("{a}1"));
            assert!(started.borrow().is_empty());

            // The map names masters: the channel moves to its master's link, started then.
            topology.install(map(&a, &b));
            assert!(!subs.want("{b}1"));
            let masters: Vec<Seed> = started.borrow().iter().map(|(m, _)| m.clone()).collect();
            assert_eq!(masters, [a.clone(), b.clone()]);
            assert!(!subs.is_live("{a}1"));
            confirm_all(&started, &a);
            confirm_all(&started, &b);
            assert!(subs.is_live("{a}1") && subs.is_live("{b}1"));
            assert_eq!(router.counts().live, 2);

            // A failover: `a`'s slot is `c`'s now. The channel moves with its waiting stream,
            // `a` leaves (its link ends), and it is live again once `c` confirms it.
            topology.install(map(&c, &b));
            assert!(!subs.is_live("{a}1"));
            let (link_a, link_c) = (link_of(&started, &a), link_of(&started, &c));
            assert!(!router.serves(&a, &link_a) && router.serves(&c, &link_c));
            assert!(subs.is_wanted("{a}1"));
            confirm_all(&started, &c);
            assert!(subs.is_live("{a}1") && subs.is_live("{b}1"));
            let counts = router.counts();
            assert_eq!((counts.live, counts.subscribe_channels), (2, 3));
            assert_eq!(router.tracked(), 2);

            // Released by its stream and not held: unsubscribed on `c`.
            subs.done("{a}1", false);
            confirm_all(&started, &c);
            assert!(!subs.is_wanted("{a}1"));
            assert_eq!(router.counts().unsubscribe_channels, 1);
        });
    }

    /// Every master of the map gets its link as soon as the map is placed, whether or not
    /// the core holds a channel there: a link to each is what the core's readiness waits
    /// for. A master that leaves the map and comes back gets a new link; the old one no
    /// longer serves it.
    #[test]
    fn every_master_of_the_map_has_a_link_channels_or_not() {
        let (topology, router, started) = router();
        let (a, b, c) = (Seed::new("a", 1), Seed::new("b", 2), Seed::new("c", 3));
        router.place();
        assert!(started.borrow().is_empty(), "no map, no link");

        topology.install(map(&a, &b));
        router.place();
        let mut masters: Vec<Seed> = started.borrow().iter().map(|(m, _)| m.clone()).collect();
        masters.sort_by_key(|m| m.port);
        assert_eq!(masters, [a.clone(), b.clone()]);
        assert_eq!(router.tracked(), 0);
        let first_a = link_of(&started, &a);
        assert!(router.serves(&a, &first_a));

        // `a` leaves (its slot is `c`'s): `c` gets a link, `a`'s ends.
        topology.install(map(&c, &b));
        router.place();
        assert!(router.serves(&c, &link_of(&started, &c)));
        assert!(!router.serves(&a, &first_a));
        // `a` comes back: a new link, and still not the old one.
        topology.install(map(&a, &b));
        router.place();
        let second_a = link_of(&started, &a);
        assert!(!Rc::ptr_eq(&first_a, &second_a));
        assert!(router.serves(&a, &second_a) && !router.serves(&a, &first_a));
        assert_eq!(started.borrow().len(), 4);
    }

    /// `follow_map` places every map the core's topology gets, whoever fetched it, and says
    /// so: the links to a new master start without a stream asking for its channels.
    #[test]
    fn the_map_is_followed_as_it_changes() {
        use crate::util::jitter::Jitter;
        use std::time::Duration;
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let (topology, router, started) = router();
            let (a, b, c) = (Seed::new("a", 1), Seed::new("b", 2), Seed::new("c", 3));
            // Fetched by someone else (a publish) before the core looked.
            topology.install(map(&a, &b));
            let seen: Rc<RefCell<Vec<usize>>> = Rc::default();
            let note = seen.clone();
            let backoff = Backoff::new(
                Duration::from_millis(1),
                Duration::from_millis(1),
                Jitter::seeded(1),
            );
            monoio::spawn(
                router
                    .clone()
                    .follow_map(backoff, move |m| note.borrow_mut().push(m.masters().len())),
            );
            monoio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(*seen.borrow(), [2]);
            assert_eq!(started.borrow().len(), 2);
            topology.install(map(&c, &b));
            monoio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(*seen.borrow(), [2, 2]);
            assert!(router.serves(&c, &link_of(&started, &c)));
            assert_eq!(started.borrow().len(), 3);
        });
    }
}
