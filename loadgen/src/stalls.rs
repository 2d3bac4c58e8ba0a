//! The machine's own stalls while a phase runs, so a report says which of its latency
//! percentiles measure the server and which measure the machine.
//!
//! Why: a delivery is timestamped when a worker's thread reads it. If that thread does not
//! run (the machine's CPUs are busy with other work, or a virtual machine's host pauses its
//! CPUs), every delivery that lands meanwhile is late by the stall, whatever the server did.
//! Seen here: on one kind of virtual machine the host paused the CPUs for up to 18.6 ms while
//! loadgen ran, and an idle `sleep(1 ms)` woke up to 3.7 ms late; two builds of the gateway
//! whose p99 differed 2x on another machine gave p99 4.8-14.4 ms in any order. A benchmark in
//! CI on shared machines meets the same. The report should say so rather than publish a tail
//! made by the machine.
//!
//! How (the idea of jHiccup): a thread sleeps [`PERIOD`] again and again and records how late
//! each wake-up is. A wake-up late by [`STALL`] or more counts its whole lateness as stalled
//! time. If a share `s` of the phase's wall time was stalled, about that share of its
//! deliveries landed in a stall, and as many again right after one (the backlog of a stall
//! drains late): percentile `q` is the server's only while `s < (1 - q) / 2`.
//!
//! Cost: a thousand wake-ups a second on one thread, a few microseconds each.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// How long the meter sleeps between wake-ups.
pub const PERIOD: Duration = Duration::from_millis(1);

/// A wake-up this late counts as a stall: an idle machine wakes a sleeper within about 0.1 ms,
/// and the tails this tool is meant to tell apart start at about half a millisecond.
pub const STALL: Duration = Duration::from_micros(500);

/// What the meter saw during one phase.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stalls {
    /// Wake-ups measured.
    pub samples: u64,
    /// Share of the wall time spent in stalls (0 to 1).
    pub share: f64,
    /// Wake-ups late by [`STALL`] or more.
    pub count: u64,
    /// 99th percentile of the wake-ups' lateness, ms.
    pub p99_ms: f64,
    /// The longest stall, ms.
    pub max_ms: f64,
}

impl Stalls {
    /// The highest latency percentile (0 to 100) that measures the server rather than the
    /// machine: `100 (1 - 2 s)`; `None` when nothing was measured.
    pub fn resolvable_percentile(&self) -> Option<f64> {
        (self.samples > 0).then(|| 100.0 * (1.0 - 2.0 * self.share).max(0.0))
    }

    /// Whether the phase's p99 is the server's (see the module's doc).
    pub fn p99_is_the_servers(&self) -> bool {
        self.resolvable_percentile().is_some_and(|q| q >= 99.0)
    }

    /// The report's line about them.
    pub fn line(&self) -> String {
        let Some(q) = self.resolvable_percentile() else {
            return "machine stalls not measured".to_string();
        };
        let verdict = if self.p99_is_the_servers() {
            format!("percentiles up to p{} are the server's", trim(q))
        } else {
            "p99 and above measure this machine's stalls, not the server (void)".to_string()
        };
        format!(
            "machine stalls {:.3}% of the time ({} wake-ups of {} late by {} ms or more, longest {:.1} ms): {verdict}",
            self.share * 100.0,
            self.count,
            self.samples,
            STALL.as_secs_f64() * 1e3,
            self.max_ms,
        )
    }
}

