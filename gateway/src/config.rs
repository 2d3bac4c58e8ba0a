//! The gateway's configuration: one [`Config`] built from defaults, an optional TOML file,
//! the environment and command-line flags, in that order of precedence.
//!
//! Every setting is described once, as a row of `SETTINGS`: its environment variable, its
//! flag, its TOML key, the default shown by `--help`, a one-line meaning, and how a text value
//! is applied. Flag parsing, the file loader, the environment lookup, [`Config::usage`] and the
//! error messages all read that table, so adding a setting is one row (plus its field, its
//! default and its check in [`Config::validate`]).
//!
//! Start-up calls [`Config::from_process`] (which validates); a bad value stops start-up with
//! a [`ConfigError`] naming the setting and the value. Secret values are never echoed: they
//! print as `[redacted]` everywhere, including in errors and `Debug` output.
//!
//! Decisions worth knowing:
//! - An environment variable set to the empty string counts as unset (`FOO=` lines in env
//!   files and compose files are common); an empty flag or file value is parsed as given and
//!   rejected where a value is required.
//! - A flag value may not start with `--` in the `--name value` form (so `--cores --listen x`
//!   reports the missing value); use `--name=--value` for such a value.
//! - Durations are capped at 24 h so later `Instant + Duration` arithmetic can never overflow.
//! - The TOML file is read into a table and checked against the rows of `SETTINGS` (rather
//!   than a second, hand-written struct) so the file knows exactly the same keys as the flags;
//!   unknown keys and wrongly typed values are errors naming the key and the file.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What secrets print as.
const REDACTED: &str = "[redacted]";
/// Most worker threads [`Config::cores`] may ask for.
const MAX_CORES: usize = 1024;
/// Most events [`Config::event_buffer`] and [`Config::history`] may hold per connection/channel.
const MAX_QUEUE: usize = 65_536;
/// Longest duration any setting accepts (keeps deadline arithmetic far from overflow).
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The Redis port used when a `redis://` URL names none.
const REDIS_DEFAULT_PORT: u16 = 6379;
/// The environment variable naming the config file; it is read before the other settings.
const CONFIG_ENV: &str = "SSE_CONFIG";
/// TOML key reserved for the route table; parsed by the route module, not here.
const ROUTES_KEY: &str = "routes";

// ---------------------------------------------------------------------------------------------
// Value types
// ---------------------------------------------------------------------------------------------

/// A secret (HS256 key, API key, bearer token): prints as `[redacted]` and compares in
/// constant time.
#[derive(Clone, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the code that must use it (never for logging).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` equals the secret, compared without an early exit so timing does
    /// not reveal how many leading bytes of a guess were right (the length is not hidden).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Where the Redis broker lives, parsed from `EVENTS_REDIS_STORAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (6379 when a `redis://` URL names none).
    pub port: u16,
    /// ACL user name for `AUTH`, percent-decoded.
    pub username: Option<String>,
    /// Password for `AUTH`, percent-decoded.
    pub password: Option<Secret>,
    /// Database index for `SELECT` (0 when none is given).
    pub db: u32,
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:{REDACTED}@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            (None, Some(_)) => write!(f, ":{REDACTED}@")?,
            (None, None) => {}
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}/{}", self.port, self.db)
    }
}

/// Which browser origins get CORS headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// No `Access-Control-*` headers at all (the default).
    #[default]
    None,
    /// Every origin (`*`).
    Any,
    /// Exactly these origins (`scheme://host[:port]`).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Whether a request's `Origin` header value is allowed: exact, case-sensitive match.
    pub fn allows(&self, origin: &[u8]) -> bool {
        match self {
            CorsOrigins::None => false,
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => list.iter().any(|o| o.as_bytes() == origin),
        }
    }
}

/// Which I/O driver the cores run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoDriverChoice {
    /// io_uring where the kernel allows it, epoll otherwise (the default).
    #[default]
    Auto,
    /// io_uring only; start-up fails where it is unavailable.
    IoUring,
    /// epoll only (lets operators and tests force the fallback).
    Epoll,
}

impl IoDriverChoice {
    /// The setting's text form: `auto`, `io_uring` or `epoll`.
    pub fn as_str(self) -> &'static str {
        match self {
            IoDriverChoice::Auto => "auto",
            IoDriverChoice::IoUring => "io_uring",
            IoDriverChoice::Epoll => "epoll",
        }
    }
}

impl fmt::Display for IoDriverChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// Everything the gateway is told at start-up. Build it with [`Config::from_process`] or
/// [`Config::load`]; a hand-built one must pass [`Config::validate`] before use.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the listener binds; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Worker threads, one ring and one accept socket each; the node's parallelism.
    pub cores: usize,
    /// Most concurrent SSE connections on this node, so a surge degrades into polite
    /// retries instead of memory exhaustion.
    pub connection_limit: usize,
    /// Redis to fan events out through, so many nodes can share one event stream;
    /// `None` runs the embedded in-process broker.
    pub events_redis_storage: Option<RedisTarget>,
    /// One keep-alive interval for every stream family, overriding each family's own, for
    /// proxies with short idle timeouts.
    pub keepalive_period: Option<Duration>,
    /// On SIGTERM, streams are closed spread over this period so clients don't all reconnect
    /// to the other nodes at once; zero closes them at once.
    pub drain_period: Duration,
    /// Events queued per connection before it counts as a slow consumer and is cut, so one
    /// stalled client can't hold memory or slow others.
    pub event_buffer: usize,
    /// Events kept per channel so a reconnecting client can resume with `Last-Event-ID`;
    /// zero turns resume off.
    pub history: usize,
    /// HS256 key for player and private-channel tokens; `None` makes those routes answer 401.
    pub auth_secret: Option<Secret>,
    /// API keys accepted on game streams; empty makes those routes answer 401.
    pub api_keys: Vec<Secret>,
    /// Bearer token required by the HTTP publish endpoints; `None` accepts loopback only.
    pub publish_token: Option<Secret>,
    /// Origins that get CORS headers, for browser pages served from another origin.
    pub cors_origins: CorsOrigins,
    /// I/O driver: lets operators and tests force the epoll fallback.
    pub io_driver: IoDriverChoice,
    /// How long a client may take to send a complete request head before the connection is
    /// closed, so idle sockets can't pile up.
    pub head_timeout: Duration,
    /// The TOML file the settings were read from, for the start-up log.
    pub config_file: Option<PathBuf>,
    /// The file's `[[routes]]` value, unparsed: the route module parses and checks it.
    pub routes_toml: Option<toml::Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            cores: default_cores(),
            connection_limit: 50_000,
            events_redis_storage: None,
            keepalive_period: None,
            drain_period: Duration::from_secs(10),
            event_buffer: 50,
            history: 64,
            auth_secret: None,
            api_keys: Vec::new(),
            publish_token: None,
            cors_origins: CorsOrigins::None,
            io_driver: IoDriverChoice::Auto,
            head_timeout: Duration::from_secs(10),
            config_file: None,
            routes_toml: None,
        }
    }
}

fn default_cores() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_CORES)
}

impl Config {
    /// Load from the process: `std::env::args().skip(1)` and `std::env::var`.
    ///
    /// An argument or a setting's variable that is not valid UTF-8 is an error (rather than
    /// being silently altered, which could change a secret).
    pub fn from_process() -> Result<Config, ConfigError> {
        let mut args = Vec::new();
        for (i, arg) in std::env::args_os().skip(1).enumerate() {
            match arg.into_string() {
                Ok(s) => args.push(s),
                Err(_) => {
                    return Err(ConfigError::Invalid {
                        setting: "command line",
                        value: REDACTED.to_string(),
                        reason: format!("argument {} is not valid UTF-8", i + 1),
                    })
                }
            }
        }
        for row in SETTINGS {
            if let Some(v) = std::env::var_os(row.env) {
                if v.to_str().is_none() {
                    return Err(ConfigError::Invalid {
                        setting: row.env,
                        value: REDACTED.to_string(),
                        reason: "is not valid UTF-8".to_string(),
                    });
                }
            }
        }
        Self::load(&args, &|name| std::env::var(name).ok())
    }

