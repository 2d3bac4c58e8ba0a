//! The performance regression gate: instructions per call of every gated hot-path case,
//! counted by valgrind's callgrind, compared with the baseline committed in
//! `bench/baseline/instructions.txt`.
//!
//! Why instructions and not time: on a shared 2-core machine wall-clock timings move by tens
//! of percent from run to run, so a time-based gate either fails at random or needs a margin
//! wider than the regressions it should catch. Instruction counts under callgrind are the same
//! on every run of the same binary on the same machine kind, so a 5% limit means something.
//! They are not time (a cache miss costs one instruction), so the criterion suite stays the
//! place to read speed; the gate catches the code doing more work.
//!
//! How a case is counted: `icount check` starts one valgrind process per case, running
//! `icount run <case>`, which builds the case, runs it a few times to warm up, and then calls
//! it `gate_runs` times through [`gate_measured_call`]. Callgrind collects only inside that
//! function (`--collect-atstart=no --toggle-collect=gate_measured_call`), so set-up, warm-up
//! and the resets between calls are not counted; the total divided by the runs is the figure.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::cases::{self, Case, Op};

/// More instructions per call than the baseline by this many percent fails the gate.
pub const LIMIT_PERCENT: f64 = 5.0;

/// The command that re-records the baseline, as messages name it.
pub const UPDATE_COMMAND: &str = "scripts/bench-gate --update";

/// The compiler that built this binary (`rustc -V`, recorded by `build.rs`).
pub const RUSTC_VERSION: &str = env!("BENCH_RUSTC_VERSION");

/// The committed baseline.
pub fn baseline_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("baseline/instructions.txt")
}

/// The one function callgrind counts inside. Unmangled, so `--toggle-collect` names it
/// exactly whatever the demangler does; never inlined, so it exists to be named.
#[no_mangle]
#[inline(never)]
pub fn gate_measured_call(op: &mut dyn Op) {
    op.run();
}

/// Runs the case `name` as the gate counts it (called under valgrind). Cases the gate does
/// not count can be run too (`icount count`), [`UNGATED_RUNS`] times.
pub fn run_case(name: &str) -> Result<(), String> {
    let case = cases::all()
        .into_iter()
        .find(|c| c.gate_name() == name)
        .ok_or_else(|| format!("no case named {name}"))?;
    let mut op = (case.make)();
    // Warm-up: first-call costs (lazy initialisation, buffer growth) are not per-call costs.
    for _ in 0..3 {
        op.run();
        op.reset();
    }
    for _ in 0..runs(&case) {
        gate_measured_call(&mut *op);
        op.reset();
    }
    Ok(())
}

/// Runs of a case that the gate does not count, when counted on request.
pub const UNGATED_RUNS: u32 = 10;

/// How many runs a case's count is averaged over.
pub fn runs(case: &Case) -> u32 {
    if case.gate_runs > 0 {
        case.gate_runs
    } else {
        UNGATED_RUNS
    }
}

/// The cases the gate counts.
pub fn gated_cases() -> Vec<Case> {
    cases::all()
        .into_iter()
        .filter(|c| c.gate_runs > 0)
        .collect()
}

/// Instructions per call of each of `cases`: one valgrind process per case, as many at a
/// time as there are cores.
pub fn measure_all(
    exe: &Path,
    out_dir: &Path,
    cases: &[Case],
) -> Result<BTreeMap<String, u64>, String> {
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let work: Vec<(String, u32)> = cases.iter().map(|c| (c.gate_name(), runs(c))).collect();
    let next = Mutex::new(work.into_iter());
    let results = Mutex::new(BTreeMap::new());
    let errors = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some((name, runs)) = next.lock().expect("queue lock").next() else {
                    return;
                };
                match measure_one(exe, out_dir, &name, runs) {
                    Ok(n) => {
                        results.lock().expect("results lock").insert(name, n);
                    }
                    Err(e) => errors.lock().expect("errors lock").push(e),
                }
            });
        }
    });
    let errors = errors.into_inner().expect("errors lock");
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok(results.into_inner().expect("results lock"))
}

