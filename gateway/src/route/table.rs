//! Route families and the fixed API routes, and matching of paths and channels against them.
//!
//! A *family* is one kind of stream (the player stream of source documents 000/001, and the
//! other seeds' families as further rows). Everything that differs between families is a field
//! here, so the connection code has one path for all of them.
use std::time::Duration;

use crate::http::request::Method;

/// How a stream request proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthRule {
    /// HS256 JWT with `brand_id` and `player_id` claims (`Authorization: Bearer` or `?token=`).
    PlayerToken,
    /// HS256 JWT whose `channels` claim lists the channel (seed 003's private channels):
    /// no or bad token `401`, a valid token without the channel `403`.
    ChannelToken,
    /// Public: no credentials.
    Public,
    /// `?api_key=` must be one of `SSE_API_KEYS` (seed 002: EventSource cannot send headers).
    ApiKey,
}

impl AuthRule {
    /// How much the rule asks of a client: 2 for a token, 1 for an API key, 0 for nothing.
    /// Where channel shapes overlap, the name goes to the family that asks most (see
    /// [`RouteTable::family_of_channel`]).
    pub fn strength(self) -> u8 {
        match self {
            AuthRule::PlayerToken | AuthRule::ChannelToken => 2,
            AuthRule::ApiKey => 1,
            AuthRule::Public => 0,
        }
    }
}

/// How published payloads on the family's channels are checked before delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadRule {
    /// A JSON object with `brand_id`, `player_id`, `event_type`, `event_data` (seed 000).
    PlayerEnvelope,
    /// Any non-empty payload, delivered as published.
    Any,
    /// A JSON object `{"type": "<event name>", "data": <JSON>}` (seed 004): delivered as
    /// `event: <type>` + `data: <data>`. The name must be 1 to 200 bytes without line breaks.
    TypedEvent,
}

/// The keep-alive block a family's clients expect, byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepaliveFormat {
    /// `: keepalive <ts>` + `data: {"type":"keepalive",...}` (seed 000).
    PlayerKeepalive,
    /// The comment `: heartbeat <unix seconds>` (seed 002).
    Heartbeat,
}

/// What a stream says first, after `retry:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Greeting {
    /// Nothing beyond `retry:`.
    None,
    /// `data: {"type":"connected","timestamp":...}` (seed 000).
    Connected,
    /// `event: initial` with the channel's latest message, if it has had one (seed 002). Such
    /// channels are kept on every core once published, so the latest message is always known.
    Latest,
}

/// How a family's application events are named on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventName {
    /// No `event:` line: browsers see them in `onmessage`.
    Unnamed,
    /// Always this name (seed 002's `message`).
    Fixed(String),
    /// The payload's `type` field (with [`PayloadRule::TypedEvent`]; seed 004).
    FromPayload,
}

/// Which core serves a stream of this family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The core `hash(channel) % cores`: all of one channel's streams, queues and history live
    /// on one core, and the other cores drop its messages after one hash. For channels with
    /// one or a few subscribers (a player's own events).
    Owner,
    /// The core that accepted the stream: a broadcast channel's subscribers stay spread over
    /// all cores, so one event's fan-out (one write per subscriber) runs on every core at once.
    Local,
}

/// What happens to a stream whose queue reaches `SSE_EVENT_BUFFER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowPolicy {
    /// Close it and count it; the client resumes with `Last-Event-ID`.
    Cut,
    /// Keep only the newest event (value streams such as jackpot values, where only the newest
    /// value matters): the stream is not cut, older queued events are dropped and counted.
    Conflate,
}

/// A channel name template such as `SSE::{brand_id}::{player_id}`: literal text and named holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Alternating pieces: literal text, or a hole naming a value.
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Hole(String),
}

impl Template {
    /// Parses `a{b}c`; `None` when braces are unbalanced or two holes touch (ambiguous match).
    pub fn parse(s: &str) -> Option<Template> {
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('{') {
                let end = inner.find('}')?;
                let name = &inner[..end];
                if name.is_empty() || name.contains('{') {
                    return None;
                }
                if matches!(parts.last(), Some(Part::Hole(_))) {
                    return None;
                }
                parts.push(Part::Hole(name.to_string()));
                rest = &inner[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let lit = &rest[..end];
                if lit.contains('}') {
                    return None;
                }
                parts.push(Part::Lit(lit.to_string()));
                rest = &rest[end..];
            }
        }
        Some(Template { parts })
    }

