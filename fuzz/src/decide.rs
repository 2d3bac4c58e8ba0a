//! Route resolution through `conn::decide::decide`, the pure function from a request head to
//! what the connection does (answer, publish, query, stream), over the built-in route table
//! and one with custom `[[routes]]`, with several configurations and peers.
//!
//! Tokens: the fuzzer cannot forge an HMAC, so the input carries claims (any JSON text) that
//! the target signs with the configured secret and puts wherever the request says `$T`. The
//! checks, besides "never panics":
//! - a stream's channels belong to its family (a publish to them reaches it), are valid
//!   names, distinct, at most 64;
//! - a player stream's channel is the token's own `SSE::{brand_id}::{player_id}`; a
//!   channel-token stream's channel is listed in the token's `channels` claim; a game stream
//!   carries a configured API key;
//! - a publish is authorised (the token when set, else a loopback peer) and within 64 KiB;
//! - framing never consumes more than was read.
//!
//! - a channel that has the shape of a token-protected family never opens without a token
//!   whose claim lists it (before the fix, `/subscribe?channel=ws_user_a_broadcast_b` opened
//!   a private `{workspace}_user_{player}` channel as a public
//!   `{workspace}_broadcast_{group}` one).

use std::net::SocketAddr;
use std::sync::LazyLock;

use crate::{fields, text};
use gateway::internals::decide::{decide, Action, Context, Listener, MAX_PUBLISH_BODY};
use gateway::internals::jwt::{sign_hs256, verify_hs256, Claims};
use gateway::internals::query::query_param;
use gateway::internals::{
    parse_head, AuthRule, Channels, Config, CorsOrigins, Endpoint, Match, Method, Parsed,
    RouteTable, Secret,
};

const SECRET: &str = "k";
const API_KEY: &str = "game-key";
const PUBLISH_TOKEN: &str = "pub-token";
const NOW: u64 = 1_761_143_445;

/// Custom families beside the built-in ones: path holes, a player-token template, a private
/// channel parameter and a list parameter under a path hole.
const CUSTOM: &str = r#"
[[routes]]
name = "room"
path = "/rooms/{org}/{room}"
channel = "room:{org}:{room}"

[[routes]]
name = "inbox"
path = "/inbox"
channel = "inbox:{player_id}@{brand_id}"
auth = "player_token"
placement = "owner"

[[routes]]
name = "vault"
path = "/vault"
channel = "vault:{name}"
auth = "channel_token"
channel_param = "ch"

[[routes]]
name = "feed"
path = "/feed"
channel = "feed:{topic}"
channel_list_param = "t"
"#;

static TABLES: LazyLock<[RouteTable; 2]> = LazyLock::new(|| {
    let file: toml::Table = toml::from_str(CUSTOM).expect("custom routes parse");
    let custom = RouteTable::with_custom(file.get("routes")).expect("custom routes are valid");
    [RouteTable::builtin(), custom]
});

static CONFIGS: LazyLock<[Config; 3]> = LazyLock::new(|| {
    let open = Config {
        auth_secret: Some(Secret::new(SECRET)),
        api_keys: vec![Secret::new(API_KEY)],
        ..Config::default()
    };
    let guarded = Config {
        publish_token: Some(Secret::new(PUBLISH_TOKEN)),
        cors_origins: CorsOrigins::List(vec!["https://a.example".into()]),
        ..open.clone()
    };
    let any_origin = Config {
        cors_origins: CorsOrigins::Any,
        auth_secret: None,
        api_keys: vec![],
        ..open.clone()
    };
    [open, guarded, any_origin]
});

const PEERS: [&str; 3] = [
    "127.0.0.1:5000",
    "[::ffff:127.0.0.1]:5000",
    "203.0.113.9:5000",
];

/// `bytes` with every `$T` replaced by `token`.
fn substitute(bytes: &[u8], token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + token.len());
    let mut rest = bytes;
    while let Some(i) = rest.windows(2).position(|w| w == b"$T") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(token);
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    out
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@:-".contains(&b))
}

