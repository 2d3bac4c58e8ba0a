//! Turning an authenticated stream request into a [`StreamSpec`]: the family's auth rule and
//! channel template applied to one request. Pure: no I/O, the clock is passed in.
use std::borrow::Cow;

use crate::auth::{credentials, jwt, Keys};
use crate::http::query::{percent_decode, query_param};
use crate::http::request::RequestHead;
use crate::http::response::Status;
use crate::route::table::{AuthRule, RouteTable};

/// Longest channel name a client may ask for (seed 003).
pub const MAX_CHANNEL_PARAM: usize = 200;

/// Most channels one stream may list (`?topics=a,b,...`).
pub const MAX_LISTED_CHANNELS: usize = 64;

/// The channels a stream subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channels {
    /// One channel (every family but lists).
    One(Box<str>),
    /// Several channels of the family, distinct, in the order asked.
    Many(Box<[Box<str>]>),
    /// Every channel of the family, including ones first published later (`topics=all`).
    All,
}

impl Channels {
    /// The single channel, when there is one (what owner placement hashes).
    pub fn one(&self) -> Option<&str> {
        match self {
            Channels::One(c) => Some(c),
            _ => None,
        }
    }
}

/// Everything a core needs to run one stream; owned, so it can cross to the owner core with
/// the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Index of the family in the route table.
    pub family: usize,
    /// The channels subscribed.
    pub channels: Channels,
    /// `Last-Event-ID` header or `lastEventId` query value, for resume.
    pub last_event_id: Option<Box<str>>,
    /// The `Access-Control-Allow-Origin` value for the stream's head, when CORS allows the
    /// request's origin (set by the connection, not by the route).
    pub allow_origin: Option<Box<str>>,
}

/// Why a stream request is refused: the status and the `{"error": ...}` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: Status,
    /// Human-readable reason, sent as the JSON error body.
    pub message: Cow<'static, str>,
}

fn refuse(status: Status, message: impl Into<Cow<'static, str>>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Channel names and list items a client may ask for (seed 003's rule): 1 to 200 bytes of
/// `[A-Za-z0-9_.@:-]`.
pub fn valid_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_CHANNEL_PARAM
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@:-".contains(&b))
}

/// A query parameter of the request, percent-decoded; `400` when the query string is not
/// valid percent-encoding.
fn query<'q>(head: &RequestHead<'q>, name: &str) -> Result<Option<Cow<'q, str>>, Refusal> {
    query_param(head.query, name).map_err(|_| {
        refuse(
            Status::BadRequest,
            "query string is not valid percent-encoding",
        )
    })
}

/// The verified claims of the request's JWT (`Authorization: Bearer`, else `?token=`).
fn token_claims(
    head: &RequestHead<'_>,
    query_token: Option<&str>,
    keys: &Keys<'_>,
    now_unix: u64,
    disabled: &'static str,
) -> Result<jwt::Claims, Refusal> {
    let token = credentials::bearer(head.authorization)
        .or(query_token.map(str::as_bytes))
        .ok_or_else(|| refuse(Status::Unauthorized, "missing token"))?;
    let secret = keys
        .secret
        .ok_or_else(|| refuse(Status::Unauthorized, disabled))?;
    jwt::verify_hs256(token, secret.expose().as_bytes(), now_unix, keys.leeway)
        .map_err(|e| refuse(Status::Unauthorized, e.message()))
}

