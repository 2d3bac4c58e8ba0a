//! # gateway: a Server-Sent Events gateway
//!
//! Browsers and apps hold long-lived `GET` streams (`text/event-stream`); backend services
//! publish events (HTTP, or Redis `PUBLISH` in a later milestone); the gateway delivers each
//! event to the right open streams within milliseconds.
//!
//! ## Map of the crate (data flows one way)
//!
//! ```text
//! socket ─▶ conn ─▶ http (parse head) ─▶ route (family, auth, channel) ─▶ core::hub (subscription)
//!                                                                            ▲
//!                                              broker (embedded | Redis) ────┘
//! ```
//!
//! - [`config`]: the one settings struct (defaults < TOML file < env < flags), validated.
//! - [`http`]: pure request-head parser and response writer (bytes in, bytes out, no I/O),
//!   and which origins get CORS headers.
//! - [`sse`]: pure SSE framing: events encoded once into shared `Bytes`.
//! - [`auth`]: HS256 JWT verification and API-key / publish-token checks.
//! - [`route`]: the route table as data: which path is which stream family, how it is
//!   authenticated, which channel it subscribes, how events are named.
//! - [`broker`]: where published messages come from and go to: embedded cross-core channels,
//!   or Redis (one pattern subscription and one publisher connection per core, to the
//!   address `EVENTS_REDIS_STORAGE` names).
//! - [`core`]: one shard per CPU core: its runtime, listener, channel hub, keep-alive timer.
//! - [`conn`]: one client connection: request loop, API handlers, the SSE stream writer.
//! - [`stats`]: per-core counters and latency histograms, rendered as JSON and Prometheus text.
//! - [`error`]: the boundary error type for start-up.
//! - [`task`]: small helpers for tasks on a core's runtime.
//! - [`util`]: leaf helpers that import nothing of the crate (duration text).
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

/// Internals exposed for the `bench` crate only; not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::auth::jwt;
    pub use crate::auth::Secret;
    pub use crate::broker::message::Message;
    pub use crate::config::Config;
    pub use crate::core::deliver::{deliver, Delivery, Dropped, Place};
    pub use crate::core::hub::Hub;
    pub use crate::core::subscriber::Subscriber;
    pub use crate::http::request::{parse_head, Parsed, RequestHead};
    pub use crate::route::payload;
    pub use crate::route::resolve::{resolve, Channels};
    pub use crate::route::table::{
        Endpoint, EventName, Match, PayloadRule, RouteTable, SlowPolicy,
    };
    pub use crate::sse::encode;
}
