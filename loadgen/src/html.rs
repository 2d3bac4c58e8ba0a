//! `--html FILE`: the run's report as one self-contained HTML page with plots, drawn here as
//! inline SVG. No script, no font, no stylesheet or image from anywhere else (a
//! `Content-Security-Policy` of `default-src 'none'` says so to the browser), so the file can
//! be mailed, attached to a ticket or opened years later as it is.
//!
//! Why SVG written by loadgen rather than a charting library in the page: the report must not
//! depend on a CDN, and embedding a library would add 100+ KiB of script to every report for
//! four line charts. The page is pure (a function of the [`Report`]), and every text from the
//! run (URLs, failure reasons carrying a server's body) is escaped.
use std::fmt::Write;

use crate::report::Report;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Plot size in SVG units (the page scales it to its width).
const W: f64 = 760.0;
const H: f64 = 300.0;
/// Margins: room for tick labels and axis titles.
const ML: f64 = 70.0;
const MR: f64 = 20.0;
const MT: f64 = 30.0;
const MB: f64 = 46.0;

/// Line colours, by series order (distinguishable in print and for most colour vision).
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// One line of a chart.
struct Line {
    /// Legend text.
    name: String,
    /// Points, x ascending.
    points: Vec<(f64, f64)>,
    /// Dashed (a bound or secondary figure).
    dashed: bool,
}

/// A vertical or horizontal marker line with a label.
struct Rule {
    /// Where, in data units.
    at: f64,
    /// Its label.
    label: String,
}

/// A marked point (the plan's knee).
struct Mark {
    /// Data coordinates.
    x: f64,
    y: f64,
    /// Label next to it.
    label: String,
    /// CSS class (`knee`), so tests and readers find it.
    class: &'static str,
}

/// What to draw in one chart.
struct Chart {
    /// `id` of the figure.
    id: &'static str,
    /// Caption.
    title: String,
    /// Axis titles.
    x_label: &'static str,
    y_label: &'static str,
    /// Logarithmic axes (latency spans decades).
    x_log: bool,
    y_log: bool,
    /// Start the linear y axis at zero.
    y_zero: bool,
    lines: Vec<Line>,
    vrules: Vec<Rule>,
    hrules: Vec<Rule>,
    marks: Vec<Mark>,
}

/// A linear or log axis mapping data to pixels.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    /// Pixel range (may be descending for y).
    p0: f64,
    p1: f64,
}

impl Axis {
    fn new(mut lo: f64, mut hi: f64, log: bool, zero: bool, p0: f64, p1: f64) -> Axis {
        if log {
            lo = 10f64.powf(lo.max(1e-9).log10().floor());
            hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
        } else {
            if zero {
                lo = lo.min(0.0);
            }
            if hi - lo < 1e-9 {
                hi = lo + 1.0;
            }
            let step = nice_step(hi - lo);
            lo = (lo / step).floor() * step;
            hi = (hi / step).ceil() * step;
        }
        Axis {
            lo,
            hi,
            log,
            p0,
            p1,
        }
    }

    fn px(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.p0 + f.clamp(0.0, 1.0) * (self.p1 - self.p0)
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (self.lo.log10() as i32, self.hi.log10() as i32);
            let mut t = Vec::new();
            for e in a..=b {
                let d = 10f64.powi(e);
                t.push(d);
                if b - a <= 2 && e < b {
                    t.push(2.0 * d);
                    t.push(5.0 * d);
                }
            }
            t
        } else {
            let step = nice_step(self.hi - self.lo);
            let n = ((self.hi - self.lo) / step).round() as i64;
            (0..=n).map(|k| self.lo + k as f64 * step).collect()
        }
    }
}

