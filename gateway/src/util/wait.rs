//! Waiting on one core for another task to finish something, or to change something: a
//! condition, and the list of wakers its writer wakes.
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Ready once `ready()` holds. Whoever makes it hold calls [`wake_all`] on `waiting`; a task
/// woken while it still (or again) does not hold waits on.
pub async fn until(ready: impl Fn() -> bool, waiting: &RefCell<Vec<Waker>>) {
    poll_fn(|cx| {
        if ready() {
            return Poll::Ready(());
        }
        waiting.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Ready once `busy` is false (whoever clears it wakes `waiting`).
pub async fn until_clear(busy: &Cell<bool>, waiting: &RefCell<Vec<Waker>>) {
    until(|| !busy.get(), waiting).await
}

/// Wakes every task in `waiting` (each checks its condition again). All of them, not one: a
/// waiter that gave up leaves a stale waker, and waking only that one would leave a live
/// waiter asleep.
pub fn wake_all(waiting: &RefCell<Vec<Waker>>) {
    for w in std::mem::take(&mut *waiting.borrow_mut()) {
        w.wake();
    }
}
