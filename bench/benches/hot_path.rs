//! The per-event hot path under criterion: every case of `bench::cases` (the same table the
//! instruction-count gate counts), grouped as `http`, `route`, `sse`, `payload`, `fanout` and
//! `jwt`, each with its throughput (bytes/s, or deliveries/s for fan-out).
//!
//! `cargo bench -p bench` runs them all in a few minutes; `cargo bench -p bench -- fanout`
//! runs one group. Figures and their meaning: `docs/BENCHMARKS.md`.
use std::time::{Duration, Instant};

use bench::cases::{self, Case, Per};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The gateway's allocator, so allocations cost what they cost in the gateway.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn hot_path(c: &mut Criterion) {
    let all = cases::all();
    let mut groups: Vec<&str> = all.iter().map(Case::group).collect();
    groups.dedup();
    for group in groups {
        let mut g = c.benchmark_group(group);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        if group == "fanout" {
            // A 50k fan-out takes milliseconds; fewer, longer samples keep the group short.
            g.sample_size(20);
            g.measurement_time(Duration::from_secs(3));
        }
        for case in all.iter().filter(|c| c.group() == group) {
            g.throughput(match case.per {
                Per::Bytes(n) => Throughput::Bytes(n),
                Per::Deliveries(n) => Throughput::Elements(n),
            });
            let mut op = (case.make)();
            g.bench_function(case.name(), |b| {
                if !op.resets() {
                    b.iter(|| op.run());
                    return;
                }
                // Timed one run at a time, so `reset` (each stream taking its frame before
                // the next event) stays out of the figure; a run here takes microseconds, so
                // reading the clock around each is noise.
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        op.run();
                        total += t.elapsed();
                        op.reset();
                    }
                    total
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
