//! A core's periodic work, as verbs the server's timer calls: keep-alives for every local
//! stream, the sweep of idle channels, and closing streams for the drain.
//!
//! One timer per core, not one per connection (see [`crate::core::wheel`]).
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::core::shard::Shard;
use crate::core::stream::unix_now;
use crate::core::subscriber::{Frame, Pushed};
use crate::route::table::KeepaliveFormat;
use crate::sse::encode::encode_retry;
use crate::sse::system::{encode_heartbeat, encode_player_keepalive};
use crate::stats::bump;

/// How often every idle channel is visited by the sweep (spread over the ticks in between).
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Encodes one keep-alive block of `format` for time `now`.
pub fn encode_keepalive(format: KeepaliveFormat, now: u64, out: &mut BytesMut) {
    match format {
        KeepaliveFormat::PlayerKeepalive => encode_player_keepalive(now, out),
        KeepaliveFormat::Heartbeat => encode_heartbeat(now, out),
    }
}

/// `SSE_WRITE_TIMEOUT` in keep-alive ticks, rounded up (at least one).
fn write_limit_ticks(timeout: Duration, tick: Duration) -> u64 {
    (timeout.as_nanos().div_ceil(tick.as_nanos().max(1)) as u64).max(1)
}

impl Shard {
    /// How often [`Shard::keepalive_tick`] must run.
    pub fn tick_period(&self) -> Duration {
        self.wheel.tick()
    }

    /// The keep-alive ticks so far: the coarse clock a stream's write is timed by.
    pub fn now_tick(&self) -> u64 {
        self.ticks.get()
    }

    /// One tick of the keep-alive wheel: cuts every stream whose write has taken longer than
    /// `SSE_WRITE_TIMEOUT`, and queues a keep-alive on every stream whose slot is due (each
    /// family's block encoded once per tick); a stream whose queue is full is cut.
    ///
    /// The write deadline is checked here rather than by a timer per write: this loop walks
    /// every stream anyway, and a write then costs one store to mark it instead of a timer
    /// set and cancelled per write on the delivery path. The deadline is kept within one tick
    /// (100 ms), which is nothing against a 30 s limit.
    pub fn keepalive_tick(&self) {
        let n = self.ticks.get() + 1;
        self.ticks.set(n);
        let families = self.routes().families.len();
        let now = unix_now();
        let mut frames: Vec<Option<Bytes>> = vec![None; families];
        let mut cut = 0;
        let mut stalled = 0;
        let limit = write_limit_ticks(self.config().write_timeout, self.wheel.tick());
        for (_, sub) in self.streams.borrow().iter() {
            if sub.cut_if_stalled(n, limit) {
                stalled += 1;
                continue;
            }
            let f = sub.family;
            let every = self.wheel.every(f);
            if n % every != sub.slot as u64 % every {
                continue;
            }
            let bytes = frames[f]
                .get_or_insert_with(|| {
                    let mut b = BytesMut::with_capacity(128);
                    encode_keepalive(self.family(f).keepalive, now, &mut b);
                    b.freeze()
                })
                .clone();
            if sub.push(Frame {
                bytes,
                arrived: None,
            }) == Pushed::Cut
            {
                cut += 1;
            }
        }
        for _ in 0..cut {
            bump(&self.stats().slow_consumers_cut);
        }
        for _ in 0..stalled {
            bump(&self.stats().write_timeouts);
        }
        let hub = self.hub.borrow();
        let stats = self.stats();
        stats.channels.store(hub.channel_count() as u64, Relaxed);
        stats.channels_evicted.store(hub.evicted(), Relaxed);
        let (bytes, trimmed) = hub.history_use();
        stats.history_bytes.store(bytes as u64, Relaxed);
        stats.history_trimmed.store(trimmed, Relaxed);
    }

    /// Drops channels idle for longer than they are kept, a slice at a time: called every
    /// tick, it visits every channel without a subscriber once per [`SWEEP_EVERY`].
    pub fn sweep(&self, now: Instant) {
        let rounds = SWEEP_EVERY.as_nanos() / self.wheel.tick().as_nanos().max(1);
        self.hub.borrow_mut().sweep(now, rounds as usize);
    }

    /// The keys of every open stream, in the order the drain closes them.
    pub fn stream_keys(&self) -> Vec<usize> {
        self.streams.borrow().iter().map(|(k, _)| k).collect()
    }

    /// Closes stream `key` after what is queued and a `retry:` of `retry_ms` (a no-op when it
    /// ended meanwhile).
    pub fn close_stream(&self, key: usize, retry_ms: u32) {
        let Some(sub) = self.streams.borrow().get(key).cloned() else {
            return;
        };
        let mut b = BytesMut::with_capacity(16);
        encode_retry(retry_ms, &mut b);
        sub.close_with(Frame {
            bytes: b.freeze(),
            arrived: None,
        });
    }

    /// Streams open on this core.
    pub fn open_streams(&self) -> usize {
        self.streams.borrow().len()
    }
}
