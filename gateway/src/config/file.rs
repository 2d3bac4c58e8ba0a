//! The TOML file (`--config` / `SSE_CONFIG`): every key optional, no other key allowed, each
//! value checked for its TOML type and handed to clap as its flag would be given.
//!
//! The text is read as a table first, so a syntax error gets a line and column (never the
//! line, which may hold a secret); then into [`File`], as only from a table does `toml` name
//! the key of a wrongly typed value.
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use super::{cli, ConfigError};

/// The keys a file may hold: the flags' names with `_` for `-`, and `[[routes]]`.
#[derive(Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct File {
    listen: Option<Str>,
    cores: Option<Int>,
    connection_limit: Option<Int>,
    events_redis_storage: Option<Str>,
    keepalive_period: Option<Duration>,
    drain_period: Option<Duration>,
    event_buffer: Option<Int>,
    history: Option<Int>,
    auth_secret: Option<Str>,
    api_keys: Option<List>,
    publish_token: Option<Str>,
    cors_origins: Option<List>,
    io_driver: Option<Str>,
    head_timeout: Option<Duration>,
    /// Route families, for the route module to check.
    #[serde(skip_serializing)]
    routes: Option<Value>,
}

// The TOML types a key accepts. A wrong one is reported in the words of `expecting`, which
// never show the value (it may be a secret).

#[derive(Deserialize, Serialize)]
#[serde(untagged, expecting = "must be a string")]
enum Str {
    Str(String),
}

#[derive(Deserialize, Serialize)]
#[serde(untagged, expecting = "must be an integer")]
enum Int {
    Int(i64),
}

#[derive(Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "must be a duration string such as \"10s\" or an integer of seconds"
)]
enum Duration {
    Str(String),
    Int(i64),
}

#[derive(Deserialize, Serialize)]
#[serde(untagged, expecting = "must be a string or an array of strings")]
enum List {
    Str(String),
    Array(Vec<String>),
}

/// Reads the file: its settings as `--name=value` flags, and its `[[routes]]`.
pub(super) fn read(path: &Path) -> Result<(Vec<String>, Option<Value>), ConfigError> {
    let error = |reason| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot be read: {e}")))?;
    let table: Table = toml::from_str(&text).map_err(|e| error(syntax(&text, &e)))?;
    let mut file: File = Value::Table(table)
        .try_into()
        .map_err(|e| error(shape(&e)))?;
    let routes = file.routes.take();
    let settings = Table::try_from(file).map_err(|e| error(e.to_string()))?;
    let flags = settings.into_iter().map(|(key, value)| {
        let value = match value {
            Value::String(s) => s,
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        format!("--{}={value}", key.replace('_', "-"))
    });
    Ok((flags.collect(), routes))
}

/// A syntax error as "line L, column C: message", without the source line.
fn syntax(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return format!("not valid TOML: {message}");
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("not valid TOML at line {line}, column {column}: {message}")
}

/// An unknown key or a wrongly typed value, with the key and its setting where there is one
/// (`toml` names the key only in `Display`, as a last line "in `key`").
fn shape(error: &toml::de::Error) -> String {
    let shown = error.to_string();
    let key = shown
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("in `")?.strip_suffix('`'));
    match key.and_then(|k| Some((k, cli::env_of(&k.replace('_', "-"))?))) {
        Some((key, env)) => format!("`{key}` ({env}) {}", error.message()),
        None => error.message().to_string(),
    }
}
