//! What a newcomer meets first, against the real binary: `gateway token` mints tokens the
//! gateway accepts; start-up says which stream families are off and why; a setting or
//! start-up error is printed once, naming the config file when the value is the file's.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// Runs `gateway token <args>` with `SSE_AUTH_SECRET` set to `secret` (unset for `None`):
/// exit code, stdout, stderr.
fn gateway_token(args: &[&str], secret: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.env_clear().arg("token").args(args).stdin(Stdio::null());
    if let Some(secret) = secret {
        cmd.env("SSE_AUTH_SECRET", secret);
    }
    let out = cmd.output().expect("run gateway token");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A token minted by the subcommand, with the secret the gateway has, opens a player stream
/// that receives the player's events, and a private jackpot channel listed in `--channel`;
/// stdout is the token alone, so `TOKEN=$(gateway token ...)` works.
#[test]
fn minted_tokens_open_player_and_private_streams() {
    let gw = Gateway::start(&[]);
    let (code, out, err) = gateway_token(&["--brand", "1001", "--player", "12345"], Some(SECRET));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    let token = out.strip_suffix('\n').expect("one line");
    assert!(!token.contains(char::is_whitespace), "{out:?}");
    let mut s = Sse::open(gw.addr, &format!("/sse?token={token}"), "");
    assert_eq!(s.status(), 200, "{}", s.head);
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.player")
        == 1));
    let event = player_event(1001, 12345, 1);
    assert_eq!(gw.publish("SSE::1001::12345", &event).status, 202);
    let got = next_player_event(&mut s).expect("the published event");
    assert_eq!(got.data, event);

    let channel = "ws1_user_p1";
    let (code, out, err) = gateway_token(&["--channel", channel, "--ttl", "5m"], Some(SECRET));
    assert_eq!(code, Some(0), "{err}");
    let path = format!("/subscribe?channel={channel}&token={}", out.trim_end());
    let mut s = Sse::open(gw.addr, &path, "");
    assert_eq!(s.status(), 200, "{}", s.head);
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.jackpot_user")
        == 1));
    assert_eq!(gw.publish(channel, "{\"win\":5}").status, 202);
    let got = s.next_event(5 * SEC).expect("the published event");
    assert_eq!(got.data, "{\"win\":5}");

    // Signed with another secret: the gateway refuses it.
    let (_, other, _) = gateway_token(&["--brand", "1001", "--player", "12345"], Some("other"));
    let s = Sse::open(gw.addr, &format!("/sse?token={}", other.trim_end()), "");
    assert_eq!(s.status(), 401, "{}", s.head);
}

/// Without a secret nothing is minted: exit code 2, nothing on stdout, the reason on stderr.
#[test]
fn token_without_a_secret_is_refused() {
    let (code, out, err) = gateway_token(&["--brand", "1", "--player", "2"], None);
    assert_eq!(code, Some(2));
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("SSE_AUTH_SECRET"), "{err}");
}

/// Runs the gateway with `args` and `env` only (on loopback) until it exits (at most 20 s):
/// its exit code and stderr.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.env_clear().env("SSE_LISTEN", "127.0.0.1:0");
    cmd.args(args).envs(env.iter().copied());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    let code = wait_child(&mut child, 20 * SEC);
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
    (code, err)
}

/// A bad setting stops start-up with exit code 2 and one message; a bad value in the TOML
/// file names the file and its key, the same value from a variable names the variable.
#[test]
fn bad_settings_are_reported_once_naming_the_file() {
    let path = std::env::temp_dir().join(format!("gateway-e2e-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "cores = 0\n").expect("write the file");
    let file = path.display().to_string();
    let (code, err) = run_to_exit(&["--config", &file], &[]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.matches("has an invalid value").count(), 1, "{err}");
    let line = format!(
        "error: config file {file} (SSE_CONFIG / --config): `cores` (SSE_CORES) has an invalid \
         value \"0\": must be from 1 to 1024"
    );
    assert_eq!(err.trim_end(), line);

    let (code, err) = run_to_exit(&[], &[("SSE_CORES", "abc")]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.matches("SSE_CORES").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A start-up failure after the settings (here the address is taken) is printed once, not
/// also as a log line, with exit code 1.
#[test]
fn start_up_failure_is_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, err) = run_to_exit(&[], &[("SSE_LISTEN", &addr)]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.matches("cannot listen on").count(), 1, "{err}");
}

/// The start-up log says which families are off and which setting turns each on.
#[test]
fn start_up_names_the_families_that_are_off() {
    let gw = Gateway::start(&[]);
    let want = "streams off, answering 401: game_type, game (SSE_API_KEYS unset)";
    assert!(
        eventually(5 * SEC, || gw.log_text().contains(want)),
        "{}",
        gw.log_text()
    );
    let gw = Gateway::start(&[("SSE_API_KEYS", "k")]);
    assert!(Sse::open(gw.addr, "/sse/crash?api_key=k", "").status() == 200);
    assert!(!gw.log_text().contains("streams off"), "{}", gw.log_text());
}
