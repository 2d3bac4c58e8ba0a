//! Waiting on one core for another task to finish something it flagged as in progress.
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Ready once `busy` is false. Whoever clears `busy` wakes everything in `waiting`; a task
/// woken while `busy` is still (or again) set waits on.
pub async fn until_clear(busy: &Cell<bool>, waiting: &RefCell<Vec<Waker>>) {
    poll_fn(|cx| {
        if !busy.get() {
            return Poll::Ready(());
        }
        waiting.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    })
    .await
}