/// A tick step of 1, 2 or 5 times a power of ten giving about five ticks.
fn nice_step(range: f64) -> f64 {
    let raw = range / 5.0;
    let p = 10f64.powf(raw.log10().floor());
    let f = raw / p;
    p * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// A number as a tick label: thousands separated, few digits.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", a);
        let mut o = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                o.push(',');
            }
            o.push(c);
        }
        if v < 0.0 {
            o.insert(0, '-');
        }
        o
    } else if a >= 10.0 || a == 0.0 || (a - a.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

fn render_chart(c: &Chart) -> String {
    let mut s = String::new();
    let pts = || c.lines.iter().flat_map(|l| l.points.iter());
    let finite = |v: &f64| v.is_finite() && (*v > 0.0 || !c.y_log);
    let xs: Vec<f64> = pts()
        .map(|p| p.0)
        .chain(c.vrules.iter().map(|r| r.at))
        .filter(|v| v.is_finite() && (*v > 0.0 || !c.x_log))
        .collect();
    let ys: Vec<f64> = pts()
        .map(|p| p.1)
        .chain(c.hrules.iter().map(|r| r.at))
        .filter(finite)
        .collect();
    let _ = writeln!(
        s,
        "<figure id=\"{}\"><figcaption>{}</figcaption>",
        c.id,
        esc(&c.title)
    );
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        esc(&c.title)
    );
    if xs.is_empty() || ys.is_empty() {
        let _ = writeln!(
            s,
            "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data in this run</text></svg></figure>",
            W / 2.0,
            H / 2.0
        );
        return s;
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let x = Axis::new(min(&xs), max(&xs), c.x_log, !c.x_log, ML, W - MR);
    let y = Axis::new(min(&ys), max(&ys), c.y_log, c.y_zero, H - MB, MT);
    // Grid and ticks.
    let _ = writeln!(s, "<g class=\"grid\">");
    for t in y.ticks() {
        let py = y.px(t);
        let _ = writeln!(
            s,
            "<line x1=\"{ML}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - MR,
            ML - 6.0,
            py + 4.0,
            num(t)
        );
    }
    for t in x.ticks() {
        let px = x.px(t);
        let _ = writeln!(
            s,
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{MT}\" y2=\"{}\"/><text class=\"tick\" x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            H - MB,
            H - MB + 16.0,
            num(t)
        );
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(
        s,
        "<rect class=\"frame\" x=\"{ML}\" y=\"{MT}\" width=\"{}\" height=\"{}\"/>",
        W - ML - MR,
        H - MT - MB
    );
    let _ = writeln!(
        s,
        "<text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        (ML + W - MR) / 2.0,
        H - 8.0,
        esc(c.x_label)
    );
    let _ = writeln!(
        s,
        "<text class=\"axis-label\" transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (MT + H - MB) / 2.0,
        esc(c.y_label)
    );
    for r in &c.vrules {
        let px = x.px(r.at);
        let _ = writeln!(
            s,
            "<line class=\"rule\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{MT}\" y2=\"{}\"/><text class=\"rule-label\" x=\"{:.1}\" y=\"{}\">{}</text>",
            H - MB,
            px + 3.0,
            MT + 12.0,
            esc(&r.label)
        );
    }
    for r in &c.hrules {
        let py = y.px(r.at);
        let _ = writeln!(
            s,
            "<line class=\"rule\" x1=\"{ML}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/><text class=\"rule-label\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - MR,
            W - MR - 4.0,
            py - 4.0,
            esc(&r.label)
        );
    }
    let mut legend_x = ML;
    for (i, l) in c.lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut d = String::new();
        for &(px, py) in &l.points {
            if !px.is_finite() || !finite(&py) {
                continue;
            }
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if d.is_empty() { "M" } else { " L" },
                x.px(px),
                y.px(py)
            );
        }
        if d.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<path class=\"series\" d=\"{d}\" stroke=\"{colour}\"{}><title>{}</title></path>",
            if l.dashed {
                " stroke-dasharray=\"5 4\""
            } else {
                ""
            },
            esc(&l.name)
        );
        if l.points.len() <= 40 {
            for &(px, py) in l.points.iter().filter(|p| finite(&p.1)) {
                let _ = writeln!(
                    s,
                    "<circle class=\"dot\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{colour}\"/>",
                    x.px(px),
                    y.px(py)
                );
            }
        }
        // Legend, in a row above the frame (inside it would hide lines at the top).
        let lx = legend_x;
        legend_x += 40.0 + 6.5 * l.name.chars().count() as f64;
        let ly = 12.0;
        let _ = writeln!(
            s,
            "<g class=\"legend\"><line x1=\"{lx}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{colour}\"{}/><text x=\"{}\" y=\"{}\">{}</text></g>",
            lx + 22.0,
            if l.dashed { " stroke-dasharray=\"5 4\"" } else { "" },
            lx + 28.0,
            ly + 4.0,
            esc(&l.name)
        );
    }
    for m in &c.marks {
        let (px, py) = (x.px(m.x), y.px(m.y));
        // The label goes on the side with room.
        let (tx, anchor) = if px > W / 2.0 {
            (px - 10.0, "end")
        } else {
            (px + 10.0, "start")
        };
        let _ = writeln!(
            s,
            "<g class=\"{}\"><circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"7\"/><text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text></g>",
            m.class,
            py - 10.0,
            esc(&m.label)
        );
    }
    let _ = writeln!(s, "</svg></figure>");
    s
}

