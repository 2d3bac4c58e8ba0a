//! The fixed API: HTTP publish, stats, metrics, health and readiness.
//!
//! Handlers are plain functions from request data to a [`Reply`]; the request loop writes it.
use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::broker::embedded::PublishError;
use crate::broker::message::Message;
use crate::core::node::Control;
use crate::core::shard::Shard;
use crate::http::response::Status;
use crate::route::payload;
use crate::route::resolve::valid_name;
use crate::stats::{bump, NodeGauges};

/// Largest accepted publish body (CONTRACT: `413` over 64 KiB).
pub const MAX_PUBLISH_BODY: usize = 64 * 1024;

/// Longest channel name accepted from a publisher.
pub const MAX_CHANNEL: usize = 1024;

/// A response to write.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: Status,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: Status, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.into(),
        }
    }

    /// A `{"error": ...}` reply.
    pub fn error(status: Status, message: &str) -> Reply {
        let mut body = b"{\"error\":\"".to_vec();
        for c in message.chars() {
            match c {
                '"' => body.extend_from_slice(b"\\\""),
                '\\' => body.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 => {
                    body.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => {
                    let mut t = [0u8; 4];
                    body.extend_from_slice(c.encode_utf8(&mut t).as_bytes());
                }
            }
        }
        body.extend_from_slice(b"\"}");
        Reply::json(status, body)
    }
}

/// How long the stats endpoint waits for each core's counts.
const COUNTS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Node-wide gauges, with subscriber counts per topic gathered from every core (through
/// their control channels: cores share no state).
async fn gauges(shard: &Shard) -> NodeGauges {
    let node = &shard.node;
    let mut topics: Vec<(String, u64)> = Vec::new();
    if node
        .routes
        .families
        .iter()
        .any(|f| f.channel_list_param.is_some())
    {
        let (tx, rx) = flume::bounded(node.control.len());
        let mut asked = 0;
        for (i, c) in node.control.iter().enumerate() {
            if i == shard.id {
                topics.extend(shard.topic_counts());
            } else if c.send(Control::Counts(tx.clone())).is_ok() {
                asked += 1;
            }
        }
        let deadline = std::time::Instant::now() + COUNTS_WAIT;
        for _ in 0..asked {
            match monoio::time::timeout_at(deadline.into(), rx.recv_async()).await {
                Ok(Ok(v)) => topics.extend(v),
                _ => break,
            }
        }
        topics.sort();
        topics.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.1 += b.1;
            }
            same
        });
    }
    NodeGauges {
        connection_limit: node.config.connection_limit,
        draining: node.draining.load(std::sync::atomic::Ordering::Acquire),
        topics,
    }
}

/// `GET /api/v1/events/stats`
pub async fn stats(shard: &Shard) -> Reply {
    let names = shard.node.routes.names();
    let gauges = gauges(shard).await;
    Reply::json(Status::Ok, shard.node.stats.render_json(&names, &gauges))
}

/// `GET /metrics`
pub async fn metrics(shard: &Shard) -> Reply {
    let names = shard.node.routes.names();
    let gauges = gauges(shard).await;
    Reply {
        status: Status::Ok,
        content_type: "text/plain; version=0.0.4",
        body: shard
            .node
            .stats
            .render_prometheus(&names, &gauges)
            .into_bytes(),
    }
}

/// `GET /healthz`: the process answers.
pub fn healthz() -> Reply {
    Reply::json(Status::Ok, &b"{\"status\":\"ok\"}"[..])
}

/// `GET /readyz`: `503` while draining, at the connection limit, or (with Redis) while any
/// core's pattern subscription is down.
pub fn readyz(shard: &Shard) -> Reply {
    let node = &shard.node;
    if node.ready() {
        Reply::json(Status::Ok, &b"{\"ready\":true}"[..])
    } else if node.draining.load(std::sync::atomic::Ordering::Acquire) {
        Reply::json(
            Status::ServiceUnavailable,
            &b"{\"ready\":false,\"reason\":\"draining\"}"[..],
        )
    } else if !node.redis_ready() {
        Reply::json(
            Status::ServiceUnavailable,
            format!(
                "{{\"ready\":false,\"reason\":\"Redis subscription down on {} of {} cores\"}}",
                node.config.cores.saturating_sub(
                    node.redis_subscribed
                        .load(std::sync::atomic::Ordering::Acquire)
                ),
                node.config.cores
            ),
        )
    } else {
        Reply::json(
            Status::ServiceUnavailable,
            &b"{\"ready\":false,\"reason\":\"connection limit reached\"}"[..],
        )
    }
}

