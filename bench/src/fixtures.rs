//! The inputs every bench and gate case works on: request heads, tokens, the seeds' real
//! payloads and the node settings they are checked against.
//!
//! Inputs are fixed (no randomness, no clock), so a case does the same work on every run and
//! its instruction count only moves when the code does.
use gateway::internals::{jwt, Config, Secret};

/// The HS256 secret of every token here.
pub const SECRET: &str = "bench-secret";

/// The API key the game streams accept (seed 002's example key).
pub const API_KEY: &str = "sk_live_xxxxx";

/// "Now" for token checks: 2026-01-01T00:00:00Z. Tokens expire in 2100.
pub const NOW_UNIX: u64 = 1_767_225_600;

/// Seed 000's envelope, as a backend publishes it to `SSE::{brand_id}::{player_id}`.
pub const ENVELOPE_000: &[u8] = br#"{"brand_id":1001,"player_id":12345,"event_type":"notification","event_data":{"title":"Bonus credited","message":"Your 10.00 EUR bonus is ready","amount":"10.00","currency":"EUR"}}"#;

/// Seed 002's round result (its "Data Format" example).
pub const ROUND_002: &[u8] = br#"{"round_id":512,"game_id":1,"game_slug":"crash","game_type":"multiplier","finished_at":"2026-01-17T00:45:42.735266-03:00","extras":"{\"point\": \"11.72\"}","timestamp":1768621542123}"#;

/// Seed 003's broadcast jackpot value update.
pub const JACKPOT_VALUE_003: &[u8] = br#"{"reason":"jackpot_value","jackpotInstance":"3XiLXZkU_5","jackpot":"3XiLXZkU","channel":"8mQhEnuznUe01IsGOE4mPw_broadcast_fce39b15-9fc1-42bb-8d96-e65c1d17feac","currency":"EUR","value":"372.2"}"#;

/// Seed 003's broadcast "won by another player".
pub const JACKPOT_WON_OTHER_003: &[u8] = br#"{"reason":"jackpot_won_other","jackpotInstance":"f8f21i6__12","jackpot":"f8f21i6_","channel":"8mQhEnuznUe01IsGOE4mPw_broadcast_fce39b15-9fc1-42bb-8d96-e65c1d17feac","currency":"EUR","value":"360.00","jackpotNewInstance":"f8f21i6__13"}"#;

/// Seed 003's private "you won" message.
pub const JACKPOT_WON_003: &[u8] = br#"{"reason":"jackpot_won","jackpotInstance":"6sca3_LR_7","jackpot":"6sca3_LR","channel":"8mQhEnuznUe01IsGOE4mPw_user_a@b.com","currency":"EUR","value":"1,408.20","jackpotNewInstance":"6sca3_LR_8"}"#;

/// Seed 004's `transaction.created` event with the event data its document lists.
pub const TRANSACTION_004: &[u8] = br#"{"type":"transaction.created","data":{"transaction_id":"9f1c2b7e-5d4a-4c1e-9a55-2f0e7d6b8c31","type":"transfer","status":"pending","amount":10000,"currency":"INR","source_wallet_id":"4b0e3a61-7f0c-4d8e-b1a2-6c5d9e8f7a10","destination_wallet_id":"c7d2e9f4-1a3b-4c5d-8e6f-0a1b2c3d4e5f","description":"Test deposit"}}"#;

/// The jackpot broadcast channel of seed 003 (a broadcast family: the fan-out case).
pub const JACKPOT_CHANNEL: &str =
    "8mQhEnuznUe01IsGOE4mPw_broadcast_fce39b15-9fc1-42bb-8d96-e65c1d17feac";

/// A browser's `EventSource` request for a player stream (token in the query, as
/// `EventSource` cannot send headers), resuming with `Last-Event-ID`: 467 bytes.
pub fn eventsource_get() -> Vec<u8> {
    format!(
        "GET /sse?token={} HTTP/1.1\r\n\
         Host: gw.example.com\r\n\
         Accept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n\
         Origin: https://casino.example.com\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
         Accept-Language: en-US,en;q=0.9\r\n\
         Last-Event-ID: k3x9a0b1.0.41\r\n\
         \r\n",
        player_token()
    )
    .into_bytes()
}

/// The same request as a browser behind two proxies sends it: a long cookie jar, client
/// hints, forwarding and tracing headers; 24 headers, 3,730 bytes.
pub fn large_head() -> Vec<u8> {
    let cookies: Vec<String> = (0..56)
        .map(|i| format!("pref_{i:02}=a8f5f167f44f4964e6c998dee827110c{i:04}"))
        .collect();
    format!(
        "GET /sse?token={token} HTTP/1.1\r\n\
         Host: gw.example.com\r\n\
         Connection: keep-alive\r\n\
         Accept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n\
         Pragma: no-cache\r\n\
         Origin: https://casino.example.com\r\n\
         Referer: https://casino.example.com/lobby/live-casino?category=roulette&provider=evolution&sort=popular\r\n\
         User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0\r\n\
         Accept-Language: de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7,fr;q=0.6\r\n\
         Accept-Encoding: gzip, deflate, br, zstd\r\n\
         sec-ch-ua: \"Not/A)Brand\";v=\"8\", \"Chromium\";v=\"126\", \"Microsoft Edge\";v=\"126\"\r\n\
         sec-ch-ua-mobile: ?0\r\n\
         sec-ch-ua-platform: \"Windows\"\r\n\
         Sec-Fetch-Site: same-site\r\n\
         Sec-Fetch-Mode: cors\r\n\
         Sec-Fetch-Dest: empty\r\n\
         Cookie: {cookies}\r\n\
         X-Forwarded-For: 203.0.113.195, 198.51.100.17, 192.0.2.44\r\n\
         X-Forwarded-Proto: https\r\n\
         X-Real-IP: 203.0.113.195\r\n\
         X-Request-ID: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\n\
         traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
         Last-Event-ID: k3x9a0b1.0.41\r\n\
         \r\n",
        token = player_token(),
        cookies = cookies.join("; ")
    )
    .into_bytes()
}