/// Runs one case under callgrind and returns its instructions per call.
fn measure_one(exe: &Path, out_dir: &Path, name: &str, runs: u32) -> Result<u64, String> {
    let out_file = out_dir.join(format!("{name}.callgrind"));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg("--collect-atstart=no")
        .arg("--toggle-collect=gate_measured_call")
        .arg("--dump-line=no")
        .arg(exe)
        .args(["run", name])
        .output()
        .map_err(|e| {
            format!("{name}: cannot start valgrind ({e}); scripts/install-deps installs it")
        })?;
    if !output.status.success() {
        return Err(format!(
            "{name}: valgrind exited with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = std::fs::read_to_string(&out_file)
        .map_err(|e| format!("{name}: {}: {e}", out_file.display()))?;
    let total = callgrind_total(&text)
        .ok_or_else(|| format!("{name}: no totals line in {}", out_file.display()))?;
    if total == 0 {
        return Err(format!(
            "{name}: callgrind counted nothing inside gate_measured_call (was it inlined or renamed?)"
        ));
    }
    let runs = u64::from(runs.max(1));
    Ok((total + runs / 2) / runs)
}

/// The instruction total of a callgrind output file (`totals:`, else `summary:`).
pub fn callgrind_total(text: &str) -> Option<u64> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    field("totals:").or_else(|| field("summary:"))
}

/// `valgrind --version`, e.g. `valgrind-3.19.0`.
pub fn valgrind_version() -> Result<String, String> {
    let out = Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run valgrind ({e}): scripts/install-deps installs it"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The committed figures and what produced them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Baseline {
    /// `rustc -V` of the compiler that built the counted binary.
    pub rustc: String,
    /// `valgrind --version`.
    pub valgrind: String,
    /// Instructions per call, by case.
    pub counts: BTreeMap<String, u64>,
}

impl Baseline {
    /// Reads the text form written by [`Baseline::render`].
    pub fn parse(text: &str) -> Result<Baseline, String> {
        let mut b = Baseline::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(v) = line.strip_prefix("rustc:") {
                b.rustc = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("valgrind:") {
                b.valgrind = v.trim().to_string();
            } else {
                let mut parts = line.split_whitespace();
                let (Some(name), Some(count), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!("line {}: expected `name count`: {line}", i + 1));
                };
                let count = count
                    .parse()
                    .map_err(|_| format!("line {}: not a count: {count}", i + 1))?;
                b.counts.insert(name.to_string(), count);
            }
        }
        Ok(b)
    }

    /// The committed text form: a header saying what the file is, then one case a line.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# Instructions per call of each gated hot-path case (bench/src/cases.rs), counted by\n");
        s.push_str(
            "# callgrind on the release profile. `.ci/run` fails when a case needs more than\n",
        );
        let _ = writeln!(s, "# {LIMIT_PERCENT}% more. Re-record on purpose with `{UPDATE_COMMAND}` (docs/BENCHMARKS.md).");
        let _ = writeln!(s, "rustc: {}", self.rustc);
        let _ = writeln!(s, "valgrind: {}", self.valgrind);
        let width = self.counts.keys().map(String::len).max().unwrap_or(0);
        for (name, count) in &self.counts {
            let _ = writeln!(s, "{name:width$} {count}");
        }
        s
    }
}

/// The verdict on one run against the baseline.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines to print, in order.
    pub lines: Vec<String>,
    /// Cases over the limit, new or gone: the gate fails when there is any.
    pub problems: usize,
}