    /// Fills the holes with `lookup(name)`; `None` when a value is missing.
    pub fn render(&self, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Hole(h) => out.push_str(&lookup(h)?),
            }
        }
        Some(out)
    }

    /// The template as written (`SSE::{brand_id}::{player_id}`), for messages.
    pub fn source(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Hole(h) => {
                    out.push('{');
                    out.push_str(h);
                    out.push('}');
                }
            }
        }
        out
    }

    /// The names of the holes, in order.
    pub fn holes(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Hole(h) => Some(h.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Whether `s` has this template's shape (each hole matches one or more bytes).
    pub fn matches(&self, s: &str) -> bool {
        fn go(parts: &[Part], s: &str) -> bool {
            match parts.split_first() {
                None => s.is_empty(),
                Some((Part::Lit(l), rest)) => {
                    s.strip_prefix(l.as_str()).is_some_and(|t| go(rest, t))
                }
                // A last hole takes any non-empty rest.
                Some((Part::Hole(_), [])) => !s.is_empty(),
                // A hole before a literal may only end where that literal occurs: linear in
                // practice even for hostile names such as `a_user_a_user_...`.
                Some((Part::Hole(_), rest @ [Part::Lit(l), ..])) => s
                    .match_indices(l.as_str())
                    .any(|(i, _)| i >= 1 && go(rest, &s[i..])),
                Some((Part::Hole(_), rest)) => {
                    (1..=s.len()).any(|i| s.is_char_boundary(i) && go(rest, &s[i..]))
                }
            }
        }
        go(&self.parts, s)
    }

    /// Matches `s` where holes may not contain `/` (a path segment each) and returns the hole
    /// values by name, or `None`.
    pub fn capture<'s>(&self, s: &'s str) -> Option<Vec<(&str, &'s str)>> {
        fn go<'t, 's>(parts: &'t [Part], s: &'s str, out: &mut Vec<(&'t str, &'s str)>) -> bool {
            match parts.split_first() {
                None => s.is_empty(),
                Some((Part::Lit(l), rest)) => {
                    s.strip_prefix(l.as_str()).is_some_and(|t| go(rest, t, out))
                }
                Some((Part::Hole(h), rest)) => {
                    let max = s.find('/').unwrap_or(s.len());
                    for i in (1..=max).rev() {
                        if !s.is_char_boundary(i) {
                            continue;
                        }
                        out.push((h.as_str(), &s[..i]));
                        if go(rest, &s[i..], out) {
                            return true;
                        }
                        out.pop();
                    }
                    false
                }
            }
        }
        let mut out = Vec::new();
        go(&self.parts, s, &mut out).then_some(out)
    }

    /// The Redis `PSUBSCRIBE` pattern covering every channel of this template (holes as `*`).
    pub fn redis_pattern(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => {
                    for c in l.chars() {
                        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                }
                Part::Hole(_) => out.push('*'),
            }
        }
        out
    }
}

/// One stream family: a row of the route table.
#[derive(Debug, Clone)]
pub struct Family {
    /// Short name used in stats and metrics labels (`player`).
    pub name: String,
    /// The request path that opens a stream of this family; `{name}` captures one segment.
    pub path: Template,
    /// How the request is authenticated.
    pub auth: AuthRule,
    /// The channel subscribed, from claims / path / query values.
    pub channel: Template,
    /// How payloads are validated before delivery.
    pub payload: PayloadRule,
    /// The `event:` name of application events.
    pub event_name: EventName,
    /// The keep-alive block.
    pub keepalive: KeepaliveFormat,
    /// The family's own keep-alive period (overridden by `SSE_KEEPALIVE_PERIOD`).
    pub keepalive_period: Duration,
    /// The first event after `retry:`.
    pub greeting: Greeting,
    /// Which core serves the stream.
    pub placement: Placement,
    /// What a full queue does.
    pub slow: SlowPolicy,
    /// When set, the channel is this query parameter's value, which must have the shape of
    /// `channel` (seed 003: `/subscribe?channel=...`); several families may then share a path
    /// and the channel's shape picks the family.
    pub channel_param: Option<String>,
    /// When set, the stream subscribes to several channels: this query parameter lists values
    /// (comma-separated) for the channel template's one hole, and its absence or the value
    /// `all` subscribes to every channel of the family (seed 004: `?topics=a,b`).
    pub channel_list_param: Option<String>,
    /// Whether the family's system events (reset) carry an `event:` name. The player family's
    /// are unnamed, like its other system events; other families name them so handlers
    /// expecting only application data never see them.
    pub named_system_events: bool,
    /// Whether this is the family of the topic API (seed 004): `POST
    /// /api/v1/events/broadcast` publishes to its channels, and stats list its subscribers
    /// per topic without a family prefix. Only the built-in topic stream has it.
    pub topic_api: bool,
    /// Whether a channel of this family has one or a few streams (a player's, a private
    /// channel's) rather than many (a broadcast): with `SSE_REDIS_SUBSCRIBE=channel` such
    /// channels are subscribed on Redis one by one where they have streams, instead of by
    /// the family's pattern on every core. Never with `channel_list_param` (`all` names no
    /// channel to subscribe).
    pub unicast: bool,
}

