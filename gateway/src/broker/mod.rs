//! Where published messages come from and how they reach the cores.
pub mod embedded;
pub mod message;
pub mod redis;
