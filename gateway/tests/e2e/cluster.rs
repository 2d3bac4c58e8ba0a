//! The gateway on a real Redis Cluster (three masters, three replicas, started by the test).
//! Classic pub/sub is cluster-wide (a `PUBLISH` on any node reaches pattern subscribers on
//! every node, over the cluster bus), so the default pattern mode works against any one node,
//! and `EVENTS_REDIS_STORAGE` may list several, each link passing over the ones that are down.
//! Sharded pub/sub (`SPUBLISH`) reaches only `SSUBSCRIBE` subscribers of the channel's shard,
//! which pattern mode is not.

use std::time::Duration;

use gateway::broker::cluster::{key_slot, Topology};
use gateway::broker::target::parse;

use crate::common::cluster::RedisCluster;
use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn on_a_cluster_publish_on_any_node_reaches_streams_and_spublish_does_not() {
    let cluster = RedisCluster::start(1_000);
    let gw = Gateway::start(&[("EVENTS_REDIS_STORAGE", &cluster.nodes[0].url())]);
    assert!(eventually(10 * SEC, || ready(&gw) == 200));
    let mut player = Sse::player(gw.addr, 3, 77);
    let mut jackpot = Sse::open(gw.addr, "/subscribe?channel=ws_broadcast_g1", "");
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 2));
    // A service's PUBLISH on another master, and on a replica: both arrive.
    let first = player_event(3, 77, 1);
    cluster.nodes[2].cli(&["PUBLISH", "SSE::3::77", &first]);
    assert_eq!(
        next_player_event(&mut player).expect("via a master").data,
        first
    );
    cluster.nodes[4].cli(&["PUBLISH", "ws_broadcast_g1", r#"{"value":"1.00"}"#]);
    assert_eq!(
        jackpot.next_event(5 * SEC).expect("via a replica").data,
        r#"{"value":"1.00"}"#
    );
    // SPUBLISH on the channel's own shard reaches no pattern subscriber: the next event the
    // stream gets is the PUBLISH after it.
    let owner = cluster.master_of("SSE::3::77");
    let sharded = player_event(3, 77, 2);
    let third = player_event(3, 77, 3);
    assert_eq!(
        cluster.nodes[owner].cli(&["SPUBLISH", "SSE::3::77", &sharded]),
        "0"
    );
    cluster.nodes[1].cli(&["PUBLISH", "SSE::3::77", &third]);
    assert_eq!(next_player_event(&mut player).expect("after").data, third);
    // The HTTP publish API on a cluster: accepted and delivered.
    let fourth = player_event(3, 77, 4);
    let r = gw.publish("SSE::3::77", &fourth);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(next_player_event(&mut player).expect("http").data, fourth);
}

/// Several nodes listed. A running node's cores start at their own node of the list (core 0
/// at the first, core 1 at the second), so killing the first costs exactly one subscription,
/// which moves to another node while the streams stay open and receive again. A node started
/// while the first node listed is down starts on the next one. Before lists, the setting was
/// refused at start-up.
#[test]
fn with_several_nodes_listed_a_dead_node_is_passed_over() {
    let mut cluster = RedisCluster::start(1_000);
    // The replicas: killing one leaves every slot served.
    let list = cluster.list(&[3, 4, 5]);
    let running = Gateway::start(&[("EVENTS_REDIS_STORAGE", &list)]);
    assert!(
        eventually(10 * SEC, || ready(&running) == 200),
        "{}",
        running.log_text()
    );
    // Player streams live on their owner core: these six cover both cores.
    let mut players: Vec<(i64, Sse)> = (1..=6)
        .map(|p| (p, Sse::player(running.addr, 4, p)))
        .collect();
    let per_core = running.per_core();
    assert!(per_core.iter().all(|&n| n > 0), "{per_core:?}");
    cluster.nodes[3].kill9();
    assert!(
        eventually(10 * SEC, || running.stat("redis.disconnects") == 1),
        "{}",
        running.log_text()
    );
    assert!(
        eventually(10 * SEC, || ready(&running) == 200),
        "{}",
        running.log_text()
    );
    for (p, s) in players.iter_mut() {
        let ev = player_event(4, *p, 1);
        cluster.nodes[0].cli(&["PUBLISH", &format!("SSE::4::{p}"), &ev]);
        assert_eq!(
            next_player_event(s)
                .expect("after the kill, same connection")
                .data,
            ev
        );
    }
    assert_eq!(running.stat("redis.disconnects"), 1);

    let fresh = Gateway::start(&[("EVENTS_REDIS_STORAGE", &list)]);
    assert!(
        eventually(10 * SEC, || ready(&fresh) == 200),
        "{}",
        fresh.log_text()
    );
    let mut player = Sse::player(fresh.addr, 4, 1);
    for n in 2..=5 {
        // Through each core's publisher link (the API answers on the accepting core).
        let ev = player_event(4, 1, n);
        let r = fresh.publish("SSE::4::1", &ev);
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(next_player_event(&mut player).expect("fresh node").data, ev);
        assert_eq!(
            next_player_event(&mut players[0].1)
                .expect("running node")
                .data,
            ev
        );
    }
}

/// The topology against a live cluster: `key_slot` agrees with Redis's own `CLUSTER KEYSLOT`
/// for channel names of every family (hash tags included), and the slot map fetched through
/// a list whose first node is down names, for each, the master the cluster says serves it.
#[test]
fn key_slots_and_the_slot_map_agree_with_the_cluster() {
    let mut cluster = RedisCluster::start(1_000);
    let mut names: Vec<String> = [
        "SSE::3::77",
        "ws_user_p1",
        "ws_broadcast_g1",
        "events:transactions",
        "stream:crash",
        "stream:type:slots",
        "SSE::{3}::77",
        "{}SSE",
        "a{b}{c}",
        "a{{b}}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend((0..40).map(|p| format!("SSE::1001::{p}")));
    for name in &names {
        assert_eq!(
            key_slot(name.as_bytes()).to_string(),
            cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", name]),
            "{name}"
        );
    }
    cluster.nodes[3].kill9();
    let target = parse(&cluster.list(&[3, 1])).expect("list");
    let map = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(async {
            let topology = Topology::new(target, 0);
            assert!(topology.refresh().await.expect("CLUSTER SLOTS"));
            topology.map()
        });
    assert_eq!(map.masters().len(), 3, "{map:?}");
    for name in &names {
        let port = map.master_of_channel(name.as_bytes()).map(|m| m.port);
        assert_eq!(
            port,
            Some(cluster.nodes[cluster.master_of(name)].port),
            "{name}"
        );
    }
}
