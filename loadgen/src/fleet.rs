//! What `loadgen plan`'s knee means for a fleet on one Redis: the fleet model's measured
//! capacities (`bench/src/bin/fleet_model.rs`, docs/BENCHMARKS.md "The fleet model"), turned
//! into advice for the rate a plan found.
//!
//! In pattern mode (the gateway's default) every gateway core of every node receives every
//! event, so Redis's work per event grows with the fleet's total core count K; in channel mode
//! (`SSE_REDIS_SUBSCRIBE=channel`) a unicast event goes to the one core that holds its channel.

/// One measured row: subscription mode, K subscriber cores, and the highest rate one Redis
/// carried to them without saturating (Redis under 90% of a core, nothing lost or late, p99
/// under 100 ms), events a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// `pattern` or `channel`.
    pub mode: &'static str,
    /// Subscriber connections: gateway cores, all nodes together.
    pub cores: u32,
    /// Events a second one Redis carried to them.
    pub carries: f64,
}

/// The fleet model's table, measured on the machine in docs/BENCHMARKS.md (one Redis 7.0,
/// `io-threads 1`, sharing two cores with the model's subscribers and publisher; 200-byte
/// payloads; 2026-12-02), rows by mode, cores rising. Pattern mode at 32 cores and channel
/// mode at 8 did not saturate within the run's steps: their figures are lower bounds.
pub const MEASURED: &[Capacity] = &[
    Capacity {
        mode: "pattern",
        cores: 8,
        carries: 129746.0,
    },
    Capacity {
        mode: "pattern",
        cores: 32,
        carries: 48655.0,
    },
    Capacity {
        mode: "pattern",
        cores: 128,
        carries: 712.0,
    },
    Capacity {
        mode: "pattern",
        cores: 512,
        carries: 112.0,
    },
    Capacity {
        mode: "channel",
        cores: 8,
        carries: 194620.0,
    },
    Capacity {
        mode: "channel",
        cores: 32,
        carries: 129746.0,
    },
    Capacity {
        mode: "channel",
        cores: 128,
        carries: 57665.0,
    },
    Capacity {
        mode: "channel",
        cores: 512,
        carries: 38443.0,
    },
];

/// The most cores (of the measured K) to which one Redis carries `rate` in `mode`, or `None`
/// when even the smallest measured K is past it.
pub fn most_cores(table: &[Capacity], mode: &str, rate: f64) -> Option<u32> {
    table
        .iter()
        .filter(|c| c.mode == mode && c.carries >= rate)
        .map(|c| c.cores)
        .max()
}

/// The advice for a fleet publishing `rate` events a second, from `table`: one line per mode,
/// then what to do past both.
pub fn advice(table: &[Capacity], rate: f64) -> String {
    if table.is_empty() {
        return String::new();
    }
    let k = |mode| match most_cores(table, mode, rate) {
        Some(k) => format!("up to {k} gateway cores (all nodes together; the most measured)"),
        None => "fewer cores than the fleet model measured: past one Redis".to_string(),
    };
    let top = |mode: &str| {
        table
            .iter()
            .filter(|c| c.mode == mode)
            .map(|c| c.carries)
            .fold(0.0, f64::max)
    };
    format!(
        "fleet: at {rate:.0} events/s one Redis carries pattern mode (the default) to {}, \
         and SSE_REDIS_SUBSCRIBE=channel to {}; one Redis carries at most {:.0} events/s \
         in channel mode here, past which a Redis Cluster is the way \
         (docs/BENCHMARKS.md \"The fleet model\")",
        k("pattern"),
        k("channel"),
        top("channel"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &[Capacity] = &[
        Capacity {
            mode: "pattern",
            cores: 8,
            carries: 50_000.0,
        },
        Capacity {
            mode: "pattern",
            cores: 32,
            carries: 12_000.0,
        },
        Capacity {
            mode: "channel",
            cores: 8,
            carries: 90_000.0,
        },
        Capacity {
            mode: "channel",
            cores: 512,
            carries: 80_000.0,
        },
    ];

    #[test]
    fn the_most_cores_that_carry_a_rate() {
        assert_eq!(most_cores(T, "pattern", 10_000.0), Some(32));
        assert_eq!(most_cores(T, "pattern", 20_000.0), Some(8));
        assert_eq!(most_cores(T, "pattern", 60_000.0), None);
        assert_eq!(most_cores(T, "channel", 60_000.0), Some(512));
    }

    #[test]
    fn the_measured_table_advises_channel_mode_past_a_few_dozen_cores() {
        // 10,000 events/s: pattern mode carries it to 32 cores, channel mode to 512.
        assert_eq!(most_cores(MEASURED, "pattern", 10_000.0), Some(32));
        assert_eq!(most_cores(MEASURED, "channel", 10_000.0), Some(512));
        // 1,000 events/s: 128 cores already saturate one Redis in pattern mode.
        assert_eq!(most_cores(MEASURED, "pattern", 1_000.0), Some(32));
        assert!(advice(MEASURED, 10_000.0).starts_with("fleet: at 10000 events/s"));
    }

    #[test]
    fn advice_names_both_modes_and_the_limit() {
        let a = advice(T, 20_000.0);
        assert!(
            a.contains("pattern mode (the default) to up to 8 gateway cores"),
            "{a}"
        );
        assert!(
            a.contains("SSE_REDIS_SUBSCRIBE=channel to up to 512"),
            "{a}"
        );
        assert!(a.contains("at most 90000 events/s"), "{a}");
        assert!(advice(T, 60_000.0).contains("past one Redis"));
        assert_eq!(advice(&[], 1.0), "");
    }
}