    /// Testable core: `args` are the CLI args after the program name; `env` looks up a variable.
    ///
    /// Precedence: defaults < TOML file (`--config` / `SSE_CONFIG`) < environment < flags.
    /// The result has passed [`Config::validate`].
    pub fn load(
        args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let flags = parse_args(args)?;
        let env_value = |name: &str| env(name).filter(|v| !v.is_empty());

        let mut config = Config::default();
        let config_path = flags
            .iter()
            .rev()
            .find(|(row, _)| row.env == CONFIG_ENV)
            .map(|(_, v)| v.clone())
            .or_else(|| env_value(CONFIG_ENV));
        if let Some(path) = config_path {
            let path = PathBuf::from(path);
            apply_file(&mut config, &path)?;
            config.config_file = Some(path);
        }
        for row in SETTINGS.iter().filter(|r| r.env != CONFIG_ENV) {
            if let Some(value) = env_value(row.env) {
                apply(row, &mut config, Input::Text(value))?;
            }
        }
        for (row, value) in flags {
            apply(row, &mut config, Input::Text(value))?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every value's range and form; the first bad one is returned, naming its setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_CORES).contains(&self.cores) {
            return Err(invalid(
                "SSE_CORES",
                self.cores,
                format!("must be from 1 to {MAX_CORES}"),
            ));
        }
        if self.connection_limit == 0 {
            return Err(invalid("SSE_CONNECTION_LIMIT", 0, "must be at least 1"));
        }
        if let Some(redis) = &self.events_redis_storage {
            check_host(&redis.host).map_err(|r| invalid("EVENTS_REDIS_STORAGE", redis, r))?;
            if redis.port == 0 {
                return Err(invalid(
                    "EVENTS_REDIS_STORAGE",
                    redis,
                    "port must be from 1 to 65535",
                ));
            }
        }
        if let Some(period) = self.keepalive_period {
            check_duration(period, false)
                .map_err(|r| invalid("SSE_KEEPALIVE_PERIOD", fmt_duration(period), r))?;
        }
        check_duration(self.drain_period, true)
            .map_err(|r| invalid("SSE_DRAIN_PERIOD", fmt_duration(self.drain_period), r))?;
        if !(1..=MAX_QUEUE).contains(&self.event_buffer) {
            return Err(invalid(
                "SSE_EVENT_BUFFER",
                self.event_buffer,
                format!("must be from 1 to {MAX_QUEUE}"),
            ));
        }
        if self.history > MAX_QUEUE {
            return Err(invalid(
                "SSE_HISTORY",
                self.history,
                format!("must be from 0 (off) to {MAX_QUEUE}"),
            ));
        }
        if let Some(secret) = &self.auth_secret {
            check_secret(secret).map_err(|r| invalid("SSE_AUTH_SECRET", REDACTED, r))?;
        }
        for key in &self.api_keys {
            if key.expose().trim().is_empty() {
                return Err(invalid(
                    "SSE_API_KEYS",
                    REDACTED,
                    "an API key must not be empty",
                ));
            }
        }
        if let Some(token) = &self.publish_token {
            check_secret(token).map_err(|r| invalid("SSE_PUBLISH_TOKEN", REDACTED, r))?;
        }
        if let CorsOrigins::List(list) = &self.cors_origins {
            for origin in list {
                check_origin(origin).map_err(|r| invalid("SSE_CORS_ORIGINS", origin, r))?;
            }
        }
        check_duration(self.head_timeout, false)
            .map_err(|r| invalid("SSE_HEAD_TIMEOUT", fmt_duration(self.head_timeout), r))?;
        Ok(())
    }

    /// The `--help` text: every flag with its environment variable, file key, default and
    /// meaning.
    pub fn usage() -> String {
        let mut out = String::from(
            "Usage: gateway [--name value | --name=value]...\n\n\
             Server-Sent Events gateway. Every setting is a flag, an environment variable and a\n\
             key of the TOML file named by --config; precedence: defaults < file < environment\n\
             < flags. Durations are written 500ms, 10s, 2m, 1h or a bare number of seconds.\n\n\
             Flags:\n  -h, --help\n      print this text and exit\n",
        );
        for row in SETTINGS {
            out.push_str(&format!(
                "  --{} <{}>\n      env {}",
                row.flag, row.metavar, row.env
            ));
            if let Some(key) = row.key {
                out.push_str(&format!(", file key `{key}`"));
            }
            out.push_str(&format!(", default: {}\n      {}\n", row.default, row.help));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The table of settings
// ---------------------------------------------------------------------------------------------

/// How a setting is written in the TOML file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string.
    Str,
    /// An integer.
    Int,
    /// A duration string (`"10s"`) or an integer number of seconds.
    Duration,
    /// A comma-separated string or an array of strings.
    List,
    /// Not allowed in the file (the file's own path).
    NotInFile,
}

/// How a setting's value is shown in an error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    /// As given.
    Plain,
    /// Never: `[redacted]`.
    Secret,
    /// A URL whose password is replaced by `[redacted]`.
    Url,
}

/// A value as it arrives from a flag, the environment or the file.
enum Input {
    Text(String),
    List(Vec<String>),
}

impl Input {
    /// The value as one string (a file list is joined with commas).
    fn text(&self) -> String {
        match self {
            Input::Text(t) => t.clone(),
            Input::List(items) => items.join(","),
        }
    }

