//! The gateway's configuration: one [`Config`] from defaults < TOML file < environment <
//! flags.
//!
//! `Config` is a `clap` command: each setting is a field with its flag, environment variable,
//! default and value parser, and its doc comment is its `--help` text. The file (`file.rs`)
//! and the environment (read through a lookup function, so tests need no real one) become
//! `--name=value` flags ahead of the real ones (`cli.rs`), so every value takes one path and
//! an error names the setting, its flag, its file key and the value; secrets show as
//! `[redacted]`, there and in `Debug` output.
mod cli;
mod error;
mod file;
pub mod token;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub use error::ConfigError;
pub use values::{IoDriverChoice, RedisSubscribe};

use crate::auth::secret::{Secret, REDACTED};
use crate::auth::Keys;
use crate::broker::target::{self, RedisTarget};
use crate::http::cors::CorsOrigins;
use crate::route::table::RouteTable;
use crate::util::duration;
use error::invalid;

/// Most worker threads [`Config::cores`] may ask for.
const MAX_CORES: usize = 1024;
/// Most events [`Config::event_buffer`] and [`Config::history`] may hold per stream/channel.
const MAX_QUEUE: usize = 65_536;
/// Least [`Config::history_bytes`]: sixteen of the largest events (64 KiB).
const MIN_HISTORY_BYTES: usize = 1 << 20;
/// Most Redis history reads [`Config::resume_reads`] may allow in flight per core.
const MAX_RESUME_READS: usize = 1024;
/// Least [`Config::replay_limit`]: below a kilobyte not even one typical event would replay.
const MIN_REPLAY: usize = 1024;
/// Most topics [`Config::metrics_topics`] may give series of their own: 10,000 topics are
/// about 1 MB of `/metrics` text with 200-byte names, already more than a scraper should take.
const MAX_METRICS_TOPICS: usize = 10_000;
/// Most clock skew [`Config::jwt_leeway`] may allow: NTP keeps clocks within a second; a few
/// minutes covers a broken one, more would make expiry meaningless for short-lived tokens.
const MAX_JWT_LEEWAY: Duration = Duration::from_secs(300);
/// Most viewers [`Config::status_viewers`] may allow: each is a stream written once a period
/// (a few KiB); the page is for operators, not an audience.
const MAX_STATUS_VIEWERS: usize = 1024;
/// Shortest [`Config::status_period`]: below it a snapshot (every core's counters and topic
/// counts) would be taken more often than a human reads it.
const MIN_STATUS_PERIOD: Duration = Duration::from_millis(100);
/// Longest [`Config::status_period`]: beyond it the page is no longer live.
const MAX_STATUS_PERIOD: Duration = Duration::from_secs(60);
/// Least [`Config::channel_limit`]: one topic stream may ask for 64 channels.
const MIN_CHANNELS: usize = 64;

