//! Small helpers for tasks on a core's runtime.
use std::future::poll_fn;
use std::task::Poll;

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
