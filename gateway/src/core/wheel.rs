//! The keep-alive wheel of a core: one timer for all its streams, not one per connection, and
//! a tick fine enough that no tick's keep-alives hold up an event.
//!
//! A keep-alive write costs what an event's does (10-14 us of kernel time on loopback), and an
//! event that arrives while a tick's writes are being made waits for all of them. With a
//! 100 ms tick, 16,700 streams at 15 s meant about 110 writes (~1.5 ms) per tick, and the
//! delivery p99 at 50,000 streams was 2.9 ms with keep-alives against 0.95 ms without them.
//! A 10 ms tick (about 11 writes) still left p99 30-50% above the run without keep-alives
//! (0.79 against 0.52-0.61 ms, docs/BENCHMARKS.md); ticking every 2 ms makes a tick about
//! 2 writes (~30 us), as fine as a core's timer goes. The period of each stream stays exactly
//! its family's (a stream is due every `period / tick` ticks); only the batches get smaller.
//! What the finer tick costs: 500 timer wake-ups a second per core (~3 us each, about 0.15% of
//! a core), paid idle too.
//!
//! A tick touches only the streams that are due (a hashed timing wheel: [`SPOKES`] buckets of
//! stream keys by due tick), not every stream: walking 16,700 streams 500 times a second would
//! cost more than the keep-alives themselves. Streams get their phase round-robin (their
//! `slot`), so keep-alives are spread evenly over the period however the streams arrived,
//! including 50,000 in a reconnect storm.
use std::time::Duration;

use crate::route::table::RouteTable;

/// Resolution of the keep-alive wheel.
pub const TICK: Duration = Duration::from_millis(2);

/// Buckets of the wheel: a tick visits one (1/4096 of the streams at a 15 s period, each
/// visited about twice per period: the entries of periods longer than 4,096 ticks wait a
/// round or more in their bucket).
pub const SPOKES: usize = 4096;

/// A stream's place on the wheel.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Its key in the core's stream list.
    key: u32,
    /// Its slot (low 32 bits): a key reused by a later stream does not match it.
    slot: u32,
    /// The tick its next keep-alive is due at.
    due: u64,
}

/// The keep-alive wheel of a core: its tick, each family's period in ticks, and which stream
/// is due when.
#[derive(Debug)]
pub struct Wheel {
    /// How often [`Shard::keepalive_tick`](crate::core::shard::Shard) runs: [`TICK`], or
    /// the keep-alive setting when that is shorter (tests use periods of a few milliseconds).
    tick: Duration,
    /// Per family: a stream gets a keep-alive every this many ticks.
    every: Box<[u64]>,
    /// Entries by due tick modulo [`SPOKES`].
    spokes: Vec<Vec<Entry>>,
    /// Entries moved by the tick in progress (reused between ticks).
    moved: Vec<Entry>,
}

impl Wheel {
    /// The wheel for `routes`, with `setting` (`SSE_KEEPALIVE_PERIOD`) overriding every
    /// family's own period.
    pub fn new(routes: &RouteTable, setting: Option<Duration>) -> Wheel {
        let tick = match setting {
            Some(p) if p < TICK => p.max(Duration::from_millis(1)),
            _ => TICK,
        };
        let every = routes
            .families
            .iter()
            .map(|f| {
                let period = setting.unwrap_or(f.keepalive_period);
                (period.as_nanos() / tick.as_nanos()).max(1) as u64
            })
            .collect();
        Wheel {
            tick,
            every,
            spokes: vec![Vec::new(); SPOKES],
            moved: Vec::new(),
        }
    }

    /// How often the wheel ticks.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// Every how many ticks a stream of family `f` gets a keep-alive.
    pub fn every(&self, f: usize) -> u64 {
        self.every[f]
    }

    /// Puts stream `key` of family `f` with round-robin `slot` on the wheel at tick `now`:
    /// its first keep-alive is due at the first tick after `now` that is its slot's phase, so
    /// consecutive slots fall on consecutive ticks.
    pub fn add(&mut self, key: usize, slot: usize, f: usize, now: u64) {
        let every = self.every[f];
        let next = now + 1;
        let wait = (slot as u64 % every + every - next % every) % every;
        self.put(Entry {
            key: key as u32,
            slot: slot as u32,
            due: next + wait,
        });
    }

    fn put(&mut self, e: Entry) {
        self.spokes[(e.due % SPOKES as u64) as usize].push(e);
    }

    /// Tick `now`: calls `fire(key, slot)` for every stream due at `now`, which answers the
    /// stream's family if it still exists (it then has had its keep-alive) or `None` (gone:
    /// it leaves the wheel); a stream that fired is due again one period later.
    pub fn advance(&mut self, now: u64, mut fire: impl FnMut(usize, usize) -> Option<usize>) {
        let spoke = (now % SPOKES as u64) as usize;
        let mut moved = std::mem::take(&mut self.moved);
        self.spokes[spoke].retain(|e| {
            if e.due > now {
                return true;
            }
            if let Some(f) = fire(e.key as usize, e.slot as usize) {
                moved.push(Entry {
                    due: now + self.every[f],
                    ..*e
                });
            }
            false
        });
        for e in moved.drain(..) {
            self.put(e);
        }
        self.moved = moved;
    }

    /// Entries on the wheel (streams, plus those gone and not yet visited).
    pub fn entries(&self) -> usize {
        self.spokes.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel(period_ms: u64) -> Wheel {
        Wheel::new(
            &RouteTable::builtin(),
            Some(Duration::from_millis(period_ms)),
        )
    }

    #[test]
    fn each_stream_fires_once_per_period_at_its_phase_and_gone_streams_leave() {
        // 15 s at the default 2 ms tick: every 7,500 ticks, more than one turn of the wheel.
        let mut w = wheel(15_000);
        let every = w.every(0);
        assert_eq!(every, 7_500);
        let streams = 15_000usize;
        for key in 0..streams {
            w.add(key, key, 0, 0);
        }
        let mut fired: Vec<Vec<u64>> = vec![Vec::new(); streams];
        let mut per_tick = Vec::new();
        for now in 1..=3 * every {
            let mut n = 0;
            w.advance(now, |key, slot| {
                assert_eq!(key, slot);
                fired[key].push(now);
                n += 1;
                Some(0)
            });
            per_tick.push(n);
        }
        for (key, at) in fired.iter().enumerate() {
            assert_eq!(at.len(), 3, "stream {key} fired at {at:?}");
            assert!(at.windows(2).all(|p| p[1] - p[0] == every), "{key}: {at:?}");
        }
        // Spread: 15,000 streams over 7,500 ticks is two per tick, never a burst.
        assert_eq!(per_tick.iter().max(), Some(&2));
        // A stream that is gone leaves the wheel the next time it is due.
        for now in 3 * every + 1..=4 * every {
            w.advance(now, |key, _| (key % 2 == 0).then_some(0));
        }
        assert_eq!(w.entries(), streams / 2);
    }

    #[test]
    fn a_reused_key_is_told_apart_by_its_slot() {
        let mut w = wheel(50);
        // 50 ms at the 2 ms tick: due every 25th tick.
        assert_eq!((w.tick(), w.every(0)), (Duration::from_millis(2), 25));
        w.add(7, 1, 0, 0);
        w.add(7, 2, 0, 0);
        let mut seen = Vec::new();
        for now in 1..=5 {
            w.advance(now, |key, slot| {
                seen.push((now, key, slot));
                (slot == 2).then_some(0)
            });
        }
        assert_eq!(seen, vec![(1, 7, 1), (2, 7, 2)]);
        assert_eq!(w.entries(), 1);
    }
}
