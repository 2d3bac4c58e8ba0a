//! The composition root: binds the listeners, builds the node, starts one pinned thread per
//! core with its own runtime, and runs each core's loops (accept, inbox, control, timer,
//! Redis subscription) over the verbs of [`crate::core`]. Nothing below imports this module.
pub mod fds;
pub mod redis_sink;
pub mod start;
pub mod status;
pub mod timer;
pub mod worker;
