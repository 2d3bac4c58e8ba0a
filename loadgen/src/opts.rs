//! Command-line options: one struct, parsed from flags, validated once, and handed to worker
//! processes as JSON so parent and workers agree on every setting.
use serde::{Deserialize, Serialize};

use crate::template::{Template, Var};

/// Usage text.
pub const USAGE: &str = "loadgen SCENARIO [options]

scenarios:
  steady     open --streams, publish --rate events/s unicast for --duration, report latency/loss
  broadcast  open --streams, publish --rounds rounds of one event to every channel (--players,
             default 1: every stream), report the time until the last stream has each round
  storm      like steady, and at --storm-at every stream drops and reconnects at once with
             Last-Event-ID: time to reconnect all, events lost or duplicated
  plan       like steady in steps: the rate grows by --plan-step each step until p99 passes
             --target-p99 or an event is lost; reports the knee (the last step that held)
  idle       open --streams, hold them --hold seconds, report the server's memory per stream
  fanout     broadcast with --players defaulting to --streams (one event to every stream)
  deploy     a rolling deploy: like steady over several --url nodes; from --deploy-at on,
             each node in turn is restarted by --restart-cmd (which sends SIGTERM, waits for
             the node to drain and exit, and starts it again); a stream the server ends
             reconnects after the server's `retry:` with Last-Event-ID to the node holding
             the fewest of its worker's streams, never the one that ended it. Reports lost,
             duplicated, resets received and, per node, the time until every stream was
             open again; publishing stops --deploy-tail seconds after the last node