/// Where [`eventsource_get`] is cut into reads for the split case: inside the request line,
/// inside a header name, inside a value, and the rest (four reads, four parses).
pub fn split_points(head: &[u8]) -> [usize; 4] {
    let n = head.len();
    [40, n / 2 + 3, n - 9, n]
}

/// A player token (`brand_id`, `player_id`, `exp`), as a platform issues them.
pub fn player_token() -> String {
    jwt::sign_hs256(
        r#"{"brand_id":1001,"player_id":12345,"exp":4102444800}"#,
        SECRET.as_bytes(),
    )
}

/// A token for seed 003's private channel (`channels` claim).
pub fn channel_token() -> String {
    jwt::sign_hs256(
        r#"{"sub":"a@b.com","channels":["8mQhEnuznUe01IsGOE4mPw_user_a@b.com"],"exp":4102444800}"#,
        SECRET.as_bytes(),
    )
}

/// A stream request per route family: family name and request head. The names are the
/// route table's.
pub fn family_requests() -> Vec<(&'static str, Vec<u8>)> {
    let head = |target: String| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: gw.example.com\r\nAccept: text/event-stream\r\n\r\n"
        )
        .into_bytes()
    };
    vec![
        ("player", head(format!("/sse?token={}", player_token()))),
        (
            "game_type",
            head(format!("/sse/type/multiplier?api_key={API_KEY}")),
        ),
        ("game", head(format!("/sse/crash?api_key={API_KEY}"))),
        (
            "jackpot",
            head(format!("/subscribe?channel={JACKPOT_CHANNEL}")),
        ),
        (
            "jackpot_user",
            head(format!(
                "/subscribe?channel=8mQhEnuznUe01IsGOE4mPw_user_a@b.com&token={}",
                channel_token()
            )),
        ),
    ]
}

/// The node settings the route cases resolve against: the secret and the API key set.
pub fn config() -> Config {
    Config {
        auth_secret: Some(Secret::new(SECRET)),
        api_keys: vec![Secret::new(API_KEY)],
        ..Config::default()
    }
}

/// A single-line JSON payload of exactly `len` bytes (a transaction event whose description
/// is padded), for the 1 KiB and 16 KiB encode cases.
pub fn json_payload(len: usize) -> Vec<u8> {
    let head =
        br#"{"type":"transaction.created","data":{"amount":10000,"currency":"INR","description":""#;
    let tail = br#""}}"#;
    let pad = len.saturating_sub(head.len() + tail.len());
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(head);
    v.extend((0..pad).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789 "[i % 37]));
    v.extend_from_slice(tail);
    v
}

/// A 1 KiB pretty-printed JSON payload: many short lines, each becoming its own `data:` line.
pub fn multiline_payload() -> Vec<u8> {
    let mut v = b"{\n".to_vec();
    let mut i = 0;
    while v.len() < 1000 {
        v.extend_from_slice(format!("  \"field_{i:02}\": \"value {i:02}\",\n").as_bytes());
        i += 1;
    }
    v.extend_from_slice(b"  \"end\": true\n}");
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway::internals::{parse_head, Parsed};

    #[test]
    fn heads_parse_and_have_the_stated_shape() {
        let typical = eventsource_get();
        let large = large_head();
        for head in [&typical, &large] {
            assert!(matches!(parse_head(head), Ok(Parsed::Complete(_))));
        }
        assert!(large.len() > 3584 && large.len() < 4096, "{}", large.len());
        let cuts = split_points(&typical);
        for w in cuts.windows(2) {
            assert!(w[0] < w[1]);
        }
        for &k in &cuts[..3] {
            assert_eq!(parse_head(&typical[..k]), Ok(Parsed::Partial));
        }
    }

    #[test]
    fn payloads_are_json_of_the_stated_size() {
        for len in [1024, 16 * 1024] {
            let p = json_payload(len);
            assert_eq!(p.len(), len);
            serde_json::from_slice::<serde_json::Value>(&p).unwrap();
        }
        let m = multiline_payload();
        assert!((1000..1100).contains(&m.len()));
        assert!(m.iter().filter(|&&b| b == b'\n').count() > 30);
        serde_json::from_slice::<serde_json::Value>(&m).unwrap();
        for p in [
            ENVELOPE_000,
            ROUND_002,
            JACKPOT_VALUE_003,
            JACKPOT_WON_OTHER_003,
            JACKPOT_WON_003,
            TRANSACTION_004,
        ] {
            serde_json::from_slice::<serde_json::Value>(p).unwrap();
        }
    }
}
