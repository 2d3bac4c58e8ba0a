//! The parent process: starts the workers, runs a scenario's phases, drives the publisher,
//! prints the live progress line and assembles the report.
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::opts::Opts;
use crate::publish::{self, Job, Live, Timing};
use crate::report::{
    log_bins, merge_failures, new_hist, Latency, Phase, ProcUse, Progress, Report, Restart, Second,
    Series, WorkerReport,
};
use crate::seqs::expected_on_channel;
use crate::stalls;
use crate::worker::{raise_nofile, WorkerSpec};
use crate::{now_us, proc};

/// One worker process as the parent sees it.
struct Worker {
    /// The process (killed by PID on drop if it did not quit).
    child: Child,
    /// Its command pipe.
    stdin: Option<ChildStdin>,
    /// Its latest progress.
    progress: Progress,
    /// Every stream attempted.
    opened: bool,
    /// Its answer to the last `report`.
    report: Option<WorkerReport>,
    /// Its stdout is still open.
    alive: bool,
}

/// The worker processes of a run.
struct Workers {
    /// In stream order.
    procs: Vec<Worker>,
    /// Lines from every worker's stdout (`None`: that worker's stdout closed).
    rx: mpsc::Receiver<(usize, Option<String>)>,
    /// The live progress line.
    line: ProgressLine,
    /// When the workers were started (unix microseconds).
    start_us: u64,
    /// The per-second series, fed by the workers' `S` lines.
    series: Series,
    /// When the storm dropped every stream (unix microseconds).
    storm_us: Option<u64>,
}

impl Workers {
    fn spawn(o: &Opts) -> Result<Workers, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let mut procs = Vec::new();
        for id in 0..o.workers() {
            let first = id * o.per_worker;
            let spec = WorkerSpec {
                opts: o.clone(),
                first,
                count: o.per_worker.min(o.streams - first),
                id,
            };
            let json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
            let mut child = Command::new(&exe)
                .arg("worker")
                .arg(json)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("spawn worker: {e}"))?;
            let stdout = child.stdout.take().expect("piped stdout");
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send((id, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((id, None));
            });
            procs.push(Worker {
                stdin: child.stdin.take(),
                child,
                progress: Progress::default(),
                opened: false,
                report: None,
                alive: true,
            });
        }
        Ok(Workers {
            procs,
            rx,
            line: ProgressLine::new(o),
            start_us: now_us(),
            series: Series::new(now_us()),
            storm_us: None,
        })
    }

    fn send_all(&mut self, cmd: &str) {
        for w in &mut self.procs {
            if let Some(s) = w.stdin.as_mut() {
                let _ = writeln!(s, "{cmd}");
                let _ = s.flush();
            }
        }
    }

    /// Handles worker lines for `d`, refreshing the progress line.
    fn pump(&mut self, d: Duration, sent: Option<u64>) {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok((id, Some(line))) => self.handle(id, &line),
                Ok((id, None)) => self.procs[id].alive = false,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left);
                    break;
                }
            }
        }
        let total = self.total();
        self.line.show(&total, self.procs.len(), sent);
    }

    fn handle(&mut self, id: usize, line: &str) {
        let w = &mut self.procs[id];
        if let Some(p) = line.strip_prefix("P ") {
            if let Ok(p) = serde_json::from_str(p) {
                w.progress = p;
            }
        } else if let Some(sec) = line.strip_prefix("S ") {
            if let Ok(sec) = serde_json::from_str::<Second>(sec) {
                self.series.add(&sec);
            }
        } else if line == "O" {
            w.opened = true;
        } else if let Some(r) = line.strip_prefix("R ") {
            match serde_json::from_str::<WorkerReport>(r) {
                Ok(r) => {
                    w.progress = r.progress;
                    w.report = Some(r);
                }
                Err(e) => eprintln!("loadgen: worker {id} report unreadable: {e}"),
            }
        }
    }

    fn total(&self) -> Progress {
        let mut t = Progress::default();
        for w in &self.procs {
            let p = &w.progress;
            t.open += p.open;
            t.ok += p.ok;
            t.failed += p.failed;
            t.received += p.received;
            t.duplicated += p.duplicated;
            t.closed += p.closed;
            t.p99_us = t.p99_us.max(p.p99_us);
            t.resets += p.resets;
            t.all_open_us = t.all_open_us.max(p.all_open_us);
        }
        t
    }

    /// Pumps until `done` or `timeout`; whether `done` held.
    fn wait(
        &mut self,
        timeout: Duration,
        sent: Option<u64>,
        done: impl Fn(&Workers) -> bool,
    ) -> bool {
        let end = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() >= end || self.procs.iter().all(|w| !w.alive) {
                return false;
            }
            self.pump(Duration::from_millis(100), sent);
        }
        true
    }

    /// Asks every worker for a report of `sent` events and waits (at most 20 s) for them.
    fn reports(&mut self, sent: u64) -> Vec<WorkerReport> {
        for w in &mut self.procs {
            w.report = None;
        }
        self.send_all(&format!("report {sent}"));
        self.wait(Duration::from_secs(20), None, |ws| {
            ws.procs.iter().all(|w| w.report.is_some() || !w.alive)
        });
        self.procs.iter().filter_map(|w| w.report.clone()).collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.send_all("quit");
        for w in &mut self.procs {
            w.stdin = None;
        }
        let end = Instant::now() + Duration::from_secs(3);
        for w in &mut self.procs {
            while Instant::now() < end {
                if let Ok(Some(_)) = w.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = w.child.try_wait() {
                let _ = w.child.kill();
            }
            let _ = w.child.wait();
        }
    }
}

