//! One shard per CPU core: its runtime, listener, channel hub, keep-alive timer and drain.
pub mod hub;
pub mod node;
pub mod shard;
pub mod subscriber;
pub mod timer;
