//! The keep-alive wheel of a core: one timer for all its streams, not one per connection.
//! Every tick writes keep-alives to the streams whose slot is due. Slots are handed out
//! round-robin, so with a 15 s period and a 100 ms tick each tick touches 1/150 of the
//! streams: 25,000 streams on a core cost about 170 writes (about 2 ms of kernel time) per
//! tick instead of a 300 ms burst every 15 s.
use std::time::Duration;

use crate::route::table::RouteTable;

/// Resolution of the keep-alive wheel.
pub const TICK: Duration = Duration::from_millis(100);

/// The keep-alive wheel of a core: its tick, and each family's period in ticks.
#[derive(Debug)]
pub struct Wheel {
    /// How often [`Shard::keepalive_tick`] runs: [`TICK`], or the keep-alive setting when
    /// that is shorter (tests use periods of a few milliseconds).
    tick: Duration,
    /// Per family: a stream gets a keep-alive every this many ticks.
    every: Box<[u64]>,
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
        Wheel { tick, every }
    }

    /// How often the wheel ticks.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// Every how many ticks a stream of family `f` gets a keep-alive.
    pub fn every(&self, f: usize) -> u64 {
        self.every[f]
    }
}
