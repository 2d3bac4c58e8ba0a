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

/// How often the tick's chores that need no fine clock run: the sweep's slice and the stats
/// figures of the channel table. Keep-alives need the fine tick (small batches); these do not.
pub const CHORES: Duration = Duration::from_millis(100);

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

/// How long one pass of the write-deadline scan over every stream takes: a tenth of
/// `SSE_WRITE_TIMEOUT`, at most a second, at least a tick. A stalled write is cut within this
/// much of its deadline (30 s + at most 1 s by default).
fn stall_scan_period(timeout: Duration, tick: Duration) -> Duration {
    (timeout / 10).clamp(tick, STALL_SCAN_MAX.max(tick))
}

/// The longest a pass of the write-deadline scan takes.
const STALL_SCAN_MAX: Duration = Duration::from_secs(1);

impl Shard {
    /// How often [`Shard::keepalive_tick`] must run.
    pub fn tick_period(&self) -> Duration {
        self.wheel.borrow().tick()
    }

    /// The keep-alive ticks so far: the coarse clock a stream's write is timed by.
    pub fn now_tick(&self) -> u64 {
        self.ticks.get()
    }

    /// One tick of the keep-alive wheel: queues a keep-alive on every stream whose slot is
    /// due (each family's block encoded once per tick; a stream whose queue is full is cut),
    /// and cuts the streams of this tick's slice of the write-deadline scan whose write has
    /// taken longer than `SSE_WRITE_TIMEOUT`.
    ///
    /// The tick visits only the streams due now and a slice of the rest, so its cost follows
    /// the keep-alives it writes (about `streams / period` per second), not the streams held
    /// (see [`crate::core::wheel`]). The write deadline is checked by this scan rather than
    /// by a timer per write: a write then costs one store to mark it instead of a timer set
    /// and cancelled per write on the delivery path.
    pub fn keepalive_tick(&self) {
        let n = self.ticks.get() + 1;
        self.ticks.set(n);
        let now = unix_now();
        let mut frames: Vec<Option<Bytes>> = vec![None; self.routes().families.len()];
        let mut cut = 0;
        {
            let streams = self.streams.borrow();
            self.wheel.borrow_mut().advance(n, |key, slot| {
                let sub = streams.get(key).filter(|s| s.slot as u32 == slot as u32)?;
                let f = sub.family;
                let bytes = frames[f]
                    .get_or_insert_with(|| {
                        let mut b = BytesMut::with_capacity(128);
                        encode_keepalive(self.family(f).keepalive, now, &mut b);
                        b.freeze()
                    })
                    .clone();
                let frame = Frame {
                    bytes,
                    arrived: None,
                };
                if sub.push(frame) == Pushed::Cut {
                    cut += 1;
                }
                Some(f)
            });
        }
        let stalled = self.scan_stalled(n);
        for _ in 0..cut {
            bump(&self.stats().slow_consumers_cut);
        }
        for _ in 0..stalled {
            bump(&self.stats().write_timeouts);
        }
        if n % self.chores_every() != 0 {
            return;
        }
        let hub = self.hub.borrow();
        let stats = self.stats();
        stats.channels.store(hub.channel_count() as u64, Relaxed);
        stats.channels_evicted.store(hub.evicted(), Relaxed);
        let (bytes, trimmed) = hub.history_use();
        stats.history_bytes.store(bytes as u64, Relaxed);
        stats.history_trimmed.store(trimmed, Relaxed);
        drop(hub);
        self.store_channel_figures();
    }

    /// This tick's slice of the write-deadline scan: every stream is visited once per
    /// [`stall_scan_period`]. Answers how many were cut.
    fn scan_stalled(&self, n: u64) -> usize {
        let tick = self.tick_period();
        let timeout = self.config().write_timeout;
        let limit = write_limit_ticks(timeout, tick);
        let rounds =
            (stall_scan_period(timeout, tick).as_nanos() / tick.as_nanos().max(1)).max(1) as usize;
        let streams = self.streams.borrow();
        let keys = streams.capacity();
        let from = match self.stall_cursor.get() {
            c if c < keys => c,
            _ => 0,
        };
        let to = (from + keys.div_ceil(rounds)).min(keys);
        self.stall_cursor.set(to);
        (from..to)
            .filter_map(|k| streams.get(k))
            .filter(|sub| sub.cut_if_stalled(n, limit))
            .count()
    }

    /// Every how many ticks the chores that need no finer clock run (the sweep, the channel
    /// and history figures): every [`CHORES`].
    fn chores_every(&self) -> u64 {
        (CHORES.as_nanos() / self.tick_period().as_nanos().max(1)).max(1) as u64
    }

    /// Drops channels idle for longer than they are kept, a slice at a time: called every
    /// tick, it works every [`CHORES`] and visits every channel without a subscriber once per
    /// [`SWEEP_EVERY`].
    pub fn sweep(&self, now: Instant) {
        if self.ticks.get() % self.chores_every() != 0 {
            return;
        }
        let rounds = SWEEP_EVERY.as_nanos() / CHORES.max(self.tick_period()).as_nanos();
        self.hub.borrow_mut().sweep(now, rounds as usize);
        self.unsubscribe_dropped();
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