    /// The value as a list: comma-separated items (or file array items), trimmed, empty
    /// items dropped.
    fn items(&self) -> Vec<String> {
        let raw: Vec<&str> = match self {
            Input::Text(t) => t.split(',').collect(),
            Input::List(items) => items.iter().map(String::as_str).collect(),
        };
        raw.into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// One setting: everything parsing, `--help` and error messages need to know.
struct Setting {
    /// Environment variable, also the name errors use.
    env: &'static str,
    /// Flag name without the leading `--`.
    flag: &'static str,
    /// Key in the TOML file, if it may be set there.
    key: Option<&'static str>,
    /// Placeholder for the value in `--help`.
    metavar: &'static str,
    /// The default, as `--help` shows it.
    default: &'static str,
    /// One-line meaning for `--help`.
    help: &'static str,
    /// How the value is written in the TOML file.
    kind: Kind,
    /// How the value is shown in errors.
    show: Show,
    /// Parses the value into the config; the error is the reason (no setting, no value).
    apply: fn(&mut Config, &Input) -> Result<(), String>,
}

/// Every setting, in `--help` order.
static SETTINGS: &[Setting] = &[
    Setting {
        env: "SSE_LISTEN",
        flag: "listen",
        key: Some("listen"),
        metavar: "ADDR",
        default: "0.0.0.0:8080",
        help: "address and port to listen on (IP:port)",
        kind: Kind::Str,
        show: Show::Plain,
        apply: |c, v| {
            c.listen = v.text().trim().parse().map_err(|_| {
                "must be an IP address and port, such as 0.0.0.0:8080 or [::]:8080".to_string()
            })?;
            Ok(())
        },
    },
    Setting {
        env: "SSE_CORES",
        flag: "cores",
        key: Some("cores"),
        metavar: "N",
        default: "number of CPUs",
        help: "worker threads, one io_uring ring each (1-1024)",
        kind: Kind::Int,
        show: Show::Plain,
        apply: |c, v| {
            c.cores = parse_count(&v.text())?;
            Ok(())
        },
    },
    Setting {
        env: "SSE_CONNECTION_LIMIT",
        flag: "connection-limit",
        key: Some("connection_limit"),
        metavar: "N",
        default: "50000",
        help: "max concurrent SSE connections on this node; beyond it clients are told to retry",
        kind: Kind::Int,
        show: Show::Plain,
        apply: |c, v| {
            c.connection_limit = parse_count(&v.text())?;
            Ok(())
        },
    },
    Setting {
        env: "EVENTS_REDIS_STORAGE",
        flag: "events-redis-storage",
        key: Some("events_redis_storage"),
        metavar: "URL",
        default: "unset (embedded in-process broker)",
        help: "Redis for fan-out across nodes: redis://[user:pass@]host:port[/db] or host:port",
        kind: Kind::Str,
        show: Show::Url,
        apply: |c, v| {
            c.events_redis_storage = Some(parse_redis(&v.text())?);
            Ok(())
        },
    },
    Setting {
        env: "SSE_KEEPALIVE_PERIOD",
        flag: "keepalive-period",
        key: Some("keepalive_period"),
        metavar: "DURATION",
        default: "per stream family (15s; topic stream 30s)",
        help: "keep-alive interval for every stream family (> 0)",
        kind: Kind::Duration,
        show: Show::Plain,
        apply: |c, v| {
            c.keepalive_period = Some(parse_duration(&v.text())?);
            Ok(())
        },
    },
    Setting {
        env: "SSE_DRAIN_PERIOD",
        flag: "drain-period",
        key: Some("drain_period"),
        metavar: "DURATION",
        default: "10s",
        help: "on SIGTERM, streams are closed spread over this period (0 = at once)",
        kind: Kind::Duration,
        show: Show::Plain,
        apply: |c, v| {
            c.drain_period = parse_duration(&v.text())?;
            Ok(())
        },
    },
    Setting {
        env: "SSE_EVENT_BUFFER",
        flag: "event-buffer",
        key: Some("event_buffer"),
        metavar: "N",
        default: "50",
        help: "events queued per connection before it is cut as a slow consumer (1-65536)",
        kind: Kind::Int,
        show: Show::Plain,
        apply: |c, v| {
            c.event_buffer = parse_count(&v.text())?;
            Ok(())
        },
    },
    Setting {
        env: "SSE_HISTORY",
        flag: "history",
        key: Some("history"),
        metavar: "N",
        default: "64",
        help: "events kept per channel for Last-Event-ID resume (0 = off, max 65536)",
        kind: Kind::Int,
        show: Show::Plain,
        apply: |c, v| {
            c.history = parse_count(&v.text())?;
            Ok(())
        },
    },
    Setting {
        env: "SSE_AUTH_SECRET",
        flag: "auth-secret",
        key: Some("auth_secret"),
        metavar: "SECRET",
        default: "unset (player and private routes answer 401)",
        help: "HS256 secret for player and private-channel tokens",
        kind: Kind::Str,
        show: Show::Secret,
        apply: |c, v| {
            c.auth_secret = Some(Secret::new(v.text()));
            Ok(())
        },
    },
    Setting {
        env: "SSE_API_KEYS",
        flag: "api-keys",
        key: Some("api_keys"),
        metavar: "KEYS",
        default: "unset (game streams answer 401)",
        help: "comma-separated API keys for game streams (file: string or array)",
        kind: Kind::List,
        show: Show::Secret,
        apply: |c, v| {
            c.api_keys = v.items().into_iter().map(Secret::new).collect();
            Ok(())
        },
    },
    Setting {
        env: "SSE_PUBLISH_TOKEN",
        flag: "publish-token",
        key: Some("publish_token"),
        metavar: "TOKEN",
        default: "unset (publish accepted from loopback only)",
        help: "bearer token required by the HTTP publish endpoints",
        kind: Kind::Str,
        show: Show::Secret,
        apply: |c, v| {
            c.publish_token = Some(Secret::new(v.text()));
            Ok(())
        },
    },
    Setting {
        env: "SSE_CORS_ORIGINS",
        flag: "cors-origins",
        key: Some("cors_origins"),
        metavar: "ORIGINS",
        default: "unset (no Access-Control-* headers)",
        help: "comma-separated allowed origins (scheme://host[:port]), or * for any",
        kind: Kind::List,
        show: Show::Plain,
        apply: |c, v| {
            let items = v.items();
            c.cors_origins = match items.as_slice() {
                [] => CorsOrigins::None,
                [one] if one == "*" => CorsOrigins::Any,
                _ => CorsOrigins::List(items),
            };
            Ok(())
        },
    },
    Setting {
        env: "SSE_IO_DRIVER",
        flag: "io-driver",
        key: Some("io_driver"),
        metavar: "DRIVER",
        default: "auto",
        help: "I/O driver: auto (io_uring, else epoll), io_uring or epoll",
        kind: Kind::Str,
        show: Show::Plain,
        apply: |c, v| {
            c.io_driver = match v.text().trim() {
                "auto" => IoDriverChoice::Auto,
                "io_uring" => IoDriverChoice::IoUring,
                "epoll" => IoDriverChoice::Epoll,
                _ => return Err("must be one of auto, io_uring, epoll".to_string()),
            };
            Ok(())
        },
    },
    Setting {
        env: "SSE_HEAD_TIMEOUT",
        flag: "head-timeout",
        key: Some("head_timeout"),
        metavar: "DURATION",
        default: "10s",
        help: "time a client has to send a complete request head (> 0)",
        kind: Kind::Duration,
        show: Show::Plain,
        apply: |c, v| {
            c.head_timeout = parse_duration(&v.text())?;
            Ok(())
        },
    },
    Setting {
        env: CONFIG_ENV,
        flag: "config",
        key: None,
        metavar: "PATH",
        default: "unset (no file)",
        help: "TOML file of settings, keys as the flags with _ (connection_limit = 50000)",
        kind: Kind::NotInFile,
        show: Show::Plain,
        apply: |c, v| {
            let path = v.text();
            if path.is_empty() {
                return Err("must be a file path".to_string());
            }
            c.config_file = Some(PathBuf::from(path));
            Ok(())
        },
    },
];

fn setting_by_env(env: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.env == env)
}

/// Applies one value, turning a parse failure into an error naming the setting.
fn apply(row: &Setting, config: &mut Config, input: Input) -> Result<(), ConfigError> {
    (row.apply)(config, &input).map_err(|reason| ConfigError::Invalid {
        setting: row.env,
        value: show_value(row.show, &input.text()),
        reason,
    })
}

fn show_value(show: Show, text: &str) -> String {
    match show {
        Show::Plain => text.to_string(),
        Show::Secret => REDACTED.to_string(),
        Show::Url => redact_url(text),
    }
}

/// Replaces the password of a URL-ish value (everything between the user name and the last
/// `@`) with `[redacted]`; a value with `@` but no `://` loses everything before the `@`.
fn redact_url(text: &str) -> String {
    let (prefix, rest) = match text.find("://") {
        Some(i) => text.split_at(i + 3),
        None => ("", text),
    };
    let Some(at) = rest.rfind('@') else {
        return text.to_string();
    };
    let userinfo = &rest[..at];
    match (prefix.is_empty(), userinfo.find(':')) {
        (false, Some(colon)) => format!("{prefix}{}:{REDACTED}{}", &userinfo[..colon], &rest[at..]),
        (false, None) => text.to_string(),
        (true, _) => format!("{REDACTED}{}", &rest[at..]),
    }
}

fn invalid(
    setting: &'static str,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        setting,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Splits the command line into (setting, value) pairs. `-h`/`--help` anywhere wins over
/// every other problem; otherwise the first problem is returned.
fn parse_args(args: &[String]) -> Result<Vec<(&'static Setting, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut help = false;
    let mut first_error = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "-h" || arg == "--help" {
            help = true;
            continue;
        }
        let error = match arg.strip_prefix("--") {
            None if arg.starts_with('-') => ConfigError::UnknownFlag(arg.clone()),
            // A stray value may be a secret split by the shell: name its position, not its text.
            None => ConfigError::UnknownFlag(format!("argument {i}")),
            Some(body) => {
                let (name, inline) = match body.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (body, None),
                };
                match SETTINGS.iter().find(|s| s.flag == name) {
                    None => ConfigError::UnknownFlag(format!("--{name}")),
                    Some(row) => match (inline, args.get(i)) {
                        (Some(value), _) => {
                            out.push((row, value.to_string()));
                            continue;
                        }
                        (None, Some(value)) if !value.starts_with("--") => {
                            i += 1;
                            out.push((row, value.clone()));
                            continue;
                        }
                        (None, _) => ConfigError::MissingValue(format!("--{name}")),
                    },
                }
            }
        };
        first_error.get_or_insert(error);
    }
    match (help, first_error) {
        (true, _) => Err(ConfigError::Help),
        (false, Some(e)) => Err(e),
        (false, None) => Ok(out),
    }
}

/// Reads the TOML file and applies its settings; keeps a `routes` value for the route module.
fn apply_file(config: &mut Config, path: &Path) -> Result<(), ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| file_error(format!("cannot be read: {e}")))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| file_error(describe_toml_error(&text, &e)))?;
    for (key, value) in &table {
        if key == ROUTES_KEY {
            config.routes_toml = Some(value.clone());
            continue;
        }
        let row = SETTINGS
            .iter()
            .find(|s| s.key == Some(key.as_str()))
            .ok_or_else(|| {
                let known: Vec<&str> = SETTINGS.iter().filter_map(|s| s.key).collect();
                file_error(format!(
                    "unknown key `{key}` (known keys: {}, {ROUTES_KEY})",
                    known.join(", ")
                ))
            })?;
        let input = file_input(row.kind, value).map_err(|expected| {
            file_error(format!(
                "`{key}` ({}) must be {expected}, found {}",
                row.env,
                value.type_str()
            ))
        })?;
        apply(row, config, input)?;
    }
    Ok(())
}

