//! Routing for the Redis Cluster publisher (`--publish redis-cluster://H:P[,H:P...]`): which
//! master each event goes to. A sharded channel (`SPUBLISH`, `SSUBSCRIBE`) lives on its slot's
//! master only, so a service publishing to gateways in sharded mode
//! (`SSE_REDIS_SUBSCRIBE=sharded`) must send each event to the master that owns its channel's
//! slot. The publisher does that: it reads the slot map (`CLUSTER SLOTS`) at the start of each
//! publishing phase, opens its connections to every master, and sends each event on a
//! connection to its channel's master.
//!
//! The slot of a channel (CRC16/XMODEM of the name or its `{hash tag}`, modulo 16,384) and the
//! reading of the map are the gateway's own (`gateway::broker::cluster::{key_slot, SlotMap}`;
//! loadgen already builds against the gateway crate for its function library), so loadgen
//! places an event exactly where the nodes it measures subscribe its channel. Redis is the
//! judge of both: an `SPUBLISH` on a master that does not own the channel's slot is answered
//! `MOVED`, which the publisher counts and reports (the map changed during the run: a failover
//! or a resharding). It does not follow `MOVED`: a capacity run whose map moves under it
//! measures the move, not the capacity.
//!
//! Not for broadcast families: the gateway listens to those with a pattern (`PSUBSCRIBE`),
//! which `SPUBLISH` never reaches. Publish them with `--publish redis://ANY-NODE`: a classic
//! `PUBLISH` is cluster-wide.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;
use gateway::broker::cluster::{key_slot, SlotMap};
use gateway::broker::resp::{Next, Reader};
use gateway::broker::target::Seed;

use crate::seqs;
use crate::template::{Template, Vars};

/// How long connecting to a seed and reading its `CLUSTER SLOTS` answer may take, each.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The command, in RESP.
const CLUSTER_SLOTS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";

/// The seed nodes of `--publish redis-cluster://LIST` (`list` is the text after the scheme),
/// read as the gateway reads the bare form of `EVENTS_REDIS_STORAGE` (`h1:p1,h2:p2`), so a
/// run names the cluster as its nodes do. Credentials and a database are refused: the
/// publisher sends no `AUTH`, and a cluster has one database.
pub fn seeds(list: &str) -> Result<Vec<Seed>, String> {
    gateway::broker::target::parse(list)
        .map(|t| t.seeds)
        .map_err(|e| format!("--publish redis-cluster://{list}: {e}"))
}

/// The slot map, asked of each seed in turn until one answers. A Redis that is not a cluster
/// answers `CLUSTER SLOTS` with an error; its map is then every slot on it, as the gateway
/// reads it (sharded pub/sub works on one Redis 7 too).
pub fn slot_map(seeds: &[Seed]) -> Result<SlotMap, String> {
    let mut why = Vec::new();
    for seed in seeds {
        match ask_slots(seed) {
            Ok(map) if !map.is_empty() => return Ok(map),
            Ok(_) => why.push(format!("{seed}: no slot has a reachable master")),
            Err(e) => why.push(format!("{seed}: {e}")),
        }
    }
    Err(format!(
        "cannot read the cluster's slot map (CLUSTER SLOTS): {}",
        why.join("; ")
    ))
}