/// The charts this report has data for.
fn charts(r: &Report) -> Vec<Chart> {
    let t = |f: fn(&crate::report::Point) -> f64| -> Vec<(f64, f64)> {
        r.series.iter().map(|p| (p.t_s, f(p))).collect()
    };
    let with_events = |f: fn(&crate::report::Point) -> f64| -> Vec<(f64, f64)> {
        r.series
            .iter()
            .filter(|p| p.received > 0)
            .map(|p| (p.t_s, f(p)))
            .collect()
    };
    let mut vrules: Vec<Rule> = r
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| Rule {
            at: p.start_s,
            label: if r.phases.len() > 1 {
                format!("step {} ({}/s)", i + 1, num(p.rate))
            } else {
                "publishing".into()
            },
        })
        .collect();
    if let Some(s) = r.storm_at_s {
        vrules.push(Rule {
            at: s,
            label: "storm".into(),
        });
    }
    // A deploy: each node's SIGTERM, so the dips in streams open and the replays' latency
    // line up with the restart that caused them.
    for x in &r.restarts {
        vrules.push(Rule {
            at: x.at_s,
            label: format!("node {} restart", x.node),
        });
    }
    let target = || Rule {
        at: r.target_p99_ms,
        label: format!("target p99 {} ms", num(r.target_p99_ms)),
    };
    let mut out = vec![
        Chart {
            id: "latency-over-time",
            title: "Delivery latency per second (from the intended send time)".into(),
            x_label: "seconds since start",
            y_label: "latency, ms (log)",
            x_log: false,
            y_log: true,
            y_zero: false,
            lines: vec![
                Line {
                    name: "p50".into(),
                    points: with_events(|p| p.p50_ms),
                    dashed: false,
                },
                Line {
                    name: "p99".into(),
                    points: with_events(|p| p.p99_ms),
                    dashed: false,
                },
                Line {
                    name: "max".into(),
                    points: with_events(|p| p.max_ms),
                    dashed: true,
                },
            ],
            vrules: vrules
                .iter()
                .map(|v| Rule {
                    at: v.at,
                    label: v.label.clone(),
                })
                .collect(),
            hrules: if r.phases.is_empty() {
                Vec::new()
            } else {
                vec![target()]
            },
            marks: Vec::new(),
        },
        Chart {
            id: "latency-histogram",
            title: "Latency histogram (deliveries per bin, ten bins a decade)".into(),
            x_label: "latency, ms (log)",
            y_label: "deliveries",
            x_log: true,
            y_log: false,
            y_zero: true,
            lines: r
                .phases
                .iter()
                .enumerate()
                .map(|(i, p)| Line {
                    name: if r.phases.len() > 1 {
                        format!("step {}: {}/s", i + 1, num(p.rate))
                    } else {
                        "all deliveries".into()
                    },
                    points: p
                        .histogram
                        .iter()
                        .map(|b| (b.le_ms, b.count as f64))
                        .collect(),
                    dashed: false,
                })
                .collect(),
            vrules: Vec::new(),
            hrules: Vec::new(),
            marks: Vec::new(),
        },
        Chart {
            id: "streams-over-time",
            title: format!("Streams open per second (of {})", num(r.streams as f64)),
            x_label: "seconds since start",
            y_label: "streams open",
            x_log: false,
            y_log: false,
            y_zero: true,
            lines: vec![
                Line {
                    name: "open at the end of the second".into(),
                    points: t(|p| p.open as f64),
                    dashed: false,
                },
                Line {
                    name: "fewest open during the second".into(),
                    points: t(|p| p.open_min as f64),
                    dashed: true,
                },
            ],
            vrules,
            hrules: Vec::new(),
            marks: Vec::new(),
        },
        Chart {
            id: "events-over-time",
            title: "Deliveries received per second".into(),
            x_label: "seconds since start",
            y_label: "deliveries / s",
            x_log: false,
            y_log: false,
            y_zero: true,
            lines: vec![Line {
                name: "received (first time)".into(),
                points: t(|p| p.received as f64),
                dashed: false,
            }],
            vrules: Vec::new(),
            hrules: Vec::new(),
            marks: Vec::new(),
        },
    ];
    if r.scenario == "plan" {
        let points: Vec<(f64, f64)> = r
            .phases
            .iter()
            .map(|p| (p.rate, p.latency.p99_ms))
            .collect();
        let knee = r.plan_knee_rate.and_then(|k| {
            r.phases
                .iter()
                .find(|p| (p.rate - k).abs() < 1e-6)
                .map(|p| Mark {
                    x: p.rate,
                    y: p.latency.p99_ms,
                    label: format!("knee: {}/s", num(k)),
                    class: "knee",
                })
        });
        out.push(Chart {
            id: "plan-curve",
            title: "Plan: p99 latency by publish rate (the knee is the last step that held)".into(),
            x_label: "target rate, events/s",
            y_label: "p99 latency, ms (log)",
            x_log: false,
            y_log: true,
            y_zero: false,
            lines: vec![Line {
                name: "p99 per step".into(),
                points,
                dashed: false,
            }],
            vrules: Vec::new(),
            hrules: vec![target()],
            marks: knee.into_iter().collect(),
        });
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:820px;color:#222}
h1{font-size:1.3em}figure{margin:1.5em 0}figcaption{font-weight:600;margin-bottom:.3em}
svg{width:100%;height:auto;background:#fff}
.grid line{stroke:#e4e4e4}.tick{font-size:11px;fill:#555}.axis-label{font-size:12px;fill:#333}
.frame{fill:none;stroke:#999}.series{fill:none;stroke-width:1.8}
.rule{stroke:#888;stroke-dasharray:2 3}.rule-label{font-size:10px;fill:#666}
.legend text{font-size:11px}.legend line{stroke-width:2}
.knee circle{fill:none;stroke:#d62728;stroke-width:2.5}.knee text{font-size:12px;font-weight:600;fill:#d62728}
.empty{fill:#999}pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:12px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}
td.n{text-align:right}";

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let title = format!(
        "loadgen {}: {} streams, {}",
        r.scenario,
        r.streams,
        if r.pass { "PASS" } else { "FAIL" }
    );
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width\">\n<title>{}</title>\n<style>{STYLE}</style></head><body>",
        esc(&title)
    );
    let _ = writeln!(s, "<h1>{}</h1>", esc(&title));
    let _ = writeln!(
        s,
        "<p>Streams: {}. Publish: {}.</p>",
        esc(&r.urls.join(", ")),
        esc(&r.publish)
    );
    if !r.failures.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Why streams failed</h2><table id=\"failures\"><tr><th>streams</th><th>attempts</th><th>reason</th></tr>"
        );
        for f in &r.failures {
            let _ = writeln!(
                s,
                "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                f.streams,
                f.attempts,
                esc(&f.reason)
            );
        }
        let _ = writeln!(s, "</table>");
    }
    for c in charts(r) {
        s.push_str(&render_chart(&c));
    }
    let _ = writeln!(
        s,
        "<h2>Report</h2><pre id=\"summary\">{}</pre>",
        esc(r.render().trim())
    );
    let _ = writeln!(s, "</body></html>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Bin, Failure, Latency, Phase, Point};

    #[test]
    fn escapes_everything_from_the_run() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let r = Report {
            scenario: "steady".into(),
            urls: vec!["http://h/sse?<script>alert(1)</script>".into()],
            failures: vec![Failure {
                reason: "HTTP 401: <img src=x onerror=alert(1)>".into(),
                streams: 1,
                attempts: 1,
            }],
            ..Report::default()
        };
        let page = render(&r);
        assert!(
            !page.contains("<script") && !page.contains("<img"),
            "{page}"
        );
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }

    #[test]
    fn a_plan_marks_its_knee_and_charts_have_axes() {
        let phase = |rate: f64, p99: f64| Phase {
            rate,
            latency: Latency {
                p99_ms: p99,
                ..Latency::default()
            },
            histogram: vec![
                Bin {
                    le_ms: 0.1,
                    count: 5,
                },
                Bin {
                    le_ms: 1.0,
                    count: 2,
                },
            ],
            ..Phase::default()
        };
        let r = Report {
            scenario: "plan".into(),
            target_p99_ms: 100.0,
            phases: vec![phase(100.0, 2.0), phase(150.0, 3.0), phase(225.0, 300.0)],
            plan_knee_rate: Some(150.0),
            series: steady_series(1..5),
            ..Report::default()
        };
        let page = render(&r);
        for id in [
            "latency-over-time",
            "latency-histogram",
            "streams-over-time",
            "events-over-time",
            "plan-curve",
        ] {
            assert!(page.contains(&format!("<figure id=\"{id}\">")), "{id}");
        }
        assert_eq!(page.matches("class=\"knee\"").count(), 1);
        assert!(page.contains("knee: 150/s"));
        assert!(page.contains("target p99 100 ms"));
        assert!(page.matches("class=\"series\"").count() >= 8);
        // Nothing loaded from anywhere.
        assert!(!page.contains("src=") && !page.contains("<script"));
    }

    /// A per-second series of steady figures over `seconds`.
    fn steady_series(seconds: std::ops::Range<u32>) -> Vec<Point> {
        seconds
            .map(|t| Point {
                t_s: f64::from(t),
                open: 10,
                open_min: 9,
                received: 100,
                p50_ms: 0.2,
                p99_ms: 1.5,
                max_ms: 3.0,
                ..Point::default()
            })
            .collect()
    }

    #[test]
    fn a_deploy_marks_each_restart() {
        let r = Report {
            scenario: "deploy".into(),
            phases: vec![Phase::default()],
            restarts: (0..3)
                .map(|node| crate::report::Restart {
                    node,
                    at_s: 5.0 + 10.0 * node as f64,
                    ..crate::report::Restart::default()
                })
                .collect(),
            series: steady_series(1..40),
            ..Report::default()
        };
        let page = render(&r);
        for node in 0..3 {
            assert!(page.contains(&format!("node {node} restart")), "{node}");
        }
    }

    #[test]
    fn axes_tick_at_round_numbers() {
        assert_eq!(nice_step(10.0), 2.0);
        assert_eq!(nice_step(1000.0), 200.0);
        assert_eq!(num(12500.0), "12,500");
        assert_eq!(num(0.25), "0.25");
        let a = Axis::new(0.3, 250.0, true, false, 0.0, 100.0);
        assert_eq!(a.ticks(), vec![0.1, 1.0, 10.0, 100.0, 1000.0]);
        let empty = render_chart(&Chart {
            id: "x",
            title: "t".into(),
            x_label: "x",
            y_label: "y",
            x_log: false,
            y_log: false,
            y_zero: true,
            lines: Vec::new(),
            vrules: Vec::new(),
            hrules: Vec::new(),
            marks: Vec::new(),
        });
        assert!(empty.contains("no data in this run"));
    }
}
