//! A core's timer: one keep-alive tick for all its streams, a slice of the sweep of idle
//! channels per tick (each visited once per [`crate::core::housekeeping::SWEEP_EVERY`]), and
//! the drain's pacing.
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::core::shard::Shard;
use crate::util::jitter::{retry_ms, Jitter};

/// How long streams may take to flush their last bytes after the drain period.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

/// Ticks the keep-alive wheel until the drain starts; sweeps idle channels.
pub async fn keepalive_loop(shard: Rc<Shard>) {
    let mut interval = monoio::time::interval(shard.tick_period());
    interval.tick().await;
    loop {
        interval.tick().await;
        if shard.is_draining() {
            return;
        }
        shard.keepalive_tick();
        shard.sweep(Instant::now());
    }
}

/// Closes every stream of the core, spread evenly over `period`, each with a jittered
/// `retry:` so clients come back spread out in time; then waits (bounded) for the last bytes
/// to flush.
pub async fn drain(shard: &Rc<Shard>, period: Duration) {
    let keys = shard.stream_keys();
    let total = keys.len().max(1) as u32;
    let start = Instant::now();
    let mut jitter = Jitter::new(shard.id() as u64);
    for (i, key) in keys.into_iter().enumerate() {
        let due = start + period * i as u32 / total;
        let now = Instant::now();
        if due > now + Duration::from_millis(5) {
            monoio::time::sleep(due - now).await;
        }
        shard.close_stream(key, retry_ms(&mut jitter));
    }
    let deadline = Instant::now() + DRAIN_GRACE;
    while shard.open_streams() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}
