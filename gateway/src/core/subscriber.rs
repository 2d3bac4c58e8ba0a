//! One stream's side of the hub: its bounded queue of encoded frames and its wake-up.
//!
//! The hub pushes shared `Bytes` (an event encoded once for all subscribers) and wakes the
//! stream's task; the task takes everything queued and writes it in one syscall. The queue is
//! the per-connection flow control: once `SSE_EVENT_BUFFER` frames wait, the stream is a slow
//! consumer and is cut, so a client that stops reading costs nobody else anything.
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

/// One queued piece of the stream.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Encoded SSE bytes, shared with every other subscriber of the same event.
    pub bytes: Bytes,
    /// When the event reached the gateway; `None` for frames that are not events
    /// (keep-alives, greetings), which are not counted in the latency histogram.
    pub arrived: Option<Instant>,
}

/// Why a stream stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Streaming.
    Open,
    /// Its queue overflowed: close now, without flushing.
    Cut,
    /// The node is draining: flush what is queued (the `retry:`), then close.
    Closing,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued (or ignored because the stream is already ending).
    Queued,
    /// The queue was full: the stream is now cut.
    Cut,
    /// The queue was full and the stream conflates: what waited was dropped for this newer
    /// frame.
    Conflated,
}

/// The shared half of a stream: owned by its task and referenced by the hub.
#[derive(Debug)]
pub struct Subscriber {
    /// Family index, for stats and keep-alive format.
    pub family: usize,
    /// Keep-alive slot in the core's timer wheel.
    pub slot: usize,
    /// Frames waiting to be written.
    queue: RefCell<VecDeque<Frame>>,
    /// Most frames that may wait before the stream counts as a slow consumer.
    capacity: usize,
    /// The stream task's waker, set when it waits for frames.
    waker: RefCell<Option<Waker>>,
    /// Open, cut or closing.
    state: Cell<State>,
    /// On a full queue keep only the newest frame instead of cutting (value streams, where
    /// only the latest value matters).
    conflate: bool,
    /// The core's keep-alive tick when the write in progress began, plus one (0: no write in
    /// progress). The tick, not a clock: marking a write costs a store, no clock read and no
    /// timer; the core's timer scans every stream's mark once per second at most.
    write_since: Cell<u64>,
    /// Durable events up to this seq are not queued: a resume read from Redis replayed them
    /// already (0: none skipped).
    skip_upto: Cell<u64>,
    /// The durable seq of the first durable event queued (0: none yet): a resume read from
    /// Redis while the stream was already subscribed replays only what came before it.
    first_live: Cell<u64>,
}

impl Subscriber {
    /// A subscriber with room for `capacity` frames.
    pub fn new(family: usize, slot: usize, capacity: usize) -> Subscriber {
        Subscriber {
            family,
            slot,
            queue: RefCell::new(VecDeque::new()),
            capacity: capacity.max(1),
            waker: RefCell::new(None),
            state: Cell::new(State::Open),
            conflate: false,
            write_since: Cell::new(0),
            skip_upto: Cell::new(0),
            first_live: Cell::new(0),
        }
    }

    /// Whether the durable event `seq` is to be queued (not replayed already), noting the
    /// first one that is.
    #[inline]
    pub fn admits(&self, seq: u64) -> bool {
        if seq <= self.skip_upto.get() {
            return false;
        }
        if self.first_live.get() == 0 {
            self.first_live.set(seq);
        }
        true
    }

    /// The durable seq of the first durable event queued so far (0: none).
    pub fn first_live(&self) -> u64 {
        self.first_live.get()
    }

    /// Durable events up to `seq` are not queued from now on (they were replayed).
    pub fn skip_upto(&self, seq: u64) {
        self.skip_upto.set(seq);
    }

    /// Makes a full queue keep the newest frame instead of cutting the stream.
    pub fn conflating(mut self, conflate: bool) -> Subscriber {
        self.conflate = conflate;
        self
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state.get()
    }

