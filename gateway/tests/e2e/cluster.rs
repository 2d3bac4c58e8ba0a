//! The gateway on a real Redis Cluster (three masters, three replicas, started by the test):
//! what works today with one seed node. Classic pub/sub is cluster-wide (a `PUBLISH` on any
//! node reaches pattern subscribers on every node, over the cluster bus), so the default
//! pattern mode works against any one node. Sharded pub/sub (`SPUBLISH`) reaches only
//! `SSUBSCRIBE` subscribers of the channel's shard, which pattern mode is not.

use std::time::Duration;

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