/// A TOML parse error as "line L, column C: message", without the source snippet the
/// error's own `Display` prints (that line may hold a secret).
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("not valid TOML at line {line}, column {column}: {message}")
        }
        None => format!("not valid TOML: {message}"),
    }
}

/// Converts a file value of the row's kind to an [`Input`]; the error names the expected type.
fn file_input(kind: Kind, value: &toml::Value) -> Result<Input, &'static str> {
    use toml::Value as V;
    match (kind, value) {
        (Kind::Str, V::String(s)) => Ok(Input::Text(s.clone())),
        (Kind::Str, _) => Err("a string"),
        (Kind::Int, V::Integer(i)) => Ok(Input::Text(i.to_string())),
        (Kind::Int, _) => Err("an integer"),
        (Kind::Duration, V::String(s)) => Ok(Input::Text(s.clone())),
        (Kind::Duration, V::Integer(i)) => Ok(Input::Text(i.to_string())),
        (Kind::Duration, _) => Err("a duration string such as \"10s\" or an integer of seconds"),
        (Kind::List, V::String(s)) => Ok(Input::Text(s.clone())),
        (Kind::List, V::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Input::List)
            .ok_or("a string or an array of strings"),
        (Kind::List, _) => Err("a string or an array of strings"),
        (Kind::NotInFile, _) => Err("set by flag or environment only"),
    }
}

// ---------------------------------------------------------------------------------------------
// Value parsers and checks
// ---------------------------------------------------------------------------------------------

fn parse_count(text: &str) -> Result<usize, String> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a whole number".to_string());
    }
    t.parse().map_err(|_| "is too large".to_string())
}

/// Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds. Zero is allowed here; the
/// settings that need a positive duration say so in [`Config::validate`].
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    const FORM: &str = "must be a duration such as 500ms, 10s, 2m, 1h, or a number of seconds";
    let t = text.trim();
    let digits_end = t
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(FORM.to_string());
    }
    let n: u64 = digits.parse().map_err(|_| "is too large".to_string())?;
    let duration = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(FORM.to_string()),
    };
    let duration = duration.ok_or_else(|| "is too large".to_string())?;
    check_duration(duration, true)?;
    Ok(duration)
}

fn check_duration(d: Duration, zero_allowed: bool) -> Result<(), String> {
    if d.is_zero() && !zero_allowed {
        Err("must be greater than 0".to_string())
    } else if d > MAX_DURATION {
        Err("must be at most 24h".to_string())
    } else {
        Ok(())
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{d:?}")
    }
}

fn check_secret(secret: &Secret) -> Result<(), String> {
    let s = secret.expose();
    if s.is_empty() {
        Err("must not be empty".to_string())
    } else if s.trim() != s {
        Err("must not start or end with whitespace (a copy-paste slip?)".to_string())
    } else {
        Ok(())
    }
}

/// Parses `redis://[user:pass@]host[:port][/db]` or bare `host:port`.
fn parse_redis(text: &str) -> Result<RedisTarget, String> {
    const FORMS: &str = "expected redis://[user:pass@]host:port[/db] or host:port";
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("must not be empty; {FORMS}"));
    }
    let Some(scheme_end) = s.find("://") else {
        // Bare host:port.
        if s.contains(['@', '/', '?', '#']) {
            return Err(format!(
                "credentials and a database need the redis:// form; {FORMS}"
            ));
        }
        let (host, port) = parse_host_port(s)?;
        let port = port.ok_or_else(|| format!("missing port; {FORMS}"))?;
        return Ok(RedisTarget {
            host,
            port,
            username: None,
            password: None,
            db: 0,
        });
    };
    let scheme = &s[..scheme_end];
    if scheme.eq_ignore_ascii_case("rediss") {
        return Err(
            "TLS is not supported (rediss://); use redis:// to a TLS-terminating proxy".to_string(),
        );
    }
    if !scheme.eq_ignore_ascii_case("redis") {
        return Err(format!("unsupported scheme `{scheme}`; {FORMS}"));
    }
    let rest = &s[scheme_end + 3..];
    // The last `@` ends the credentials, so an unencoded `@` or `/` in a password still works.
    let (userinfo, host_path) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    if host_path.contains(['?', '#']) {
        return Err(format!(
            "query strings and fragments are not supported; {FORMS}"
        ));
    }
    let (host_port, path) = match host_path.find('/') {
        Some(slash) => host_path.split_at(slash),
        None => (host_path, ""),
    };
    let (host, port) = parse_host_port(host_port)?;
    let db = match path.strip_prefix('/') {
        None | Some("") => 0,
        Some(db) => db
            .parse::<u32>()
            .map_err(|_| format!("database `{db}` must be a whole number"))?,
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, pass) = match info.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (info, None),
            };
            let user = percent_decode(user).map_err(|r| format!("user name {r}"))?;
            let pass = match pass {
                Some(p) => percent_decode(p).map_err(|r| format!("password {r}"))?,
                None => String::new(),
            };
            (
                (!user.is_empty()).then_some(user),
                (!pass.is_empty()).then(|| Secret::new(pass)),
            )
        }
    };
    Ok(RedisTarget {
        host,
        port: port.unwrap_or(REDIS_DEFAULT_PORT),
        username,
        password,
        db,
    })
}