/// The fixed (non-stream) endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /api/v1/publish`
    Publish,
    /// `POST /api/v1/events/broadcast` (seed 004's publisher)
    Broadcast,
    /// `GET /api/v1/events/stats`
    Stats,
    /// `GET /metrics`
    Metrics,
    /// `GET /healthz`
    Healthz,
    /// `GET /readyz`
    Readyz,
    /// `GET /status`: the live status page (HTML).
    Status,
    /// `GET /status/stream`: the status page's figures, one SSE event per period.
    StatusStream,
}

impl Api {
    /// Whether this endpoint moves to the admin listener when `SSE_ADMIN_LISTEN` is set:
    /// publishing, and what the node's state tells about its clients (the status page
    /// shows the same figures as stats). `/healthz` and `/readyz` stay on both (a balancer
    /// probes the public port).
    pub fn admin_only(self) -> bool {
        matches!(
            self,
            Api::Publish
                | Api::Broadcast
                | Api::Stats
                | Api::Metrics
                | Api::Status
                | Api::StatusStream
        )
    }
}

/// The fixed API endpoint at `path` (whatever the method), if any.
pub fn api_of_path(path: &str) -> Option<Api> {
    APIS.iter().find(|(p, _, _)| *p == path).map(|(_, _, a)| *a)
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A stream of family `n` (index into [`RouteTable::families`]).
    Stream(usize),
    /// A fixed API endpoint.
    Api(Api),
}

/// The result of matching a method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Serve it.
    Found(Endpoint),
    /// The path exists but not for this method; `Allow` lists these.
    WrongMethod(&'static str),
    /// No such path.
    NotFound,
}

const APIS: [(&str, Method, Api); 8] = [
    ("/api/v1/publish", Method::Post, Api::Publish),
    ("/api/v1/events/broadcast", Method::Post, Api::Broadcast),
    ("/api/v1/events/stats", Method::Get, Api::Stats),
    ("/metrics", Method::Get, Api::Metrics),
    ("/healthz", Method::Get, Api::Healthz),
    ("/readyz", Method::Get, Api::Readyz),
    ("/status", Method::Get, Api::Status),
    ("/status/stream", Method::Get, Api::StatusStream),
];

/// The fixed API paths (a custom family may not take one over).
pub fn api_paths() -> impl Iterator<Item = &'static str> {
    APIS.iter().map(|(p, _, _)| *p)
}

/// All routes of a node: the stream families and the fixed API.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Stream families, in match order.
    pub families: Vec<Family>,
}

