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
    jwt::verify_hs256(token, secret.expose().as_bytes(), now_unix)
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
        // Families sharing this path are told apart by the channel's shape.
        let Some(i) = table.families.iter().position(|f| {
            f.path == family.path && f.channel_param.is_some() && f.channel.matches(&value)
        }) else {
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
        };
        // A name that also has an earlier family's shape (`SSE::1::x_broadcast_y`) would be
        // routed as that family's by publishers: refuse it rather than never deliver.
        if table.family_of_channel(&value) != Some(i) {
            return Err(refuse(
                Status::BadRequest,
                "channel name also has the shape of another family's channels",
            ));
        }
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
        (None, None) => Channels::One(render(&values)?.into_boxed_str()),
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