subscribers:
  --url URL            stream URL template, repeatable (stream i uses URL i % count), with
                       {i} {player} {brand} {channel} {token}. Default: the gateway's player
                       stream at --target: http://TARGET/sse?token={token}
  --target ADDR        the gateway at ADDR (default 127.0.0.1:8080): sets the default --url and
                       --publish http://ADDR/api/v1/publish
  --streams N          streams to open (default 1000)
  --players N          channels; stream i belongs to player i % N (default: --streams; 1 for
                       broadcast)
  --brand N            brand id (default 1)
  --channel TPL        channel name template (default SSE::{brand}::{player})
  --secret S           HS256 secret to mint a {token} per stream
  --claims TPL         token claims template (default
                       {\"brand_id\":{brand},\"player_id\":{player},\"exp\":{exp}})
  --token-file FILE    tokens, one a line (stream i uses line i % lines), instead of --secret
  --connect-rate N     streams opened per second over all workers (default 5000)
  --reconnect-ms MS    wait before reopening a stream the server ended (default 1000)
  --per-worker N       streams per worker process (default 12500; a process may hold 20,000
                       files here)
  --sources N          spread streams over source addresses 127.0.0.2.. (default: one per
                       10,000 streams for a loopback target; 0 = let the kernel choose)

publishers:
  --publish URL        redis://HOST:PORT (PUBLISH), redis-cluster://HOST:PORT[,HOST:PORT...]
                       (a Redis Cluster, the gateway's sharded mode: reads CLUSTER SLOTS from
                       the first node that answers, then sends each event with SPUBLISH on a
                       connection to its channel's master; a MOVED answer is a publish error,
                       not followed; not for broadcast families, which the gateway hears by
                       pattern: publish those with redis://ANY-NODE) or an http:// URL
                       template (POST); default the gateway's HTTP publish at --target
  --publish-body TPL   HTTP body template (default {\"channel\":\"{channel}\",\"data\":{payload}});
                       {payload_escaped} is the payload escaped for inside a JSON string
  --payload TPL        event payload template; must carry \"seq\":{seq} and \"t\":{t} (default the
                       gateway's player payload with event_data {\"seq\":{seq},\"t\":{t}})
  --durable            Redis publisher: `FCALL ssegw_publish 1 <channel> <payload>` (the
                       gateway's durable path) instead of `PUBLISH`; loads the gateway's
                       function library into that Redis first when it is absent or older
                       (as a node does when its publisher link connects)
  --publish-conns N    publishing connections (default 1; redis-cluster://: N to each master)
  --tick-us US         wake the publisher at most every US microseconds and send what is due
                       in one batch (default 0: wake for each event's due time). Fewer wake-ups
                       and syscalls; events go out up to US late, which the latency includes
  --rate N             events a second (default 1000)
  --duration SECS      publishing time (default 10; deploy: a cap, default 600)
  --rounds N           broadcast rounds (default 5)
  --interval MS        time between broadcast rounds (default 1000)
  --storm-at SECS      storm: seconds into publishing when every stream drops (default: the
                       later of duration/3 and 1.5 x players/rate, so every stream has an id
                       to resume from)
  --restart-cmd CMD    deploy: shell command (sh -c) restarting node {node} (0-based index
                       into the --url list); it returns once the node serves again
  --deploy-at SECS     deploy: seconds into publishing of the first restart (default: the
                       later of 3 and 1.5 x players/rate, so every stream has an id first)
  --deploy-gap SECS    deploy: wait after a node's streams are all back before the next
                       node (default 2)
  --deploy-tail SECS   deploy: keep publishing this long after the last node (default 3)
  --back-timeout SECS  deploy: give up waiting for the streams to be back after a restart
                       (default 60)
  --target-p99 MS      latency target for pass/fail and plan (default 100)
  --plan-step F        plan: rate factor per step (default 1.5)
  --plan-steps N       plan: at most this many steps (default 8)

report:
  --pid PID            a process under test (repeatable, or comma-separated): CPU, peak RSS
  --json FILE          write the report as JSON too
  --html FILE          write the report as one self-contained HTML page with plots: latency
                       p50/p99 per second, the latency histogram, streams open per second
                       (through a storm), deliveries per second, and plan's rate-vs-p99 curve
                       with the knee marked
  --hold SECS          idle: how long to hold the streams (default 3)
  --timeout SECS       give up opening streams after this long (default 120)
  --drain SECS         after publishing, wait at most this long for late events (default 5)
  --quiet              no live progress line
";

/// Every setting of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Opts {
    /// Which scenario (`steady`, `broadcast`, `storm`, `plan`, `idle`, `deploy`).
    pub scenario: String,
    /// Stream URL templates; stream i uses `urls[i % len]`.
    pub urls: Vec<String>,
    /// Streams to open.
    pub streams: usize,
    /// Distinct channels (players).
    pub players: usize,
    /// Brand id in channel names and tokens.
    pub brand: u64,
    /// Channel name template.
    pub channel: String,
    /// HS256 secret for minted tokens.
    pub secret: String,
    /// Token claims template.
    pub claims: String,
    /// Tokens read from this file instead of minted.
    pub token_file: Option<String>,
    /// Streams opened per second, all workers together.
    pub connect_rate: u64,
    /// Wait before reopening a stream the server ended.
    pub reconnect_ms: u64,
    /// Streams per worker process.
    pub per_worker: usize,
    /// Source addresses (127.0.0.2 upwards); `None` = automatic.
    pub sources: Option<usize>,
    /// Publish target: `redis://...`, `redis-cluster://...` or `http://...` template.
    pub publish: String,
    /// HTTP publish body template.
    pub publish_body: String,
    /// Payload template.
    pub payload: String,
    /// Redis publisher: `FCALL ssegw_publish 1` (durable) instead of `PUBLISH`.
    pub durable: bool,
    /// Publishing connections.
    pub publish_conns: usize,
    /// Least time between publisher wake-ups, microseconds (0: each event's due time).
    pub tick_us: u64,
    /// Events per second.
    pub rate: f64,
    /// Publishing time in seconds.
    pub duration: f64,
    /// Broadcast rounds.
    pub rounds: u64,
    /// Milliseconds between broadcast rounds.
    pub interval_ms: u64,
    /// Storm time, seconds into publishing.
    pub storm_at: Option<f64>,
    /// Deploy: shell command restarting node `{node}`.
    pub restart_cmd: String,
    /// Deploy: first restart, seconds into publishing (`None`: see [`Opts::deploy_time`]).
    pub deploy_at: Option<f64>,
    /// Deploy: seconds between one node's streams all back and the next restart.
    pub deploy_gap: f64,
    /// Deploy: seconds of publishing after the last node's streams are all back.
    pub deploy_tail: f64,
    /// Deploy: most seconds to wait for every stream to be open again after a restart.
    pub back_timeout: f64,
    /// p99 target in milliseconds.
    pub target_p99_ms: f64,
    /// Plan: rate factor per step.
    pub plan_step: f64,
    /// Plan: most steps.
    pub plan_steps: u32,
    /// Processes under test.
    pub pids: Vec<u32>,
    /// JSON report file.
    pub json: Option<String>,
    /// HTML report file.
    pub html: Option<String>,
    /// Idle hold time in seconds.
    pub hold: f64,
    /// Connect phase timeout in seconds.
    pub timeout: f64,
    /// Drain wait in seconds.
    pub drain: f64,
    /// No live progress line.
    pub quiet: bool,
}

impl Opts {
    /// Parses the command line (without the program name).
    pub fn parse(args: &[String]) -> Result<Opts, String> {
        let mut args = args.iter();
        let scenario = args.next().ok_or("missing scenario")?.clone();
        if scenario == "-h" || scenario == "--help" {
            return Err(String::new());
        }
        let mut o = Opts {
            scenario,
            urls: Vec::new(),
            streams: 1000,
            players: 0,
            brand: 1,
            channel: "SSE::{brand}::{player}".into(),
            secret: String::new(),
            claims: r#"{"brand_id":{brand},"player_id":{player},"exp":{exp}}"#.into(),
            token_file: None,
            connect_rate: 5000,
            reconnect_ms: 1000,
            per_worker: 12_500,
            sources: None,
            publish: String::new(),
            publish_body: r#"{"channel":"{channel}","data":{payload}}"#.into(),
            payload: r#"{"brand_id":{brand},"player_id":{player},"event_type":"loadgen","event_data":{"seq":{seq},"t":{t}}}"#.into(),
            durable: false,
            publish_conns: 1,
            tick_us: 0,
            rate: 1000.0,
            duration: 10.0,
            rounds: 5,
            interval_ms: 1000,
            storm_at: None,
            restart_cmd: String::new(),
            deploy_at: None,
            deploy_gap: 2.0,
            deploy_tail: 3.0,
            back_timeout: 60.0,
            target_p99_ms: 100.0,
            plan_step: 1.5,
            plan_steps: 8,
            pids: Vec::new(),
            json: None,
            html: None,
            hold: 3.0,
            timeout: 120.0,
            drain: 5.0,
            quiet: false,
        };
        let mut target = "127.0.0.1:8080".to_string();
        let mut duration_given = false;
        while let Some(flag) = args.next() {
            if flag == "--quiet" {
                o.quiet = true;
                continue;
            }
            if flag == "--durable" {
                o.durable = true;
                continue;
            }
            let v = args
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .clone();
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
            macro_rules! num {
                () => {
                    v.parse().map_err(|e| bad(&e))?
                };
            }
            match flag.as_str() {
                "--url" => o.urls.push(v),
                "--target" => target = v,
                "--streams" => o.streams = num!(),
                "--players" => o.players = num!(),
                "--brand" => o.brand = num!(),
                "--channel" => o.channel = v,
                "--secret" => o.secret = v,
                "--claims" => o.claims = v,
                "--token-file" => o.token_file = Some(v),
                "--connect-rate" => o.connect_rate = num!(),
                "--reconnect-ms" => o.reconnect_ms = num!(),
                "--per-worker" => o.per_worker = num!(),
                "--sources" => o.sources = Some(num!()),
                "--publish" => o.publish = v,
                "--publish-body" => o.publish_body = v,
                "--payload" => o.payload = v,
                "--publish-conns" => o.publish_conns = num!(),
                "--tick-us" => o.tick_us = num!(),
                "--rate" => o.rate = num!(),
                "--duration" => {
                    o.duration = num!();
                    duration_given = true;
                }
                "--rounds" => o.rounds = num!(),
                "--interval" => o.interval_ms = num!(),
                "--storm-at" => o.storm_at = Some(num!()),
                "--restart-cmd" => o.restart_cmd = v,
                "--deploy-at" => o.deploy_at = Some(num!()),
                "--deploy-gap" => o.deploy_gap = num!(),
                "--deploy-tail" => o.deploy_tail = num!(),
                "--back-timeout" => o.back_timeout = num!(),
                "--target-p99" => o.target_p99_ms = num!(),
                "--plan-step" => o.plan_step = num!(),
                "--plan-steps" => o.plan_steps = num!(),
                "--pid" => {
                    for p in v.split(',').filter(|p| !p.is_empty()) {
                        o.pids.push(p.trim().parse().map_err(|e| bad(&e))?);
                    }
                }
                "--json" => o.json = Some(v),
                "--html" => o.html = Some(v),
                "--hold" => o.hold = num!(),
                "--timeout" => o.timeout = num!(),
                "--drain" => o.drain = num!(),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if o.urls.is_empty() {
            o.urls.push(format!("http://{target}/sse?token={{token}}"));
        }
        if o.publish.is_empty() {
            o.publish = format!("http://{target}/api/v1/publish");
        }
        if o.scenario == "fanout" {
            o.scenario = "broadcast".into();
            if o.players == 0 {
                o.players = o.streams;
            }
        }
        if o.scenario == "deploy" && !duration_given {
            o.duration = 600.0;
        }
        if o.players == 0 {
            o.players = if o.scenario == "broadcast" {
                1
            } else {
                o.streams
            };
        }
        o.validate()?;
        Ok(o)
    }

    /// Checks the settings fit together.
    pub fn validate(&self) -> Result<(), String> {
        if !["steady", "broadcast", "storm", "plan", "idle", "deploy"]
            .contains(&self.scenario.as_str())
        {
            return Err(format!("unknown scenario {}", self.scenario));
        }
        if self.streams == 0 || self.per_worker == 0 || self.players == 0 {
            return Err("--streams, --players and --per-worker must be positive".into());
        }
        let needs_token = self.urls.iter().any(|u| u.contains("{token}"));
        if needs_token && self.secret.is_empty() && self.token_file.is_none() {
            return Err("the stream URL has {token}: give --secret or --token-file".into());
        }
        if self.rate.is_nan()
            || self.rate <= 0.0
            || self.duration.is_nan()
            || self.duration <= 0.0
            || self.connect_rate == 0
        {
            return Err("--rate, --duration and --connect-rate must be positive".into());
        }
        if self.scenario == "storm" && self.storm_time() >= self.duration {
            return Err(format!(
                "storm at {:.1} s is not within --duration {}: every stream needs an event to resume from first ({} channels at {}/s); publish longer",
                self.storm_time(),
                self.duration,
                self.players,
                self.rate
            ));
        }
        if self.scenario == "deploy" {
            if self.restart_cmd.is_empty() || self.urls.len() < 2 {
                return Err(
                    "deploy needs --restart-cmd and at least two --url nodes (streams move to the others)"
                        .into(),
                );
            }
            if self.deploy_time() >= self.duration {
                return Err(format!(
                    "the first restart at {:.1} s is not within --duration {}",
                    self.deploy_time(),
                    self.duration
                ));
            }
        }
        if self.durable && !self.publish.starts_with("redis://") {
            return Err("--durable is for the Redis publisher (--publish redis://...)".into());
        }
        if self.publish.starts_with("redis-cluster://") {
            // Each channel's master is looked up once per player (`cluster::Shards`).
            let channel = Template::parse(&self.channel);
            if channel.uses(Var::Seq) || channel.uses(Var::T) {
                return Err(
                    "--channel for --publish redis-cluster:// may not use {seq} or {t}: a channel's master is found once per player"
                        .into(),
                );
            }
        }
        if self.publish_conns == 0 {
            return Err("--publish-conns must be positive".into());
        }
        if self.plan_step.is_nan() || self.plan_step <= 1.0 {
            return Err("--plan-step must be above 1".into());
        }
        if !self.payload.contains("{seq}") || !self.payload.contains("{t}") {
            return Err("--payload must carry {seq} and {t}".into());
        }
        Ok(())
    }

    /// When the storm drops every stream, in seconds into publishing. A stream that has seen
    /// no event yet has no id to resume from, and an SSE client without `Last-Event-ID`
    /// starts live: what was published while it was away is lost to it, by the protocol, not
    /// by the server. The default waits until every channel has had 1.5 events.
    pub fn storm_time(&self) -> f64 {
        self.storm_at
            .unwrap_or_else(|| (self.duration / 3.0).max(1.5 * self.players as f64 / self.rate))
    }

    /// When a deploy restarts its first node, in seconds into publishing: as for the storm,
    /// every stream needs an id to resume from first (1.5 events a channel), and 3 s at least.
    pub fn deploy_time(&self) -> f64 {
        self.deploy_at
            .unwrap_or_else(|| 3f64.max(1.5 * self.players as f64 / self.rate))
    }

    /// Whether a stream the server ended moves to another URL (a balancer's view of a node
    /// that went away) and waits for the server's `retry:` first: the deploy scenario.
    pub fn failover(&self) -> bool {
        self.scenario == "deploy"
    }

    /// Whether streams connect to loopback (so source addresses can be spread over 127/8).
    pub fn loopback_target(&self) -> bool {
        self.urls.iter().all(|u| u.starts_with("http://127."))
    }

    /// How many source addresses to use.
    pub fn source_count(&self) -> usize {
        match self.sources {
            Some(n) => n,
            None if self.loopback_target() => self.streams.div_ceil(10_000),
            None => 0,
        }
    }

    /// Number of worker processes.
    pub fn workers(&self) -> usize {
        self.streams.div_ceil(self.per_worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Opts, String> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        Opts::parse(&v)
    }

    #[test]
    fn defaults_follow_the_target_and_scenario() {
        let o = parse("steady --target 127.0.0.1:9000 --secret s --streams 50000").unwrap();
        assert_eq!(o.urls, vec!["http://127.0.0.1:9000/sse?token={token}"]);
        assert_eq!(o.publish, "http://127.0.0.1:9000/api/v1/publish");
        assert_eq!(o.players, 50_000);
        assert_eq!(o.workers(), 4);
        assert_eq!(o.source_count(), 5);
        assert_eq!(parse("broadcast --secret s").unwrap().players, 1);
        let f = parse("fanout --secret s --streams 10").unwrap();
        assert_eq!((f.scenario.as_str(), f.players), ("broadcast", 10));
        assert!(parse("steady").unwrap_err().contains("--secret"));
        assert!(parse("steady --url http://127.0.0.1:1/sub?id={channel}").is_ok());
        assert!(parse("bogus --secret s").is_err());
        assert_eq!(
            parse("idle --secret s --pid 1,2 --pid 3").unwrap().pids,
            vec![1, 2, 3]
        );
    }

    #[test]
    fn deploy_needs_a_restart_command_and_two_nodes() {
        let two = "--url http://127.0.0.1:1/s?c={channel} --url http://127.0.0.1:2/s?c={channel}";
        let d = parse(&format!(
            "deploy {two} --restart-cmd true --rate 100 --streams 300"
        ))
        .unwrap();
        assert_eq!(d.duration, 600.0);
        assert_eq!(d.deploy_time(), 4.5);
        assert!(d.failover());
        assert!(!parse("steady --secret s").unwrap().failover());
        assert!(parse(&format!("deploy {two}"))
            .unwrap_err()
            .contains("--restart-cmd"));
        let one = "deploy --url http://127.0.0.1:1/s?c={channel} --restart-cmd true";
        assert!(parse(one).unwrap_err().contains("two"));
        assert!(
            parse(&format!("deploy {two} --restart-cmd true --duration 2"))
                .unwrap_err()
                .contains("first restart")
        );
        assert!(parse("steady --secret s --durable")
            .unwrap_err()
            .contains("Redis"));
        let r = parse("steady --secret s --durable --publish redis://127.0.0.1:6379").unwrap();
        assert!(r.durable);
    }

    #[test]
    fn a_cluster_publisher_needs_a_channel_per_player() {
        let c = "steady --secret s --publish redis-cluster://127.0.0.1:7000,127.0.0.1:7001";
        assert!(parse(c).is_ok());
        assert!(parse(&format!("{c} --channel {{brand}}:{{player}}")).is_ok());
        assert!(parse(&format!("{c} --channel c{{seq}}"))
            .unwrap_err()
            .contains("{seq}"));
        assert!(parse(&format!("{c} --durable"))
            .unwrap_err()
            .contains("redis://"));
    }
}