    #[inline]
    fn wake(&self) {
        // Take the waker out first: no borrow is held while waking.
        let w = self.waker.borrow_mut().take();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Queues a frame, or cuts the stream when `capacity` frames already wait.
    #[inline]
    pub fn push(&self, frame: Frame) -> Pushed {
        if self.state.get() != State::Open {
            return Pushed::Queued;
        }
        let mut q = self.queue.borrow_mut();
        if q.len() >= self.capacity && self.conflate {
            if frame.arrived.is_none() {
                // A keep-alive must not displace the newest value.
                return Pushed::Queued;
            }
            q.clear();
            q.push_back(frame);
            drop(q);
            self.wake();
            return Pushed::Conflated;
        }
        if q.len() >= self.capacity {
            q.clear();
            q.shrink_to_fit();
            drop(q);
            self.state.set(State::Cut);
            self.wake();
            return Pushed::Cut;
        }
        q.push_back(frame);
        drop(q);
        self.wake();
        Pushed::Queued
    }

    /// Closes the stream after what is queued and then `last` (the drain's `retry:`), which
    /// is queued whatever the queue's state: it is what spreads reconnects out in time.
    pub fn close_with(&self, last: Frame) {
        if self.state.get() == State::Open {
            self.queue.borrow_mut().push_back(last);
            self.end(State::Closing);
        }
    }

    /// Ends the stream: `Cut` drops what is queued, `Closing` flushes it first.
    pub fn end(&self, how: State) {
        if self.state.get() == State::Open {
            self.state.set(how);
            if how == State::Cut {
                self.queue.borrow_mut().clear();
            }
            self.wake();
        }
    }

    /// Marks the start of a write at keep-alive tick `tick`.
    #[inline]
    pub fn writing(&self, tick: u64) {
        self.write_since.set(tick + 1);
    }

    /// Marks the end of a write.
    #[inline]
    pub fn written(&self) {
        self.write_since.set(0);
    }

    /// At tick `now`, whether a write has been in progress for more than `limit` ticks; if so
    /// the stream is cut (the writer abandons the write) and `true` is returned, once.
    pub fn cut_if_stalled(&self, now: u64, limit: u64) -> bool {
        let since = self.write_since.get();
        if since == 0 || now + 1 - since <= limit || self.state.get() != State::Open {
            return false;
        }
        self.end(State::Cut);
        true
    }

    /// Waits until a frame is queued or the stream is ending.
    pub async fn ready(&self) {
        poll_fn(|cx| {
            if !self.queue.borrow().is_empty() || self.state.get() != State::Open {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Waits until the stream is cut (used to abandon a write to a stalled client).
    pub async fn cut(&self) {
        poll_fn(|cx| {
            if self.state.get() == State::Cut {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Moves every queued frame into `out` (one write's worth), noting arrival times of
    /// events in `arrivals`. Returns the number of frames taken.
    pub fn take_into(&self, out: &mut BytesMut, arrivals: &mut Vec<Instant>) -> usize {
        let mut q = self.queue.borrow_mut();
        let n = q.len();
        for f in q.drain(..) {
            out.extend_from_slice(&f.bytes);
            if let Some(t) = f.arrived {
                arrivals.push(t);
            }
        }
        // An idle stream must not pin a burst-sized queue.
        if q.capacity() > 8 {
            q.shrink_to(4);
        }
        n
    }

    /// Whether frames wait to be written.
    pub fn has_queued(&self) -> bool {
        !self.queue.borrow().is_empty()
    }

    /// Takes the single queued frame when exactly one waits, so it can be written without a
    /// copy.
    pub fn take_single(&self) -> Option<Frame> {
        let mut q = self.queue.borrow_mut();
        if q.len() == 1 {
            q.pop_front()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &'static str) -> Frame {
        Frame {
            bytes: Bytes::from_static(s.as_bytes()),
            arrived: Some(Instant::now()),
        }
    }

    #[test]
    fn full_queue_cuts() {
        let s = Subscriber::new(0, 0, 2);
        assert_eq!(s.push(frame("a")), Pushed::Queued);
        assert_eq!(s.push(frame("b")), Pushed::Queued);
        assert_eq!(s.push(frame("c")), Pushed::Cut);
        assert_eq!(s.state(), State::Cut);
        let mut out = BytesMut::new();
        let mut arr = Vec::new();
        assert_eq!(
            s.take_into(&mut out, &mut arr),
            0,
            "a cut stream flushes nothing"
        );
        assert_eq!(
            s.push(frame("d")),
            Pushed::Queued,
            "pushes after the end are ignored"
        );
    }

    #[test]
    fn a_conflating_queue_keeps_the_newest_instead_of_cutting() {
        let s = Subscriber::new(0, 0, 2).conflating(true);
        s.push(frame("a"));
        s.push(frame("b"));
        assert_eq!(s.push(frame("c")), Pushed::Conflated);
        assert_eq!(s.state(), State::Open);
        let mut out = BytesMut::new();
        s.take_into(&mut out, &mut Vec::new());
        assert_eq!(&out[..], b"c");
    }

    #[test]
    fn batch_concatenates_in_order() {
        let s = Subscriber::new(0, 0, 10);
        s.push(frame("a"));
        s.push(Frame {
            bytes: Bytes::from_static(b"b"),
            arrived: None,
        });
        s.push(frame("c"));
        assert!(s.take_single().is_none());
        let mut out = BytesMut::new();
        let mut arr = Vec::new();
        assert_eq!(s.take_into(&mut out, &mut arr), 3);
        assert_eq!(&out[..], b"abc");
        assert_eq!(arr.len(), 2);
        s.end(State::Closing);
        assert_eq!(s.state(), State::Closing);
        s.end(State::Cut);
        assert_eq!(s.state(), State::Closing, "the first ending wins");
    }

    #[test]
    fn the_drain_retry_is_queued_even_on_a_full_conflating_queue() {
        let s = Subscriber::new(0, 0, 1).conflating(true);
        s.push(frame("a"));
        s.close_with(Frame {
            bytes: Bytes::from_static(b"r"),
            arrived: None,
        });
        assert_eq!(s.state(), State::Closing);
        let mut out = BytesMut::new();
        s.take_into(&mut out, &mut Vec::new());
        assert_eq!(&out[..], b"ar");
    }

    #[test]
    fn a_write_stalled_past_its_limit_cuts_the_stream_once() {
        let s = Subscriber::new(0, 0, 4).conflating(true);
        assert!(!s.cut_if_stalled(100, 3), "no write in progress");
        s.writing(10);
        assert!(!s.cut_if_stalled(13, 3), "3 ticks: within the limit");
        s.written();
        assert!(!s.cut_if_stalled(20, 3), "finished writes are not timed");
        s.writing(20);
        s.push(frame("a"));
        assert!(s.cut_if_stalled(24, 3), "4 ticks: cut");
        assert_eq!(s.state(), State::Cut);
        assert!(!s.has_queued(), "its queue is freed");
        assert!(!s.cut_if_stalled(30, 3), "counted once");
    }
}
