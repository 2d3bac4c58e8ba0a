//! A real Redis Cluster of the test's own: three masters and three replicas of Debian's
//! `redis-server` on free loopback ports, joined with `redis-cli --cluster create`, every
//! process killed by PID when the value is dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{eventually, free_port, Redis};

const SEC: Duration = Duration::from_secs(1);

/// Three masters, each with one replica, on loopback.
pub struct RedisCluster {
    /// The six servers; after `create` the first three are masters and the last three their
    /// replicas (redis-cli assigns replicas in order), until a failover changes it.
    pub nodes: Vec<Redis>,
    /// Where the servers keep their cluster files (`nodes.conf`), removed on drop.
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts six servers and joins them; waits (at most 20 s) until every node says
    /// `cluster_state:ok`. `node_timeout_ms` is `cluster-node-timeout`: how long a master
    /// may be silent before its replica takes over.
    pub fn start(node_timeout_ms: u64) -> RedisCluster {
        let dir =
            std::env::temp_dir().join(format!("gw-cluster-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut nodes = Vec::new();
        for i in 0..6 {
            let node_dir = dir.join(i.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            // The bus port is chosen, not derived (port + 10000 may not exist for a port in
            // the ephemeral range): Redis 7's `cluster-port`.
            let bus = free_port().to_string();
            let timeout = node_timeout_ms.to_string();
            let node_dir = node_dir.to_string_lossy().to_string();
            nodes.push(Redis::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus,
                "--cluster-node-timeout",
                &timeout,
                // A replica syncs at once instead of after Redis 7's 5 s default: one that
                // never synced refuses to take over ("Disconnected from master for longer
                // than allowed").
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                &node_dir,
            ]));
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes, dir };
        assert!(
            eventually(Duration::from_secs(20), || cluster
                .nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))),
            "the cluster never reached cluster_state:ok"
        );
        // Every replica synced with its master, so it can take over when it fails.
        assert!(
            eventually(20 * SEC, || cluster.nodes.iter().all(|n| {
                let info = n.cli(&["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            })),
            "a replica never synced with its master"
        );
        cluster
    }

    /// Tells every replica never to take over its master (`cluster-replica-no-failover`):
    /// a master that dies then stays down until it is started again, so an outage lasts as
    /// long as the test wants instead of the milliseconds a promotion takes on loopback.
    pub fn no_failover(&self) {
        for n in &self.nodes {
            if n.cli(&["ROLE"]).starts_with("slave") {
                assert_eq!(
                    n.cli(&["CONFIG", "SET", "cluster-replica-no-failover", "yes"]),
                    "OK"
                );
            }
        }
    }

    /// `EVENTS_REDIS_STORAGE` naming the nodes `ids` (indexes into `nodes`), in that order.
    pub fn list(&self, ids: &[usize]) -> String {
        let nodes: Vec<String> = ids
            .iter()
            .map(|&i| format!("127.0.0.1:{}", self.nodes[i].port))
            .collect();
        format!("redis://{}", nodes.join(","))
    }

    /// The node that serves `key`'s slot now (asked of node 0: `CLUSTER KEYSLOT`, then
    /// `CLUSTER NODES`' master of that slot range), by index into `nodes`.
    pub fn master_of(&self, key: &str) -> usize {
        self.serving(0, key)
            .unwrap_or_else(|| panic!("no master serves {key}"))
    }

    /// The node that serves `key`'s slot as node `ask` sees it (a master not failed, or
    /// suspected of it, that holds the slot), by index into `nodes`; `None` while no such
    /// master holds it (a failover in progress).
    pub fn serving(&self, ask: usize, key: &str) -> Option<usize> {
        let slot: u16 = self.nodes[ask]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("slot");
        // `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <master> ... <slot ranges>`.
        let table = self.nodes[ask].cli(&["CLUSTER", "NODES"]);
        for line in table.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if serves {
                let port: u16 = f[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .expect("port");
                return self.nodes.iter().position(|n| n.port == port);
            }
        }
        None
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
