//! What to do with a request, decided from its head alone: a value, so every rule (routing,
//! publish authorisation, CORS, body framing, refusals) is table-tested without a socket.
use std::net::SocketAddr;

use crate::auth::credentials;
use crate::broker::message::MAX_PAYLOAD;
use crate::config::Config;
use crate::conn::reply::Reply;
use crate::conn::status;
use crate::http::cors::CorsOrigins;
use crate::http::request::{parse_head, BodyKind, Method, Parsed, RequestHead};
use crate::http::response::Status;
use crate::route::resolve::{resolve, StreamSpec};
use crate::route::table::{api_of_path, Api, Endpoint, Match, RouteTable};

/// Largest accepted publish body (the contract, docs/API.md: `413` over 64 KiB).
pub const MAX_PUBLISH_BODY: usize = MAX_PAYLOAD;

/// What a connection does next. Owned, so the read buffer is free again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `reply` now; then close, or go on after `consumed` bytes.
    Answer {
        /// The answer.
        reply: Reply,
        /// How the answer is framed.
        framing: Framing,
    },
    /// Read a `len`-byte publish body after `head_len` bytes, then publish it.
    Publish {
        /// Which publish API.
        api: Api,
        /// Where the body starts.
        head_len: usize,
        /// The body's length.
        len: usize,
        /// How the answer is framed (`consumed` is `head_len + len`).
        framing: Framing,
    },
    /// Answer from the node's state (stats, metrics, readiness), which the connection's core
    /// gathers first.
    Query {
        /// Which endpoint.
        api: Api,
        /// How the answer is framed.
        framing: Framing,
    },
    /// Open a stream.
    Stream(StreamSpec),
}

/// How an answer is framed and what follows it on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    /// The `Access-Control-Allow-Origin` value, when CORS allows the request's origin.
    pub allow_origin: Option<Box<str>>,
    /// Whether the connection carries on with the next request.
    pub keep_alive: bool,
    /// A `HEAD` request: the body's length without the body.
    pub head_only: bool,
    /// Bytes of the read buffer this request took.
    pub consumed: usize,
}

impl Framing {
    /// Framing that closes the connection after the answer.
    fn close(allow_origin: Option<&str>) -> Framing {
        Framing {
            allow_origin: allow_origin.map(Into::into),
            keep_alive: false,
            head_only: false,
            consumed: 0,
        }
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `SSE_LISTEN`: streams, and everything else unless `SSE_ADMIN_LISTEN` is set.
    Public,
    /// `SSE_ADMIN_LISTEN`: publish, stats, metrics and the status page (and the health
    /// probes), no event streams.
    Admin,
}

/// What [`decide`] reads besides the request.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The route table.
    pub routes: &'a RouteTable,
    /// The settings (CORS, the publish token, the stream keys).
    pub config: &'a Config,
    /// The client's address (publishing without a token is for loopback only).
    pub peer: SocketAddr,
    /// The listener the connection came in on.
    pub listener: Listener,
    /// Seconds since the Unix epoch (token expiry).
    pub now_unix: u64,
}

fn answer(reply: Reply, framing: Framing) -> Option<Action> {
    Some(Action::Answer { reply, framing })
}