/// Compares measured counts with the baseline. A case more than `limit_percent` worse is a
/// regression; a case missing from either side fails too, so the baseline always covers
/// exactly the gated cases. A different compiler or valgrind only warns: the counts are
/// still compared, and the warning says that a toolchain change may explain a difference.
pub fn compare(
    baseline: &Baseline,
    measured: &BTreeMap<String, u64>,
    rustc: &str,
    valgrind: &str,
    limit_percent: f64,
) -> Report {
    let mut r = Report::default();
    if baseline.rustc != rustc {
        r.lines.push(format!(
            "WARNING baseline was recorded with `{}`, this build used `{rustc}`: compared anyway; \
             if the compiler alone moved the counts, re-record with {UPDATE_COMMAND}",
            baseline.rustc
        ));
    }
    if baseline.valgrind != valgrind {
        r.lines.push(format!(
            "WARNING baseline was recorded with {}, this is {valgrind}: compared anyway",
            baseline.valgrind
        ));
    }
    let width = measured.keys().map(String::len).max().unwrap_or(0);
    for (name, &now) in measured {
        let Some(&was) = baseline.counts.get(name) else {
            r.problems += 1;
            r.lines.push(format!(
                "NEW {name}: {now} instructions, not in the baseline; record it with {UPDATE_COMMAND}"
            ));
            continue;
        };
        let change = (now as f64 - was as f64) * 100.0 / (was.max(1) as f64);
        if change > limit_percent {
            r.problems += 1;
            r.lines.push(format!(
                "REGRESSION {name}: {was} -> {now} instructions ({change:+.1}%, limit {limit_percent}%)"
            ));
        } else if change < -limit_percent {
            r.lines.push(format!(
                "IMPROVED {name}: {was} -> {now} instructions ({change:+.1}%); keep it with {UPDATE_COMMAND}"
            ));
        } else {
            r.lines.push(format!(
                "ok {name:width$} {was:>9} -> {now:>9} ({change:+.1}%)"
            ));
        }
    }
    for name in baseline
        .counts
        .keys()
        .filter(|n| !measured.contains_key(*n))
    {
        r.problems += 1;
        r.lines.push(format!(
            "GONE {name}: in the baseline but no longer gated; re-record with {UPDATE_COMMAND}"
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn base(pairs: &[(&str, u64)]) -> Baseline {
        Baseline {
            rustc: "rustc 1.95.0".into(),
            valgrind: "valgrind-3.19.0".into(),
            counts: counts(pairs),
        }
    }

    #[test]
    fn baseline_round_trips() {
        let b = base(&[
            ("sse_encode_small_id", 1234),
            ("http_parse_large_head", 98765),
        ]);
        assert_eq!(Baseline::parse(&b.render()), Ok(b));
        assert!(Baseline::parse("a 1 2").is_err());
        assert!(Baseline::parse("a x").is_err());
    }

    #[test]
    fn callgrind_totals_are_read() {
        let text = "version: 1\ncmd: x\nevents: Ir\nsummary: 999\nfn=f\n0 5\ntotals: 1234\n";
        assert_eq!(callgrind_total(text), Some(1234));
        assert_eq!(callgrind_total("summary: 77\n"), Some(77));
        assert_eq!(callgrind_total("events: Ir\n"), None);
    }

    #[test]
    fn verdicts() {
        let b = base(&[("a", 1000), ("b", 1234), ("c", 1000), ("gone", 5)]);
        let m = counts(&[("a", 1050), ("b", 1400), ("c", 900), ("new", 7)]);
        let r = compare(&b, &m, "rustc 1.95.0", "valgrind-3.19.0", 5.0);
        assert_eq!(r.problems, 3);
        let text = r.lines.join("\n");
        assert!(text.contains("ok a"), "{text}");
        assert!(
            text.contains("REGRESSION b: 1234 -> 1400 instructions (+13.5%, limit 5%)"),
            "{text}"
        );
        assert!(
            text.contains("IMPROVED c: 1000 -> 900 instructions (-10.0%)"),
            "{text}"
        );
        assert!(text.contains("NEW new: 7 instructions"), "{text}");
        assert!(text.contains("GONE gone"), "{text}");
        assert!(!text.contains("WARNING"), "{text}");

        let ok = compare(
            &b,
            &counts(&[("a", 1049), ("b", 1234), ("c", 1000), ("gone", 5)]),
            "rustc 1.96.0",
            "valgrind-3.19.0",
            5.0,
        );
        assert_eq!(ok.problems, 0, "{:?}", ok.lines);
        assert!(ok.lines[0].starts_with("WARNING baseline was recorded with `rustc 1.95.0`"));
    }
}
