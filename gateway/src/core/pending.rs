//! The non-stream connections of one core: request heads in progress, API answers, idle
//! keep-alive connections. They are bounded (`SSE_PENDING_LIMIT` over the cores), and the
//! ones waiting for a request head can be closed, oldest first, to make room.
//!
//! Why close the oldest idle one rather than refuse the newcomer: a flood of idle sockets
//! would otherwise lock everyone out until `SSE_HEAD_TIMEOUT` frees them (with a 1,024
//! descriptor limit, 1,100 idle sockets made `/healthz` time out). Closing the oldest waiter
//! lets a new request in at once; a flood must reconnect faster than the limit to keep a
//! place, and a client whose head completes is no longer a candidate. A connection that is
//! being answered (a publish read, an answer written) is never closed for room: when nothing
//! waits, the newcomer is closed at once.
//!
//! Nor is a waiter whose bytes sit unread in the kernel: it sent its request and waits only
//! because this core has not read it yet (a busy core in a reconnect storm). Closing it gives
//! back a descriptor that it needs again at once when it reconnects, and costs it a retry: in
//! `bench/run-50k`'s storm at 10,000 events/s, 7,136 of 50,000 newcomers were closed so. An
//! idle flood's sockets have nothing unread (they send nothing, or a slow trickle this core
//! reads as it comes), so they stay closable. Each look at a socket is one `ioctl(FIONREAD)`,
//! at most [`SCAN`] of them a call.
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::stats::{bump, CoreStats};

/// Most waiters one call of [`Pending::evict_oldest`] looks at, oldest first: the call runs per
/// accept at the limit and per failed accept, so its cost stays a few microseconds when the
/// oldest ones all have unread requests.
const SCAN: usize = 32;

/// Whether the socket `fd` has received bytes this process has not read (`false` when that
/// cannot be told: a closed or bad descriptor).
fn has_unread(fd: RawFd) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: ioctl(2) FIONREAD writes one int through the pointer to `n`, which we own. On a
    // descriptor that is not an open socket it fails and writes nothing.
    unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) == 0 && n > 0 }
}

/// One core's non-stream connections: the count lives in [`CoreStats::pending`] (so stats
/// read it), the waiting ones here.
pub struct Pending {
    /// Most non-stream connections this core keeps: `SSE_PENDING_LIMIT` over the cores,
    /// rounded up, at least 1.
    cap: u64,
    /// The next waiting ticket: tickets grow with time, so the smallest is the oldest wait.
    next: Cell<u64>,
    /// Connections waiting for a request head, by ticket, with their socket's descriptor and
    /// since when they wait.
    waiting: RefCell<BTreeMap<u64, (RawFd, Instant)>>,
}

/// What a new connection is told by [`Pending::enter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// It has a place (perhaps after the oldest waiter was closed for it).
    Admitted,
    /// No place and nothing idle to close: close it at once.
    Refused,
}

impl Pending {
    /// A core's share of `node_limit` over `cores`.
    pub fn new(node_limit: usize, cores: usize) -> Pending {
        Pending {
            cap: node_limit.div_ceil(cores.max(1)).max(1) as u64,
            next: Cell::new(0),
            waiting: RefCell::new(BTreeMap::new()),
        }
    }

    /// This core's limit.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// A connection was accepted: counts it, closing the oldest idle one first when the core
    /// is at its limit. An admitted connection must be given back with [`Pending::leave`].
    pub fn enter(&self, stats: &CoreStats) -> Entry {
        if stats.pending.load(Relaxed) >= self.cap && !self.evict_oldest(stats, Duration::ZERO) {
            bump(&stats.pending_refused);
            return Entry::Refused;
        }
        stats.pending.fetch_add(1, Relaxed);
        Entry::Admitted
    }

    /// An admitted connection closed or became a stream.
    pub fn leave(&self, stats: &CoreStats) {
        stats.pending.fetch_sub(1, Relaxed);
    }

    /// Closes the connection that has waited longest for a request head, among those that
    /// have waited at least `min_wait` and have nothing unread in the kernel (see the module's
    /// doc; the [`SCAN`] oldest are looked at); `false` when none qualifies. Its read ends (the
    /// socket is shut down, not closed: the descriptor stays its owner's until it drops it) and
    /// its task closes it.
    pub fn evict_oldest(&self, stats: &CoreStats, min_wait: Duration) -> bool {
        let mut waiting = self.waiting.borrow_mut();
        let Some((ticket, fd)) = waiting
            .iter()
            .take(SCAN)
            .take_while(|(_, (_, since))| since.elapsed() >= min_wait)
            .find(|(_, &(fd, _))| !has_unread(fd))
            .map(|(&ticket, &(fd, _))| (ticket, fd))
        else {
            return false;
        };
        waiting.remove(&ticket);
        // SAFETY: `fd` is the socket of a connection still waiting: its `Waiting` removes it
        // from the map before the connection's socket can be dropped, and this thread is
        // the only one that touches the map. shutdown(2) only ends the connection; the
        // owner still closes the descriptor.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
        bump(&stats.pending_evicted);
        true
    }