/// Parses what has been read so far and decides; `None` means the head is incomplete.
pub fn decide(ctx: &Context<'_>, buf: &[u8]) -> Option<Action> {
    let head = match parse_head(buf) {
        Ok(Parsed::Partial) => return None,
        Ok(Parsed::Complete(h)) => h,
        Err(e) => {
            let status = Status::from_code(e.status()).unwrap_or(Status::BadRequest);
            return answer(Reply::error(status, e.message()), Framing::close(None));
        }
    };
    let body_len = match head.body {
        BodyKind::None => 0,
        BodyKind::Length(n) => n,
        BodyKind::Chunked => {
            return answer(
                Reply::error(
                    Status::LengthRequired,
                    "chunked request bodies are not accepted: send Content-Length",
                ),
                Framing::close(None),
            )
        }
    };
    let config = ctx.config;
    let origin_allowed = head.origin.filter(|o| config.cors_origins.allows(o));
    let allow_origin = match (&config.cors_origins, origin_allowed) {
        (_, None) => None,
        (CorsOrigins::Any, Some(_)) => Some("*"),
        (_, Some(o)) => std::str::from_utf8(o).ok(),
    };
    // Requests other than publish carry no body; one that does is answered and closed
    // rather than having its body parsed as the next request.
    let framing = Framing {
        allow_origin: allow_origin.map(Into::into),
        keep_alive: head.keep_alive && body_len == 0,
        head_only: head.method == Method::Head,
        consumed: head.head_len,
    };
    if !serves(ctx, head.path) {
        // Answered exactly like a path that does not exist, preflights included: the public
        // port does not even confirm that the admin API exists.
        let framing = Framing {
            head_only: false,
            ..framing
        };
        return answer(Reply::error(Status::NotFound, "no such path"), framing);
    }
    if head.method == Method::Options && config.cors_origins != CorsOrigins::None {
        return Some(preflight(ctx.routes, &head, framing));
    }
    let endpoint = match ctx.routes.lookup(head.method, head.path) {
        Match::NotFound => {
            let framing = Framing {
                head_only: false,
                ..framing
            };
            return answer(Reply::error(Status::NotFound, "no such path"), framing);
        }
        Match::WrongMethod(allow) => {
            let framing = Framing {
                head_only: false,
                ..framing
            };
            let reply = Reply::error(Status::MethodNotAllowed, "method not allowed for this path")
                .with_header("Allow", allow);
            return answer(reply, framing);
        }
        Match::Found(e) => e,
    };
    match endpoint {
        Endpoint::Api(api @ (Api::Publish | Api::Broadcast)) => {
            Some(publish(ctx, &head, api, body_len, allow_origin))
        }
        Endpoint::Api(api @ (Api::Stats | Api::Metrics | Api::Readyz | Api::StatusStream)) => {
            Some(Action::Query { api, framing })
        }
        Endpoint::Api(Api::Status) => answer(status::page(), framing),
        Endpoint::Api(Api::Healthz) => answer(
            Reply::json(Status::Ok, &b"{\"status\":\"ok\"}"[..]),
            framing,
        ),
        Endpoint::Stream(i) => Some(
            match resolve(ctx.routes, i, &head, &config.keys(), ctx.now_unix) {
                Ok(mut spec) => {
                    spec.allow_origin = framing.allow_origin;
                    Action::Stream(spec)
                }
                Err(r) => Action::Answer {
                    reply: Reply::error(r.status, &r.message),
                    framing: Framing {
                        head_only: false,
                        ..framing
                    },
                },
            },
        ),
    }
}

/// Whether the connection's listener serves `path`. Without `SSE_ADMIN_LISTEN` the public
/// listener serves everything; with it, publish, stats, metrics and the status page are
/// served only on the admin listener, which serves nothing but the fixed API (no streams).
fn serves(ctx: &Context<'_>, path: &str) -> bool {
    if ctx.config.admin_listen.is_none() {
        return true;
    }
    let api = api_of_path(path);
    match ctx.listener {
        Listener::Public => !api.is_some_and(Api::admin_only),
        Listener::Admin => api.is_some(),
    }
}

/// Whether a `Content-Type` value is JSON: `application/json`, any case, parameters such as
/// `; charset=utf-8` allowed. A browser page can POST cross-site without a CORS preflight only
/// as `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data`; asking for
/// JSON makes such a "simple request" fail here instead of publishing.
fn is_json(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|v| {
        let essence = v.split(|&b| b == b';').next().unwrap_or_default();
        essence
            .trim_ascii()
            .eq_ignore_ascii_case(b"application/json")
    })
}

