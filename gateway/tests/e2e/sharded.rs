//! Sharded mode (`SSE_REDIS_SUBSCRIBE=sharded`) on a real Redis Cluster (three masters, three
//! replicas, started by the test): unicast channels are subscribed with `SSUBSCRIBE` on their
//! slot's master, one subscriber per gateway node holding the channel; HTTP publish and a
//! service's `SPUBLISH` on that master reach them, a plain `PUBLISH` of a unicast channel
//! reaches nobody; broadcast and topic streams keep their patterns (classic pub/sub is
//! cluster-wide). A master that vanishes is replaced by its replica while the streams stay
//! open: the subscriptions move to the new master, the streams receive again on the same
//! connections, and the outage is counted and logged.

use std::time::{Duration, Instant};

use crate::common::cluster::RedisCluster;
use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// A node in sharded mode on the cluster's masters.
fn node(list: &str) -> Gateway {
    let gw = Gateway::start(&[
        ("EVENTS_REDIS_STORAGE", list),
        ("SSE_REDIS_SUBSCRIBE", "sharded"),
    ]);
    assert!(
        eventually(10 * SEC, || ready(&gw) == 200),
        "{}",
        gw.log_text()
    );
    gw
}

/// `sse_core_redis_subscribed` in `gw`'s metrics: the cores at 1, and all cores listed.
fn subscribed_gauges(gw: &Gateway) -> (usize, usize) {
    let text = gw.get("/metrics").text();
    let values: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("sse_core_redis_subscribed{"))
        .filter_map(|l| l.rsplit(' ').next())
        .collect();
    (values.iter().filter(|v| **v == "1").count(), values.len())
}

/// Sharded subscribers of `channel` on `redis` (`PUBSUB SHARDNUMSUB`).
fn shardnumsub(redis: &Redis, channel: &str) -> i64 {
    redis.subscribers("SHARDNUMSUB", channel)
}

