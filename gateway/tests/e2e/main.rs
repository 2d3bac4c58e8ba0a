//! The end-to-end tests: real gateway processes (or, in `lifecycle`, the server as a
//! library), real `redis-server`s, real sockets and real SSE clients. One test binary with a
//! module per area, so CI links one binary instead of one per file; tests that signal the
//! gateway process live in their own module (`lifecycle`).
mod common;

mod bad_input;
mod browser;
mod browser_fleet;
mod channel_mode;
mod cluster;
mod cors;
mod custom_routes;
mod descriptors;
mod durable;
mod durable_outage;
mod family_resume;
mod game_stream;
mod getting_started;
mod hostile_memory;
mod hostile_redis;
mod jackpot;
mod layering;
mod lifecycle;
mod metrics;
mod names;
mod placement;
mod player_stream;
mod prometheus;
mod readme;
mod redis;
mod resume;
mod sharded;
mod status_page;
mod systemd;
mod third_party_client;
mod topic_stream;
mod trust;