    /// The connection on `fd` starts waiting for a request head: it may be closed for room
    /// until the returned value drops, which must happen before the socket is closed.
    pub fn wait(&self, fd: RawFd) -> Waiting<'_> {
        let ticket = self.next.get();
        self.next.set(ticket + 1);
        self.waiting
            .borrow_mut()
            .insert(ticket, (fd, Instant::now()));
        Waiting {
            pending: self,
            ticket,
        }
    }

    /// How many connections wait for a head now.
    pub fn waiting(&self) -> usize {
        self.waiting.borrow().len()
    }
}

/// A connection's place among the waiting ones; leaving it (drop) makes it no longer a
/// candidate for closing.
pub struct Waiting<'a> {
    /// Where it waits.
    pending: &'a Pending,
    /// Its ticket.
    ticket: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending.waiting.borrow_mut().remove(&self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiter_makes_room_and_busy_ones_never_do() {
        let stats = CoreStats::default();
        let p = Pending::new(3, 2); // 2 per core
        assert_eq!(p.cap(), 2);
        // Not real sockets: shutdown(2) on a bad descriptor fails harmlessly.
        let (a, b) = (-1, -2);
        assert_eq!(p.enter(&stats), Entry::Admitted);
        let wa = p.wait(a);
        assert_eq!(p.enter(&stats), Entry::Admitted);
        let wb = p.wait(b);
        assert_eq!(p.waiting(), 2);
        // At the limit: the oldest waiter (a) is closed for the newcomer.
        assert_eq!(p.enter(&stats), Entry::Admitted);
        assert_eq!(p.waiting(), 1);
        assert_eq!(stats.pending_evicted.load(Relaxed), 1);
        drop(wa); // a's task ends: already gone from the map
        p.leave(&stats);
        drop(wb); // b's head completed: it is busy now
                  // At the limit with nobody waiting: the newcomer is refused.
        assert_eq!(p.enter(&stats), Entry::Refused);
        assert_eq!(stats.pending_refused.load(Relaxed), 1);
        assert_eq!(stats.pending.load(Relaxed), 2);
        assert!(!p.evict_oldest(&stats, Duration::ZERO));
    }

    #[test]
    fn a_waiter_whose_request_sits_unread_is_not_closed_for_room() {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsRawFd;

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut honest = TcpStream::connect(addr).expect("connect");
        let (mut honest_here, _) = listener.accept().expect("accept");
        let mut idle = TcpStream::connect(addr).expect("connect");
        let (idle_here, _) = listener.accept().expect("accept");
        let stats = CoreStats::default();
        let p = Pending::new(10, 1);
        // The honest client waits longest; its head has arrived but this core has not read it.
        let _h = p.wait(honest_here.as_raw_fd());
        let _i = p.wait(idle_here.as_raw_fd());
        honest
            .write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let t = Instant::now();
        while !has_unread(honest_here.as_raw_fd()) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the head never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(p.evict_oldest(&stats, Duration::ZERO));
        assert_eq!((p.waiting(), stats.pending_evicted.load(Relaxed)), (1, 1));
        // The idle one was closed (the client reads the end), not the honest one.
        idle.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(idle.read(&mut [0; 16]).expect("read"), 0, "idle one closed");
        assert!(has_unread(honest_here.as_raw_fd()), "honest one intact");
        // Nothing else qualifies while its request sits unread; once read, it may go.
        assert!(!p.evict_oldest(&stats, Duration::ZERO));
        let mut head = [0; 64];
        let n = honest_here.read(&mut head).expect("read");
        assert!(head[..n].starts_with(b"GET /sse"));
        assert!(p.evict_oldest(&stats, Duration::ZERO));
        assert_eq!((p.waiting(), stats.pending_evicted.load(Relaxed)), (0, 2));
    }

    #[test]
    fn a_waiter_younger_than_the_minimum_wait_is_not_closed() {
        let stats = CoreStats::default();
        let p = Pending::new(10, 1);
        assert_eq!(p.enter(&stats), Entry::Admitted);
        let _w = p.wait(-1);
        assert!(!p.evict_oldest(&stats, Duration::from_secs(3600)));
        assert_eq!((p.waiting(), stats.pending_evicted.load(Relaxed)), (1, 0));
        assert!(p.evict_oldest(&stats, Duration::ZERO));
        assert_eq!((p.waiting(), stats.pending_evicted.load(Relaxed)), (0, 1));
    }
}