/// Everything the gateway is told at start-up. Build it with [`Config::from_process`] or
/// [`Config::load`]; a hand-built one must pass [`Config::validate`] before use.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", about = "Server-Sent Events gateway", long_about = None)]
#[command(args_override_self = true, after_long_help = cli::AFTER_HELP)]
pub struct Config {
    /// Address and port to listen on (IP:port, IPv6 as [::]:8080); port 0 picks a free port.
    #[arg(long, env = "SSE_LISTEN", value_name = "ADDR", value_parser = values::listen)]
    #[arg(default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Worker threads, one I/O ring and listener each: the node's parallelism (1-1024).
    #[arg(long, env = "SSE_CORES", value_name = "N", value_parser = values::count)]
    #[arg(default_value_t = default_cores())]
    pub cores: usize,
    /// Most concurrent SSE streams (at least 1), so a surge gets polite retries, not an OOM.
    #[arg(long, env = "SSE_CONNECTION_LIMIT", value_name = "N", value_parser = values::count)]
    #[arg(default_value = "50000")]
    pub connection_limit: usize,
    /// Most non-stream connections (request heads in progress, idle keep-alive API
    /// connections) on this node, divided over the cores; beyond it the oldest idle one is
    /// closed. 0: a quarter of the open-file limit, at most 16384.
    #[arg(long, env = "SSE_PENDING_LIMIT", value_name = "N", value_parser = values::count)]
    #[arg(default_value = "0")]
    pub pending_limit: usize,
    /// Topics with their own series in /metrics and stats (0-10000): those with the most
    /// subscribers; the rest are summed under `_other`.
    #[arg(long, env = "SSE_METRICS_TOPICS", value_name = "N", value_parser = values::count)]
    #[arg(default_value = "100")]
    pub metrics_topics: usize,
    /// Redis to fan events out through, so many nodes share one event stream:
    /// redis://[user:pass@]host:port[/db] or host:port, or a comma-separated list of nodes
    /// (a Redis Cluster's seeds: redis://[user:pass@]h1:p1,h2:p2[/db] or h1:p1,h2:p2);
    /// unset: the embedded in-process broker.
    #[arg(long, env = "EVENTS_REDIS_STORAGE", value_name = "URL", value_parser = target::parse)]
    pub events_redis_storage: Option<RedisTarget>,
    /// How cores subscribe on Redis: `pattern` (one PSUBSCRIBE of every family per core),
    /// `channel` (unicast families' channels one by one, where they have streams; broadcast
    /// families by pattern), so Redis sends a player's events only where they are wanted, or
    /// `sharded` (as `channel`, with SSUBSCRIBE on each channel's master of a Redis Cluster;
    /// unicast channels must then be published with SPUBLISH).
    #[arg(long, env = "SSE_REDIS_SUBSCRIBE", value_name = "MODE")]
    #[arg(value_parser = RedisSubscribe::parse, default_value = "pattern")]
    pub redis_subscribe: RedisSubscribe,
    /// One keep-alive interval for every stream family (> 0), for proxies with short idle
    /// timeouts; unset: each family's own (15s; topic stream 30s).
    #[arg(long, env = "SSE_KEEPALIVE_PERIOD", value_name = "DURATION")]
    #[arg(value_parser = duration::parse)]
    pub keepalive_period: Option<Duration>,
    /// On SIGTERM, streams are closed spread over this period, so their clients don't all
    /// reconnect to the other nodes at once (0: at once).
    #[arg(long, env = "SSE_DRAIN_PERIOD", value_name = "DURATION")]
    #[arg(value_parser = duration::parse, default_value = "10s")]
    pub drain_period: Duration,
    /// Events a stream may queue before it is cut as too slow (1-65536), so none hogs memory.
    #[arg(long, env = "SSE_EVENT_BUFFER", value_name = "N", value_parser = values::count)]
    #[arg(default_value = "50")]
    pub event_buffer: usize,
    /// Events kept per channel for clients resuming with Last-Event-ID (0: off; at most 65536).
    #[arg(long, env = "SSE_HISTORY", value_name = "N", value_parser = values::count)]
    #[arg(default_value = "64")]
    pub history: usize,
    /// Most bytes of events all channels' histories on a core hold together (at least 1 MiB);
    /// beyond it the core's oldest events leave history first.
    #[arg(long, env = "SSE_HISTORY_BYTES", value_name = "N", value_parser = values::count)]
    #[arg(default_value = "134217728")]
    pub history_bytes: usize,
    /// Most bytes a resume may replay (at least 1024); a client that missed more gets a reset,
    /// so one request cannot make the gateway write megabytes of history to it.
    #[arg(long, env = "SSE_REPLAY_LIMIT", value_name = "N", value_parser = values::count)]
    #[arg(default_value = "1048576")]
    pub replay_limit: usize,
    /// How long a channel's history in Redis (the durable path) lives after its last publish
    /// (1s to 24h): a client away longer than this may get a reset instead of a replay.
    #[arg(long, env = "SSE_HISTORY_TTL", value_name = "DURATION")]
    #[arg(value_parser = duration::parse, default_value = "1h")]
    pub history_ttl: Duration,
    /// Redis history reads (resumes this node's memory cannot answer) in flight per core
    /// (1-1024); more wait for one to finish, so a reconnect storm cannot flood Redis.
    #[arg(long, env = "SSE_RESUME_READS", value_name = "N", value_parser = values::count)]
    #[arg(default_value = "8")]
    pub resume_reads: usize,
    /// Time every write to a stream (prelude, events, keep-alives) may take (> 0) before the
    /// stream is cut, so a client that stops reading frees what it holds.
    #[arg(long, env = "SSE_WRITE_TIMEOUT", value_name = "DURATION")]
    #[arg(value_parser = duration::parse, default_value = "30s")]
    pub write_timeout: Duration,
    /// Most channels each core holds (at least 64); beyond it the least recently used without
    /// a stream are evicted, and a stream needing a new one when none is idle is refused.
    #[arg(long, env = "SSE_CHANNEL_LIMIT", value_name = "N", value_parser = values::count)]
    #[arg(default_value = "100000")]
    pub channel_limit: usize,
    /// How long a channel without streams is kept (> 0), with its history for clients that
    /// come back, and in channel mode its Redis subscription, so a reconnect storm does not
    /// churn SUBSCRIBE/UNSUBSCRIBE. Checked by a sweep that visits each idle channel every 10s.
    #[arg(long, env = "SSE_CHANNEL_IDLE", value_name = "DURATION")]
    #[arg(value_parser = duration::parse, default_value = "5m")]
    pub channel_idle: Duration,
    /// HS256 secret for player and private-channel tokens; unset: those routes answer 401.
    #[arg(long, env = "SSE_AUTH_SECRET", value_name = "SECRET", value_parser = values::secret)]
    pub auth_secret: Option<Secret>,
    /// Clock skew allowed on a token's exp and nbf (0 to 5m), as token issuers' clocks drift.
    #[arg(long, env = "SSE_JWT_LEEWAY", value_name = "DURATION")]
    #[arg(value_parser = duration::parse, default_value = "30s")]
    pub jwt_leeway: Duration,
    /// API keys accepted on game streams, comma-separated; unset: those routes answer 401.
    #[arg(long, env = "SSE_API_KEYS", value_name = "KEYS", value_parser = values::key)]
    #[arg(value_delimiter = ',', action = clap::ArgAction::Set)]
    pub api_keys: Vec<Secret>,
    /// Bearer token the HTTP publish endpoints require; unset: they accept loopback only.
    #[arg(long, env = "SSE_PUBLISH_TOKEN", value_name = "TOKEN", value_parser = values::secret)]
    pub publish_token: Option<Secret>,
    /// A second address (IP:port) for publish, stats and metrics, which the public listener
    /// then answers 404; it serves those and the health probes only. Unset: all on SSE_LISTEN.
    #[arg(long, env = "SSE_ADMIN_LISTEN", value_name = "ADDR", value_parser = values::listen)]
    pub admin_listen: Option<SocketAddr>,
    /// Most browsers the live status page (`/status/stream`) may feed at once (0-1024; 0: the
    /// page is refused), where stats and metrics are served; one more is answered 503.
    #[arg(long, env = "SSE_STATUS_VIEWERS", value_name = "N", value_parser = values::count)]
    #[arg(default_value = "16")]
    pub status_viewers: usize,
    /// How often the status page's figures are sampled and sent to its viewers (100ms-1m).
    #[arg(long, env = "SSE_STATUS_PERIOD", value_name = "DURATION")]
    #[arg(value_parser = duration::parse, default_value = "1s")]
    pub status_period: Duration,
    /// Origins that get CORS headers, for pages served from another origin: comma-separated
    /// scheme://host[:port], or * for any; unset: none.
    #[arg(long, env = "SSE_CORS_ORIGINS", value_name = "ORIGINS")]
    #[arg(value_parser = CorsOrigins::parse, default_value = "", hide_default_value = true)]
    pub cors_origins: CorsOrigins,
    /// I/O driver: auto (io_uring, else epoll), io_uring or epoll (to force the fallback).
    #[arg(long, env = "SSE_IO_DRIVER", value_name = "DRIVER")]
    #[arg(value_parser = IoDriverChoice::parse, default_value = "auto")]
    pub io_driver: IoDriverChoice,
    /// Time a client has to send a whole request head (> 0), so idle sockets can't pile up.
    #[arg(long, env = "SSE_HEAD_TIMEOUT", value_name = "DURATION")]
    #[arg(value_parser = duration::parse, default_value = "10s")]
    pub head_timeout: Duration,
    /// TOML file of settings and [[routes]] (see below); named in the start-up log.
    #[arg(long = "config", env = "SSE_CONFIG", value_name = "PATH")]
    pub config_file: Option<PathBuf>,
    /// The built-in stream families and the file's `[[routes]]`, checked so a loaded config starts.
    #[arg(skip = RouteTable::builtin())]
    pub routes: RouteTable,
    /// Check the settings, the file and its routes, print a summary and exit (0: valid, 2:
    /// not), so a deploy can test a config before it is used.
    #[arg(long)]
    pub check_config: bool,
}