#[derive(Deserialize)]
struct PublishBody<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// `POST /api/v1/publish` with `{"channel": "...", "data": <JSON>}`. `data` is what a Redis
/// `PUBLISH` would carry: a JSON string is delivered as its text, any other JSON value as
/// written, byte for byte.
pub async fn publish(shard: &Shard, body: &[u8]) -> Reply {
    let arrived = Instant::now();
    let req: PublishBody = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Reply::error(
                Status::BadRequest,
                &format!("body must be {{\"channel\": \"...\", \"data\": <JSON>}}: {e}"),
            )
        }
    };
    let channel = req.channel.as_ref();
    if channel.is_empty() || channel.len() > MAX_CHANNEL || channel.chars().any(char::is_control) {
        return Reply::error(
            Status::BadRequest,
            "channel must be 1 to 1024 bytes without control characters",
        );
    }
    let routes = &shard.node.routes;
    let Some(family) = routes.family_of_channel(channel) else {
        let shapes: Vec<String> = routes
            .families
            .iter()
            .map(|f| format!("{}: {}", f.name, f.channel.source()))
            .collect();
        return Reply::error(
            Status::BadRequest,
            &format!(
                "channel {channel:?} matches no route family ({})",
                shapes.join(", ")
            ),
        );
    };
    let raw = req.data.get();
    let payload: Bytes = if raw.starts_with('"') {
        match serde_json::from_str::<String>(raw) {
            Ok(s) => Bytes::from(s),
            Err(_) => return Reply::error(Status::BadRequest, "data is not a valid JSON string"),
        }
    } else {
        Bytes::copy_from_slice(raw.as_bytes())
    };
    if let Err(e) = payload::check(routes.families[family].payload, &payload) {
        return Reply::error(
            Status::BadRequest,
            &format!("data refused: {}", e.message()),
        );
    }
    send(shard, channel, payload, arrived).await
}

#[derive(Deserialize)]
struct BroadcastBody<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// `POST /api/v1/events/broadcast` with `{"topic": "...", "type": "...", "data": {...}}`
/// (seed 004's publisher): published on `events:{topic}` as `{"type": ..., "data": ...}`,
/// exactly what a service publishing through Redis would send.
pub async fn broadcast(shard: &Shard, body: &[u8]) -> Reply {
    let arrived = Instant::now();
    let req: BroadcastBody = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Reply::error(
                Status::BadRequest,
                &format!(
                    "body must be {{\"topic\": \"...\", \"type\": \"...\", \"data\": {{...}}}}: {e}"
                ),
            )
        }
    };
    if !valid_name(&req.topic) || req.topic == "all" {
        return Reply::error(
            Status::BadRequest,
            "topic must be 1 to 200 bytes of [A-Za-z0-9_.@:-] (and not `all`, which only subscribes)",
        );
    }
    let Some(family) = shard
        .node
        .routes
        .families
        .iter()
        .find(|f| f.name == "topic")
    else {
        return Reply::error(Status::NotFound, "no topic family in the route table");
    };
    let Some(channel) = family.channel.render(|_| Some(req.topic.to_string())) else {
        return Reply::error(
            Status::InternalServerError,
            "topic channel template is unusable",
        );
    };
    let routes = &shard.node.routes;
    let own = routes
        .family_of_channel(&channel)
        .map(|f| routes.families[f].name.as_str());
    if own != Some("topic") {
        return Reply::error(
            Status::BadRequest,
            &format!("topic {:?} gives a channel of another family", req.topic),
        );
    }
    let mut payload = Vec::with_capacity(body.len() + 16);
    payload.extend_from_slice(b"{\"type\":");
    let _ = serde_json::to_writer(&mut payload, req.kind.as_ref());
    payload.extend_from_slice(b",\"data\":");
    payload.extend_from_slice(req.data.get().as_bytes());
    payload.push(b'}');
    if let Err(e) = payload::typed_event(&payload) {
        return Reply::error(
            Status::BadRequest,
            &format!("event refused: {}", e.message()),
        );
    }
    send(shard, &channel, Bytes::from(payload), arrived).await
}

/// Hands a checked message to the broker and answers `202 {"delivered_to_nodes": n}`.
async fn send(shard: &Shard, channel: &str, payload: Bytes, arrived: Instant) -> Reply {
    if let Some(redis) = &shard.publisher {
        // Through Redis: every node's subscription (this one's too) delivers it.
        return match redis.publish(channel.as_bytes(), &payload).await {
            Ok(n) => {
                bump(&shard.stats().publishes);
                Reply::json(Status::Accepted, format!("{{\"delivered_to_nodes\":{n}}}"))
            }
            Err(why) => {
                bump(&shard.stats().publish_failed);
                Reply::error(Status::ServiceUnavailable, &why)
            }
        };
    }
    let msg = Message {
        channel: Bytes::copy_from_slice(channel.as_bytes()),
        payload,
        arrived,
    };
    match shard.node.broker.publish(msg) {
        Ok(n) => {
            bump(&shard.stats().publishes);
            Reply::json(Status::Accepted, format!("{{\"delivered_to_nodes\":{n}}}"))
        }
        Err(PublishError::Closed) => {
            Reply::error(Status::ServiceUnavailable, "the node is shutting down")
        }
        Err(PublishError::Full) => Reply::error(
            Status::ServiceUnavailable,
            "publishers are outrunning delivery (a core's inbox is full); retry later",
        ),
    }
}
