//! The live status page's feed on one core (`GET /status/stream`): the node's newest snapshot,
//! a wake-up for this core's viewers, and each viewer's place among `SSE_STATUS_VIEWERS`.
//!
//! Why this shape: a snapshot (every core's counters, the topic counts) is taken once per
//! `SSE_STATUS_PERIOD` for the whole node, by one core, encoded once into a shared `Bytes`
//! and sent through the control channel of each core that has viewers; here it is kept and
//! the core's viewers are woken. Nothing is computed per viewer, a node without viewers takes
//! no snapshot, and nothing touches the delivery path: a viewer is not a hub subscriber, and
//! its writes are its own task's.
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::core::node::Node;
use crate::stats::bump;
use crate::task::Flag;

/// One core's copy of the node's status feed.
pub struct StatusFeed {
    /// The newest snapshot, when it arrived (a viewer that joins gets it at once rather
    /// than a blank page for up to a period) and its number on this core (a viewer that
    /// was writing when it arrived takes it next).
    latest: RefCell<Option<(Bytes, Instant, u64)>>,
    /// Set (and replaced by a fresh one) when a snapshot arrives: every viewer waiting on it
    /// wakes, and a viewer that was busy writing meanwhile takes only the newest.
    next: RefCell<Rc<Flag>>,
}

impl Default for StatusFeed {
    fn default() -> Self {
        StatusFeed {
            latest: RefCell::new(None),
            next: RefCell::new(Rc::new(Flag::default())),
        }
    }
}

impl StatusFeed {
    /// Keeps `frame` as the newest snapshot and wakes this core's viewers.
    pub fn publish(&self, frame: Bytes) {
        let mut latest = self.latest.borrow_mut();
        let n = latest.as_ref().map_or(1, |(_, _, n)| n + 1);
        *latest = Some((frame, Instant::now(), n));
        drop(latest);
        let woken = self.next.replace(Rc::new(Flag::default()));
        woken.set();
    }
}

/// A status page viewer admitted on a core: its place among `SSE_STATUS_VIEWERS`, given
/// back when it drops.
pub struct Viewer {
    /// Its core's feed.
    feed: Rc<StatusFeed>,
    /// The node, whose count of viewers this one is in.
    node: Arc<Node>,
    /// Its core.
    core: usize,
    /// The number of the newest snapshot it has taken.
    seen: Cell<u64>,
}

impl Viewer {
    /// Admits a viewer on core `core` if the node has fewer than `SSE_STATUS_VIEWERS`;
    /// `None` (counted as refused) otherwise.
    pub fn admit(feed: &Rc<StatusFeed>, node: &Arc<Node>, core: usize) -> Option<Viewer> {
        let stats = node.core_stats(core);
        if !node.try_open_viewer() {
            bump(&stats.status_refused);
            return None;
        }
        stats.status_viewers.fetch_add(1, Relaxed);
        Some(Viewer {
            feed: feed.clone(),
            node: node.clone(),
            core,
            seen: Cell::new(0),
        })
    }

    /// The newest snapshot if it is no older than two periods (one late snapshot is
    /// normal; one left from before the feed stopped for want of viewers is stale).
    pub fn current(&self) -> Option<Bytes> {
        let fresh = 2 * self.node.config().status_period;
        let latest = self.feed.latest.borrow();
        let (frame, at, n) = latest.as_ref()?;
        self.seen.set(*n);
        (at.elapsed() <= fresh).then(|| frame.clone())
    }

    /// The newest snapshot this viewer has not taken yet: at once when one arrived since
    /// its last (while it was writing), else the next to arrive.
    pub async fn next(&self) -> Bytes {
        loop {
            // Taken before looking, so a snapshot that arrives after the look wakes it.
            let flag = self.feed.next.borrow().clone();
            if let Some((frame, _, n)) = self.feed.latest.borrow().as_ref() {
                if *n > self.seen.get() {
                    self.seen.set(*n);
                    return frame.clone();
                }
            }
            flag.wait().await;
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let stats = self.node.core_stats(self.core);
        stats.status_viewers.fetch_sub(1, Relaxed);
        self.node.close_viewer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::route::table::RouteTable;
    use crate::stats::Stats;
    use std::future::Future;
    use std::task::{Context, Poll, Wake, Waker};

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    fn poll<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(Noop));
        f.poll(&mut Context::from_waker(&waker))
    }

    fn node(viewers: usize) -> Arc<Node> {
        let (control, _rx): (Vec<_>, Vec<_>) = (0..2).map(|_| flume::unbounded()).unzip();
        let config = Config {
            status_viewers: viewers,
            ..Config::default()
        };
        Arc::new(Node::new(
            config,
            Arc::new(RouteTable::builtin()),
            Stats::new(2, "epoll", "embedded"),
            control,
            "run".into(),
        ))
    }

    #[test]
    fn viewers_are_capped_and_counted_and_give_their_place_back() {
        let node = node(2);
        let feed = Rc::new(StatusFeed::default());
        let a = Viewer::admit(&feed, &node, 0).expect("first");
        let b = Viewer::admit(&feed, &node, 1).expect("second");
        assert!(Viewer::admit(&feed, &node, 1).is_none(), "over the cap");
        let gauge = |core: usize| node.core_stats(core).status_viewers.load(Relaxed);
        assert_eq!((node.viewers(), gauge(0), gauge(1)), (2, 1, 1));
        assert_eq!(node.core_stats(1).status_refused.load(Relaxed), 1);
        drop(a);
        assert_eq!((node.viewers(), gauge(0)), (1, 0));
        assert!(
            Viewer::admit(&feed, &node, 0).is_some(),
            "the place came back"
        );
        drop(b);
        assert!(
            Viewer::admit(&Rc::default(), &self::node(0), 0).is_none(),
            "0: off"
        );
    }

    #[test]
    fn a_viewer_takes_each_newest_snapshot_once() {
        let node = node(4);
        let feed = Rc::new(StatusFeed::default());
        let v = Viewer::admit(&feed, &node, 0).unwrap();
        assert_eq!(v.current(), None, "nothing yet");
        {
            let mut next = std::pin::pin!(v.next());
            assert!(poll(next.as_mut()).is_pending());
            feed.publish(Bytes::from_static(b"1"));
            assert_eq!(poll(next.as_mut()), Poll::Ready(Bytes::from_static(b"1")));
        }
        // Two arrive while the viewer writes: it takes only the newest, at once.
        feed.publish(Bytes::from_static(b"2"));
        feed.publish(Bytes::from_static(b"3"));
        assert_eq!(
            poll(std::pin::pin!(v.next())),
            Poll::Ready(Bytes::from_static(b"3"))
        );
        assert!(poll(std::pin::pin!(v.next())).is_pending(), "none newer");
        // One that joins now starts from the newest and waits for the next.
        let w = Viewer::admit(&feed, &node, 0).unwrap();
        assert_eq!(w.current(), Some(Bytes::from_static(b"3")));
        assert!(poll(std::pin::pin!(w.next())).is_pending());
    }
}
