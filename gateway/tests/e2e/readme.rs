//! The README's "Try every family" examples, run as written against a gateway started as the
//! README starts it, so a newcomer's paste cannot break unnoticed.
//!
//! The README marks its blocks with HTML comments (invisible when rendered):
//! `<!-- readme-test: gateway -->` before the ```` ```sh ```` block that starts the gateway,
//! `<!-- readme-test: setup -->` before blocks every example needs (terminal 2's exports), and
//! `<!-- readme-test -->` before each example, whose ```` ```text ```` block after it lists
//! lines the output must contain (`<id>`, `<time>`: any text). Only the port is substituted:
//! the gateway listens on port 0 instead of 8080, and the examples get the port it chose.
//! `cargo run --release ... [-- ARGS]` runs the binary under test with ARGS (a shell function
//! stands in for cargo, which a test cannot run). The examples, which use different
//! channels, run at once: the whole test takes about as long as the longest one (~4 s).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Stands in for `cargo run [options] [-- args]`: the binary under test with `args`.
const PRELUDE: &str = r#"cargo() {
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do shift; done
  [ "$#" -gt 0 ] && shift
  exec "$GATEWAY_BIN" "$@"
}
"#;

/// One marked block: its kind, the commands, and the expected lines after it (examples).
struct Block {
    kind: String,
    script: String,
    expected: Vec<String>,
}

/// The marked blocks of `text`, in order.
fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let fence = |from: usize, lang: &str| -> Option<(usize, String)> {
        let start = (from..lines.len()).find(|&i| lines[i].trim() == format!("```{lang}"))?;
        let end = (start + 1..lines.len()).find(|&i| lines[i].trim() == "```")?;
        Some((end, lines[start + 1..end].join("\n")))
    };
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix("<!-- readme-test") else {
            continue;
        };
        let kind = rest
            .trim_end_matches("-->")
            .trim()
            .trim_start_matches(':')
            .trim();
        let (end, script) = fence(i + 1, "sh").expect("a ```sh block after the marker");
        let mut expected = Vec::new();
        if kind.is_empty() {
            // The ```text block before the next marker or heading.
            let next = (end + 1..lines.len())
                .find(|&j| lines[j].starts_with("<!-- readme-test") || lines[j].starts_with('#'))
                .unwrap_or(lines.len());
            let (text_end, text) = fence(end + 1, "text").expect("a ```text block of output");
            assert!(
                text_end < next,
                "example at line {} has no ```text block",
                i + 1
            );
            expected = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect();
        }
        out.push(Block {
            kind: kind.to_string(),
            script,
            expected,
        });
    }
    out
}

/// Whether `line` matches `pattern`, in which each `<name>` stands for any non-empty text.
fn matches(pattern: &str, line: &str) -> bool {
    let mut pieces = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').map(|c| open + c);
        match close {
            Some(close)
                if rest[open + 1..close]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase()) =>
            {
                pieces.push(&rest[..open]);
                rest = &rest[close + 1..];
            }
            _ => break,
        }
    }
    pieces.push(rest);
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if pieces.len() == 1 {
        return line == first;
    }
    let Some(mut tail) = line.strip_prefix(first) else {
        return false;
    };
    for piece in &pieces[1..pieces.len() - 1] {
        match tail.get(1..).and_then(|t| t.find(piece)) {
            Some(at) => tail = &tail[1 + at + piece.len()..],
            None => return false,
        }
    }
    tail.len() > last.len() && tail.ends_with(last)
}

/// A shell running a README block; killed by PID when dropped.
struct Shell(Child);

impl Shell {
    fn spawn(script: &str, stdout: Stdio) -> Shell {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("{PRELUDE}{script}"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GATEWAY_BIN", env!("CARGO_BIN_EXE_gateway"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        Shell(cmd.spawn().expect("spawn sh"))
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs an example to its end (at most 20 s): everything it printed, stdout and stderr.
fn run_example(script: &str) -> String {
    let mut shell = Shell::spawn(script, Stdio::piped());
    let mut stdout = shell.0.stdout.take().expect("piped");
    let mut stderr = shell.0.stderr.take().expect("piped");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let code = wait_child(&mut shell.0, Duration::from_secs(20));
    drop(shell);
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    format!("{out}{err}[exit {code:?}]")
}

#[test]
fn readme_examples_run_as_pasted() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("read README.md");
    let all = blocks(&readme);
    let of = |kind: &'static str| all.iter().filter(move |b| b.kind == kind);
    let gateway: Vec<&Block> = of("gateway").collect();
    assert_eq!(gateway.len(), 1, "one block starts the gateway");
    let setup: String = of("setup").map(|b| format!("{}\n", b.script)).collect();
    let examples: Vec<&Block> = of("").collect();
    assert!(
        examples.len() >= 5,
        "player, resume, game, jackpot, topic examples"
    );

    // The gateway as the README starts it, on a free port.
    let script = gateway[0].script.replace("127.0.0.1:8080", "127.0.0.1:0");
    assert_ne!(
        script, gateway[0].script,
        "the gateway block sets SSE_LISTEN=127.0.0.1:8080"
    );
    let mut gw = Shell::spawn(&script, Stdio::null());
    let stderr = gw.0.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let end = Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    let port = loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no start: {log:?}"));
        if line.contains("gateway started") {
            let addr = field(&line, "listen=").expect("listen=");
            break addr.rsplit(':').next().expect("port").to_string();
        }
        log.push(line);
    };

    let runs: Vec<_> = examples
        .iter()
        .map(|ex| {
            let script = format!("{setup}{}", ex.script.replace("8080", &port));
            std::thread::spawn(move || run_example(&script))
        })
        .collect();
    let mut failures = Vec::new();
    for (ex, run) in examples.iter().zip(runs) {
        let output = run.join().expect("example thread");
        let lines: Vec<&str> = output.lines().collect();
        let missing: Vec<&String> = ex
            .expected
            .iter()
            .filter(|want| !lines.iter().any(|l| matches(want, l)))
            .collect();
        if !missing.is_empty() {
            failures.push(format!(
                "example:\n{}\nmissing: {missing:?}\noutput:\n{output}",
                ex.script
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    drop(gw);
}

#[test]
fn placeholders_match_any_text() {
    #[rustfmt::skip]
    let cases = [
        ("id: <id>", "id: ab.1.2", true),
        ("id: <id>", "id: ", false),
        ("id: <id>", "event: x", false),
        ("data: {\"t\":\"<time>\"}", "data: {\"t\":\"2026-12-02T04:00:00Z\"}", true),
        ("data: {\"t\":\"<time>\"}", "data: {\"t\":\"x\"} more", false),
        ("published: 202", "published: 202", true),
        ("published: 202", "published: 401", false),
        ("a <x> b <y> c", "a 1 b 2 c", true),
        ("a <x> b <y> c", "a 1 c", false),
    ];
    for (pattern, line, want) in cases {
        assert_eq!(matches(pattern, line), want, "{pattern:?} {line:?}");
    }
}