/// A publish request: authorised by `SSE_PUBLISH_TOKEN` (or, while it is unset, from a
/// loopback peer that no proxy relayed), declared `application/json`, with a
/// `Content-Length` body of at most [`MAX_PUBLISH_BODY`]. Refusals close the connection (the
/// body is not read).
///
/// Loopback trust ends at a proxy: behind a same-host nginx, Envoy sidecar or `kubectl
/// port-forward` every request arrives from loopback, so a request that says it was
/// forwarded (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`, whatever the value) is never
/// trusted by address. A plain TCP forwarder adds no header; the start-up warning and
/// `SSE_ADMIN_LISTEN` are for that case.
fn publish(
    ctx: &Context<'_>,
    head: &RequestHead<'_>,
    api: Api,
    body_len: usize,
    allow_origin: Option<&str>,
) -> Action {
    let token = ctx.config.publish_token.as_ref();
    let authorized = match token {
        Some(token) => credentials::bearer(head.authorization).is_some_and(|t| token.matches(t)),
        // `::ffff:127.0.0.1` on a dual-stack listener is loopback too.
        None => !head.forwarded && ctx.peer.ip().to_canonical().is_loopback(),
    };
    let refuse = |status, why| Action::Answer {
        reply: Reply::error(status, why),
        framing: Framing::close(allow_origin),
    };
    if !authorized {
        let why = if token.is_some() {
            "publish needs Authorization: Bearer <SSE_PUBLISH_TOKEN>"
        } else if head.forwarded {
            "publish through a proxy (Forwarded, X-Forwarded-For or X-Real-IP) needs SSE_PUBLISH_TOKEN"
        } else {
            "publish is accepted from loopback only while SSE_PUBLISH_TOKEN is unset"
        };
        return refuse(Status::Unauthorized, why);
    }
    if head.body == BodyKind::None {
        return refuse(
            Status::LengthRequired,
            "publish needs a JSON body with Content-Length",
        );
    }
    if body_len > MAX_PUBLISH_BODY {
        return refuse(Status::PayloadTooLarge, "publish body over 64 KiB");
    }
    if !is_json(head.content_type) {
        return refuse(
            Status::UnsupportedMediaType,
            "publish needs Content-Type: application/json",
        );
    }
    Action::Publish {
        api,
        head_len: head.head_len,
        len: body_len,
        framing: Framing {
            allow_origin: allow_origin.map(Into::into),
            keep_alive: head.keep_alive,
            head_only: head.method == Method::Head,
            consumed: head.head_len + body_len,
        },
    }
}

