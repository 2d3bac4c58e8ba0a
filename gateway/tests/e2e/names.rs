//! Names, tokens and placement (issue 13, items 6 to 8): a private channel never opens
//! without a token that lists it, whatever its name looks like; a client cannot choose its
//! core with a forged `Last-Event-ID`; percent-decoding does not change a stream's family;
//! a half-closed client keeps its stream; tokens get a little clock-skew leeway.
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

fn get_status(gw: &Gateway, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    // Bounded: a `200` is a stream that never ends, so stop at its head (at most 5 s in all).
    let mut s = std::net::TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(SEC)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let end = std::time::Instant::now() + 5 * SEC;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < end {
        if let Some(r) = parse_response(&all) {
            if r.status == 200 {
                return (200, String::new());
            }
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let r = parse_response(&all).expect("an answer within 5 s");
    let e = if r.status == 200 {
        String::new()
    } else {
        r.error()
    };
    (r.status, e)
}

#[test]
fn a_private_channel_whose_player_id_holds_broadcast_needs_its_token() {
    let gw = Gateway::start(&[]);
    // An e-mail-like player id that contains `_broadcast_`.
    let private = "8mQhEnuznUe01IsGOE4mPw_user_jane_broadcast_doe@example.com";
    let enc = private.replace('@', "%40");
    let (status, error) = get_status(&gw, &format!("/subscribe?channel={enc}"));
    assert_eq!((status, error.as_str()), (401, "missing token"));
    let other = channel_token(&["8mQhEnuznUe01IsGOE4mPw_user_someone"]);
    let (status, _) = get_status(&gw, &format!("/subscribe?channel={enc}&token={other}"));
    assert_eq!(status, 403);
    // With its token it opens, as a private channel, and gets what is published on it.
    let token = channel_token(&[private]);
    let mut s = Sse::open(
        gw.addr,
        &format!("/subscribe?channel={enc}&token={token}"),
        "",
    );
    assert_eq!(s.status(), 200, "{}", s.head);
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.jackpot_user")
        == 1));
    assert_eq!(gw.stat("connections.per_route.jackpot"), 0);
    let won = format!("{{\"reason\":\"jackpot_won\",\"channel\":\"{private}\"}}");
    assert_eq!(gw.publish(private, &won).status, 202);
    let ev = s.next_event(5 * SEC).expect("the private event");
    assert_eq!(ev.data, won);
}

#[test]
fn a_redis_password_written_as_a_user_name_is_never_logged() {
    let redis = Redis::start(&[]);
    let url = format!("redis://S3cretPass@127.0.0.1:{}", redis.port);
    let gw = Gateway::start(&[("EVENTS_REDIS_STORAGE", url.as_str())]);
    assert!(eventually(10 * SEC, || gw.get("/readyz").status == 200));
    let log = gw.log_text();
    assert!(
        log.contains("broker=redis://[redacted]@127.0.0.1:"),
        "{log}"
    );
    assert!(!log.contains("S3cretPass"), "{log}");
    // Nor in the error of a value that does not parse.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .args([
            "--check-config",
            "--events-redis-storage=redis://S3cretPass@h:x",
        ])
        .output()
        .expect("run --check-config");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EVENTS_REDIS_STORAGE"), "{err}");
    assert!(!err.contains("S3cretPass"), "{err}");
}

#[test]
fn a_client_that_half_closes_after_its_request_keeps_its_stream() {
    let gw = Gateway::start(&[]);
    // `printf 'GET ...' | nc -N`: the request, then FIN; the client goes on reading.
    let mut s = Sse::player(gw.addr, 3, 4);
    s.stream.shutdown(std::net::Shutdown::Write).unwrap();
    // Two keep-alive periods for the gateway to see the FIN (and, before, to end the stream).
    std::thread::sleep(2 * SEC);
    assert_eq!(gw.stat("connections.total"), 1);
    assert_eq!(gw.publish("SSE::3::4", &player_event(3, 4, 1)).status, 202);
    let want = player_event(3, 4, 1);
    let mut got = None;
    for _ in 0..20 {
        match s.next_app_event(5 * SEC) {
            Some(ev) if ev.data == want => {
                got = Some(ev);
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    assert!(got.is_some(), "the half-closed client got the event");
}

#[test]
fn percent_decoding_does_not_change_a_streams_family() {
    let gw = Gateway::start(&[("SSE_API_KEYS", "k")]);
    for path in [
        "/sse/type%3Ax?api_key=k",
        "/sse/type%3ax?api_key=k",
        "/sse/type:x?api_key=k",
    ] {
        let (status, error) = get_status(&gw, path);
        assert_eq!(
            (status, error.as_str()),
            (400, "path values give a channel of another family"),
            "{path}"
        );
    }
    let (status, error) = get_status(&gw, "/sse/type%2Fx?api_key=k");
    assert_eq!(status, 400, "{error}");
    // An encoded `:` that leaves the family alone is fine.
    let s = Sse::open(gw.addr, "/sse/a%3Ab?api_key=k", "");
    assert_eq!(s.status(), 200, "{}", s.head);
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.game")
        == 1));
    assert_eq!(gw.stat("connections.per_route.game_type"), 0);
}

#[test]
fn tokens_get_a_little_clock_skew_leeway() {
    let gw = Gateway::start(&[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |claims: String| gateway::auth::jwt::sign_hs256(&claims, SECRET.as_bytes());
    // Expired 5 s ago, and valid from 5 s ahead: within the default 30 s.
    let skewed = token(format!(
        "{{\"brand_id\":1,\"player_id\":2,\"exp\":{},\"nbf\":{}}}",
        now - 5,
        now + 5
    ));
    let s = Sse::open(gw.addr, &format!("/sse?token={skewed}"), "");
    assert_eq!(s.status(), 200, "{}", s.head);
    let stale = token(format!(
        "{{\"brand_id\":1,\"player_id\":2,\"exp\":{}}}",
        now - 120
    ));
    let (status, error) = get_status(&gw, &format!("/sse?token={stale}"));
    assert_eq!((status, error.as_str()), (401, "token has expired"));
    // SSE_JWT_LEEWAY=0 turns it off.
    let strict = Gateway::start(&[("SSE_JWT_LEEWAY", "0")]);
    let (status, error) = get_status(&strict, &format!("/sse?token={skewed}"));
    assert_eq!(status, 401, "{error}");
}