/// Applies `family`'s auth and channel rules to `head`.
pub fn resolve(
    table: &RouteTable,
    family_index: usize,
    head: &RequestHead<'_>,
    keys: &Keys<'_>,
    now_unix: u64,
) -> Result<StreamSpec, Refusal> {
    let mut family_index = family_index;
    let mut family = &table.families[family_index];
    let mut given_channel: Option<String> = None;
    if let Some(name) = &family.channel_param {
        let value = query(head, name)?.ok_or_else(|| {
            refuse(
                Status::BadRequest,
                format!("missing {name} query parameter"),
            )
        })?;
        if !valid_name(&value) {
            return Err(refuse(
                Status::BadRequest,
                "channel must be 1 to 200 bytes of [A-Za-z0-9_.@:-]",
            ));
        }
        // Families sharing this path are told apart by the channel's shape, and classified
        // as publishers' messages are: one answer, the strictest family that fits.
        let shares_path =
            |f: &crate::route::table::Family| f.path == family.path && f.channel_param.is_some();
        if !table
            .families
            .iter()
            .any(|f| shares_path(f) && f.channel.matches(&value))
        {
            let shapes: Vec<String> = table
                .families
                .iter()
                .filter(|f| f.path == family.path && f.channel_param.is_some())
                .map(|f| f.channel.source().replace('{', "<").replace('}', ">"))
                .collect();
            return Err(refuse(
                Status::BadRequest,
                format!("channel must be {}", shapes.join(" or ")),
            ));
        }
        // A name that belongs to a family of another path (`SSE::1::x_broadcast_y` is a
        // player channel) would never get its publishers' messages here: refuse it.
        let Some(i) = table
            .family_of_channel(&value)
            .filter(|i| shares_path(&table.families[*i]))
        else {
            return Err(refuse(
                Status::BadRequest,
                "channel name also has the shape of another family's channels",
            ));
        };
        family_index = i;
        family = &table.families[i];
        given_channel = Some(value.into_owned());
    }
    let query_token = query(head, "token")?;
    let params = family.path.capture(head.path).unwrap_or_default();
    let param = |name: &str| -> Result<Option<String>, Refusal> {
        match params.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => percent_decode(v)
                .map(|v| Some(v.into_owned()))
                .map_err(|_| refuse(Status::BadRequest, "path is not valid percent-encoding")),
            None => Ok(None),
        }
    };
    let mut values: Vec<(&str, String)> = Vec::new();
    for (name, _) in &params {
        if let Some(v) = param(name)? {
            if !valid_name(&v) {
                return Err(refuse(
                    Status::BadRequest,
                    format!("path value {{{name}}} must be 1 to 200 bytes of [A-Za-z0-9_.@:-]"),
                ));
            }
            values.push((name, v));
        }
    }
    match family.auth {
        AuthRule::PlayerToken => {
            let claims = token_claims(
                head,
                query_token.as_deref(),
                keys,
                now_unix,
                "player streams are disabled: SSE_AUTH_SECRET is not set",
            )?;
            let (Some(brand), Some(player)) = (claims.brand_id, claims.player_id) else {
                return Err(refuse(
                    Status::Unauthorized,
                    "token lacks integer brand_id and player_id claims",
                ));
            };
            values.push(("brand_id", brand.to_string()));
            values.push(("player_id", player.to_string()));
        }
        AuthRule::Public => {}
        AuthRule::ChannelToken => {
            let claims = token_claims(
                head,
                query_token.as_deref(),
                keys,
                now_unix,
                "private channels are disabled: SSE_AUTH_SECRET is not set",
            )?;
            let channel = given_channel.as_deref().unwrap_or_default();
            if !claims.channels.iter().any(|c| c == channel) {
                return Err(refuse(
                    Status::Forbidden,
                    "token's channels claim does not list this channel",
                ));
            }
        }
        AuthRule::ApiKey => {
            if keys.api_keys.is_empty() {
                return Err(refuse(
                    Status::Unauthorized,
                    "game streams are disabled: SSE_API_KEYS is not set",
                ));
            }
            let key = query(head, "api_key")?
                .ok_or_else(|| refuse(Status::Unauthorized, "missing api_key"))?;
            // Compare against every key (no early exit), so timing says nothing about which.
            let ok = keys
                .api_keys
                .iter()
                .fold(false, |acc, k| acc | k.matches(key.as_bytes()));
            if !ok {
                return Err(refuse(Status::Unauthorized, "invalid api_key"));
            }
        }
    }
    let render = |values: &[(&str, String)]| {
        family
            .channel
            .render(|k| values.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .ok_or_else(|| {
                refuse(
                    Status::InternalServerError,
                    "route channel template names an unknown value",
                )
            })
    };
    let channels = match (given_channel, &family.channel_list_param) {
        (Some(c), _) => Channels::One(c.into_boxed_str()),
        (None, Some(list)) => {
            let hole = family.channel.holes().next().unwrap_or_default();
            let listed = query(head, list)?;
            let items: Vec<&str> = listed
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            if items.is_empty() || items.contains(&"all") {
                Channels::All
            } else {
                if items.len() > MAX_LISTED_CHANNELS {
                    return Err(refuse(
                        Status::BadRequest,
                        format!("at most {MAX_LISTED_CHANNELS} {list} per stream"),
                    ));
                }
                let mut out: Vec<Box<str>> = Vec::with_capacity(items.len());
                for item in items {
                    if !valid_name(item) {
                        return Err(refuse(
                            Status::BadRequest,
                            format!("each of {list} must be 1 to 200 bytes of [A-Za-z0-9_.@:-]"),
                        ));
                    }
                    values.push((hole, item.to_string()));
                    let c = render(&values)?.into_boxed_str();
                    values.pop();
                    if table.family_of_channel(&c) != Some(family_index) {
                        return Err(refuse(
                            Status::BadRequest,
                            format!("{list} value {item:?} gives a channel of another family"),
                        ));
                    }
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
                Channels::Many(out.into_boxed_slice())
            }
        }
        (None, None) => {
            // Percent-decoding must not change the route: `/sse/type%3Ax` (or `/sse/type:x`)
            // renders `stream:type:x`, a `game_type` channel reached through the `game` route.
            let c = render(&values)?;
            if table.family_of_channel(&c) != Some(family_index) {
                return Err(refuse(
                    Status::BadRequest,
                    "path values give a channel of another family",
                ));
            }
            Channels::One(c.into_boxed_str())
        }
    };
    #[allow(clippy::borrowed_box)]
    let last_event_id = match head.last_event_id {
        Some(v) => Some(String::from_utf8_lossy(v).trim().into()),
        None => query(head, "lastEventId")?.map(|v| v.trim().into()),
    }
    .filter(|v: &Box<str>| !v.is_empty());
    Ok(StreamSpec {
        family: family_index,
        channels,
        last_event_id,
        allow_origin: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::sign_hs256;
    use crate::auth::Secret;
    use crate::http::request::{parse_head, Parsed};

    const NOW: u64 = 1_761_143_445;

    fn token(claims: &str) -> String {
        sign_hs256(claims, b"k")
    }

    /// Resolves `GET target` (plus `headers`) against the built-in table as the connection
    /// does: the family its path matches, then its rules. A summary: `family channels resume`
    /// or `status message`.
    fn run(target: &str, headers: &str, keys: &Keys<'_>) -> String {
        let table = RouteTable::builtin();
        let raw = format!("GET {target} HTTP/1.1\r\n{headers}\r\n");
        let Ok(Parsed::Complete(head)) = parse_head(raw.as_bytes()) else {
            panic!("{raw:?} parses");
        };
        let crate::route::table::Match::Found(crate::route::table::Endpoint::Stream(i)) =
            table.lookup(head.method, head.path)
        else {
            return "no stream route".into();
        };
        match resolve(&table, i, &head, keys, NOW) {
            Ok(spec) => {
                let channels = match &spec.channels {
                    Channels::One(c) => c.to_string(),
                    Channels::Many(l) => l.join(","),
                    Channels::All => "all".into(),
                };
                let resume = spec.last_event_id.as_deref().unwrap_or("-");
                format!("{} {channels} {resume}", table.families[spec.family].name)
            }
            Err(r) => format!("{} {}", r.status.code(), r.message),
        }
    }

    #[test]
    fn resolve_table() {
        let secret = Secret::new("k");
        let api_keys = [Secret::new("key-1"), Secret::new("key-2")];
        let on = Keys {
            secret: Some(&secret),
            api_keys: &api_keys,
            leeway: 0,
        };
        let off = Keys {
            secret: None,
            api_keys: &[],
            leeway: 0,
        };
        let exp = NOW + 60;
        let player = token(&format!(r#"{{"brand_id":7,"player_id":9,"exp":{exp}}}"#));
        let stale = token(&format!(
            r#"{{"brand_id":7,"player_id":9,"exp":{}}}"#,
            NOW - 1
        ));
        let no_ids = token(&format!(r#"{{"exp":{exp}}}"#));
        let private = token(&format!(r#"{{"channels":["ws_user_a@b.c"],"exp":{exp}}}"#));
        let odd = token(&format!(
            r#"{{"channels":["ws_user_jane_broadcast_doe@x.com"],"exp":{exp}}}"#
        ));
        let many: Vec<String> = (0..=MAX_LISTED_CHANNELS).map(|i| format!("t{i}")).collect();
        let too_many = format!("/api/v1/events?topics={}", many.join(","));
        let bearer = format!("Authorization: Bearer {player}\r\n");
        #[rustfmt::skip]
        let cases: Vec<(String, String, &Keys, &str)> = vec![
            // Player streams: a token (header or query) with integer brand_id and player_id.
            (format!("/sse?token={player}"), "".into(), &on, "player SSE::7::9 -"),
            ("/sse".into(), bearer.clone(), &on, "player SSE::7::9 -"),
            ("/sse".into(), "".into(), &on, "401 missing token"),
            (format!("/sse?token={player}"), "".into(), &off, "401 player streams are disabled: SSE_AUTH_SECRET is not set"),
            (format!("/sse?token={stale}"), "".into(), &on, "401 token has expired"),
            (format!("/sse?token={no_ids}"), "".into(), &on, "401 token lacks integer brand_id and player_id claims"),
            ("/sse?token=a.b.c".into(), "".into(), &on, "401 token is malformed"),
            // Resume: the header wins over the query; blanks are no id.
            ("/sse?lastEventId=r.0.1".into(), bearer.clone(), &on, "player SSE::7::9 r.0.1"),
            ("/sse?lastEventId=r.0.1".into(), format!("{bearer}Last-Event-ID:  r.1.2 \r\n"), &on, "player SSE::7::9 r.1.2"),
            ("/sse?lastEventId=%20".into(), bearer.clone(), &on, "player SSE::7::9 -"),
            ("/sse?lastEventId=%zz".into(), bearer.clone(), &on, "400 query string is not valid percent-encoding"),
            // Game streams: path values, an API key from SSE_API_KEYS.
            ("/sse/crash?api_key=key-2".into(), "".into(), &on, "game stream:crash -"),
            ("/sse/type/multiplier?api_key=key-1".into(), "".into(), &on, "game_type stream:type:multiplier -"),
            ("/sse/cr%61sh?api_key=key-1".into(), "".into(), &on, "game stream:crash -"),
            ("/sse/a%2Fb?api_key=key-1".into(), "".into(), &on, "400 path value {game} must be 1 to 200 bytes of [A-Za-z0-9_.@:-]"),
            ("/sse/type%2Fx?api_key=key-1".into(), "".into(), &on, "400 path value {game} must be 1 to 200 bytes of [A-Za-z0-9_.@:-]"),
            ("/sse/type%3Ax?api_key=key-1".into(), "".into(), &on, "400 path values give a channel of another family"),
            ("/sse/type%3amultiplier?api_key=key-1".into(), "".into(), &on, "400 path values give a channel of another family"),
            ("/sse/type:x?api_key=key-1".into(), "".into(), &on, "400 path values give a channel of another family"),
            ("/sse/a%3Ab?api_key=key-1".into(), "".into(), &on, "game stream:a:b -"),
            ("/sse/ws_user_p?api_key=key-1".into(), "".into(), &on, "400 path values give a channel of another family"),
            ("/sse/type/a%3Ab?api_key=key-1".into(), "".into(), &on, "game_type stream:type:a:b -"),
            ("/sse/%zz?api_key=key-1".into(), "".into(), &on, "400 path is not valid percent-encoding"),
            ("/sse/crash?api_key=nope".into(), "".into(), &on, "401 invalid api_key"),
            ("/sse/crash".into(), "".into(), &on, "401 missing api_key"),
            ("/sse/crash?api_key=key-1".into(), "".into(), &off, "401 game streams are disabled: SSE_API_KEYS is not set"),
            // Jackpot channels: the channel's shape picks the family; private ones need it in
            // the token's channels claim.
            ("/subscribe?channel=ws_broadcast_g1".into(), "".into(), &off, "jackpot ws_broadcast_g1 -"),
            (format!("/subscribe?channel=ws_user_a@b.c&token={private}"), "".into(), &on, "jackpot_user ws_user_a@b.c -"),
            (format!("/subscribe?channel=ws_user_x@y.z&token={private}"), "".into(), &on, "403 token's channels claim does not list this channel"),
            ("/subscribe?channel=ws_user_a@b.c".into(), "".into(), &on, "401 missing token"),
            ("/subscribe".into(), "".into(), &on, "400 missing channel query parameter"),
            ("/subscribe?channel=a%20b".into(), "".into(), &on, "400 channel must be 1 to 200 bytes of [A-Za-z0-9_.@:-]"),
            ("/subscribe?channel=plain".into(), "".into(), &on, "400 channel must be <workspace>_broadcast_<group> or <workspace>_user_<player>"),
            ("/subscribe?channel=SSE::1::ws_broadcast_g".into(), "".into(), &on, "400 channel name also has the shape of another family's channels"),
            // Adversarial names: a private channel never opens without a token listing it,
            // whatever its player id holds.
            ("/subscribe?channel=ws_user_jane_broadcast_doe@x.com".into(), "".into(), &on, "401 missing token"),
            ("/subscribe?channel=ws_user_jane_broadcast_doe@x.com".into(), "".into(), &off, "401 missing token"),
            (format!("/subscribe?channel=ws_user_jane_broadcast_doe@x.com&token={private}"), "".into(), &on, "403 token's channels claim does not list this channel"),
            (format!("/subscribe?channel=ws_user_jane_broadcast_doe@x.com&token={odd}"), "".into(), &on, "jackpot_user ws_user_jane_broadcast_doe@x.com -"),
            ("/subscribe?channel=ws_user__broadcast_x".into(), "".into(), &off, "401 missing token"),
            ("/subscribe?channel=_broadcast__user_x".into(), "".into(), &off, "401 missing token"),
            ("/subscribe?channel=ws_broadcast_g_user_p".into(), "".into(), &off, "401 missing token"),
            ("/subscribe?channel=ws_user_a%5Fbroadcast%5Fb".into(), "".into(), &off, "401 missing token"),
            ("/subscribe?channel=SSE::1::x_user_y".into(), "".into(), &on, "400 channel name also has the shape of another family's channels"),
            ("/subscribe?channel=stream:ws_broadcast_g".into(), "".into(), &on, "400 channel name also has the shape of another family's channels"),
            ("/subscribe?channel=ws_broadcast_".into(), "".into(), &on, "400 channel must be <workspace>_broadcast_<group> or <workspace>_user_<player>"),
            // Topic streams: a list of topics (deduplicated, in order), or every topic.
            ("/api/v1/events?topics=b,a,b".into(), "".into(), &off, "topic events:b,events:a -"),
            ("/api/v1/events?topics=%20a%20,,".into(), "".into(), &off, "topic events:a -"),
            ("/api/v1/events".into(), "".into(), &off, "topic all -"),
            ("/api/v1/events?topics=a,all".into(), "".into(), &off, "topic all -"),
            ("/api/v1/events?topics=a,b%20c".into(), "".into(), &off, "400 each of topics must be 1 to 200 bytes of [A-Za-z0-9_.@:-]"),
            (too_many, "".into(), &off, "400 at most 64 topics per stream"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(target, headers, keys, want)| {
                let got = run(target, headers, keys);
                (got != *want).then(|| format!("{target} {headers:?}\n  got  {got}\n  want {want}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Found by the `decide` fuzz target: a path value could render a channel of another
    /// family. With a custom `/rooms/{org}/{room}` family (channel `room:{org}:{room}`),
    /// `/rooms/acme/_user_r1` opened `room:acme:_user_r1`, a channel of the private
    /// `{workspace}_user_{player}` family, as a public stream; `/sse/type:x` (or
    /// `/sse/type%3Ax`) opened the `game_type` channel `stream:type:x` as a `game` stream.
    #[test]
    fn a_path_value_cannot_give_another_familys_channel() {
        let rows: toml::Table = toml::from_str(
            "[[routes]]\nname = \"room\"\npath = \"/rooms/{org}/{room}\"\nchannel = \"room:{org}:{room}\"",
        )
        .unwrap();
        let table = RouteTable::with_custom(rows.get("routes")).unwrap();
        let api_keys = [Secret::new("key-1")];
        let keys = Keys {
            secret: None,
            api_keys: &api_keys,
            leeway: 0,
        };
        let refused = "400 path values give a channel of another family";
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("/rooms/acme/lobby", "room room:acme:lobby"),
            ("/rooms/acme/_user_r1", refused),
            ("/rooms/acme/x_broadcast_y", refused),
            ("/sse/type:slots?api_key=key-1", refused),
            ("/sse/type%3Aslots?api_key=key-1", refused),
            ("/sse/type/slots?api_key=key-1", "game_type stream:type:slots"),
            ("/sse/crash?api_key=key-1", "game stream:crash"),
        ];
        for (target, want) in cases {
            let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
            let Ok(Parsed::Complete(head)) = parse_head(raw.as_bytes()) else {
                panic!("{raw:?} parses");
            };
            let crate::route::table::Match::Found(crate::route::table::Endpoint::Stream(i)) =
                table.lookup(head.method, head.path)
            else {
                panic!("{target} is a stream route");
            };
            let got = match resolve(&table, i, &head, &keys, NOW) {
                Ok(spec) => {
                    let c = spec.channels.one().unwrap_or("-").to_string();
                    format!("{} {c}", table.families[spec.family].name)
                }
                Err(r) => format!("{} {}", r.status.code(), r.message),
            };
            assert_eq!(&got, want, "{target}");
        }
    }
}