impl RouteTable {
    /// The built-in families: the player stream of seeds 000/001, the game streams of seed
    /// 002, the jackpot channels of seed 003 and the topic stream of seed 004.
    pub fn builtin() -> RouteTable {
        let t = |s: &str| Template::parse(s).expect("built-in template is valid");
        let game = |name: &str, path: &str, channel: &str| Family {
            name: name.into(),
            path: t(path),
            auth: AuthRule::ApiKey,
            channel: t(channel),
            payload: PayloadRule::Any,
            event_name: EventName::Fixed("message".into()),
            keepalive: KeepaliveFormat::Heartbeat,
            keepalive_period: Duration::from_secs(15),
            greeting: Greeting::Latest,
            placement: Placement::Local,
            slow: SlowPolicy::Cut,
            channel_param: None,
            channel_list_param: None,
            named_system_events: true,
            topic_api: false,
            unicast: false,
        };
        let jackpot =
            |name: &str, channel: &str, auth: AuthRule, placement: Placement, slow| Family {
                name: name.into(),
                path: t("/subscribe"),
                auth,
                channel: t(channel),
                payload: PayloadRule::Any,
                event_name: EventName::Unnamed,
                keepalive: KeepaliveFormat::Heartbeat,
                keepalive_period: Duration::from_secs(15),
                greeting: Greeting::None,
                placement,
                slow,
                channel_param: Some("channel".into()),
                channel_list_param: None,
                named_system_events: true,
                topic_api: false,
                // The private channels (owner-placed): one player's.
                unicast: placement == Placement::Owner,
            };
        RouteTable {
            families: vec![
                Family {
                    name: "player".into(),
                    path: t("/sse"),
                    auth: AuthRule::PlayerToken,
                    channel: t("SSE::{brand_id}::{player_id}"),
                    payload: PayloadRule::PlayerEnvelope,
                    event_name: EventName::Unnamed,
                    keepalive: KeepaliveFormat::PlayerKeepalive,
                    keepalive_period: Duration::from_secs(15),
                    greeting: Greeting::Connected,
                    placement: Placement::Owner,
                    slow: SlowPolicy::Cut,
                    channel_param: None,
                    channel_list_param: None,
                    named_system_events: false,
                    topic_api: false,
                    unicast: true,
                },
                // Before `game`: `stream:type:x` also has the shape `stream:{game}`.
                game("game_type", "/sse/type/{type}", "stream:type:{type}"),
                game("game", "/sse/{game}", "stream:{game}"),
                jackpot(
                    "jackpot",
                    "{workspace}_broadcast_{group}",
                    AuthRule::Public,
                    Placement::Local,
                    SlowPolicy::Conflate,
                ),
                jackpot(
                    "jackpot_user",
                    "{workspace}_user_{player}",
                    AuthRule::ChannelToken,
                    Placement::Owner,
                    SlowPolicy::Cut,
                ),
                Family {
                    name: "topic".into(),
                    path: t("/api/v1/events"),
                    auth: AuthRule::Public,
                    channel: t("events:{topic}"),
                    payload: PayloadRule::TypedEvent,
                    event_name: EventName::FromPayload,
                    keepalive: KeepaliveFormat::Heartbeat,
                    keepalive_period: Duration::from_secs(30),
                    greeting: Greeting::None,
                    placement: Placement::Local,
                    slow: SlowPolicy::Cut,
                    channel_param: None,
                    channel_list_param: Some("topics".into()),
                    named_system_events: true,
                    topic_api: true,
                    unicast: false,
                },
            ],
        }
    }

    /// The family `POST /api/v1/events/broadcast` publishes to, if the table has one.
    pub fn topic_family(&self) -> Option<usize> {
        self.families.iter().position(|f| f.topic_api)
    }

    /// Family names, indexed like [`RouteTable::families`] (stats labels).
    pub fn names(&self) -> Vec<&str> {
        self.families.iter().map(|f| f.name.as_str()).collect()
    }

    /// Matches a request. `HEAD` is served as `GET` for the API; streams are `GET` only.
    pub fn lookup(&self, method: Method, path: &str) -> Match {
        for (i, f) in self.families.iter().enumerate() {
            if f.path.capture(path).is_some() {
                return match method {
                    Method::Get => Match::Found(Endpoint::Stream(i)),
                    _ => Match::WrongMethod("GET"),
                };
            }
        }
        for (p, m, api) in APIS {
            if p == path {
                return if method == m || (m == Method::Get && method == Method::Head) {
                    Match::Found(Endpoint::Api(api))
                } else if m == Method::Get {
                    Match::WrongMethod("GET, HEAD")
                } else {
                    Match::WrongMethod("POST")
                };
            }
        }
        Match::NotFound
    }

