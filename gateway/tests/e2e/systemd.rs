//! The shipped systemd unit (`deploy/systemd/sse-gateway.service`, issue 17 item 4): systemd's
//! own checker accepts it without a warning, its open-file limit holds what the default
//! settings may open, its stop timeout outlasts the drain of its environment file, and that
//! environment file is settings the gateway accepts.
//!
//! `systemd-analyze verify` runs where it is installed (it needs no running systemd); without
//! it that part is skipped with a printed reason, the rest still runs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A file of the repository's `deploy/systemd/` directory, as text.
fn shipped(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `key=` in the unit (the last one, as systemd reads it).
fn directive<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .unwrap_or_else(|| panic!("{key}= in the unit"))
}

/// Seconds of a `10s`-style duration (the forms the unit and the env file use).
fn seconds(v: &str) -> u64 {
    v.strip_suffix('s')
        .unwrap_or(v)
        .parse()
        .unwrap_or_else(|_| panic!("duration {v}"))
}

/// The `KEY=value` lines of the environment file.
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_systemd_unit_verifies_and_matches_the_settings() {
    let unit = shipped("sse-gateway.service");
    let env = env_file(&shipped("sse-gateway.env"));
    let setting = |k: &str| {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };

    // The open-file limit holds the default connection limit, the most pending connections
    // the default allows (16,384) and the headroom of a 64-core node with Redis.
    let nofile: u64 = directive(&unit, "LimitNOFILE").parse().expect("a number");
    let connections: u64 = setting("SSE_CONNECTION_LIMIT")
        .unwrap_or("50000")
        .parse()
        .unwrap();
    assert!(
        nofile >= connections + 16_384 + 32 + 6 * 64,
        "LimitNOFILE={nofile} cannot hold {connections} streams, 16,384 pending and the headroom"
    );
    // The stop timeout outlasts the drain and the 3 s flush.
    let drain = seconds(setting("SSE_DRAIN_PERIOD").unwrap_or("10s"));
    let stop = seconds(directive(&unit, "TimeoutStopSec"));
    assert!(
        stop >= drain + 3,
        "TimeoutStopSec={stop}s, drain {drain}s + 3 s flush"
    );
    assert_eq!(directive(&unit, "KillSignal"), "SIGTERM");
    assert_eq!(directive(&unit, "Restart"), "on-failure");

    // The environment file is settings the gateway accepts.
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--check-config")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run the gateway");
    assert!(
        out.status.success(),
        "--check-config on sse-gateway.env: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // systemd's checker, on a copy whose binary path is this build's.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("sse-systemd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("sse-gateway.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/sse-gateway", env!("CARGO_BIN_EXE_gateway")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It also reports on units of the host it happens to load: only lines about ours count.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("sse-gateway"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {:?}\n{stderr}",
        out.status
    );
}
