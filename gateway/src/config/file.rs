//! The TOML file (`--config` / `SSE_CONFIG`): a key per setting, its flag's name with `_` for
//! `-` (no other key allowed, `config` and `check_config` included), and `[[routes]]`. Each
//! value is checked for its TOML type and handed to clap as its flag would be given.
//!
//! A syntax error gets a line and column, never the line; a wrongly typed value gets its key
//! and setting, never the value (either may be a secret).
use std::path::Path;

use toml::{Table, Value};

use super::{cli, ConfigError};

/// Reads the file: its settings as `--name=value` flags, and its `[[routes]]`.
pub(super) fn read(path: &Path) -> Result<(Vec<String>, Option<Value>), ConfigError> {
    let error = |reason| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot be read: {e}")))?;
    let mut table: Table = toml::from_str(&text).map_err(|e| error(syntax(&text, &e)))?;
    let routes = table.remove("routes");
    let flags = table.into_iter().map(|(key, value)| flag(&key, value));
    Ok((flags.collect::<Result<_, _>>().map_err(error)?, routes))
}

/// One key as its flag, `--name=value`. The TOML types a setting takes follow from its value
/// name in `--help`: an integer for `N`, a string or an integer of seconds for `DURATION`, a
/// string or an array of strings for the lists (`KEYS`, `ORIGINS`), a string for the rest.
fn flag(key: &str, value: Value) -> Result<String, String> {
    let key_of = |flag: &str| flag.replace('-', "_");
    let mut settings = cli::settings().filter(|s| s.0 != "SSE_CONFIG");
    let Some((setting, flag, kind)) = settings.find(|s| key_of(s.1) == key) else {
        let keys = cli::settings().filter(|s| s.0 != "SSE_CONFIG");
        let keys: Vec<String> = keys.map(|s| format!("`{}`", key_of(s.1))).collect();
        let keys = keys.join(", ");
        return Err(format!(
            "unknown field `{key}`, expected one of {keys}, `routes`"
        ));
    };
    let wanted = match kind {
        "N" => "an integer",
        "DURATION" => "a duration string such as \"10s\" or an integer of seconds",
        "KEYS" | "ORIGINS" => "a string or an array of strings",
        _ => "a string",
    };
    let list = matches!(kind, "KEYS" | "ORIGINS");
    let text = match value {
        Value::Integer(n) if matches!(kind, "N" | "DURATION") => n.to_string(),
        Value::String(s) if kind != "N" => s,
        Value::Array(items) if list && items.iter().all(Value::is_str) => {
            let items: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            items.join(",")
        }
        _ => return Err(format!("`{key}` ({setting}) must be {wanted}")),
    };
    Ok(format!("--{flag}={text}"))
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
