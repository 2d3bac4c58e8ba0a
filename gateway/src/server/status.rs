//! The live status page's snapshot loop: on one core of the node (core 0), once per
//! `SSE_STATUS_PERIOD` while any viewer is open anywhere, one snapshot of the node
//! ([`crate::conn::status::snapshot`]) is taken and handed to every core that has viewers:
//! its own feed directly, the others' through their control channels. Without viewers a
//! period costs one atomic load.
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use crate::conn::status::snapshot;
use crate::core::node::Control;
use crate::core::shard::Shard;

/// Takes and hands out the node's status snapshots until the drain starts.
pub async fn snapshot_loop(shard: Rc<Shard>) {
    let mut interval = monoio::time::interval(shard.config().status_period);
    loop {
        monoio::select! {
            _ = interval.tick() => {}
            _ = shard.drain_started() => return,
        }
        let node = shard.node();
        if node.viewers() == 0 {
            continue;
        }
        let frame = snapshot(&shard).await;
        for (core, stats) in node.stats().cores.iter().enumerate() {
            if stats.status_viewers.load(Relaxed) == 0 {
                continue;
            }
            if core == shard.id() {
                shard.status_snapshot(frame.clone());
            } else {
                node.send(core, Control::Status(frame.clone()));
            }
        }
    }
}
