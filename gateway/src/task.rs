//! Small helpers for tasks on a core's runtime: yielding to the other tasks, and a one-shot
//! flag many tasks can wait on.
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

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
    /// Tasks waiting for it.
    waiters: RefCell<Vec<Waker>>,
}

impl Flag {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.set.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Waits until the flag is set.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.get() {
                Poll::Ready(())
            } else {
                // A waiter polled again (the accept loop, every accept) is not added twice.
                let mut w = self.waiters.borrow_mut();
                if !w.iter().any(|x| x.will_wake(cx.waker())) {
                    w.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}