#[test]
fn sharded_streams_on_two_nodes_receive_and_survive_a_failover_with_the_loss_reported() {
    let mut cluster = RedisCluster::start(1_000);
    let list = cluster.list(&[0, 1, 2]);
    let a = node(&list);
    let b = node(&list);
    let channel = "SSE::3::77";
    let mut player_a = Sse::player(a.addr, 3, 77);
    let mut player_b = Sse::player(b.addr, 3, 77);
    let mut inbox = Sse::private(a.addr, "ws_user_p1");
    let mut jackpot = Sse::open(b.addr, "/subscribe?channel=ws_broadcast_g1", "");
    let mut topic = Sse::open(a.addr, "/api/v1/events?topics=transactions", "");
    assert!(eventually(5 * SEC, || a.stat("connections.total") == 3
        && b.stat("connections.total") == 2));
    let owner = cluster.master_of(channel);
    // One sharded subscriber per node holding the channel, on its master.
    assert_eq!(shardnumsub(&cluster.nodes[owner], channel), 2);
    assert_eq!(
        cluster.nodes[owner].cli(&["PUBSUB", "NUMSUB", channel]),
        format!("{channel}\n0")
    );

    // HTTP publish: SPUBLISH on the master, counted once per node.
    let ev = player_event(3, 77, 1);
    let r = a.publish(channel, &ev);
    assert_eq!(
        (r.status, r.text()),
        (202, r#"{"delivered_to_nodes":2}"#.to_string())
    );
    assert_eq!(next_player_event(&mut player_a).expect("a, http").data, ev);
    assert_eq!(next_player_event(&mut player_b).expect("b, http").data, ev);
    // A service's SPUBLISH on the master (the documented call); a plain PUBLISH of a unicast
    // channel reaches nobody (sharded subscribers do not see classic pub/sub): the next event
    // the streams get is the SPUBLISH after it.
    cluster.nodes[(owner + 1) % 3].cli(&["PUBLISH", channel, &player_event(3, 77, 2)]);
    let ev = player_event(3, 77, 3);
    assert_eq!(cluster.nodes[owner].cli(&["SPUBLISH", channel, &ev]), "2");
    assert_eq!(
        next_player_event(&mut player_a).expect("a, spublish").data,
        ev
    );
    assert_eq!(
        next_player_event(&mut player_b).expect("b, spublish").data,
        ev
    );
    let inbox_owner = cluster.master_of("ws_user_p1");
    assert_eq!(
        cluster.nodes[inbox_owner].cli(&["SPUBLISH", "ws_user_p1", "won"]),
        "1"
    );
    assert_eq!(inbox.next_event(5 * SEC).expect("private").data, "won");
    // Broadcast families: PUBLISH on any node, and the HTTP broadcast API.
    cluster.nodes[4].cli(&["PUBLISH", "ws_broadcast_g1", r#"{"value":"1.00"}"#]);
    assert_eq!(
        jackpot.next_event(5 * SEC).expect("jackpot").data,
        r#"{"value":"1.00"}"#
    );
    let r = a.post(
        "/api/v1/events/broadcast",
        r#"{"topic":"transactions","type":"t.created","data":{"n":1}}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let t = topic.next_app_event(5 * SEC).expect("topic");
    assert_eq!(
        (t.event.as_str(), t.data.as_str()),
        ("t.created", r#"{"n":1}"#)
    );

    // The channel's master vanishes (frozen: no reset, as a dead host), and its replica is
    // promoted after cluster-node-timeout. Until the gateways give the silent link up (4 s
    // without a byte) nothing of theirs is subscribed on the new master: an SPUBLISH there
    // in that window reaches nobody.
    let stopped = Instant::now();
    cluster.nodes[owner].signal(libc::SIGSTOP);
    let mut new_owner = owner;
    let ask = (owner + 1) % 3;
    assert!(
        eventually(20 * SEC, || {
            new_owner = cluster.serving(ask, channel).unwrap_or(owner);
            new_owner != owner
        }),
        "no replica took over: {}",
        cluster.nodes[ask].cli(&["CLUSTER", "NODES"])
    );
    let missed = player_event(3, 77, 4);
    let answer = cluster.nodes[new_owner].cli(&["SPUBLISH", channel, &missed]);
    // Checked after: neither node had even lost its link, so none had moved its channels.
    let in_window = a.stat("redis.shard_outages") == 0 && b.stat("redis.shard_outages") == 0;
    assert!(
        in_window,
        "promoted {:?} after the stop: too late to publish in the window",
        stopped.elapsed()
    );
    assert_eq!(answer, "0", "SPUBLISH in the window");
    // The master is killed by PID: its links reset, the gateways ask for the slot map and
    // move the channels to the new master, the streams stay open.
    cluster.nodes[owner].kill9();
    for gw in [&a, &b] {
        assert!(
            eventually(10 * SEC, || gw.stat("redis.shard_failovers") >= 1
                && ready(gw) == 200),
            "{}",
            gw.log_text()
        );
    }
    assert!(eventually(5 * SEC, || shardnumsub(
        &cluster.nodes[new_owner],
        channel
    ) == 2));
    let ev = player_event(3, 77, 5);
    let r = b.publish(channel, &ev);
    assert_eq!(
        (r.status, r.text()),
        (202, r#"{"delivered_to_nodes":2}"#.to_string())
    );
    // Same connections: the missed event never arrives, the next one does.
    assert_eq!(next_player_event(&mut player_a).expect("a, after").data, ev);
    assert_eq!(next_player_event(&mut player_b).expect("b, after").data, ev);
    // The loss, reported: counted in stats and Prometheus, logged once with shard and window.
    for gw in [&a, &b] {
        assert!(gw.stat("redis.shard_outages") >= 1);
        assert!(gw.stat("redis.shard_outage_channels") >= 1);
        let stats: serde_json::Value =
            serde_json::from_slice(&gw.get("/api/v1/events/stats").body).expect("stats");
        // From the loss the gateway saw (the kill) until the channels were confirmed on the
        // new master: a few milliseconds on loopback.
        assert!(
            stats["redis"]["shard_outage_seconds"].as_f64().is_some(),
            "{stats}"
        );
        let metrics = gw.get("/metrics").text();
        let failovers = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sse_redis_shard_failovers_total "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        assert!(failovers.is_some_and(|n| n >= 1), "{metrics}");
        let log = gw.log_text();
        let shard = format!("127.0.0.1:{}", cluster.nodes[owner].port);
        let back: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Redis shard subscription back") && l.contains(&shard))
            .collect();
        assert!(
            !back.is_empty() && back.iter().all(|l| l.contains("outage_ms=")),
            "{log}"
        );
    }
}

/// A slot moved to another master (`CLUSTER SETSLOT ... IMPORTING/MIGRATING/NODE`, what
/// `redis-cli --cluster reshard` does for a slot without keys): the old master unsubscribes
/// the slot's channels by itself (`sunsubscribe`), the gateway fetches the slot map and
/// subscribes them on the new master, the stream stays open and receives what is published
/// there; an HTTP publish through a core whose map is older follows the `MOVED`.
#[test]
fn a_slot_moved_to_another_master_moves_the_subscription() {
    let cluster = RedisCluster::start(1_000);
    let gw = node(&cluster.list(&[0, 1, 2]));
    let channel = "SSE::5::1";
    let mut player = Sse::player(gw.addr, 5, 1);
    let from = cluster.master_of(channel);
    let to = (from + 1) % 3;
    assert_eq!(shardnumsub(&cluster.nodes[from], channel), 1);
    let slot = cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", channel]);
    let id = |i: usize| cluster.nodes[i].cli(&["CLUSTER", "MYID"]);
    let (from_id, to_id) = (id(from), id(to));
    let setslot = |i: usize, args: &[&str]| {
        let mut all = vec!["CLUSTER", "SETSLOT", slot.as_str()];
        all.extend_from_slice(args);
        assert_eq!(cluster.nodes[i].cli(&all), "OK", "{all:?} on node {i}");
    };
    setslot(to, &["IMPORTING", &from_id]);
    setslot(from, &["MIGRATING", &to_id]);
    setslot(to, &["NODE", &to_id]);
    setslot(from, &["NODE", &to_id]);
    setslot((from + 2) % 3, &["NODE", &to_id]);
    assert!(
        eventually(10 * SEC, || shardnumsub(&cluster.nodes[to], channel) == 1),
        "{}",
        gw.log_text()
    );
    assert_eq!(shardnumsub(&cluster.nodes[from], channel), 0);
    let ev = player_event(5, 1, 1);
    assert_eq!(cluster.nodes[to].cli(&["SPUBLISH", channel, &ev]), "1");
    assert_eq!(
        next_player_event(&mut player).expect("after the move").data,
        ev
    );
    for n in 2..=3 {
        let ev = player_event(5, 1, n);
        let r = gw.publish(channel, &ev);
        assert_eq!(
            (r.status, r.text()),
            (202, r#"{"delivered_to_nodes":1}"#.to_string())
        );
        assert_eq!(next_player_event(&mut player).expect("http").data, ev);
    }
}

/// `/readyz`'s body, as text.
fn readyz(gw: &Gateway) -> (u16, String) {
    let r = gw.get("/readyz");
    (r.status, r.text())
}

/// A master that dies with no replica to take over (every replica told not to): the outage
/// lasts until the master is started again, so `/readyz` can be watched through it. A node
/// whose link to that master was up answers `503` naming the master, and counts and logs the
/// loss; a node started meanwhile, whose link to it never came up, says the same instead of
/// `200` (it holds no stream there, and a load balancer would send it clients for that
/// shard's channels, each refused after 2 s); both come back to `200` once the master is
/// back, and streams on the same connections receive again.
#[test]
fn a_master_down_with_no_failover_keeps_readyz_503_naming_it_until_it_is_back() {
    let mut cluster = RedisCluster::start(1_000);
    cluster.no_failover();
    let list = cluster.list(&[0, 1, 2]);
    let a = node(&list);
    let channel = "SSE::6::42";
    let owner = cluster.master_of(channel);
    let shard = format!("127.0.0.1:{}", cluster.nodes[owner].port);
    let mut player = Sse::player(a.addr, 6, 42);
    let ev = player_event(6, 42, 1);
    let r = a.publish(channel, &ev);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(next_player_event(&mut player).expect("before").data, ev);
    assert_eq!(a.stat("redis.shard_outages"), 0);

    cluster.nodes[owner].kill9();
    let down = Instant::now();
    let mut seen = (0, String::new());
    assert!(
        eventually(10 * SEC, || {
            seen = readyz(&a);
            seen.0 == 503 && seen.1.contains(&shard)
        }),
        "a: {seen:?}\n{}",
        a.log_text()
    );
    assert!(
        seen.1
            .contains("Redis shard subscription down on 2 of 2 cores"),
        "{seen:?}"
    );
    // Both cores link to every master, so both lost it.
    assert!(eventually(5 * SEC, || a.stat("redis.shard_outages") == 2));

    // A node started while the master is down: its link there never comes up.
    let b = Gateway::start(&[
        ("EVENTS_REDIS_STORAGE", list.as_str()),
        ("SSE_REDIS_SUBSCRIBE", "sharded"),
    ]);
    let watched = Instant::now();
    let mut answers = Vec::new();
    while watched.elapsed() < 4 * SEC {
        answers.push(readyz(&b));
        std::thread::sleep(SEC / 10);
    }
    assert!(
        answers.iter().all(|(status, _)| *status == 503),
        "b said ready with a master down: {answers:?}\n{}",
        b.log_text()
    );
    let last = &answers[answers.len() - 1].1;
    assert!(last.contains(&shard), "{last}\n{}", b.log_text());
    assert_eq!(b.stat("redis.shard_outages"), 2, "{}", b.log_text());
    assert!(
        b.log_text().lines().any(|l| {
            l.contains("Redis shard subscription cannot be made") && l.contains(&shard)
        }),
        "{}",
        b.log_text()
    );
    // Still down, still the same: a stays 503 as long as the master is away.
    assert_eq!(readyz(&a).0, 503);
    assert!(down.elapsed() > 4 * SEC);
    // And the gauge the `SSERedisSubscriptionDown` alert watches says so on every core of
    // both nodes (every core links to every master).
    for gw in [&a, &b] {
        let (up, cores) = subscribed_gauges(gw);
        assert!(up == 0 && cores >= 1, "while down: {up} of {cores} at 1");
        assert_eq!(gw.stat("redis.subscribed_cores"), 0);
    }

    // The master is started again (same port, same cluster files): both nodes are ready
    // once their links are subscribed, the outage is reported, and events flow again.
    cluster.nodes[owner].restart();
    for gw in [&a, &b] {
        assert!(
            eventually(15 * SEC, || readyz(gw).0 == 200),
            "{:?}\n{}",
            readyz(gw),
            gw.log_text()
        );
        let log = gw.log_text();
        assert!(
            log.lines()
                .any(|l| l.contains("Redis shard subscription back")
                    && l.contains(&shard)
                    && l.contains("outage_ms=")),
            "{log}"
        );
        let stats: serde_json::Value =
            serde_json::from_slice(&gw.get("/api/v1/events/stats").body).expect("stats");
        let outage = stats["redis"]["shard_outage_seconds"].as_f64();
        assert!(outage.is_some_and(|s| s > 1.0), "{stats}");
        let (up, cores) = subscribed_gauges(gw);
        assert!(up == cores && cores >= 1, "back: {up} of {cores} at 1");
    }
    assert!(eventually(5 * SEC, || shardnumsub(
        &cluster.nodes[owner],
        channel
    ) == 1));
    let mut player_b = Sse::player(b.addr, 6, 42);
    assert!(eventually(5 * SEC, || shardnumsub(
        &cluster.nodes[owner],
        channel
    ) == 2));
    let ev = player_event(6, 42, 2);
    let r = a.publish(channel, &ev);
    assert_eq!(
        (r.status, r.text()),
        (202, r#"{"delivered_to_nodes":2}"#.to_string())
    );
    assert_eq!(next_player_event(&mut player).expect("a, after").data, ev);
    assert_eq!(next_player_event(&mut player_b).expect("b, after").data, ev);
}