/// The live progress line on stderr: rewritten in place on a terminal, a line every 5 s
/// otherwise (logs).
struct ProgressLine {
    /// When the run started.
    start: Instant,
    /// Last time shown.
    last: Instant,
    /// Received count then, for the rate.
    last_received: u64,
    /// Streams asked for.
    streams: usize,
    /// stderr is a terminal.
    tty: bool,
    /// `--quiet`.
    quiet: bool,
}

impl ProgressLine {
    fn new(o: &Opts) -> ProgressLine {
        ProgressLine {
            start: Instant::now(),
            last: Instant::now(),
            last_received: 0,
            streams: o.streams,
            tty: std::io::stderr().is_terminal(),
            quiet: o.quiet,
        }
    }

    fn show(&mut self, t: &Progress, workers: usize, sent: Option<u64>) {
        let every = if self.tty { 500 } else { 5000 };
        let dt = self.last.elapsed();
        if self.quiet || dt < Duration::from_millis(every) {
            return;
        }
        let rate = t.received.saturating_sub(self.last_received) as f64 / dt.as_secs_f64();
        self.last = Instant::now();
        self.last_received = t.received;
        let line = format!(
            "[{:>6.1}s] streams {}/{} open ({} workers)  failed {}  closed {}  events {:.0}/s{}  p99<= {:.2} ms  dup {}",
            self.start.elapsed().as_secs_f64(),
            t.open,
            self.streams,
            workers,
            t.failed,
            t.closed,
            rate,
            sent.map(|s| format!(" (published {s})")).unwrap_or_default(),
            t.p99_us as f64 / 1000.0,
            t.duplicated
        );
        let mut e = std::io::stderr().lock();
        if self.tty {
            let _ = write!(e, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
    }

    fn done(&self) {
        if self.tty && !self.quiet {
            eprintln!();
        }
    }
}

/// A process under test: baseline figures taken before the streams opened.
struct Watched {
    /// Its PID.
    pid: u32,
    /// CPU seconds before the run.
    cpu0: f64,
    /// PSS before the streams opened.
    pss0: u64,
    /// PSS once they were open.
    pss_open: u64,
}

fn watch(pids: &[u32]) -> Vec<Watched> {
    pids.iter()
        .map(|&pid| Watched {
            pid,
            cpu0: proc::cpu_seconds(pid).unwrap_or(0.0),
            pss0: proc::pss_bytes(pid).unwrap_or(0),
            pss_open: 0,
        })
        .collect()
}

fn cpu_now(w: &[Watched]) -> Vec<f64> {
    w.iter()
        .map(|w| proc::cpu_seconds(w.pid).unwrap_or(0.0))
        .collect()
}

/// Cumulative figures of the phases so far, to turn workers' whole-run counts into a
/// phase's.
#[derive(Default)]
struct Cumulative {
    /// Deliveries expected so far.
    expected: u64,
    /// Lost so far.
    lost: u64,
    /// Duplicated so far.
    duplicated: u64,
    /// Unexpected so far.
    unexpected: u64,
}

/// Runs the scenario; returns the exit code (0: pass).
pub fn run(o: Opts) -> i32 {
    raise_nofile();
    let mut watched = watch(&o.pids);
    let overflows0 = proc::listen_overflows().unwrap_or(0);
    let run_start = Instant::now();
    let run_start_us = now_us();
    let mut ws = match Workers::spawn(&o) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let all_open = ws.wait(Duration::from_secs_f64(o.timeout), None, |ws| {
        ws.procs.iter().all(|w| w.opened)
    });
    let connect_seconds = run_start.elapsed().as_secs_f64();
    // Let the servers settle (freed request buffers, handed-off sockets) before measuring.
    ws.pump(Duration::from_secs(1), None);
    let open_now = ws.total().open.max(1);
    for w in &mut watched {
        w.pss_open = proc::pss_bytes(w.pid).unwrap_or(0);
    }
    let mut rep = Report {
        scenario: o.scenario.clone(),
        streams: o.streams as u64,
        players: o.players as u64,
        workers: o.workers() as u64,
        sources: o.source_count() as u64,
        urls: o.urls.clone(),
        publish: o.publish.clone(),
        connect_seconds,
        ..Report::default()
    };
    let mut cum = Cumulative::default();
    let mut ok = all_open;
    let mut last_reports = Vec::new();
    match o.scenario.as_str() {
        "idle" => {
            ws.pump(Duration::from_secs_f64(o.hold), None);
            for w in &mut watched {
                w.pss_open = proc::pss_bytes(w.pid).unwrap_or(0);
            }
            last_reports = ws.reports(0);
        }
        "deploy" => {
            let job = Job {
                first: 0,
                count: (o.rate * o.duration).round() as u64,
                timing: Timing::Paced { rate: o.rate },
                start_us: 0,
            };
            let mut d = Deploy::new(&o);
            match phase(&mut ws, &o, job, None, Some(&mut d), &watched, &mut cum) {
                Ok((mut p, reports)) => {
                    // Events published while a stream moved wait for its reconnect: the
                    // verdict is on loss, duplicates, resets and every stream coming back.
                    p.pass = delivered_all(&p) && p.resets == 0;
                    ok &= p.pass && d.complete(o.urls.len());
                    rep.phases.push(p);
                    last_reports = reports;
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ok = false;
                }
            }
            rep.restarts = d.done;
        }
        "steady" | "storm" => {
            let count = (o.rate * o.duration).round() as u64;
            let storm_at = (o.scenario == "storm").then(|| o.storm_time());
            let job = Job {
                first: 0,
                count,
                timing: Timing::Paced { rate: o.rate },
                start_us: 0,
            };
            match phase(&mut ws, &o, job, storm_at, None, &watched, &mut cum) {
                Ok((mut p, reports)) => {
                    if storm_at.is_some() {
                        // Events published while the streams were down wait for the
                        // reconnect: the storm's verdict is on loss, duplicates and the
                        // reconnect time, not on the latency target.
                        p.pass = delivered_all(&p);
                    }
                    ok &= p.pass;
                    rep.phases.push(p);
                    if storm_at.is_some() {
                        rep.storm_reconnect_s = storm_time(&reports);
                        ok &= rep.storm_reconnect_s.is_some();
                    }
                    last_reports = reports;
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ok = false;
                }
            }
        }
        "broadcast" => {
            let per_round = o.players as u64;
            let job = Job {
                first: 0,
                count: per_round * o.rounds,
                timing: Timing::Rounds {
                    per_round,
                    interval_us: o.interval_ms * 1000,
                },
                start_us: 0,
            };
            match phase(&mut ws, &o, job, None, None, &watched, &mut cum) {
                Ok((mut p, reports)) => {
                    p.rate = per_round as f64 * 1000.0 / o.interval_ms.max(1) as f64;
                    // A broadcast's figure is the time to the last stream, reported per
                    // round; the verdict is on delivery to every stream.
                    p.pass = delivered_all(&p);
                    ok &= p.pass;
                    rep.phases.push(p);
                    last_reports = reports;
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ok = false;
                }
            }
        }
        "plan" => {
            let mut rate = o.rate;
            let mut first = 0;
            for step in 0..o.plan_steps {
                let count = (rate * o.duration).round() as u64;
                let job = Job {
                    first,
                    count,
                    timing: Timing::Paced { rate },
                    start_us: 0,
                };
                first += count;
                let (p, reports) = match phase(&mut ws, &o, job, None, None, &watched, &mut cum) {
                    Ok(x) => x,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ok = false;
                        break;
                    }
                };
                let held = p.pass && p.achieved_rate >= 0.95 * rate;
                eprintln!(
                    "plan step {}: {:.0} events/s -> p99 {:.2} ms, lost {}, dup {}: {}",
                    step + 1,
                    rate,
                    p.latency.p99_ms,
                    p.lost,
                    p.duplicated,
                    if held { "held" } else { "broke" }
                );
                rep.phases.push(p);
                last_reports = reports;
                if !held {
                    break;
                }
                rep.plan_knee_rate = Some(rate);
                rate *= o.plan_step;
                ws.pump(Duration::from_secs(1), None);
            }
            ok &= rep.plan_knee_rate.is_some();
        }
        _ => unreachable!("validated scenario"),
    }
    if last_reports.is_empty() {
        // A phase failed before its reports: ask now, for the streams' figures.
        last_reports = ws.reports(0);
    }
    ws.line.done();
    let total = ws.total();
    rep.connects_ok = total.ok;
    rep.connects_failed = total.failed;
    rep.closed_by_server = total.closed;
    rep.listen_overflows = proc::listen_overflows()
        .unwrap_or(0)
        .saturating_sub(overflows0);
    let secs = run_start.elapsed().as_secs_f64();
    rep.procs = watched
        .iter()
        .map(|w| {
            let cpu = proc::cpu_seconds(w.pid).unwrap_or(w.cpu0) - w.cpu0;
            ProcUse {
                pid: w.pid,
                name: proc::name(w.pid),
                cpu_s: cpu,
                cpu_pct: cpu / secs * 100.0,
                peak_rss: proc::peak_rss_bytes(w.pid).unwrap_or(0),
                pss_open: w.pss_open,
                bytes_per_stream: w.pss_open.saturating_sub(w.pss0) as f64 / open_now as f64,
            }
        })
        .collect();
    rep.bytes_per_stream_total = rep.procs.iter().map(|p| p.bytes_per_stream).sum();
    rep.cpu_s_total = rep.procs.iter().map(|p| p.cpu_s).sum();
    let me = std::process::id();
    let my_cpu = proc::cpu_seconds(me).unwrap_or(0.0);
    rep.loadgen.push(ProcUse {
        pid: me,
        name: "loadgen".into(),
        cpu_s: my_cpu,
        cpu_pct: my_cpu / secs * 100.0,
        peak_rss: proc::peak_rss_bytes(me).unwrap_or(0),
        ..ProcUse::default()
    });
    for (w, r) in ws.procs.iter().zip(last_reports.iter()) {
        rep.loadgen.push(ProcUse {
            pid: w.child.id(),
            name: "worker".into(),
            cpu_s: r.cpu_s,
            cpu_pct: r.cpu_s / secs * 100.0,
            peak_rss: r.peak_rss,
            ..ProcUse::default()
        });
    }
    for r in &last_reports {
        rep.streams_opened += r.opened_once;
        merge_failures(&mut rep.failures, &r.failures);
        if let Some(t) = r.last_first_open_us {
            let s = t.saturating_sub(run_start_us) as f64 / 1e6;
            rep.last_open_s = Some(rep.last_open_s.map_or(s, |m: f64| m.max(s)));
        }
    }
    // Streams never attempted (the connect phase timed out first) never opened either.
    rep.streams_never_opened = rep.streams.saturating_sub(rep.streams_opened);
    rep.pass = ok && rep.connects_failed == 0 && rep.failures.is_empty();
    rep.target_p99_ms = o.target_p99_ms;
    rep.storm_at_s = ws
        .storm_us
        .map(|t| t.saturating_sub(ws.start_us) as f64 / 1e6);
    rep.series = std::mem::take(&mut ws.series).finish();
    drop(ws);
    print!("{}", rep.render());
    if o.scenario == "idle" && watched.len() == 1 {
        // The line docs/BENCHMARKS.md quotes for memory per idle stream.
        let w = &watched[0];
        println!(
            "server PSS {:.1} MiB -> {:.1} MiB: {:.0} bytes per idle stream ({} streams)",
            w.pss0 as f64 / 1048576.0,
            w.pss_open as f64 / 1048576.0,
            rep.procs[0].bytes_per_stream,
            open_now
        );
    }
    if let Some(path) = &o.json {
        let json = serde_json::to_string_pretty(&rep).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("error: writing {path}: {e}");
            return 1;
        }
    }
    if let Some(path) = &o.html {
        if let Err(e) = std::fs::write(path, crate::html::render(&rep)) {
            eprintln!("error: writing {path}: {e}");
            return 1;
        }
    }
    i32::from(!rep.pass)
}

