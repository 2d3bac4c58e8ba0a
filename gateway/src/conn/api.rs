//! The fixed API: HTTP publish, stats, metrics and readiness. Handlers are plain functions
//! from a request's body or the node's state to a [`Reply`]; the request loop writes it.
use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::broker::message::{Message, MAX_CHANNEL};
use crate::conn::reply::Reply;
use crate::core::node::Readiness;
use crate::core::shard::Shard;
use crate::http::response::Status;
use crate::route::payload;
use crate::route::resolve::valid_name;
use crate::route::table::Api;
use crate::stats::{Descriptors, NodeGauges};
use crate::util::json::escape_json_into;

/// Answers a query of the node's state: stats, metrics or readiness.
pub async fn query(shard: &Shard, api: Api) -> Reply {
    if api == Api::Readyz {
        return readyz(shard);
    }
    let gauges = gauges(shard).await;
    let names = shard.routes().names();
    let stats = shard.node().stats();
    match api {
        Api::Metrics => Reply {
            content_type: Some("text/plain; version=0.0.4"),
            ..Reply::json(Status::Ok, stats.render_prometheus(&names, &gauges))
        },
        _ => Reply::json(Status::Ok, stats.render_json(&names, &gauges)),
    }
}

/// Node-wide gauges, with subscriber counts per topic gathered from every core: the
/// `SSE_METRICS_TOPICS` busiest on their own, the rest summed (topic names are the clients').
pub(super) async fn gauges(shard: &Shard) -> NodeGauges {
    let config = shard.config();
    NodeGauges {
        connection_limit: config.connection_limit,
        pending_limit: config.pending_limit,
        draining: shard.node().draining(),
        topics: shard.node_topic_counts().await,
        descriptors: Descriptors::read(),
    }
}

/// `GET /readyz`: `503` while draining, at the connection limit, or (with Redis) while any
/// core's pattern subscription is down, or (sharded mode) any core's link to a master of the
/// slot map is not subscribed.
fn readyz(shard: &Shard) -> Reply {
    let unavailable = |why: &str| {
        let mut body: Vec<u8> = Vec::with_capacity(32 + why.len());
        body.extend_from_slice(b"{\"ready\":false,\"reason\":\"");
        // A shard's name is the address Redis's slot map gave: escaped like any input.
        escape_json_into(&mut body, why);
        body.extend_from_slice(b"\"}");
        Reply::json(Status::ServiceUnavailable, body)
    };
    match shard.node().readiness() {
        Readiness::Ready => Reply::json(Status::Ok, &b"{\"ready\":true}"[..]),
        Readiness::Draining => unavailable("draining"),
        Readiness::RedisDown { down, cores } => unavailable(&format!(
            "Redis subscription down on {down} of {cores} cores"
        )),
        Readiness::ShardsDown { down, cores } => {
            unavailable(&shards_down_reason(down, cores, shard.shards_waited_for()))
        }
        Readiness::Full => unavailable("connection limit reached"),
    }
}

/// Most masters a `/readyz` reason names; the rest are counted.
const REASON_SHARDS: usize = 4;

/// The reason of a sharded node that is not ready: the node's count, and what the answering
/// core waits for (`waited`: whether it has a slot map, the masters whose link is not
/// subscribed). Cores share no state, so the names are this core's; every core links to
/// every master, so they are the same on each but for a moment while a change spreads.
fn shards_down_reason(down: usize, cores: usize, waited: (bool, Vec<Box<str>>)) -> String {
    let mut why = format!("Redis shard subscription down on {down} of {cores} cores");
    match waited {
        (false, _) => why.push_str(": no slot map yet"),
        (true, masters) if !masters.is_empty() => {
            let named: Vec<&str> = masters.iter().take(REASON_SHARDS).map(|m| &**m).collect();
            why.push_str(": ");
            why.push_str(&named.join(", "));
            if masters.len() > REASON_SHARDS {
                why.push_str(&format!(" and {} more", masters.len() - REASON_SHARDS));
            }
        }
        _ => {}
    }
    why
}

/// Answers a publish request's body.
pub async fn publish_body(shard: &Shard, api: Api, body: &[u8]) -> Reply {
    match api {
        Api::Broadcast => broadcast(shard, body).await,
        _ => publish(shard, body).await,
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
async fn publish(shard: &Shard, body: &[u8]) -> Reply {
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
    let routes = shard.routes();
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
    send(shard, family, channel, payload, arrived).await
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
async fn broadcast(shard: &Shard, body: &[u8]) -> Reply {
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
    let routes = shard.routes();
    let Some(family) = routes.topic_family() else {
        return Reply::error(Status::NotFound, "no topic family in the route table");
    };
    let Some(channel) = routes.families[family]
        .channel
        .render(|_| Some(req.topic.to_string()))
    else {
        return Reply::error(
            Status::InternalServerError,
            "topic channel template is unusable",
        );
    };
    if routes.family_of_channel(&channel) != Some(family) {
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
    send(shard, family, &channel, Bytes::from(payload), arrived).await
}

/// Hands a checked message of route family `family` to the broker and answers `202 {"delivered_to_nodes": n}`, `503`
/// when it was certainly not published (safe to retry), or `504` when Redis may have
/// published it without answering (a retry may deliver it twice).
async fn send(
    shard: &Shard,
    family: usize,
    channel: &str,
    payload: Bytes,
    arrived: Instant,
) -> Reply {
    let msg = Message {
        channel: Bytes::copy_from_slice(channel.as_bytes()),
        payload,
        arrived,
        durable: None,
    };
    match shard.publish(msg, family).await {
        Ok(n) => Reply::json(Status::Accepted, format!("{{\"delivered_to_nodes\":{n}}}")),
        Err(why) if why.outcome_unknown() => Reply::error(Status::GatewayTimeout, &why.to_string()),
        Err(why) => Reply::error(Status::ServiceUnavailable, &why.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharded_node_names_what_it_waits_for() {
        let down = "Redis shard subscription down on 1 of 2 cores";
        #[rustfmt::skip]
        let cases: &[(bool, &[&str], String)] = &[
            (false, &[], format!("{down}: no slot map yet")),
            (true, &["10.0.0.1:7000"], format!("{down}: 10.0.0.1:7000")),
            (true, &["a:1", "b:2"], format!("{down}: a:1, b:2")),
            (true, &["a:1", "b:2", "c:3", "d:4", "e:5", "f:6"],
                format!("{down}: a:1, b:2, c:3, d:4 and 2 more")),
            // Another core waits; this one does not.
            (true, &[], down.to_string()),
        ];
        for (map, masters, want) in cases {
            let masters = masters.iter().map(|&m| m.into()).collect();
            assert_eq!(&shards_down_reason(1, 2, (*map, masters)), want);
        }
    }
}