/// The input: `SEL 0xFF claims 0xFF request`. SEL's bytes pick the route table (mod 2), the
/// configuration (mod 3) and the peer (mod 3), so `000` is the built-in table, the open
/// configuration and a loopback peer; `$T` in the request becomes the claims' signed token.
fn check(data: &[u8]) -> Option<()> {
    let f = fields(data, 3);
    let pick = |i: usize, n: usize| usize::from(f[0].get(i).copied().unwrap_or(0)) % n;
    let table = &TABLES[pick(0, 2)];
    let config = &CONFIGS[pick(1, 3)];
    let peer: SocketAddr = PEERS[pick(2, 3)].parse().expect("peer");
    let claims_json = text(f[1])?;
    let request = f[2];
    let token = sign_hs256(claims_json, SECRET.as_bytes());
    let used_token = request.windows(2).any(|w| w == b"$T");
    let buf = substitute(request, token.as_bytes());
    // The token's claims, when the request carried it and it verifies.
    let claims: Option<Claims> = used_token
        .then(|| verify_hs256(token.as_bytes(), SECRET.as_bytes(), NOW, 0).ok())
        .flatten()
        .filter(|_| config.auth_secret.is_some());

    let ctx = Context {
        routes: table,
        config,
        peer,
        listener: Listener::Public,
        now_unix: NOW,
    };
    let action = decide(&ctx, &buf);
    let head = match parse_head(&buf) {
        Ok(Parsed::Partial) => {
            assert!(action.is_none(), "an incomplete head decided: {action:?}");
            return Some(());
        }
        Ok(Parsed::Complete(head)) => Some(head),
        Err(_) => None,
    };
    let Some(action) = action else {
        panic!("a complete or bad head decided nothing")
    };
    let Some(head) = head else {
        // A bad head is answered and the connection closed.
        let Action::Answer { framing, .. } = &action else {
            panic!("{action:?}")
        };
        assert!(!framing.keep_alive);
        return Some(());
    };

    match action {
        Action::Answer { framing, .. } | Action::Query { framing, .. } => {
            if framing.keep_alive {
                assert_eq!(framing.consumed, head.head_len);
            }
        }
        Action::Publish {
            len,
            head_len,
            framing,
            ..
        } => {
            assert!(head.method == Method::Post);
            assert!(len <= MAX_PUBLISH_BODY);
            assert_eq!(head_len, head.head_len);
            assert_eq!(framing.consumed, head_len + len);
            match &config.publish_token {
                Some(token) => {
                    // `Bearer <token>`, the scheme in any case, spaces around the token.
                    let a = head.authorization.expect("publish without Authorization");
                    assert!(
                        a.len() > 7 && a[..7].eq_ignore_ascii_case(b"bearer "),
                        "{a:?}"
                    );
                    assert_eq!(a[7..].trim_ascii(), token.expose().as_bytes());
                }
                None => assert!(
                    peer.ip().to_canonical().is_loopback(),
                    "publish from {peer}"
                ),
            }
        }
        Action::Stream(spec) => {
            assert!(head.method == Method::Get);
            let family = &table.families[spec.family];
            // The path is served by a family of the same path (a shared path is told apart
            // by the channel's shape).
            let Match::Found(Endpoint::Stream(i)) = table.lookup(Method::Get, head.path) else {
                panic!("a stream for a path that is not one: {:?}", head.path)
            };
            assert!(
                table.families[i].path == family.path,
                "family {} for {:?}",
                spec.family,
                head.path
            );
            let channels: Vec<&str> = match &spec.channels {
                Channels::One(c) => vec![c],
                Channels::Many(list) => {
                    assert!(
                        !list.is_empty() && list.len() <= 64,
                        "{} channels",
                        list.len()
                    );
                    list.iter().map(|c| &**c).collect()
                }
                Channels::All => {
                    assert!(
                        family.channel_list_param.is_some(),
                        "all of a single-channel family"
                    );
                    vec![]
                }
            };
            for (n, c) in channels.iter().enumerate() {
                assert_eq!(
                    table.family_of_channel(c),
                    Some(spec.family),
                    "channel {c:?}"
                );
                assert!(!channels[..n].contains(c), "channel {c:?} twice");
                assert!(c.len() <= 1024, "channel of {} bytes", c.len());
            }
            match family.auth {
                AuthRule::PlayerToken => {
                    let c = claims
                        .as_ref()
                        .expect("a player stream without a valid token");
                    let (b, p) = (c.brand_id.expect("brand"), c.player_id.expect("player"));
                    let want = family
                        .channel
                        .render(|k| match k {
                            "brand_id" => Some(b.to_string()),
                            "player_id" => Some(p.to_string()),
                            _ => None,
                        })
                        .expect("renders");
                    assert_eq!(channels, [want.as_str()]);
                }
                AuthRule::ChannelToken => {
                    let c = claims
                        .as_ref()
                        .expect("a private stream without a valid token");
                    for ch in &channels {
                        assert!(
                            c.channels.iter().any(|l| l == ch),
                            "{ch:?} not in {:?}",
                            c.channels
                        );
                    }
                }
                AuthRule::ApiKey => {
                    let key = query_param(head.query, "api_key").ok().flatten();
                    assert_eq!(key.as_deref(), Some(API_KEY));
                    assert!(config.api_keys.iter().any(|k| k.expose() == API_KEY));
                }
                AuthRule::Public => {}
            }
            if family.channel_param.is_some() {
                assert!(channels.iter().all(|c| valid_name(c)));
            }
            for ch in &channels {
                let private = table
                    .families
                    .iter()
                    .any(|f| f.auth == AuthRule::ChannelToken && f.channel.matches(ch));
                if private {
                    let listed = claims
                        .as_ref()
                        .is_some_and(|c| c.channels.iter().any(|l| l == ch));
                    assert!(
                        listed,
                        "private-shaped channel {ch:?} opened without a token listing it"
                    );
                }
            }
        }
    }
    Some(())
}

/// One input.
pub fn run(data: &[u8]) {
    let _ = check(data);
}
