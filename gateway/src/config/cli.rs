//! The layers as one command line for clap, and clap's errors as [`ConfigError`]s.
//!
//! The file's settings, then the environment's, then the real arguments are parsed as one
//! command line in which each flag overrides itself, so the last layer naming a setting wins.
//! clap's own reading of the environment is off: variables come from the lookup function, and
//! one set to the empty string is unset (`FOO=` lines in env files are common). A value may
//! not start with `-` in the `--name value` form (so `--cores --listen x` lacks a value);
//! `--name=-value` takes any value.
use std::error::Error as _;
use std::path::Path;
use std::sync::LazyLock;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Command, CommandFactory, FromArgMatches};

use super::{error::invalid, file, Config, ConfigError};
use crate::broker::target::redact_url;
use crate::route::table::RouteTable;

/// Said after the flags in `--help`.
pub(super) const AFTER_HELP: &str = "\
Each setting is also an environment variable (empty: unset) and a key of the TOML file named
by --config: the flag's name with _ for -, lists as a string or an array, durations as a string
or an integer of seconds; the file may also hold [[routes]]. Precedence: defaults < file <
environment < flags. Durations are 500ms, 10s, 2m, 1h or a number of seconds, at most 24h.

`gateway token --help`: mint a development token for player and private jackpot streams.";

/// The settings as clap knows them, built once (errors name settings by `'static` strings).
pub(super) static COMMAND: LazyLock<Command> = LazyLock::new(Config::command);

/// Every setting as (environment variable, flag without `--`, value name), in `--help` order.
pub(super) fn settings() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    COMMAND.get_arguments().filter_map(|a| {
        let value = a.get_value_names()?.first()?.as_str();
        Some((a.get_env()?.to_str()?, a.get_long()?, value))
    })
}

/// Parses file < environment < `args` and validates the result; `-h`/`--help` anywhere wins
/// over every other problem.
pub(super) fn load(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Err(ConfigError::Help);
    }
    let env_flags: Vec<String> = settings()
        .filter_map(|(name, flag, _)| {
            Some(format!("--{flag}={}", env(name).filter(|v| !v.is_empty())?))
        })
        .collect();
    let layered = |file_flags: &[String]| {
        let flags = file_flags.iter().chain(&env_flags).chain(args);
        let mut config = parse(flags.map(String::as_str)).map_err(|e| clap_error(args, &e))?;
        config.api_keys.retain(|k| !k.expose().is_empty());
        Ok::<_, ConfigError>(config)
    };
    // The flags and the environment name the file; then it goes under them.
    let mut config = layered(&[])?;
    if let Some(path) = config.config_file.take() {
        let (file_flags, routes) = file::read(&path)?;
        let blame = |e| blame_file(e, &path, &file_flags, &env_flags, args);
        config = layered(&file_flags).map_err(blame)?;
        let routes = RouteTable::with_custom(routes.as_ref());
        let routes = routes.map_err(|reason| invalid("SSE_CONFIG", "[[routes]]", reason));
        config.routes = routes.map_err(blame)?;
        config.validate().map_err(blame)?;
        return Ok(config);
    }
    config.validate()?;
    Ok(config)
}

/// Names the file in `e` when the bad value is the file's: the file as a whole
/// (`SSE_CONFIG`: its routes), a key no variable or flag overrides, or a key whose value is
/// the one refused (a file value that does not parse is an error even where a flag overrides
/// it). The file key and the path are what the operator edits, not the variable.
fn blame_file(
    e: ConfigError,
    path: &Path,
    file_flags: &[String],
    env_flags: &[String],
    args: &[String],
) -> ConfigError {
    let ConfigError::Invalid {
        setting,
        value,
        reason,
        file: None,
    } = e
    else {
        return e;
    };
    let flag = settings().find(|s| s.0 == setting).map_or("", |s| s.1);
    let given = |list: &[String]| {
        let named = |a: &&String| {
            a.strip_prefix("--")
                .and_then(|a| a.strip_prefix(flag))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
        };
        list.iter().rev().find(named).cloned()
    };
    let in_file = given(file_flags);
    let file_value = in_file
        .as_deref()
        .and_then(|a| a.split_once('='))
        .map(|(_, v)| v);
    let from_file = setting == "SSE_CONFIG"
        || (in_file.is_some()
            && (file_value == Some(value.as_str())
                || (given(env_flags).is_none() && given(args).is_none())));
    ConfigError::Invalid {
        setting,
        value,
        reason,
        file: from_file.then(|| path.to_path_buf()),
    }
}

/// Runs clap over `args` (after the program name), without its reading of the environment.
pub(super) fn parse<'a>(args: impl Iterator<Item = &'a str>) -> Result<Config, clap::Error> {
    let command = COMMAND.clone().mut_args(|a| a.env(None::<&str>));
    let matches = command.try_get_matches_from(std::iter::once("gateway").chain(args))?;
    Config::from_arg_matches(&matches)
}

/// clap's error as ours: a bad value names its setting (a Redis URL's password redacted), a
/// stray argument its position in `args`; anything else is clap's first line.
fn clap_error(args: &[String], e: &clap::Error) -> ConfigError {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.as_str(),
        _ => "",
    };
    let arg = context(ContextKind::InvalidArg);
    let flag = arg.split(' ').next().and_then(|f| f.strip_prefix("--"));
    match (e.kind(), settings().find(|s| Some(s.1) == flag)) {
        (ErrorKind::DisplayHelp, _) => ConfigError::Help,
        (ErrorKind::ValueValidation, Some((setting, ..))) => {
            let value = context(ContextKind::InvalidValue);
            let value = match setting {
                "EVENTS_REDIS_STORAGE" => redact_url(value),
                _ => value.to_string(),
            };
            let reason = e.source().map(ToString::to_string).unwrap_or_default();
            invalid(setting, value, reason)
        }
        (ErrorKind::UnknownArgument, _) if !arg.starts_with('-') => {
            let at = position(args, arg);
            ConfigError::CommandLine(format!(
                "unexpected argument {at} on the command line: settings are given as \
                 --name value or --name=value (quote values with spaces)"
            ))
        }
        _ => {
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default();
            ConfigError::CommandLine(first.trim_start_matches("error: ").to_string())
        }
    }
}

/// Where the stray `text` stands in `args` (1-based), skipping an equal text that is a value.
fn position(args: &[String], text: &str) -> usize {
    // Every flag of a setting takes a value.
    let takes_value = |arg: &str| settings().any(|s| Some(s.1) == arg.strip_prefix("--"));
    let stray = |i: usize| args[i] == text && (i == 0 || !takes_value(&args[i - 1]));
    (0..args.len()).find(|&i| stray(i)).map_or(0, |i| i + 1)
}

#[cfg(test)]
pub(super) mod testing {
    //! What the config tests need to see of the clap definitions.
    use super::COMMAND;

    /// `(env, flag, help)` of every setting, in `--help` order.
    pub fn rows() -> Vec<(&'static str, &'static str, String)> {
        let rows = COMMAND.get_arguments().filter_map(|a| {
            let env = a.get_env()?.to_str()?;
            Some((env, a.get_long()?, a.get_help()?.to_string()))
        });
        rows.collect()
    }
}