impl Default for Config {
    /// The defaults written on the fields above, which `--help` shows: an empty command line.
    fn default() -> Self {
        cli::parse(std::iter::empty()).expect("the defaults parse")
    }
}

fn default_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_CORES))
}

impl Config {
    /// Loads from the process's arguments and environment; one not valid UTF-8 is an error
    /// (rather than being silently altered, which could change a secret).
    pub fn from_process() -> Result<Config, ConfigError> {
        let args = std::env::args_os().skip(1).enumerate().map(|(i, arg)| {
            let reason = format!("argument {} is not valid UTF-8", i + 1);
            arg.into_string()
                .map_err(|_| invalid("command line", REDACTED, reason))
        });
        let args: Vec<String> = args.collect::<Result<_, _>>()?;
        let not_utf8 = |name: &str| std::env::var_os(name).is_some_and(|v| v.to_str().is_none());
        if let Some((name, ..)) = cli::settings().find(|s| not_utf8(s.0)) {
            return Err(invalid(name, REDACTED, "is not valid UTF-8"));
        }
        Self::load(&args, &|name| std::env::var(name).ok())
    }

    /// Testable core: `args` are the CLI args after the program name; `env` looks up a variable.
    /// The result has passed [`Config::validate`].
    pub fn load(
        args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        cli::load(args, env)
    }