/// `CLUSTER SLOTS` of one node, on a fresh connection.
fn ask_slots(seed: &Seed) -> Result<SlotMap, String> {
    let addr = resolve(seed)?;
    let mut s = TcpStream::connect_timeout(&addr, ASK_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(ASK_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(CLUSTER_SLOTS).map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    let mut reader = Reader::new();
    loop {
        // An error answer first: its text says whether this Redis is a cluster at all.
        if buf.first() == Some(&b'-') {
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&buf[1..end]).into_owned();
                return match line.contains("cluster support disabled") {
                    true => Ok(SlotMap::whole(seed.clone())),
                    false => Err(line),
                };
            }
        } else {
            match reader.next(&mut buf).map_err(|e| e.to_string())? {
                Next::Frame(frame) => return SlotMap::parse(&frame, seed),
                Next::Skipped(over) => return Err(format!("an answer {}", over.why())),
                Next::Partial => {}
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("closed before answering".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The socket address of `seed` (the first its host resolves to).
fn resolve(seed: &Seed) -> Result<SocketAddr, String> {
    (seed.host.as_str(), seed.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {seed}: {e}"))?
        .next()
        .ok_or_else(|| format!("{seed} resolves to no address"))
}

/// Where the events of a run go: the masters, and each channel's master.
#[derive(Debug, Clone)]
pub struct Shards {
    /// The masters' addresses, in the map's slot order: a shard is an index here, and the
    /// publisher opens `--publish-conns` connections to each.
    pub masters: Vec<SocketAddr>,
    /// By player (channel number), its channel's master (an index into `masters`). A channel
    /// is fixed per player (the channel template may not use per-event values, see
    /// [`crate::opts::Opts::validate`]), so its slot is computed once per channel rather than
    /// once per event on each shard's connections.
    owner: Vec<u16>,
}

impl Shards {
    /// The shards of `players` channels (named by `channel` with `brand`) on the cluster of
    /// `map`. Refused when a channel's slot has no master (a cluster not ready, or a master
    /// failed and not yet replaced): its events could go nowhere.
    pub fn new(
        map: &SlotMap,
        channel: &Template,
        players: u64,
        brand: u64,
    ) -> Result<Shards, String> {
        let seeds = map.masters();
        let masters = seeds.iter().map(resolve).collect::<Result<Vec<_>, _>>()?;
        let mut owner = Vec::with_capacity(players as usize);
        let mut name = Vec::new();
        for player in 0..players {
            name.clear();
            let v = Vars {
                player,
                brand,
                ..Vars::default()
            };
            channel.render(&v, &mut name);
            let slot = key_slot(&name);
            let master = map.master_of(slot).ok_or_else(|| {
                format!(
                    "channel {} is in slot {slot}, which no master serves (CLUSTER SLOTS); is the cluster ready?",
                    String::from_utf8_lossy(&name)
                )
            })?;
            // `masters()` lists every master of the map, so this finds it; at most
            // MAX_MASTERS (1,000) of them fit a u16.
            let i = seeds.iter().position(|s| s == master).unwrap_or(0);
            owner.push(i as u16);
        }
        Ok(Shards { masters, owner })
    }

    /// The shard (an index into `masters`) of event `k` of a run of `players` channels.
    pub fn of_event(&self, k: u64, players: u64) -> usize {
        let (player, _) = seqs::target(k, players);
        self.owner
            .get(player as usize)
            .map_or(0, |&i| usize::from(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway::broker::cluster::SlotRange;

    #[test]
    fn seeds_are_read_as_the_gateway_reads_its_list() {
        let s = seeds("127.0.0.1:7000,127.0.0.1:7001").unwrap();
        assert_eq!(
            s,
            vec![Seed::new("127.0.0.1", 7000), Seed::new("127.0.0.1", 7001)]
        );
        assert_eq!(seeds("localhost:7000").unwrap().len(), 1);
        for bad in ["", "u:p@127.0.0.1:7000", "127.0.0.1:7000,", "127.0.0.1:0"] {
            let e = seeds(bad).unwrap_err();
            assert!(e.starts_with("--publish redis-cluster://"), "{bad}: {e}");
        }
    }

    /// Slots of the default channel names, checked against a live Redis 7.0.15 cluster's
    /// `CLUSTER KEYSLOT` (loadgen's e2e `steady_over_a_redis_cluster...` checks more).
    #[test]
    fn default_channels_land_in_redis_own_slots() {
        let cases: &[(&str, u16)] = &[
            ("SSE::1::0", 8643),
            ("SSE::1::1", 12770),
            ("SSE::1::2", 385),
            ("SSE::1::49999", 6178),
            ("{SSE::1}::7", 6405),
            ("loadgen_broadcast_all", 8352),
        ];
        for (name, slot) in cases {
            assert_eq!(key_slot(name.as_bytes()), *slot, "{name}");
        }
    }

    fn range(first: u16, last: u16, port: u16) -> SlotRange {
        SlotRange {
            first,
            last,
            master: Seed::new("127.0.0.1", port),
        }
    }

    #[test]
    fn each_channel_goes_to_the_master_of_its_slot() {
        let map = SlotMap::from_ranges(vec![
            range(10923, 16383, 7002),
            range(0, 5460, 7000),
            range(5461, 10922, 7001),
        ])
        .unwrap();
        let tpl = Template::parse("SSE::{brand}::{player}");
        let s = Shards::new(&map, &tpl, 100, 1).unwrap();
        let port = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
        assert_eq!(s.masters, vec![port(7000), port(7001), port(7002)]);
        for k in 0..300u64 {
            let name = format!("SSE::1::{}", k % 100);
            let want = map.master_of_channel(name.as_bytes()).unwrap().port;
            assert_eq!(s.masters[s.of_event(k, 100)], port(want), "event {k}");
        }
        // Every master gets some of a hundred channels.
        let mut per = [0; 3];
        (0..100).for_each(|k| per[s.of_event(k, 100)] += 1);
        assert!(per.iter().all(|&n| n > 15), "{per:?}");
    }

    #[test]
    fn a_channel_in_a_slot_without_master_is_refused() {
        // SSE::1::0 is in slot 8643, which this map leaves unserved.
        let map =
            SlotMap::from_ranges(vec![range(0, 8000, 7000), range(9000, 16383, 7001)]).unwrap();
        let tpl = Template::parse("SSE::{brand}::{player}");
        let e = Shards::new(&map, &tpl, 10, 1).unwrap_err();
        assert!(e.contains("SSE::1::0") && e.contains("8643"), "{e}");
    }

    /// A server that answers one connection's first request with `answer`.
    fn answering(answer: &'static [u8]) -> Seed {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 256];
            let n = s.read(&mut b).unwrap();
            assert_eq!(&b[..n], CLUSTER_SLOTS);
            // In two writes: the reader must wait for the rest.
            let (a, z) = answer.split_at(answer.len() / 2);
            s.write_all(a).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(z).unwrap();
        });
        Seed::new("127.0.0.1", port)
    }

    #[test]
    fn the_map_is_read_from_cluster_slots_or_is_one_redis() {
        // Two ranges, the second master written as "" (the node asked): Redis's own shape,
        // each master with its id and an empty metadata map after host and port.
        let seed = answering(
            b"*2\r\n*3\r\n:0\r\n:8191\r\n*4\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*0\r\n\
              *3\r\n:8192\r\n:16383\r\n*4\r\n$0\r\n\r\n:7001\r\n$2\r\nid\r\n*0\r\n",
        );
        let map = slot_map(std::slice::from_ref(&seed)).unwrap();
        assert_eq!(
            map.masters(),
            vec![Seed::new("127.0.0.1", 7000), Seed::new("127.0.0.1", 7001)]
        );
        let one = answering(b"-ERR This instance has cluster support disabled\r\n");
        assert_eq!(
            slot_map(std::slice::from_ref(&one)).unwrap().masters(),
            vec![one]
        );
        // A node that refuses, then one that answers: the second is asked.
        let refusing = answering(b"-NOAUTH Authentication required.\r\n");
        let seed = answering(b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7005\r\n");
        let map = slot_map(&[refusing, seed]).unwrap();
        assert_eq!(map.masters(), vec![Seed::new("127.0.0.1", 7005)]);
        let e = slot_map(&[answering(b"-NOAUTH Authentication required.\r\n")]).unwrap_err();
        assert!(e.contains("NOAUTH"), "{e}");
    }
}