/// Every event reached every stream once, whatever the latency.
fn delivered_all(p: &Phase) -> bool {
    p.lost == 0 && p.duplicated == 0 && p.unexpected == 0 && p.publish_errors == 0 && p.received > 0
}

fn storm_time(reports: &[WorkerReport]) -> Option<f64> {
    let mut worst: f64 = 0.0;
    for r in reports {
        worst = worst.max(r.storm_reconnect_ms?);
    }
    Some(worst / 1000.0)
}

/// Streams × events of their channel, for events `from..to`.
fn expected_deliveries(o: &Opts, from: u64, to: u64) -> u64 {
    let p = o.players as u64;
    (0..o.streams as u64)
        .map(|i| expected_on_channel(i % p, p, to) - expected_on_channel(i % p, p, from))
        .sum()
}

/// A restart in progress.
struct Running {
    /// The node.
    node: usize,
    /// The restart command (`sh -c`), a child of loadgen.
    child: Child,
    /// When it started, unix microseconds.
    started_us: u64,
    /// When it exited, and whether with 0.
    exited: Option<(u64, bool)>,
    /// The counters when it started: closed, failed attempts, resets.
    at_start: (u64, u64, u64),
}

/// A rolling deploy: restarts the nodes one at a time while the phase publishes, each once
/// every stream is back from the one before (and `gap` has passed), then lowers the
/// publisher's end to `tail` after the last.
///
/// Why loadgen runs the restart command rather than only watching: it knows when each
/// restart began, so "time until every stream is back" is measured from the SIGTERM, and it
/// starts the next node only once the streams are back, as a careful deploy does.
struct Deploy {
    /// The restart command template (`{node}`).
    cmd: String,
    /// Nodes (stream URLs).
    urls: Vec<String>,
    /// Seconds into publishing of the first restart.
    first_s: f64,
    /// Wait between one node's streams back and the next restart.
    gap: Duration,
    /// Publishing after the last node.
    tail: Duration,
    /// Most time to wait for the streams after a restart command ended.
    back_timeout: Duration,
    /// Streams asked for: "all back" is this many open.
    streams: u64,
    /// Next node to restart.
    next: usize,
    /// Not before this (unix microseconds; 0: `first_s` into publishing).
    not_before_us: u64,
    /// The restart in progress.
    running: Option<Running>,
    /// Restarts done.
    done: Vec<Restart>,
    /// Every node restarted and the publisher's end set.
    finished: bool,
}

