//! The core's one timer: keep-alives for every local stream, channel eviction, and the drain.
//!
//! One timer per core, not one per connection: every [`TICK`] it writes keep-alives to the
//! streams whose slot is due. Slots are handed out round-robin, so with a 15 s period and a
//! 100 ms tick each tick touches 1/150 of the streams: 25,000 streams on a core cost about
//! 170 writes (about 2 ms of kernel time) per tick instead of a 300 ms burst every 15 s.
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::core::shard::{unix_now, Shard};
use crate::core::subscriber::{Frame, Pushed};
use crate::stats::bump;

/// Resolution of the keep-alive wheel.
pub const TICK: Duration = Duration::from_millis(100);

/// How long streams may take to flush their last bytes after the drain period.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

fn tick_for(shard: &Shard) -> Duration {
    match shard.node.config.keepalive_period {
        Some(p) if p < TICK => p.max(Duration::from_millis(1)),
        _ => TICK,
    }
}

/// Writes due keep-alives every tick until the drain starts; sweeps idle channels.
pub async fn keepalive_loop(shard: Rc<Shard>) {
    let tick = tick_for(&shard);
    let families = shard.node.routes.families.len();
    let periods: Vec<u64> = (0..families)
        .map(|i| (shard.keepalive_period(i).as_nanos() / tick.as_nanos()).max(1) as u64)
        .collect();
    let mut interval = monoio::time::interval(tick);
    interval.tick().await;
    let mut n: u64 = 0;
    let mut last_sweep = Instant::now();
    loop {
        interval.tick().await;
        if shard.draining.is_set() {
            return;
        }
        n += 1;
        let now = unix_now();
        let mut frames: Vec<Option<Bytes>> = vec![None; families];
        let mut cut = 0;
        for (_, s) in shard.streams.borrow().iter() {
            let f = s.sub.family;
            let every = periods[f];
            if n % every != s.sub.slot as u64 % every {
                continue;
            }
            let bytes = frames[f]
                .get_or_insert_with(|| {
                    let mut b = BytesMut::with_capacity(128);
                    Shard::encode_keepalive(shard.family(f).keepalive, now, &mut b);
                    b.freeze()
                })
                .clone();
            if s.sub.push(Frame {
                bytes,
                arrived: None,
            }) == Pushed::Cut
            {
                cut += 1;
            }
        }
        for _ in 0..cut {
            bump(&shard.stats().slow_consumers_cut);
        }
        if last_sweep.elapsed() >= Duration::from_secs(10) {
            last_sweep = Instant::now();
            shard.hub.borrow_mut().sweep(last_sweep);
        }
    }
}

/// A small xorshift generator: jitter needs spread, not cryptographic quality.
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and the core id.
    pub fn new(core: usize) -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter(t ^ ((core as u64 + 1) << 48) | 1)
    }

    /// A value in `lo..=hi`.
    pub fn between(&mut self, lo: u32, hi: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (self.0 % u64::from(hi - lo + 1)) as u32
    }
}

/// Closes every local stream, spread evenly over `period`, each with a jittered `retry:` so
/// clients come back spread out in time; then waits (bounded) for the last bytes to flush.
pub async fn drain(shard: &Rc<Shard>, period: Duration) {
    let keys: Vec<usize> = shard.streams.borrow().iter().map(|(k, _)| k).collect();
    let total = keys.len().max(1) as u32;
    let start = Instant::now();
    let mut jitter = Jitter::new(shard.id);
    for (i, k) in keys.into_iter().enumerate() {
        let due = start + period * i as u32 / total;
        let now = Instant::now();
        if due > now + Duration::from_millis(5) {
            monoio::time::sleep(due - now).await;
        }
        let sub = match shard.streams.borrow().get(k) {
            Some(s) => s.sub.clone(),
            None => continue,
        };
        let mut b = BytesMut::with_capacity(16);
        crate::sse::encode::encode_retry(jitter.between(1000, 5000), &mut b);
        sub.close_with(Frame {
            bytes: b.freeze(),
            arrived: None,
        });
    }
    let deadline = Instant::now() + DRAIN_GRACE;
    while !shard.streams.borrow().is_empty() && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range_and_spreads() {
        let mut j = Jitter::new(0);
        let v: Vec<u32> = (0..1000).map(|_| j.between(1000, 5000)).collect();
        assert!(v.iter().all(|x| (1000..=5000).contains(x)));
        assert!(v.iter().any(|x| *x < 2000) && v.iter().any(|x| *x > 4000));
    }
}