/// Answers a CORS preflight (`OPTIONS`): `204` with what a browser may send to this path,
/// `403` for an origin not in `SSE_CORS_ORIGINS`, `404` for an unknown path.
fn preflight(routes: &RouteTable, head: &RequestHead<'_>, framing: Framing) -> Action {
    let plain = Framing {
        allow_origin: None,
        head_only: false,
        ..framing.clone()
    };
    let allow = match routes.lookup(Method::Get, head.path) {
        Match::NotFound => {
            return Action::Answer {
                reply: Reply::error(Status::NotFound, "no such path"),
                framing: plain,
            }
        }
        Match::Found(Endpoint::Stream(_)) => "GET, OPTIONS",
        Match::Found(Endpoint::Api(_)) => "GET, HEAD, OPTIONS",
        Match::WrongMethod(_) => "POST, OPTIONS",
    };
    if framing.allow_origin.is_none() {
        return Action::Answer {
            reply: Reply::error(Status::Forbidden, "origin not allowed by SSE_CORS_ORIGINS"),
            framing: plain,
        };
    }
    let reply = Reply::empty(Status::NoContent)
        .with_header("Access-Control-Allow-Methods", allow)
        .with_header(
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, Last-Event-ID, Cache-Control",
        )
        .with_header("Access-Control-Max-Age", "600");
    Action::Answer {
        reply,
        framing: Framing {
            head_only: false,
            ..framing
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;
    use crate::route::resolve::Channels;

    const NOW: u64 = 1_761_143_445;

    /// A one-line summary of an action, for the table. What a kept connection consumed is
    /// shown as `all` when it is the whole request.
    fn summary(a: Option<Action>, request_len: usize) -> String {
        let framing = |f: &Framing| {
            let consumed = match (f.keep_alive, f.consumed) {
                (false, _) => String::new(),
                (true, n) if n == request_len => " all".into(),
                (true, n) => format!(" {n}"),
            };
            format!(
                "{}{}{}{consumed}",
                if f.keep_alive { "keep" } else { "close" },
                if f.head_only { " head" } else { "" },
                f.allow_origin
                    .as_deref()
                    .map_or(String::new(), |o| format!(" cors={o}")),
            )
        };
        match a {
            None => "partial".into(),
            Some(Action::Answer { reply, framing: f }) => {
                let headers: Vec<String> = reply
                    .headers
                    .iter()
                    .map(|(n, v)| format!(" {n}={v}"))
                    .collect();
                format!(
                    "{} {}{}",
                    reply.status.code(),
                    framing(&f),
                    headers.concat()
                )
            }
            Some(Action::Publish {
                api,
                head_len,
                len,
                framing: f,
            }) => {
                assert_eq!(head_len + len, request_len, "the body follows the head");
                format!("publish {api:?} body={len} {}", framing(&f))
            }
            Some(Action::Query { api, framing: f }) => format!("query {api:?} {}", framing(&f)),
            Some(Action::Stream(spec)) => format!(
                "stream {} {} resume={:?} cors={:?}",
                spec.family,
                match &spec.channels {
                    Channels::One(c) => c.to_string(),
                    Channels::Many(l) => l.join(","),
                    Channels::All => "all".into(),
                },
                spec.last_event_id,
                spec.allow_origin
            ),
        }
    }

    fn token(claims: &str) -> String {
        crate::auth::jwt::sign_hs256(claims, b"k")
    }

    #[test]
    fn decide_table() {
        let routes = RouteTable::builtin();
        let open = Config {
            auth_secret: Some(Secret::new("k")),
            api_keys: vec![Secret::new("game-key")],
            ..Config::default()
        };
        let guarded = Config {
            publish_token: Some(Secret::new("pub-token")),
            cors_origins: CorsOrigins::List(vec!["https://a.example".into()]),
            ..open.clone()
        };
        let any_origin = Config {
            cors_origins: CorsOrigins::Any,
            ..open.clone()
        };
        let loopback: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let remote: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let player = token(&format!(
            r#"{{"brand_id":1,"player_id":2,"exp":{}}}"#,
            NOW + 60
        ));
        let expired = token(&format!(
            r#"{{"brand_id":1,"player_id":2,"exp":{}}}"#,
            NOW - 60
        ));
        // A publish-shaped POST: JSON unless `extra` sets another Content-Type.
        let body = |path: &str, len: usize, extra: &str| {
            let body = "b".repeat(len);
            let json = if extra.contains("Content-Type") {
                ""
            } else {
                "Content-Type: application/json\r\n"
            };
            format!("POST {path} HTTP/1.1\r\nContent-Length: {len}\r\n{json}{extra}\r\n{body}")
        };
        let get = |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\n{extra}\r\n");
        let over = MAX_PUBLISH_BODY + 1;
        #[rustfmt::skip]
        let cases: Vec<(&Config, SocketAddr, String, String)> = vec![
            // Framing and parsing.
            (&open, loopback, "GET /healthz HTTP/1.1\r\n".into(), "partial".into()),
            (&open, loopback, "GET /healthz HTTP/1.1\r\nA b\r\n\r\n".into(), "400 close".into()),
            (&open, loopback, "POST /api/v1/publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".into(), "411 close".into()),
            // The fixed API.
            (&open, loopback, get("/healthz", ""), "200 keep all".into()),
            (&open, loopback, "HEAD /healthz HTTP/1.1\r\n\r\n".into(), "200 keep head all".into()),
            (&open, loopback, "GET /healthz HTTP/1.1\r\nContent-Length: 2\r\n\r\nab".into(), "200 close".into()),
            (&open, loopback, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".into(), "200 close".into()),
            (&open, loopback, get("/readyz", ""), "query Readyz keep all".into()),
            (&open, loopback, get("/metrics", ""), "query Metrics keep all".into()),
            (&open, loopback, get("/api/v1/events/stats", ""), "query Stats keep all".into()),
            (&open, loopback, get("/nope", ""), "404 keep all".into()),
            (&open, loopback, "HEAD /nope HTTP/1.1\r\n\r\n".into(), "404 keep all".into()),
            (&open, loopback, body("/sse", 0, ""), "405 keep all Allow=GET".into()),
            (&open, loopback, get("/api/v1/publish", ""), "405 keep all Allow=POST".into()),
            (&open, loopback, body("/healthz", 0, ""), "405 keep all Allow=GET, HEAD".into()),
            // Publish: loopback only without a token; a token when one is set.
            (&open, loopback, body("/api/v1/publish", 2, ""), "publish Publish body=2 keep all".into()),
            (&open, mapped, body("/api/v1/events/broadcast", 2, ""), "publish Broadcast body=2 keep all".into()),
            (&open, remote, body("/api/v1/publish", 2, ""), "401 close".into()),
            (&guarded, loopback, body("/api/v1/publish", 2, ""), "401 close".into()),
            (&guarded, remote, body("/api/v1/publish", 2, "Authorization: Bearer nope\r\n"), "401 close".into()),
            (&guarded, remote, body("/api/v1/publish", 2, "Authorization: Bearer pub-token\r\n"), "publish Publish body=2 keep all".into()),
            (&open, loopback, "POST /api/v1/publish HTTP/1.1\r\n\r\n".into(), "411 close".into()),
            (&open, loopback, body("/api/v1/publish", over, ""), "413 close".into()),
            // Loopback trust ends at a proxy: any forwarding header, any value, even empty.
            (&open, loopback, body("/api/v1/publish", 2, "X-Forwarded-For: 127.0.0.1\r\n"), "401 close".into()),
            (&open, loopback, body("/api/v1/publish", 2, "Forwarded: for=127.0.0.1\r\n"), "401 close".into()),
            (&open, mapped, body("/api/v1/events/broadcast", 2, "X-Real-IP:\r\n"), "401 close".into()),
            (&guarded, loopback, body("/api/v1/publish", 2, "X-Forwarded-For: 1.2.3.4\r\nAuthorization: Bearer pub-token\r\n"), "publish Publish body=2 keep all".into()),
            // Publish bodies are JSON: no simple cross-site POST gets through.
            (&open, loopback, body("/api/v1/publish", 2, "Content-Type: application/json; charset=utf-8\r\n"), "publish Publish body=2 keep all".into()),
            (&open, loopback, body("/api/v1/publish", 2, "Content-Type: Application/JSON\r\n"), "publish Publish body=2 keep all".into()),
            (&open, loopback, body("/api/v1/publish", 2, "Content-Type: text/plain\r\n"), "415 close".into()),
            (&open, loopback, body("/api/v1/events/broadcast", 2, "Content-Type: application/x-www-form-urlencoded\r\n"), "415 close".into()),
            (&open, loopback, body("/api/v1/publish", 2, "Content-Type: application/jsonx\r\n"), "415 close".into()),
            (&open, loopback, "POST /api/v1/publish HTTP/1.1\r\nContent-Length: 2\r\n\r\nbb".into(), "415 close".into()),
            (&open, remote, body("/api/v1/publish", 2, "Content-Type: text/plain\r\n"), "401 close".into()),
            (&guarded, remote, body("/api/v1/publish", 2, "Origin: https://a.example\r\n"), "401 close cors=https://a.example".into()),
            // Streams: resolved, or refused with the route's status.
            (&open, loopback, get("/sse", ""), "401 keep all".into()),
            (&open, loopback, get(&format!("/sse?token={player}"), ""), "stream 0 SSE::1::2 resume=None cors=None".into()),
            (&open, loopback, get(&format!("/sse?token={expired}"), ""), "401 keep all".into()),
            (&open, loopback, get(&format!("/sse?token={player}&lastEventId=r.0.7"), ""), "stream 0 SSE::1::2 resume=Some(\"r.0.7\") cors=None".into()),
            (&open, loopback, get(&format!("/sse?token={player}"), "Last-Event-ID: r.1.9\r\n"), "stream 0 SSE::1::2 resume=Some(\"r.1.9\") cors=None".into()),
            (&open, loopback, get("/sse/crash?api_key=game-key", ""), "stream 2 stream:crash resume=None cors=None".into()),
            (&open, loopback, get("/sse/crash?api_key=other", ""), "401 keep all".into()),
            (&open, loopback, get("/subscribe?channel=ws_broadcast_g", ""), "stream 3 ws_broadcast_g resume=None cors=None".into()),
            (&open, loopback, get("/subscribe?channel=nothing", ""), "400 keep all".into()),
            (&open, loopback, get("/api/v1/events?topics=a,b,a", ""), "stream 5 events:a,events:b resume=None cors=None".into()),
            (&open, loopback, get("/api/v1/events", ""), "stream 5 all resume=None cors=None".into()),
            (&any_origin, loopback, get("/api/v1/events", "Origin: https://x.example\r\n"), "stream 5 all resume=None cors=Some(\"*\")".into()),
            // CORS: only configured origins get headers; preflights when CORS is on.
            (&guarded, loopback, get("/healthz", "Origin: https://a.example\r\n"), "200 keep cors=https://a.example all".into()),
            (&guarded, loopback, get("/healthz", "Origin: https://b.example\r\n"), "200 keep all".into()),
            (&any_origin, loopback, get("/healthz", "Origin: https://b.example\r\n"), "200 keep cors=* all".into()),
            (&guarded, loopback, "OPTIONS /sse HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n".into(),
                "204 keep cors=https://a.example all Access-Control-Allow-Methods=GET, OPTIONS Access-Control-Allow-Headers=Authorization, Content-Type, Last-Event-ID, Cache-Control Access-Control-Max-Age=600".into()),
            (&guarded, loopback, "OPTIONS /api/v1/publish HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n".into(),
                "204 keep cors=https://a.example all Access-Control-Allow-Methods=POST, OPTIONS Access-Control-Allow-Headers=Authorization, Content-Type, Last-Event-ID, Cache-Control Access-Control-Max-Age=600".into()),
            (&guarded, loopback, "OPTIONS /sse HTTP/1.1\r\nOrigin: https://b.example\r\n\r\n".into(), "403 keep all".into()),
            (&guarded, loopback, "OPTIONS /nope HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n".into(), "404 keep all".into()),
            (&open, loopback, "OPTIONS /sse HTTP/1.1\r\n\r\n".into(), "405 keep all Allow=GET".into()),
        ];
        for (config, peer, request, want) in &cases {
            let ctx = Context {
                routes: &routes,
                config,
                peer: *peer,
                listener: Listener::Public,
                now_unix: NOW,
            };
            let got = summary(decide(&ctx, request.as_bytes()), request.len());
            assert_eq!(&got, want, "{request:?}");
        }
    }

    /// With `SSE_ADMIN_LISTEN`, publish, stats and metrics are the admin listener's only, and
    /// it serves nothing else but the health probes; the public one answers them as unknown.
    #[test]
    fn decide_listeners_table() {
        use Listener::{Admin, Public};
        let routes = RouteTable::builtin();
        let single = Config::default();
        let split = Config {
            admin_listen: Some("127.0.0.1:9090".parse().unwrap()),
            cors_origins: CorsOrigins::Any,
            ..Config::default()
        };
        let loopback: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let publish = |path: &str| {
            format!("POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nbb")
        };
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\n\r\n");
        #[rustfmt::skip]
        let cases: Vec<(&Config, Listener, String, &str)> = vec![
            // One listener: it serves everything.
            (&single, Public, publish("/api/v1/publish"), "publish Publish body=2 keep all"),
            (&single, Public, get("/metrics"), "query Metrics keep all"),
            // Split, public side: the admin API is not there at all, whatever the method.
            (&split, Public, publish("/api/v1/publish"), "404 close"),
            (&split, Public, publish("/api/v1/events/broadcast"), "404 close"),
            (&split, Public, get("/api/v1/events/stats"), "404 keep all"),
            (&split, Public, get("/metrics"), "404 keep all"),
            (&split, Public, "HEAD /metrics HTTP/1.1\r\n\r\n".into(), "404 keep all"),
            (&split, Public, get("/api/v1/publish"), "404 keep all"),
            (&split, Public, "OPTIONS /api/v1/publish HTTP/1.1\r\nOrigin: https://x.example\r\n\r\n".into(), "404 keep cors=* all"),
            (&split, Public, get("/healthz"), "200 keep all"),
            (&split, Public, get("/readyz"), "query Readyz keep all"),
            (&split, Public, get("/api/v1/events?topics=a"), "stream 5 events:a resume=None cors=None"),
            (&split, Public, get("/status"), "404 keep all"),
            (&split, Public, get("/status/stream"), "404 keep all"),
            // Split, admin side: the fixed API only.
            (&split, Admin, publish("/api/v1/publish"), "publish Publish body=2 keep all"),
            (&split, Admin, publish("/api/v1/events/broadcast"), "publish Broadcast body=2 keep all"),
            (&split, Admin, get("/api/v1/events/stats"), "query Stats keep all"),
            (&split, Admin, get("/metrics"), "query Metrics keep all"),
            (&split, Admin, get("/healthz"), "200 keep all"),
            (&split, Admin, get("/readyz"), "query Readyz keep all"),
            (&split, Admin, get("/status/stream"), "query StatusStream keep all"),
            (&single, Public, get("/status/stream"), "query StatusStream keep all"),
            (&split, Admin, get("/api/v1/publish"), "405 keep all Allow=POST"),
            (&split, Admin, get("/api/v1/events?topics=a"), "404 keep all"),
            (&split, Admin, get("/subscribe?channel=ws_broadcast_g"), "404 keep all"),
            (&split, Admin, get("/sse"), "404 keep all"),
            (&split, Admin, get("/nope"), "404 keep all"),
        ];
        for (config, listener, request, want) in &cases {
            let ctx = Context {
                routes: &routes,
                config,
                peer: loopback,
                listener: *listener,
                now_unix: NOW,
            };
            let got = summary(decide(&ctx, request.as_bytes()), request.len());
            assert_eq!(got, *want, "{listener:?} {request:?}");
        }
    }
}