    /// The family `channel` belongs to: of the families whose channel template it fits, the
    /// one whose auth asks most ([`AuthRule::strength`]), then the first in table order. One
    /// answer for subscribers and publishers alike.
    ///
    /// Shapes overlap because holes take any bytes: `ws_user_jane_broadcast_doe@x.com` is a
    /// private jackpot channel (`{workspace}_user_{player}`) whose player id happens to hold
    /// `_broadcast_`, and it also fits the public `{workspace}_broadcast_{group}`. Table order
    /// alone made it public, so anyone could open it without a token. Taking the stricter
    /// family fails closed: at worst a public channel whose name also fits a private shape
    /// needs a token, never the reverse.
    pub fn family_of_channel(&self, channel: &str) -> Option<usize> {
        let mut best: Option<(u8, usize)> = None;
        for (i, f) in self.families.iter().enumerate() {
            let strength = f.auth.strength();
            // An earlier match as strict or stricter wins: skip the template match.
            if best.is_some_and(|(s, _)| s >= strength) {
                continue;
            }
            if f.channel.matches(channel) {
                best = Some((strength, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Redis `PSUBSCRIBE` patterns, deduplicated: of every family, or with `per_channel`
    /// (`SSE_REDIS_SUBSCRIBE=channel`) of the families not subscribed channel by channel.
    pub fn redis_patterns(&self, per_channel: bool) -> Vec<String> {
        let mut v: Vec<String> = self
            .families
            .iter()
            .filter(|f| !(per_channel && f.unicast))
            .map(|f| f.channel.redis_pattern())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Which core owns `channel` under player-hash sharding: FNV-1a, stable across runs and nodes.
pub fn owner_core(channel: &[u8], cores: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in channel {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % cores.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let cases: &[(&str, &str, bool)] = &[
            ("SSE::{b}::{p}", "SSE::1::2", true),
            ("SSE::{b}::{p}", "SSE::1::", false),
            ("SSE::{b}::{p}", "SSE::::2", false),
            ("SSE::{b}::{p}", "SSE::10::20::30", true),
            ("SSE::{b}::{p}", "sse::1::2", false),
            ("stream:{g}", "stream:crash", true),
            ("stream:{g}", "stream:", false),
        ];
        for (t, s, want) in cases {
            assert_eq!(Template::parse(t).unwrap().matches(s), *want, "{t} vs {s}");
        }
        assert!(Template::parse("a{b}{c}").is_none());
        assert!(Template::parse("a{b").is_none());
        assert!(Template::parse("a}b").is_none());
        let t = Template::parse("SSE::{brand_id}::{player_id}").unwrap();
        assert_eq!(t.redis_pattern(), "SSE::*::*");
        let r = t.render(|k| {
            Some(if k == "brand_id" {
                "7".into()
            } else {
                "9".into()
            })
        });
        assert_eq!(r.as_deref(), Some("SSE::7::9"));
        assert_eq!(t.render(|_| None), None);
        assert_eq!(Template::parse("a*b{x}").unwrap().redis_pattern(), "a\\*b*");
        let p = Template::parse("/sse/type/{type}").unwrap();
        assert_eq!(
            p.capture("/sse/type/multiplier"),
            Some(vec![("type", "multiplier")])
        );
        assert_eq!(p.capture("/sse/type/a/b"), None);
        assert_eq!(p.capture("/sse/type/"), None);
        let q = Template::parse("/x/{a}-{b}").unwrap();
        assert_eq!(q.capture("/x/1-2-3"), Some(vec![("a", "1-2"), ("b", "3")]));
    }

    #[test]
    fn lookup_table() {
        let t = RouteTable::builtin();
        let cases: &[(Method, &str, Match)] = &[
            (Method::Get, "/sse", Match::Found(Endpoint::Stream(0))),
            (Method::Post, "/sse", Match::WrongMethod("GET")),
            (
                Method::Post,
                "/api/v1/publish",
                Match::Found(Endpoint::Api(Api::Publish)),
            ),
            (Method::Get, "/api/v1/publish", Match::WrongMethod("POST")),
            (
                Method::Get,
                "/metrics",
                Match::Found(Endpoint::Api(Api::Metrics)),
            ),
            (
                Method::Head,
                "/healthz",
                Match::Found(Endpoint::Api(Api::Healthz)),
            ),
            (Method::Other, "/readyz", Match::WrongMethod("GET, HEAD")),
            (Method::Get, "/nope", Match::NotFound),
            (Method::Get, "/sse/", Match::NotFound),
            (Method::Get, "/sse/crash", Match::Found(Endpoint::Stream(2))),
            (
                Method::Get,
                "/sse/type/multiplier",
                Match::Found(Endpoint::Stream(1)),
            ),
            (Method::Get, "/sse/type/", Match::NotFound),
            (Method::Get, "/sse/a/b", Match::NotFound),
            (Method::Get, "/sse/type/a/b", Match::NotFound),
        ];
        for (m, p, want) in cases {
            assert_eq!(t.lookup(*m, p), *want, "{m:?} {p}");
        }
    }

    #[test]
    fn channels_find_their_family() {
        let t = RouteTable::builtin();
        let name = |c: &str| t.family_of_channel(c).map(|i| t.families[i].name.as_str());
        assert_eq!(name("SSE::1::2"), Some("player"));
        assert_eq!(name("stream:crash"), Some("game"));
        assert_eq!(name("stream:type:multiplier"), Some("game_type"));
        assert_eq!(name("ws1_broadcast_g-1"), Some("jackpot"));
        assert_eq!(name("ws1_user_a@b.com"), Some("jackpot_user"));
        assert_eq!(name("other"), None);
    }

    /// Names that fit several families' shapes go to the strictest; a private channel is
    /// never classified as a public one.
    #[test]
    fn overlapping_shapes_go_to_the_strictest_family() {
        let t = RouteTable::builtin();
        let name = |c: &str| t.family_of_channel(c).map(|i| t.families[i].name.as_str());
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>)] = &[
            // Private jackpot channels whose player id holds the broadcast marker.
            ("ws_user_jane_broadcast_doe@x.com", Some("jackpot_user")),
            ("ws_user__broadcast_x", Some("jackpot_user")),
            ("ws_user_x_broadcast_", Some("jackpot_user")),
            ("ws_user_a_broadcast_b_broadcast_c", Some("jackpot_user")),
            ("_broadcast__user_x", Some("jackpot_user")),
            // A broadcast name that also fits the private shape needs a token: fails closed.
            ("ws_broadcast_g_user_p", Some("jackpot_user")),
            // Plain names keep their family.
            ("ws_broadcast_g", Some("jackpot")),
            ("ws_user_p", Some("jackpot_user")),
            ("ws_broadcast_", None),
            ("_broadcast_g", None),
            // Player channels stay the player family's, whatever they contain.
            ("SSE::1::x_broadcast_y", Some("player")),
            ("SSE::1::x_user_y", Some("player")),
            // Game channels are API-key guarded: above public shapes, below tokens.
            ("stream:ws_broadcast_g", Some("game")),
            ("stream:ws_user_p", Some("jackpot_user")),
            ("stream:type:x", Some("game_type")),
            ("events:a_broadcast_b", Some("jackpot")),
            ("events:a_user_b", Some("jackpot_user")),
            ("events:a", Some("topic")),
        ];
        for (channel, want) in cases {
            assert_eq!(name(channel), *want, "{channel}");
        }
    }

    #[test]
    fn channel_mode_keeps_patterns_of_broadcast_families_only() {
        let t = RouteTable::builtin();
        let unicast: Vec<&str> = t
            .families
            .iter()
            .filter(|f| f.unicast)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(unicast, ["player", "jackpot_user"]);
        assert_eq!(
            t.redis_patterns(false),
            [
                "*_broadcast_*",
                "*_user_*",
                "SSE::*::*",
                "events:*",
                "stream:*",
                "stream:type:*"
            ]
        );
        assert_eq!(
            t.redis_patterns(true),
            ["*_broadcast_*", "events:*", "stream:*", "stream:type:*"]
        );
    }

    #[test]
    fn owner_is_stable_and_spread() {
        assert_eq!(owner_core(b"SSE::1::2", 1), 0);
        let a = owner_core(b"SSE::1::2", 2);
        assert_eq!(a, owner_core(b"SSE::1::2", 2));
        let on0 = (0..1000)
            .filter(|i| owner_core(format!("SSE::1::{i}").as_bytes(), 2) == 0)
            .count();
        assert!((400..600).contains(&on0), "{on0} of 1000 on core 0");
    }
}
