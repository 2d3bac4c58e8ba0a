//! Randomised spreading in time: jittered `retry:` values (so refused or drained clients do
//! not come back in step), reconnect backoff, and the run tag. One xorshift generator serves
//! all of them: they need spread, not cryptographic quality.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A small xorshift64 generator.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from `seed` (never zero: xorshift would stay at zero).
    pub fn seeded(seed: u64) -> Jitter {
        Jitter(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// Seeded from the clock and `salt` (a core id), so cores and restarts differ.
    pub fn new(salt: u64) -> Jitter {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Jitter::seeded(t ^ (salt.wrapping_add(1) << 48) ^ (u64::from(std::process::id()) << 16))
    }

    /// The next raw value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `lo..=hi`.
    pub fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }

    /// A duration in `lo..=hi`.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_nanos() as u64;
        lo + Duration::from_nanos(self.next_u64() % span.saturating_add(1))
    }
}

/// The `retry:` a client is told when it is turned away or drained: 1 to 5 s, jittered, so a
/// crowd of clients comes back spread over four seconds instead of at once.
pub fn retry_ms(jitter: &mut Jitter) -> u32 {
    jitter.between(1000, 5000)
}

/// Capped exponential backoff with jitter (so cores and nodes do not reconnect in step).
#[derive(Debug)]
pub struct Backoff {
    /// The first (and after [`Backoff::reset`], the next) step.
    min: Duration,
    /// The largest step.
    max: Duration,
    /// The next step before jitter.
    next: Duration,
    /// Source of the jitter.
    jitter: Jitter,
}

impl Backoff {
    /// Steps from `min` doubling up to `max`; `jitter` decorrelates its users.
    pub fn new(min: Duration, max: Duration, jitter: Jitter) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
            jitter,
        }
    }

    /// The delay to wait now: between half and all of the current step, which then doubles
    /// up to the cap.
    pub fn delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        self.jitter.duration(step / 2, step)
    }

    /// After a success: start again from the minimum.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range_and_spreads() {
        let mut j = Jitter::new(0);
        let v: Vec<u32> = (0..1000).map(|_| retry_ms(&mut j)).collect();
        assert!(v.iter().all(|x| (1000..=5000).contains(x)));
        assert!(v.iter().any(|x| *x < 2000) && v.iter().any(|x| *x > 4000));
        let mut z = Jitter::seeded(0);
        assert_ne!(z.next_u64(), 0, "a zero seed still moves");
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Backoff::new(min, max, Jitter::seeded(3));
        let d: Vec<Duration> = (0..12).map(|_| b.delay()).collect();
        assert!(d[0] >= min / 2 && d[0] <= min);
        assert!(d.iter().all(|x| *x <= max));
        assert!(d[11] >= max / 2);
        b.reset();
        assert!(b.delay() <= min);
    }
}