    /// Checks every value's range and form; the first bad one is returned, naming its setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_CORES).contains(&self.cores) {
            let reason = format!("must be from 1 to {MAX_CORES}");
            return Err(invalid("SSE_CORES", self.cores, reason));
        }
        if self.connection_limit == 0 {
            return Err(invalid("SSE_CONNECTION_LIMIT", 0, "must be at least 1"));
        }
        if self.metrics_topics > MAX_METRICS_TOPICS {
            let reason = format!("must be at most {MAX_METRICS_TOPICS} (each topic is a series)");
            return Err(invalid("SSE_METRICS_TOPICS", self.metrics_topics, reason));
        }
        if let Some(redis) = &self.events_redis_storage {
            let check = redis.check();
            check.map_err(|r| invalid("EVENTS_REDIS_STORAGE", redis, r))?;
        }
        if let Some(period) = self.keepalive_period {
            check_duration("SSE_KEEPALIVE_PERIOD", period, false)?;
        }
        check_duration("SSE_DRAIN_PERIOD", self.drain_period, true)?;
        if !(1..=MAX_QUEUE).contains(&self.event_buffer) {
            let reason = format!("must be from 1 to {MAX_QUEUE}");
            return Err(invalid("SSE_EVENT_BUFFER", self.event_buffer, reason));
        }
        if self.history > MAX_QUEUE {
            let reason = format!("must be from 0 (off) to {MAX_QUEUE}");
            return Err(invalid("SSE_HISTORY", self.history, reason));
        }
        if self.history_bytes < MIN_HISTORY_BYTES {
            let reason = format!("must be at least {MIN_HISTORY_BYTES} (bytes)");
            return Err(invalid("SSE_HISTORY_BYTES", self.history_bytes, reason));
        }
        if self.replay_limit < MIN_REPLAY {
            let reason = format!("must be at least {MIN_REPLAY} (bytes)");
            return Err(invalid("SSE_REPLAY_LIMIT", self.replay_limit, reason));
        }
        check_duration("SSE_HISTORY_TTL", self.history_ttl, false)?;
        check_duration("SSE_CHANNEL_IDLE", self.channel_idle, false)?;
        if !(1..=MAX_RESUME_READS).contains(&self.resume_reads) {
            let reason = format!("must be from 1 to {MAX_RESUME_READS}");
            return Err(invalid("SSE_RESUME_READS", self.resume_reads, reason));
        }
        check_duration("SSE_WRITE_TIMEOUT", self.write_timeout, false)?;
        if self.channel_limit < MIN_CHANNELS {
            let reason = format!("must be at least {MIN_CHANNELS} (one topic stream's channels)");
            return Err(invalid("SSE_CHANNEL_LIMIT", self.channel_limit, reason));
        }
        check_secret("SSE_AUTH_SECRET", self.auth_secret.as_ref())?;
        if self.jwt_leeway > MAX_JWT_LEEWAY {
            let value = duration::format(self.jwt_leeway);
            return Err(invalid("SSE_JWT_LEEWAY", value, "must be at most 5m"));
        }
        if self.api_keys.iter().any(|k| k.expose().trim().is_empty()) {
            let reason = "an API key must not be empty";
            return Err(invalid("SSE_API_KEYS", REDACTED, reason));
        }
        check_secret("SSE_PUBLISH_TOKEN", self.publish_token.as_ref())?;
        if let Some(admin) = self.admin_listen {
            if admin == self.listen && admin.port() != 0 {
                let reason = "must differ from SSE_LISTEN (the admin API gets its own port)";
                return Err(invalid("SSE_ADMIN_LISTEN", admin, reason));
            }
        }
        if self.status_viewers > MAX_STATUS_VIEWERS {
            let reason = format!("must be from 0 (page off) to {MAX_STATUS_VIEWERS}");
            return Err(invalid("SSE_STATUS_VIEWERS", self.status_viewers, reason));
        }
        if !(MIN_STATUS_PERIOD..=MAX_STATUS_PERIOD).contains(&self.status_period) {
            let value = duration::format(self.status_period);
            return Err(invalid(
                "SSE_STATUS_PERIOD",
                value,
                "must be from 100ms to 1m",
            ));
        }
        let cors = self.cors_origins.check();
        cors.map_err(|(origin, r)| invalid("SSE_CORS_ORIGINS", origin, r))?;
        check_duration("SSE_HEAD_TIMEOUT", self.head_timeout, false)?;
        let (families, slots) = (self.routes.families.len(), crate::stats::ROUTE_SLOTS);
        if families > slots {
            let value = format!("{families} route families");
            let reason = format!("at most {slots} route families are supported");
            return Err(invalid("SSE_CONFIG", value, reason));
        }
        Ok(())
    }

    /// The `--help` text: every flag with its environment variable (never its value: some are
    /// secrets), default and meaning.
    pub fn usage() -> String {
        let mut command = cli::COMMAND.clone().mut_args(|a| a.hide_env_values(true));
        command.render_long_help().to_string()
    }

    /// The secrets stream requests are checked against.
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            secret: self.auth_secret.as_ref(),
            api_keys: &self.api_keys,
            leeway: self.jwt_leeway.as_secs(),
        }
    }

    /// The start-up warning for a publish API open beyond loopback without a token, naming
    /// the address and the settings; `None` when there is nothing to warn about. Loopback
    /// trust is only as good as the host: a same-host proxy or forwarder (nginx, an Envoy
    /// sidecar, `kubectl port-forward`, socat) makes every internet client a loopback peer.
    pub fn exposure_warning(&self) -> Option<String> {
        self.exposure_warning_at(self.listen, self.admin_listen)
    }

    /// [`Config::exposure_warning`] for the addresses actually bound (port 0 resolved).
    pub fn exposure_warning_at(
        &self,
        listen: SocketAddr,
        admin: Option<SocketAddr>,
    ) -> Option<String> {
        if self.publish_token.is_some() {
            return None;
        }
        let (addr, setting) = match admin {
            Some(a) => (a, "SSE_ADMIN_LISTEN"),
            None => (listen, "SSE_LISTEN"),
        };
        if addr.ip().to_canonical().is_loopback() {
            return None;
        }
        Some(format!(
            "publish is served on {addr} ({setting}), beyond loopback, without              SSE_PUBLISH_TOKEN: every loopback peer may publish, and behind a same-host              proxy or TCP forwarder every internet client is a loopback peer. Set              SSE_PUBLISH_TOKEN, or SSE_ADMIN_LISTEN to a loopback address"
        ))
    }

    /// The stream families these settings leave off, by the setting that would turn them on,
    /// for the start-up log (`None` when every family can be served): without it a newcomer
    /// meets a bare `401` on the player stream and wonders whether the token is wrong.
    pub fn families_off(&self) -> Option<String> {
        use crate::route::table::AuthRule;
        let needs: [(&str, bool, &[AuthRule]); 2] = [
            (
                "SSE_AUTH_SECRET",
                self.auth_secret.is_none(),
                &[AuthRule::PlayerToken, AuthRule::ChannelToken],
            ),
            (
                "SSE_API_KEYS",
                self.api_keys.is_empty(),
                &[AuthRule::ApiKey],
            ),
        ];
        let groups: Vec<String> = needs
            .iter()
            .filter(|(_, unset, _)| *unset)
            .filter_map(|(setting, _, rules)| {
                let families = self.routes.families.iter();
                let off: Vec<&str> = families
                    .filter(|f| rules.contains(&f.auth))
                    .map(|f| f.name.as_str())
                    .collect();
                let names = off.join(", ");
                (!off.is_empty()).then(|| format!("{names} ({setting} unset)"))
            })
            .collect();
        let groups = groups.join("; ");
        (!groups.is_empty()).then(|| format!("streams off, answering 401: {groups}"))
    }

    /// One line for `--check-config`: what the node would serve.
    pub fn summary(&self) -> String {
        let (listen, cores, families) = (self.listen, self.cores, self.routes.families.len());
        let s = if cores == 1 { "" } else { "s" };
        format!("listen {listen}, {cores} core{s}, {families} route families")
    }
}

/// A duration setting must be at most 24 h and, unless `zero_ok`, positive.
fn check_duration(setting: &'static str, d: Duration, zero_ok: bool) -> Result<(), ConfigError> {
    let reason = match d {
        d if d.is_zero() && !zero_ok => "must be greater than 0",
        d if d > duration::MAX => "must be at most 24h",
        _ => return Ok(()),
    };
    Err(invalid(setting, duration::format(d), reason))
}

/// A secret must be non-empty and without surrounding whitespace (a copy-paste slip).
fn check_secret(setting: &'static str, secret: Option<&Secret>) -> Result<(), ConfigError> {
    let reason = match secret.map(Secret::expose) {
        Some("") => "must not be empty",
        Some(s) if s.trim() != s => "must not start or end with whitespace (a copy-paste slip?)",
        _ => return Ok(()),
    };
    Err(invalid(setting, REDACTED, reason))
}

#[cfg(test)]
mod tests;
