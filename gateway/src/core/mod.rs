//! The per-core library: state behind verbs. A [`shard::Shard`] is one core's channels and
//! streams; [`node::Node`] what the cores share. Delivery is a plain function
//! ([`deliver::deliver`]) so the benchmarks measure the gateway's own code. Nothing here runs
//! a loop or touches a socket but to hand one to its owner core: the server drives the verbs.
pub mod by_channel;
pub mod deliver;
pub mod durable;
pub mod event_id;
pub mod housekeeping;
pub mod hub;
pub mod node;
pub mod pending;
pub mod refusal;
pub mod shard;
pub mod status;
pub mod stream;
pub mod subscriber;
pub mod wheel;
