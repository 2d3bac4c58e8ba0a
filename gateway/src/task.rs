//! Small helpers for tasks on a core's runtime: yielding to the other tasks, and a one-shot
//! flag many tasks can wait on.
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// Messages delivered in one go before the core lets its stream writers run. A burst of
/// more than `SSE_EVENT_BUFFER` messages for one channel delivered in a single pass would cut
/// every subscriber of it, even the fast ones, before any had a chance to write.
pub const DELIVER_BATCH: usize = 32;

/// Lets every other ready task of this core run once before going on: a long delivery loop
/// (a burst of messages) yields so the stream writers can drain their queues in between.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// A one-shot, many-waiter flag of one core (the drain signal).
#[derive(Default)]
pub struct Flag {
    /// Whether it is set.
    set: Cell<bool>,
    /// Tasks waiting for it, each under the key its [`Wait`] holds.
    waiters: RefCell<Slab<Waker>>,
}

impl Flag {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.set.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, w) in waiters {
            w.wake();
        }
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Waits until the flag is set.
    ///
    /// A wait holds one slot however often it is polled, and gives it back when dropped.
    /// Why: the accept loop makes a new wait per accepted connection (it races the drain
    /// against each accept), and `Waker::will_wake` can tell the same task's wakers apart,
    /// so a list that only skipped "known" wakers grew by one per accept, for ever, and every
    /// poll scanned it (a tenth of both cores under a connection flood).
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            flag: self,
            key: None,
        }
    }
}

/// The future of [`Flag::wait`].
pub struct Wait<'a> {
    flag: &'a Flag,
    /// Its slot among the flag's waiters, once polled.
    key: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.set.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.flag.waiters.borrow_mut();
        match self.key.and_then(|k| waiters.get_mut(k)) {
            Some(w) => w.clone_from(cx.waker()),
            None => {
                let key = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        // Once the flag is set its waiters are gone (and no new ones come): nothing to remove.
        if let (Some(key), false) = (self.key, self.flag.set.get()) {
            self.flag.waiters.borrow_mut().try_remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn a_wait_holds_one_slot_until_dropped_and_wakes_when_set() {
        let flag = Flag::default();
        // A new waker for every poll: the same task's wakers need not be `will_wake` equal.
        let poll = |w: Pin<&mut Wait>| {
            let waker = Waker::from(Arc::new(Noop));
            w.poll(&mut Context::from_waker(&waker))
        };
        for _ in 0..1000 {
            // As the accept loop does: a new wait per accept, polled, then dropped.
            let mut w = std::pin::pin!(flag.wait());
            assert!(poll(w.as_mut()).is_pending());
            assert!(poll(w.as_mut()).is_pending());
            assert_eq!(flag.waiters.borrow().len(), 1);
        }
        assert_eq!(flag.waiters.borrow().len(), 0);
        let mut w = std::pin::pin!(flag.wait());
        assert!(poll(w.as_mut()).is_pending());
        flag.set();
        assert!(poll(w.as_mut()).is_ready());
        assert!(flag.is_set() && flag.waiters.borrow().is_empty());
    }
}
