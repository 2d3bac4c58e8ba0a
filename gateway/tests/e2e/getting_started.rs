//! What a newcomer meets first, against the real binary: `gateway token` mints tokens the
//! gateway accepts.

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
