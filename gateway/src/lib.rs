//! # gateway: a Server-Sent Events gateway
//!
//! Browsers and apps hold long-lived `GET` streams (`text/event-stream`); backend services
//! publish events (HTTP, or Redis `PUBLISH`); the gateway delivers each event to the right open
//! streams within milliseconds.
//!
//! ## Map of the crate (data flows one way, and so do the imports)
//!
//! ```text
//! server (composition root: start-up, per-core loops)
//!   └▶ conn (bytes: head → decide → reply | stream writer)
//!        └▶ core (per-core state behind verbs: admit, open_stream, deliver, publish)
//!             └▶ error ─▶ config ─▶ broker (embedded | Redis) ─▶ route ─▶ auth
//!                                  ─▶ leaves: http, sse, stats, task, util
//!
//! socket ─▶ conn ─▶ http (parse head) ─▶ route (family, auth, channel) ─▶ core::hub
//!                                                                            ▲
//!                                  publisher ─▶ broker (embedded | Redis) ───┘
//! ```
//!
//! - [`server`]: binds the listeners, starts one pinned core per CPU with a start-up
//!   handshake, and runs each core's loops (accept, inbox, control, timer, Redis subscription).
//! - [`conn`]: one client connection: read a head, decide (a pure function), write replies,
//!   run the SSE stream writer.
//! - [`core`]: one shard per core and the node they share, as verbs over private state;
//!   delivery as a plain function the benchmarks call too.
//! - [`error`]: the boundary error type for start-up.
//! - [`config`]: the one settings struct (defaults < TOML file < env < flags), validated; the
//!   `gateway token` subcommand's arguments.
//! - [`broker`]: where published messages come from and go to: embedded cross-core channels,
//!   or Redis (one pattern subscription and one publisher connection per core, to the
//!   address `EVENTS_REDIS_STORAGE` names).
//! - [`route`]: the route table as data: which path is which stream family, how it is
//!   authenticated, which channel it subscribes, how events are named.
//! - [`auth`]: HS256 JWT verification, secrets, API-key and publish-token checks.
//! - [`http`]: pure request-head parser and response writer (bytes in, bytes out, no I/O),
//!   and which origins get CORS headers.
//! - [`sse`]: pure SSE framing: events encoded once into shared `Bytes`.
//! - [`stats`]: per-core counters and latency histograms, rendered as JSON and Prometheus text.
//! - [`task`]: small helpers for tasks on a core's runtime.
//! - [`util`]: one home each for small primitives (JSON escaping, decimals, durations,
//!   jitter); imports nothing of the crate.
#![warn(missing_docs)]

pub mod auth;
pub mod broker;
pub mod config;
pub mod conn;
pub mod core;
pub mod error;
pub mod http;
pub mod route;
pub mod server;
pub mod sse;
pub mod stats;
pub mod task;
pub mod util;

/// Internals exposed for the `bench` crate and the fuzz targets (`fuzz/`) only; not a stable
/// API.
#[doc(hidden)]
pub mod internals {
    pub use crate::auth::jwt;
    pub use crate::auth::Secret;
    pub use crate::broker::durable;
    pub use crate::broker::message::Message;
    pub use crate::broker::resp;
    pub use crate::config::Config;
    pub use crate::conn::decide;
    pub use crate::core::deliver::{deliver, Delivery, Dropped, Place};
    pub use crate::core::hub::Hub;
    pub use crate::core::subscriber::Subscriber;
    pub use crate::http::cors::CorsOrigins;
    pub use crate::http::query;
    pub use crate::http::request::{
        parse_head, BodyKind, HttpError, Method, Parsed, RequestHead, MAX_HEAD,
    };
    pub use crate::route::payload;
    pub use crate::route::resolve::{resolve, Channels};
    pub use crate::route::table::{
        AuthRule, Endpoint, EventName, Match, PayloadRule, RouteTable, SlowPolicy,
    };
    pub use crate::sse::{encode, system};
}
