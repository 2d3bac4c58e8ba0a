//! Where published messages come from and how they reach the cores: [`publish::Broker`] is
//! the one way in for HTTP publishes (embedded cross-core channels, or Redis), chosen once at
//! start-up; with Redis, each core also holds a pattern subscription ([`redis`]) to the
//! address in [`target`], and in sharded mode a link per Redis Cluster master
//! ([`sharded`], [`cluster`]).
pub mod channels;
pub mod cluster;
pub mod durable;
pub mod embedded;
pub mod link;
pub mod message;
pub mod publish;
pub mod redis;
pub mod resp;
pub mod sharded;
pub mod target;
