//! The instruction-count gate (`scripts/bench-gate` runs it; see `bench/src/gate.rs`).
//!
//! ```text
//! icount check    count every gated case under callgrind, compare with the baseline
//! icount update   count them and write the baseline (bench/baseline/instructions.txt)
//! icount list     the gated cases
//! icount count [FILTER]  count every case whose name contains FILTER, gated or not
//! icount run NAME run one case as the gate counts it (what valgrind runs)
//! ```
use std::process::ExitCode;
use std::time::Instant;

use bench::gate::{self, Baseline};

/// The gateway's allocator, so allocations cost what they cost in the gateway.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["run", name] => gate::run_case(name).map(|_| true),
        ["list"] => {
            for c in gate::gated_cases() {
                println!("{} ({} runs)", c.gate_name(), c.gate_runs);
            }
            Ok(true)
        }
        ["check"] => check(),
        ["count"] => count(""),
        ["count", filter] => count(filter),
        ["update"] => update(),
        _ => Err("usage: icount check | update | list | count [FILTER] | run NAME".to_string()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench-gate: {e}");
            ExitCode::from(2)
        }
    }
}

/// Counts `cases`; prints how long it took.
fn measure(
    cases: &[bench::cases::Case],
) -> Result<std::collections::BTreeMap<String, u64>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let out_dir = exe
        .parent()
        .map(|d| d.join("bench-gate"))
        .ok_or("the binary has no directory")?;
    let started = Instant::now();
    let counts = gate::measure_all(&exe, &out_dir, cases)?;
    println!(
        "bench-gate: counted {} cases under callgrind in {:.0} s",
        counts.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(counts)
}

fn check() -> Result<bool, String> {
    let path = gate::baseline_path();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e}; record a baseline with {}",
            path.display(),
            gate::UPDATE_COMMAND
        )
    })?;
    let baseline = Baseline::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let valgrind = gate::valgrind_version()?;
    let counts = measure(&gate::gated_cases())?;
    let report = gate::compare(
        &baseline,
        &counts,
        gate::RUSTC_VERSION,
        &valgrind,
        gate::LIMIT_PERCENT,
    );
    for line in &report.lines {
        println!("{line}");
    }
    if report.problems > 0 {
        println!(
            "bench-gate: FAILED: {} of {} cases over the limit of {}%, new or gone; \
             if the extra work is intended, re-record with {}",
            report.problems,
            counts.len(),
            gate::LIMIT_PERCENT,
            gate::UPDATE_COMMAND
        );
    } else {
        println!(
            "bench-gate: {} cases within {}% of the baseline",
            counts.len(),
            gate::LIMIT_PERCENT
        );
    }
    Ok(report.problems == 0)
}

fn update() -> Result<bool, String> {
    let valgrind = gate::valgrind_version()?;
    let counts = measure(&gate::gated_cases())?;
    let baseline = Baseline {
        rustc: gate::RUSTC_VERSION.to_string(),
        valgrind,
        counts,
    };
    let path = gate::baseline_path();
    std::fs::write(&path, baseline.render()).map_err(|e| format!("{}: {e}", path.display()))?;
    print!("{}", baseline.render());
    println!("bench-gate: wrote {}", path.display());
    Ok(true)
}

/// Prints the instructions per call of every case whose name contains `filter`.
fn count(filter: &str) -> Result<bool, String> {
    let cases: Vec<_> = bench::cases::all()
        .into_iter()
        .filter(|c| c.gate_name().contains(filter))
        .collect();
    let counts = measure(&cases)?;
    let width = counts.keys().map(String::len).max().unwrap_or(0);
    for c in &cases {
        let name = c.gate_name();
        println!("{name:width$} {:>10}", counts[&name]);
    }
    Ok(true)
}