/// `q` to two decimals, without trailing zeros (99.5, 99.96, 100).
fn trim(q: f64) -> String {
    let s = format!("{:.2}", (q * 100.0).floor() / 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The figures being gathered.
struct Window {
    /// Lateness of each wake-up, microseconds.
    late_us: Histogram<u64>,
    /// Wake-ups late by [`STALL`] or more, and their lateness summed.
    count: u64,
    stalled: Duration,
    /// Since the meter started.
    since: Instant,
}

impl Window {
    fn new() -> Window {
        Window {
            // 1 us to 1 h at 3 significant digits: cannot fail.
            late_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            count: 0,
            stalled: Duration::ZERO,
            since: Instant::now(),
        }
    }

    fn record(&mut self, late: Duration) {
        let _ = self.late_us.record((late.as_micros() as u64).max(1));
        if late >= STALL {
            self.count += 1;
            self.stalled += late;
        }
    }

    fn stalls(&self) -> Stalls {
        let wall = self.since.elapsed().as_secs_f64();
        let samples = self.late_us.len();
        Stalls {
            samples,
            share: if wall > 0.0 {
                (self.stalled.as_secs_f64() / wall).min(1.0)
            } else {
                0.0
            },
            count: self.count,
            p99_ms: if samples > 0 {
                self.late_us.value_at_quantile(0.99) as f64 / 1e3
            } else {
                0.0
            },
            max_ms: if samples > 0 {
                self.late_us.max() as f64 / 1e3
            } else {
                0.0
            },
        }
    }
}

/// A running meter: [`Meter::stop`] ends its thread and gives what it saw.
pub struct Meter {
    stop: Arc<AtomicBool>,
    window: Arc<Mutex<Window>>,
    thread: Option<JoinHandle<()>>,
}

impl Meter {
    /// Starts measuring on a thread of its own.
    pub fn start() -> Meter {
        Meter::start_with(|| std::thread::sleep(PERIOD))
    }

    /// Starts measuring with `sleep` as the pause between wake-ups (tests stand in a stall).
    fn start_with(mut sleep: impl FnMut() + Send + 'static) -> Meter {
        let stop = Arc::new(AtomicBool::new(false));
        let window = Arc::new(Mutex::new(Window::new()));
        let thread = {
            let (stop, window) = (stop.clone(), window.clone());
            std::thread::Builder::new()
                .name("stall-meter".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        sleep();
                        let late = t.elapsed().saturating_sub(PERIOD);
                        if let Ok(mut w) = window.lock() {
                            w.record(late);
                        }
                    }
                })
                .ok()
        };
        Meter {
            stop,
            window,
            thread,
        }
    }

    /// Ends the meter; what it saw (nothing measured if its thread could not start).
    pub fn stop(mut self) -> Stalls {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.window.lock().map(|w| w.stalls()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_of_the_meters_thread_is_counted_as_stalled_time() {
        // Every 50th wake-up comes 20 ms late, as when the machine does not run the thread.
        let mut n = 0u32;
        let meter = Meter::start_with(move || {
            n += 1;
            std::thread::sleep(if n.is_multiple_of(50) {
                PERIOD + Duration::from_millis(20)
            } else {
                PERIOD
            });
        });
        std::thread::sleep(Duration::from_millis(600));
        let s = meter.stop();
        assert!(s.samples >= 50, "{s:?}");
        assert!(s.count >= 1, "{s:?}");
        assert!(s.max_ms >= 20.0, "{s:?}");
        // At least 20 ms of 600 ms or so stalled: 3% or more, so p99 is void.
        assert!(s.share >= 0.02, "{s:?}");
        assert!(!s.p99_is_the_servers(), "{s:?}");
        assert!(s.line().contains("(void)"), "{}", s.line());
    }

    #[test]
    fn which_percentiles_are_the_servers() {
        let s = |share: f64| Stalls {
            samples: 1000,
            share,
            ..Stalls::default()
        };
        assert_eq!(s(0.0).resolvable_percentile(), Some(100.0));
        assert!(s(0.0).p99_is_the_servers());
        assert!(s(0.0049).p99_is_the_servers());
        assert!(!s(0.0051).p99_is_the_servers());
        assert_eq!(s(0.6).resolvable_percentile(), Some(0.0));
        assert_eq!(Stalls::default().resolvable_percentile(), None);
        assert!(!Stalls::default().p99_is_the_servers());
        assert!(
            s(0.0002).line().contains("up to p99.96 are the server's"),
            "{}",
            s(0.0002).line()
        );
    }
}