impl Deploy {
    fn new(o: &Opts) -> Deploy {
        Deploy {
            cmd: o.restart_cmd.clone(),
            urls: o.urls.clone(),
            first_s: o.deploy_time(),
            gap: Duration::from_secs_f64(o.deploy_gap.max(0.0)),
            tail: Duration::from_secs_f64(o.deploy_tail.max(0.0)),
            back_timeout: Duration::from_secs_f64(o.back_timeout.max(0.0)),
            streams: o.streams as u64,
            next: 0,
            not_before_us: 0,
            running: None,
            done: Vec::new(),
            finished: false,
        }
    }

    /// Every node was restarted and its streams came back.
    fn complete(&self, nodes: usize) -> bool {
        self.done.len() == nodes && self.done.iter().all(|r| r.command_ok && r.back_s.is_some())
    }

    /// Moves the deploy on: called every 50 ms while the phase publishes.
    fn step(&mut self, ws: &Workers, job: &Job, live: &Live) {
        if self.finished {
            return;
        }
        let now = now_us();
        let t = ws.total();
        if let Some(r) = &mut self.running {
            if r.exited.is_none() {
                match r.child.try_wait() {
                    Ok(Some(status)) => r.exited = Some((now, status.success())),
                    Ok(None) => return,
                    Err(e) => {
                        eprintln!("loadgen: restart command of node {}: {e}", r.node);
                        r.exited = Some((now, false));
                    }
                }
            }
            let Some((exited_us, command_ok)) = r.exited else {
                return;
            };
            let back = t.open >= self.streams;
            let gave_up =
                !back && now.saturating_sub(exited_us) >= self.back_timeout.as_micros() as u64;
            if !back && !gave_up {
                return;
            }
            let back_s = back.then(|| t.all_open_us.max(r.started_us) - r.started_us);
            let (closed0, failed0, resets0) = r.at_start;
            let restart = Restart {
                node: r.node,
                url: self.urls[r.node].clone(),
                at_s: r.started_us.saturating_sub(ws.start_us) as f64 / 1e6,
                restart_s: exited_us.saturating_sub(r.started_us) as f64 / 1e6,
                command_ok,
                back_s: back_s.map(|us| us as f64 / 1e6),
                closed: t.closed.saturating_sub(closed0),
                failed: t.failed.saturating_sub(failed0),
                resets: t.resets.saturating_sub(resets0),
            };
            eprintln!(
                "\nloadgen: deploy: node {} restarted in {:.1} s; {}",
                restart.node,
                restart.restart_s,
                restart.back_s.map_or_else(
                    || format!("streams not all back within {:?}", self.back_timeout),
                    |b| format!("every stream back {b:.2} s after its SIGTERM")
                )
            );
            self.done.push(restart);
            self.running = None;
            self.not_before_us = now + self.gap.as_micros() as u64;
        }
        if self.next == self.urls.len() {
            // The last node is back: publish `tail` more, then end every lane at one event.
            let end_us = now + self.tail.as_micros() as u64;
            let rate = match job.timing {
                Timing::Paced { rate } => rate,
                Timing::Rounds { .. } => 0.0,
            };
            let n = (end_us.saturating_sub(job.start_us) as f64 * rate / 1e6).ceil() as u64;
            live.end.store(
                (job.first + n).max(job.first + 1),
                std::sync::atomic::Ordering::Relaxed,
            );
            self.finished = true;
            return;
        }
        let first_us = job.start_us + (self.first_s * 1e6) as u64;
        if now < first_us.max(self.not_before_us) {
            return;
        }
        let node = self.next;
        self.next += 1;
        let cmd = self.cmd.replace("{node}", &node.to_string());
        eprintln!("\nloadgen: deploy: restarting node {node}: {cmd}");
        let child = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn();
        match child {
            Ok(child) => {
                self.running = Some(Running {
                    node,
                    child,
                    started_us: now,
                    exited: None,
                    at_start: (t.closed, t.failed, t.resets),
                })
            }
            Err(e) => {
                eprintln!("loadgen: deploy: cannot run the restart command: {e}");
                self.done.push(Restart {
                    node,
                    url: self.urls[node].clone(),
                    ..Restart::default()
                });
            }
        }
    }