/// Splits `host[:port]` or `[ipv6][:port]`; the host comes back without brackets.
fn parse_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| "IPv6 address lacks its closing `]`".to_string())?;
        let host = &rest[..end];
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{host}` is not an IPv6 address"));
        }
        let port = match &rest[end + 1..] {
            "" => None,
            after => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected `{after}` after the IPv6 address"))?,
            ),
        };
        (host, port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        if host.contains(':') {
            return Err("an IPv6 address must be written in brackets, as [::1]:6379".to_string());
        }
        check_host(host)?;
        (host, port)
    };
    let port = match port {
        None => None,
        Some("") => return Err("missing port after `:`".to_string()),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("port `{p}` must be a number from 1 to 65535")),
        },
    };
    Ok((host.to_string(), port))
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("missing host".to_string());
    }
    if host.parse::<Ipv6Addr>().is_ok() {
        return Ok(());
    }
    if host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        Ok(())
    } else {
        Err(format!(
            "host `{host}` has characters a host name cannot have"
        ))
    }
}

fn percent_decode(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a `%` not followed by two hex digits")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once percent-decoded")
}

/// Checks one CORS origin: `scheme://host[:port]`, lower case, nothing after.
fn check_origin(origin: &str) -> Result<(), String> {
    const FORM: &str = "must look like scheme://host[:port], e.g. https://example.com";
    if origin == "*" {
        return Err("`*` allows every origin and must be the only entry".to_string());
    }
    let (scheme, rest) = origin.split_once("://").ok_or_else(|| FORM.to_string())?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(FORM.to_string());
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!(
            "{FORM}, without a path or trailing `/` (browsers send origins without one)"
        ));
    }
    if rest.contains('@') {
        return Err(format!("{FORM}, without user information"));
    }
    parse_host_port(rest)?;
    if origin.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(
            "must be lower case: browsers send origins in lower case and matching is exact"
                .to_string(),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why the configuration could not be built. Each message names what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `-h` or `--help` was given: print [`Config::usage`] and exit successfully.
    Help,
    /// A setting has a bad value.
    Invalid {
        /// The setting's environment variable, e.g. `"SSE_CORES"`.
        setting: &'static str,
        /// The value as given; `[redacted]` for secrets (and for a Redis URL's password).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A command-line flag that is not a setting (or, for a stray value, `argument N`).
    UnknownFlag(String),
    /// A flag given without its value.
    MissingValue(String),
    /// The config file could not be read, is not valid TOML, has an unknown key or a value
    /// of the wrong type.
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Help => f.write_str("help requested (see --help)"),
            ConfigError::Invalid {
                setting,
                value,
                reason,
            } => {
                f.write_str(setting)?;
                if let Some(row) = setting_by_env(setting) {
                    write!(f, " (flag --{}", row.flag)?;
                    if let Some(key) = row.key {
                        write!(f, ", file key `{key}`")?;
                    }
                    f.write_str(")")?;
                }
                if value == REDACTED {
                    write!(f, " has an invalid value ({REDACTED}): {reason}")
                } else {
                    write!(f, " has an invalid value {value:?}: {reason}")
                }
            }
            ConfigError::UnknownFlag(arg) if arg.starts_with('-') => write!(
                f,
                "unknown flag `{arg}`; run with --help to list the settings"
            ),
            ConfigError::UnknownFlag(arg) => write!(
                f,
                "unexpected {arg} on the command line: settings are given as --name value or \
                 --name=value (quote values with spaces); run with --help to list them"
            ),
            ConfigError::MissingValue(flag) => write!(
                f,
                "flag `{flag}` needs a value: `{flag} VALUE` or `{flag}=VALUE`"
            ),
            ConfigError::File { path, reason } => {
                write!(
                    f,
                    "config file {} (SSE_CONFIG / --config): {reason}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A temporary TOML file, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &str) -> TempFile {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "gateway-config-test-{}-{}.toml",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }

        fn path(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Command line, environment, and the cores they must produce.
    type PrecedenceCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], usize);
    /// Command line, environment, the setting at fault and the secret that must not show.
    type SecretCase<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str, &'a str);

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn load_with(argv: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&args(argv), &|name| env.get(name).cloned())
    }

    fn setting_of(e: &ConfigError) -> &'static str {
        match e {
            ConfigError::Invalid { setting, .. } => setting,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// One value per setting: its env/flag text, its TOML form, and what the config must hold.
    struct Case {
        env: &'static str,
        text: &'static str,
        toml: &'static str,
        check: fn(&Config) -> bool,
    }

    const CASES: &[Case] = &[
        Case {
            env: "SSE_LISTEN",
            text: "127.0.0.1:9000",
            toml: r#"listen = "127.0.0.1:9000""#,
            check: |c| c.listen == SocketAddr::from(([127, 0, 0, 1], 9000)),
        },
        Case {
            env: "SSE_CORES",
            text: "3",
            toml: "cores = 3",
            check: |c| c.cores == 3,
        },
        Case {
            env: "SSE_CONNECTION_LIMIT",
            text: "10",
            toml: "connection_limit = 10",
            check: |c| c.connection_limit == 10,
        },
        Case {
            env: "EVENTS_REDIS_STORAGE",
            text: "redis://r.example:6380/2",
            toml: r#"events_redis_storage = "redis://r.example:6380/2""#,
            check: |c| {
                c.events_redis_storage
                    == Some(RedisTarget {
                        host: "r.example".into(),
                        port: 6380,
                        username: None,
                        password: None,
                        db: 2,
                    })
            },
        },
        Case {
            env: "SSE_KEEPALIVE_PERIOD",
            text: "500ms",
            toml: r#"keepalive_period = "500ms""#,
            check: |c| c.keepalive_period == Some(Duration::from_millis(500)),
        },
        Case {
            env: "SSE_DRAIN_PERIOD",
            text: "0",
            toml: "drain_period = 0",
            check: |c| c.drain_period == Duration::ZERO,
        },
        Case {
            env: "SSE_EVENT_BUFFER",
            text: "7",
            toml: "event_buffer = 7",
            check: |c| c.event_buffer == 7,
        },
        Case {
            env: "SSE_HISTORY",
            text: "0",
            toml: "history = 0",
            check: |c| c.history == 0,
        },
        Case {
            env: "SSE_AUTH_SECRET",
            text: "s3cret",
            toml: r#"auth_secret = "s3cret""#,
            check: |c| c.auth_secret.as_ref().map(Secret::expose) == Some("s3cret"),
        },
        Case {
            env: "SSE_API_KEYS",
            text: " k1, ,k2 ",
            toml: r#"api_keys = [" k1", "", "k2"]"#,
            check: |c| c.api_keys == vec![Secret::new("k1"), Secret::new("k2")],
        },
        Case {
            env: "SSE_PUBLISH_TOKEN",
            text: "tok",
            toml: r#"publish_token = "tok""#,
            check: |c| c.publish_token == Some(Secret::new("tok")),
        },
        Case {
            env: "SSE_CORS_ORIGINS",
            text: "https://a.example, http://b.example:8080",
            toml: r#"cors_origins = ["https://a.example", "http://b.example:8080"]"#,
            check: |c| {
                c.cors_origins
                    == CorsOrigins::List(vec![
                        "https://a.example".into(),
                        "http://b.example:8080".into(),
                    ])
            },
        },
        Case {
            env: "SSE_IO_DRIVER",
            text: "epoll",
            toml: r#"io_driver = "epoll""#,
            check: |c| c.io_driver == IoDriverChoice::Epoll,
        },
        Case {
            env: "SSE_HEAD_TIMEOUT",
            text: "2m",
            toml: r#"head_timeout = "2m""#,
            check: |c| c.head_timeout == Duration::from_secs(120),
        },
    ];

    #[test]
    fn every_setting_has_a_case() {
        for row in SETTINGS.iter().filter(|r| r.env != CONFIG_ENV) {
            assert!(
                CASES.iter().any(|c| c.env == row.env),
                "no test case for {}",
                row.env
            );
        }
    }

    #[test]
    fn each_setting_from_env_flag_and_file() {
        for case in CASES {
            let row = setting_by_env(case.env).unwrap();
            assert!(
                !(case.check)(&Config::default()),
                "{}: case equals the default",
                case.env
            );

            let c = load_with(&[], &[(case.env, case.text)]).unwrap();
            assert!((case.check)(&c), "{} from env", case.env);

            let flag = format!("--{}", row.flag);
            let c = load_with(&[&flag, case.text], &[]).unwrap();
            assert!((case.check)(&c), "{flag} VALUE");

            let joined = format!("{flag}={}", case.text);
            let c = load_with(&[&joined], &[]).unwrap();
            assert!((case.check)(&c), "{flag}=VALUE");

            let file = TempFile::new(case.toml);
            let c = load_with(&["--config", &file.path()], &[]).unwrap();
            assert!((case.check)(&c), "{} from file", case.env);
            assert_eq!(c.config_file.as_deref(), Some(file.0.as_path()));
        }
    }

    #[test]
    fn list_settings_accept_a_string_in_the_file() {
        let file = TempFile::new("api_keys = \"a, b\"\ncors_origins = \"*\"\n");
        let c = load_with(&[], &[("SSE_CONFIG", &file.path())]).unwrap();
        assert_eq!(c.api_keys, vec![Secret::new("a"), Secret::new("b")]);
        assert_eq!(c.cors_origins, CorsOrigins::Any);
    }

    #[test]
    fn precedence_is_default_file_env_flag() {
        let file = TempFile::new("cores = 2\nhistory = 5\n");
        let path = file.path();
        let cases: &[PrecedenceCase<'_>] = &[
            (&[], &[], default_cores()),
            (&["--config", &path], &[], 2),
            (&["--config", &path], &[("SSE_CORES", "3")], 3),
            (
                &["--config", &path, "--cores", "4"],
                &[("SSE_CORES", "3")],
                4,
            ),
            (
                &["--cores=4"],
                &[("SSE_CONFIG", &path), ("SSE_CORES", "3")],
                4,
            ),
        ];
        for (argv, env, want) in cases {
            let c = load_with(argv, env).unwrap();
            assert_eq!(c.cores, *want, "{argv:?} {env:?}");
        }
        // A setting the later layers don't mention keeps the file's value.
        let c = load_with(&["--config", &path, "--cores", "4"], &[]).unwrap();
        assert_eq!(c.history, 5);
    }

    #[test]
    fn config_flag_beats_config_env() {
        let from_env = TempFile::new("cores = 2");
        let from_flag = TempFile::new("cores = 5");
        let c = load_with(
            &["--config", &from_flag.path()],
            &[("SSE_CONFIG", &from_env.path())],
        )
        .unwrap();
        assert_eq!(c.cores, 5);
    }

    #[test]
    fn file_values_are_validated_only_when_they_win() {
        let file = TempFile::new("cores = 0");
        let path = file.path();
        let err = load_with(&["--config", &path], &[]).unwrap_err();
        assert_eq!(setting_of(&err), "SSE_CORES");
        assert_eq!(
            load_with(&["--config", &path, "--cores", "2"], &[])
                .unwrap()
                .cores,
            2
        );
    }

    #[test]
    fn empty_env_var_counts_as_unset() {
        let c = load_with(
            &[],
            &[
                ("SSE_AUTH_SECRET", ""),
                ("EVENTS_REDIS_STORAGE", ""),
                ("SSE_CORES", ""),
            ],
        )
        .unwrap();
        assert!(c.auth_secret.is_none());
        assert!(c.events_redis_storage.is_none());
        assert_eq!(c.cores, default_cores());
    }

    #[test]
    fn unknown_env_vars_are_ignored() {
        assert!(load_with(&[], &[("SSE_NOPE", "1"), ("PATH", "/bin")]).is_ok());
    }

    #[test]
    fn invalid_values_name_their_setting() {
        let cases: &[(&str, &str, &str)] = &[
            ("SSE_LISTEN", "localhost:80", "IP address and port"),
            ("SSE_LISTEN", "0.0.0.0", "IP address and port"),
            ("SSE_CORES", "0", "from 1 to 1024"),
            ("SSE_CORES", "1025", "from 1 to 1024"),
            ("SSE_CORES", "-1", "whole number"),
            ("SSE_CORES", "two", "whole number"),
            ("SSE_CONNECTION_LIMIT", "0", "at least 1"),
            (
                "SSE_CONNECTION_LIMIT",
                "99999999999999999999999",
                "too large",
            ),
            (
                "EVENTS_REDIS_STORAGE",
                "http://r:6379",
                "unsupported scheme",
            ),
            (
                "EVENTS_REDIS_STORAGE",
                "rediss://r:6379",
                "TLS is not supported",
            ),
            ("SSE_KEEPALIVE_PERIOD", "0s", "greater than 0"),
            ("SSE_KEEPALIVE_PERIOD", "1x", "duration"),
            ("SSE_DRAIN_PERIOD", "25h", "at most 24h"),
            ("SSE_EVENT_BUFFER", "0", "from 1 to 65536"),
            ("SSE_EVENT_BUFFER", "65537", "from 1 to 65536"),
            ("SSE_HISTORY", "65537", "65536"),
            ("SSE_CORS_ORIGINS", "https://a.example/", "without a path"),
            ("SSE_CORS_ORIGINS", "a.example", "scheme://host"),
            ("SSE_CORS_ORIGINS", "https://A.example", "lower case"),
            ("SSE_CORS_ORIGINS", "*, https://a.example", "only entry"),
            ("SSE_IO_DRIVER", "uring", "auto, io_uring, epoll"),
            ("SSE_HEAD_TIMEOUT", "0s", "greater than 0"),
        ];
        for (env, value, reason) in cases {
            let err = load_with(&[], &[(env, value)]).unwrap_err();
            assert_eq!(setting_of(&err), *env, "{env}={value}");
            let msg = err.to_string();
            let flag = format!("--{}", setting_by_env(env).unwrap().flag);
            assert!(msg.contains(env), "{msg}");
            assert!(msg.contains(&flag), "{msg}");
            assert!(msg.contains(reason), "{env}={value}: {msg}");
            // The offending value (for a list: the offending item) is quoted in the message.
            let shown = value.split(',').next().unwrap_or_default().trim();
            assert!(msg.contains(&format!("{shown:?}")), "{msg}");
        }
    }

    #[test]
    fn secrets_are_never_echoed_in_errors() {
        let file = TempFile::new("auth_secret = \" hunter2 \"");
        let cases: Vec<SecretCase<'_>> = vec![
            (
                vec![],
                vec![("SSE_AUTH_SECRET", " hunter2 ")],
                "SSE_AUTH_SECRET",
                "hunter2",
            ),
            (
                vec!["--auth-secret= hunter2"],
                vec![],
                "SSE_AUTH_SECRET",
                "hunter2",
            ),
            (
                vec!["--config", &file.0.to_str().unwrap()],
                vec![],
                "SSE_AUTH_SECRET",
                "hunter2",
            ),
            (
                vec!["--publish-token=zq9tok "],
                vec![],
                "SSE_PUBLISH_TOKEN",
                "zq9tok",
            ),
            (
                vec!["--auth-secret="],
                vec![],
                "SSE_AUTH_SECRET",
                "[redacted]",
            ),
            (
                vec![],
                vec![("EVENTS_REDIS_STORAGE", "redis://u:topsecret@host:notaport")],
                "EVENTS_REDIS_STORAGE",
                "topsecret",
            ),
            (
                vec![],
                vec![("EVENTS_REDIS_STORAGE", "rediss://:topsecret@host:6379")],
                "EVENTS_REDIS_STORAGE",
                "topsecret",
            ),
        ];
        for (argv, env, setting, secret) in &cases {
            let err = load_with(argv, env).unwrap_err();
            assert_eq!(setting_of(&err), *setting);
            let shown = format!("{err} {err:?}");
            if *secret == "[redacted]" {
                assert!(
                    shown.contains("[redacted]") && shown.contains("must not be empty"),
                    "{shown}"
                );
            } else {
                assert!(!shown.contains(secret), "{shown}");
                assert!(shown.contains("[redacted]"), "{shown}");
            }
        }
    }

    #[test]
    fn toml_syntax_error_does_not_echo_the_line() {
        let file = TempFile::new("cores = 2\nauth_secret = \"hunter2\n");
        let err = load_with(&["--config", &file.path()], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::File { .. }), "{err:?}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn file_errors_name_the_file_and_key() {
        let cases: &[(&str, &[&str])] = &[
            ("nope = 1", &["unknown key `nope`"]),
            (
                "cores = \"four\"",
                &["`cores`", "SSE_CORES", "an integer", "string"],
            ),
            ("api_keys = 5", &["`api_keys`", "array of strings"]),
            ("api_keys = [1, 2]", &["`api_keys`", "array of strings"]),
            ("drain_period = 1.5", &["`drain_period`", "duration"]),
            ("config = \"x.toml\"", &["unknown key `config`"]),
            ("[listen]\nx = 1", &["`listen`", "a string"]),
        ];
        for (toml, wants) in cases {
            let file = TempFile::new(toml);
            let err = load_with(&["--config", &file.path()], &[]).unwrap_err();
            let ConfigError::File { path, .. } = &err else {
                panic!("{toml}: expected File, got {err:?}");
            };
            assert_eq!(path, &file.0);
            let msg = err.to_string();
            assert!(msg.contains(&file.path()), "{msg}");
            for want in *wants {
                assert!(msg.contains(want), "{toml}: {msg}");
            }
        }
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let missing = std::env::temp_dir().join("gateway-config-test-does-not-exist.toml");
        let err = load_with(&[], &[("SSE_CONFIG", missing.to_str().unwrap())]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::File { path, .. } if path == &missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("cannot be read"), "{err}");
    }

    #[test]
    fn routes_table_is_kept_for_the_route_module() {
        let file =
            TempFile::new("cores = 2\n[[routes]]\npath = \"/a\"\n[[routes]]\npath = \"/b\"\n");
        let c = load_with(&["--config", &file.path()], &[]).unwrap();
        let routes = c.routes_toml.unwrap();
        assert_eq!(routes.as_array().map(Vec::len), Some(2));
        assert!(load_with(&[], &[]).unwrap().routes_toml.is_none());
    }

    #[test]
    fn command_line_errors() {
        let cases: &[(&[&str], ConfigError)] = &[
            (&["--nope"], ConfigError::UnknownFlag("--nope".into())),
            (
                &["--nope=secret"],
                ConfigError::UnknownFlag("--nope".into()),
            ),
            (&["-x"], ConfigError::UnknownFlag("-x".into())),
            (
                &["--cores", "2", "stray"],
                ConfigError::UnknownFlag("argument 3".into()),
            ),
            (&["--cores"], ConfigError::MissingValue("--cores".into())),
            (
                &["--cores", "--listen", "1.2.3.4:5"],
                ConfigError::MissingValue("--cores".into()),
            ),
            (&["-h"], ConfigError::Help),
            (&["--cores", "2", "--help"], ConfigError::Help),
            (&["--nope", "--help"], ConfigError::Help),
        ];
        for (argv, want) in cases {
            assert_eq!(&load_with(argv, &[]).unwrap_err(), want, "{argv:?}");
        }
        let msg = ConfigError::UnknownFlag("--nope".into()).to_string();
        assert!(msg.contains("--nope") && msg.contains("--help"), "{msg}");
        let msg = ConfigError::MissingValue("--cores".into()).to_string();
        assert!(
            msg.contains("--cores") && msg.contains("needs a value"),
            "{msg}"
        );
    }

    #[test]
    fn flag_value_may_start_with_dash_in_joined_form() {
        let c = load_with(&["--auth-secret=--x"], &[]).unwrap();
        assert_eq!(c.auth_secret.unwrap().expose(), "--x");
        let c = load_with(&["--auth-secret", "-x"], &[]).unwrap();
        assert_eq!(c.auth_secret.unwrap().expose(), "-x");
    }

    #[test]
    fn redis_url_forms() {
        let target = |host: &str, port, user: Option<&str>, pass: Option<&str>, db| RedisTarget {
            host: host.into(),
            port,
            username: user.map(Into::into),
            password: pass.map(Secret::new),
            db,
        };
        let ok: &[(&str, RedisTarget)] = &[
            ("redis://r:6379", target("r", 6379, None, None, 0)),
            ("redis://r", target("r", 6379, None, None, 0)),
            ("redis://r/", target("r", 6379, None, None, 0)),
            ("REDIS://r:1/15", target("r", 1, None, None, 15)),
            (
                "redis://u:p@r:7000/3",
                target("r", 7000, Some("u"), Some("p"), 3),
            ),
            ("redis://:p@r", target("r", 6379, None, Some("p"), 0)),
            ("redis://u@r", target("r", 6379, Some("u"), None, 0)),
            (
                "redis://u:p%40ss%3Aw%2Fd@r:1",
                target("r", 1, Some("u"), Some("p@ss:w/d"), 0),
            ),
            (
                "redis://u:p@ss@r:1",
                target("r", 1, Some("u"), Some("p@ss"), 0),
            ),
            ("redis://[::1]:6380", target("::1", 6380, None, None, 0)),
            ("10.0.0.5:6379", target("10.0.0.5", 6379, None, None, 0)),
            (
                " redis-main:6379 ",
                target("redis-main", 6379, None, None, 0),
            ),
            ("[::1]:1", target("::1", 1, None, None, 0)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_redis(text).as_ref(), Ok(want), "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("redis-main", "missing port"),
            ("redis-main:", "missing port"),
            ("redis://r:", "missing port"),
            ("r:0", "from 1 to 65535"),
            ("r:65536", "from 1 to 65535"),
            ("redis://r:http", "from 1 to 65535"),
            ("redis://r:+1", "from 1 to 65535"),
            ("rediss://r:6379", "TLS is not supported"),
            ("http://r:6379", "unsupported scheme"),
            ("redis://r/x", "database `x`"),
            ("redis://r/-1", "database"),
            ("redis://r?db=1", "query"),
            ("redis://:6379", "missing host"),
            ("redis://r r:1", "host"),
            ("::1:6379", "brackets"),
            ("u:p@r:1", "redis:// form"),
            ("redis://u:%zz@r", "password has a `%`"),
            ("", "empty"),
        ];
        for (text, want) in bad {
            let err = parse_redis(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn redis_target_display_hides_the_password() {
        let mut t = parse_redis("redis://u:hunter2@r:1/2").unwrap();
        assert_eq!(t.to_string(), "redis://u:[redacted]@r:1/2");
        assert!(!format!("{t:?}").contains("hunter2"));
        t.username = None;
        assert_eq!(t.to_string(), "redis://:[redacted]@r:1/2");
        t.password = None;
        assert_eq!(t.to_string(), "redis://r:1/2");
        t.username = Some("u".into());
        t.host = "::1".into();
        assert_eq!(t.to_string(), "redis://u@[::1]:1/2");
    }

    #[test]
    fn redact_url_forms() {
        let cases = [
            ("redis://u:p@h:1", "redis://u:[redacted]@h:1"),
            ("redis://:p/q@h:1/0", "redis://:[redacted]@h:1/0"),
            ("redis://u@h:1", "redis://u@h:1"),
            ("redis://h:1", "redis://h:1"),
            ("p@h:1", "[redacted]@h:1"),
        ];
        for (text, want) in cases {
            assert_eq!(redact_url(text), want);
        }
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Result<Duration, &str>)] = &[
            ("1s", Ok(Duration::from_secs(1))),
            ("500ms", Ok(Duration::from_millis(500))),
            ("2m", Ok(Duration::from_secs(120))),
            ("1h", Ok(Duration::from_secs(3600))),
            ("15", Ok(Duration::from_secs(15))),
            (" 15s ", Ok(Duration::from_secs(15))),
            ("0", Ok(Duration::ZERO)),
            ("24h", Ok(MAX_DURATION)),
            ("1x", Err("duration")),
            ("1.5s", Err("duration")),
            ("-1s", Err("duration")),
            ("s", Err("duration")),
            ("", Err("duration")),
            ("1 s", Err("duration")),
            ("25h", Err("at most 24h")),
            ("99999999999999999999h", Err("too large")),
            ("9999999999999999999h", Err("too large")),
        ];
        for (text, want) in cases {
            match (parse_duration(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{text}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn keepalive_and_drain_zero_rules() {
        assert_eq!(
            load_with(&["--drain-period", "0"], &[])
                .unwrap()
                .drain_period,
            Duration::ZERO
        );
        for zero in ["0", "0s", "0ms"] {
            let err = load_with(&["--keepalive-period", zero], &[]).unwrap_err();
            assert_eq!(setting_of(&err), "SSE_KEEPALIVE_PERIOD");
        }
    }

    #[test]
    fn cors_origins_allow() {
        let list = CorsOrigins::List(vec![
            "https://a.example".into(),
            "http://b.example:8080".into(),
        ]);
        let cases: &[(&CorsOrigins, &[u8], bool)] = &[
            (&CorsOrigins::None, b"https://a.example", false),
            (&CorsOrigins::Any, b"https://anything.example", true),
            (&list, b"https://a.example", true),
            (&list, b"http://b.example:8080", true),
            (&list, b"http://b.example", false),
            (&list, b"https://A.example", false),
            (&list, b"https://a.example/", false),
            (&list, b"", false),
        ];
        for (cors, origin, want) in cases {
            assert_eq!(
                cors.allows(origin),
                *want,
                "{cors:?} {:?}",
                String::from_utf8_lossy(origin)
            );
        }
        assert_eq!(
            load_with(&[], &[("SSE_CORS_ORIGINS", " * ")])
                .unwrap()
                .cors_origins,
            CorsOrigins::Any
        );
        assert_eq!(
            load_with(&[], &[("SSE_CORS_ORIGINS", " , ")])
                .unwrap()
                .cors_origins,
            CorsOrigins::None
        );
    }

    #[test]
    fn secret_redaction_and_comparison() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.to_string(), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter3"));
        assert!(!s.matches(b"hunter"));
        assert_eq!(s, Secret::new("hunter2"));
        assert_ne!(s, Secret::new("Hunter2"));

        let c = load_with(
            &[
                "--auth-secret",
                "aaa-secret",
                "--publish-token",
                "bbb-token",
            ],
            &[
                ("SSE_API_KEYS", "ccc-key"),
                ("EVENTS_REDIS_STORAGE", "redis://:ddd-pass@r"),
            ],
        )
        .unwrap();
        let debug = format!("{c:?}");
        for secret in ["aaa-secret", "bbb-token", "ccc-key", "ddd-pass"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn validate_checks_hand_built_configs() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    cores: 0,
                    ..Config::default()
                },
                "SSE_CORES",
            ),
            (
                Config {
                    connection_limit: 0,
                    ..Config::default()
                },
                "SSE_CONNECTION_LIMIT",
            ),
            (
                Config {
                    keepalive_period: Some(Duration::ZERO),
                    ..Config::default()
                },
                "SSE_KEEPALIVE_PERIOD",
            ),
            (
                Config {
                    head_timeout: Duration::ZERO,
                    ..Config::default()
                },
                "SSE_HEAD_TIMEOUT",
            ),
            (
                Config {
                    auth_secret: Some(Secret::new("")),
                    ..Config::default()
                },
                "SSE_AUTH_SECRET",
            ),
            (
                Config {
                    api_keys: vec![Secret::new(" ")],
                    ..Config::default()
                },
                "SSE_API_KEYS",
            ),
            (
                Config {
                    cors_origins: CorsOrigins::List(vec!["nope".into()]),
                    ..Config::default()
                },
                "SSE_CORS_ORIGINS",
            ),
            (
                Config {
                    events_redis_storage: Some(RedisTarget {
                        host: String::new(),
                        port: 1,
                        username: None,
                        password: None,
                        db: 0,
                    }),
                    ..Config::default()
                },
                "EVENTS_REDIS_STORAGE",
            ),
        ];
        assert!(Config::default().validate().is_ok());
        for (config, setting) in cases {
            assert_eq!(setting_of(&config.validate().unwrap_err()), setting);
        }
    }

    #[test]
    fn table_follows_the_naming_rule_and_defaults() {
        for row in SETTINGS {
            let flag = row
                .env
                .trim_start_matches("SSE_")
                .to_lowercase()
                .replace('_', "-");
            assert_eq!(row.flag, flag, "{}", row.env);
            if let Some(key) = row.key {
                assert_eq!(key, flag.replace('-', "_"), "{}", row.env);
            }
        }
        // Where the default shown by --help is a value, it is Config::default()'s value.
        let defaults = Config::default();
        let mut applied = Config::default();
        for row in SETTINGS.iter().filter(|r| !r.default.contains(' ')) {
            apply(row, &mut applied, Input::Text(row.default.into())).unwrap();
        }
        assert_eq!(applied.listen, defaults.listen);
        assert_eq!(applied.connection_limit, defaults.connection_limit);
        assert_eq!(applied.drain_period, defaults.drain_period);
        assert_eq!(applied.event_buffer, defaults.event_buffer);
        assert_eq!(applied.history, defaults.history);
        assert_eq!(applied.io_driver, defaults.io_driver);
        assert_eq!(applied.head_timeout, defaults.head_timeout);
    }

    #[test]
    fn usage_lists_every_setting() {
        let usage = Config::usage();
        assert!(usage.contains("--help"));
        for row in SETTINGS {
            assert!(usage.contains(&format!("--{} <", row.flag)), "{}", row.flag);
            assert!(usage.contains(row.env), "{}", row.env);
            assert!(usage.contains(row.default), "{}", row.env);
            assert!(usage.contains(row.help), "{}", row.env);
        }
    }

    #[test]
    fn error_is_a_std_error() {
        let err: Box<dyn std::error::Error> = Box::new(ConfigError::Help);
        assert!(!err.to_string().is_empty());
    }
}