    /// The phase ended (the publisher reached its end or `--duration`): waits at most
    /// `back_timeout` for a restart still running, then kills that command (by its PID).
    fn finish(&mut self) {
        if let Some(mut r) = self.running.take() {
            let end = Instant::now() + self.back_timeout;
            while Instant::now() < end {
                if let Ok(Some(_)) = r.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = r.child.try_wait() {
                let _ = r.child.kill();
            }
            let _ = r.child.wait();
            eprintln!(
                "loadgen: deploy: publishing (--duration) ended during node {}'s restart",
                r.node
            );
            self.done.push(Restart {
                node: r.node,
                url: self.urls[r.node].clone(),
                ..Restart::default()
            });
        }
    }
}

/// One publishing phase: publish `job`, storm or deploy if asked, drain, collect and merge
/// reports.
fn phase(
    ws: &mut Workers,
    o: &Opts,
    mut job: Job,
    storm_at: Option<f64>,
    mut deploy: Option<&mut Deploy>,
    watched: &[Watched],
    cum: &mut Cumulative,
) -> Result<(Phase, Vec<WorkerReport>), String> {
    ws.send_all("phase");
    ws.pump(Duration::from_millis(100), None);
    let cpu0 = cpu_now(watched);
    let meter = stalls::Meter::start();
    let live = Arc::new(Live::default());
    job.start_us = now_us() + 100_000;
    let started = Instant::now();
    let start_s = job.start_us.saturating_sub(ws.start_us) as f64 / 1e6;
    let handle = publish::spawn(o, job, live.clone())?;
    let mut stormed = false;
    while !handle.is_finished() {
        let sent = live.sent.load(std::sync::atomic::Ordering::Relaxed);
        ws.pump(Duration::from_millis(50), Some(sent));
        if let Some(at) = storm_at {
            if !stormed && now_us() >= job.start_us + (at * 1e6) as u64 {
                stormed = true;
                eprintln!("\nloadgen: storm: dropping every stream");
                ws.send_all("storm");
                ws.storm_us = Some(now_us());
            }
        }
        if let Some(d) = deploy.as_deref_mut() {
            d.step(ws, &job, &live);
        }
    }
    if let Some(d) = deploy {
        d.finish();
    }
    let out = handle
        .join()
        .map_err(|_| "publisher panicked".to_string())?;
    let pub_secs = started.elapsed().as_secs_f64();
    let end_k = live.end_of(&job);
    let want = expected_deliveries(o, job.first, end_k);
    ws.wait(Duration::from_secs_f64(o.drain), Some(out.sent), |ws| {
        ws.total().received >= want
    });
    let secs = started.elapsed().as_secs_f64();
    let cpu1 = cpu_now(watched);
    let stalls = meter.stop();
    let reports = ws.reports(end_k);
    let mut hist = new_hist();
    let mut p = Phase {
        rate: match job.timing {
            Timing::Paced { rate } => rate,
            Timing::Rounds { .. } => 0.0,
        },
        achieved_rate: out.sent as f64 / out.seconds.max(1e-3),
        seconds: pub_secs,
        sent: out.sent,
        publish_errors: out.errors,
        publish_moved: out.moved,
        publish_lag_max_ms: out.lag_max_us as f64 / 1000.0,
        redis_receivers_min: out.receivers_min,
        stalls,
        ..Phase::default()
    };
    let mut expected = 0;
    let (mut lost, mut dup, mut unexpected, mut resets) = (0, 0, 0, 0);
    let mut rounds: Vec<u64> = Vec::new();
    for r in &reports {
        for &(v, c) in &r.hist {
            let _ = hist.record_n(v, c);
        }
        expected += r.expected;
        lost += r.lost;
        dup += r.progress.duplicated;
        unexpected += r.unexpected;
        resets += r.progress.resets;
        p.received += r.progress.received;
        if r.round_max_us.len() > rounds.len() {
            rounds.resize(r.round_max_us.len(), 0);
        }
        for (i, v) in r.round_max_us.iter().enumerate() {
            rounds[i] = rounds[i].max(*v);
        }
    }
    if reports.len() < ws.procs.len() {
        eprintln!(
            "loadgen: {} of {} workers reported",
            reports.len(),
            ws.procs.len()
        );
    }
    p.expected = expected.saturating_sub(cum.expected);
    p.lost = lost.saturating_sub(cum.lost);
    p.duplicated = dup.saturating_sub(cum.duplicated);
    p.unexpected = unexpected.saturating_sub(cum.unexpected);
    p.resets = resets;
    *cum = Cumulative {
        expected,
        lost,
        duplicated: dup,
        unexpected,
    };
    p.latency = Latency::of(&hist);
    p.histogram = log_bins(&hist);
    p.start_s = start_s;
    p.round_last_ms = rounds.iter().map(|v| *v as f64 / 1000.0).collect();
    p.procs = watched
        .iter()
        .zip(cpu0.iter().zip(cpu1.iter()))
        .map(|(w, (a, b))| ProcUse {
            pid: w.pid,
            name: proc::name(w.pid),
            cpu_s: b - a,
            cpu_pct: (b - a) / secs * 100.0,
            ..ProcUse::default()
        })
        .collect();
    p.pass = p.lost == 0
        && p.duplicated == 0
        && p.unexpected == 0
        && p.publish_errors == 0
        && p.received > 0
        && p.latency.p99_ms <= o.target_p99_ms
        && reports.len() == ws.procs.len();
    Ok((p, reports))
}
