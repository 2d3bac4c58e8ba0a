//! Why a configuration could not be built, in words that name what to fix.
use std::fmt;
use std::path::PathBuf;

use crate::auth::secret::REDACTED;

/// Why the configuration could not be built. Each message names what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `-h` or `--help` was given: print [`super::Config::usage`] and exit successfully.
    Help,
    /// A setting has a bad value.
    Invalid {
        /// The setting's environment variable, e.g. `"SSE_CORES"`.
        setting: &'static str,
        /// The value as given; `[redacted]` for secrets (and for a Redis URL's password).
        value: String,
        /// What is wrong with it.
        reason: String,
        /// The config file the value came from (no environment variable or flag set it), so
        /// the message names the file and its key rather than only the variable.
        file: Option<PathBuf>,
    },
    /// An unknown flag, a missing value, a stray argument (named by position: it may be secret).
    CommandLine(String),
    /// The config file cannot be read, is not TOML, or has an unknown key or a wrongly typed value.
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A setting's bad value; a [`REDACTED`] value is shown bare, any other quoted.
pub(super) fn invalid(
    setting: &'static str,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    let (value, reason) = (value.to_string(), reason.into());
    ConfigError::Invalid {
        setting,
        value,
        reason,
        file: None,
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Help => f.write_str("help requested (see --help)"),
            ConfigError::Invalid {
                setting,
                value,
                reason,
                file: Some(path),
            } => {
                let path = path.display();
                write!(f, "config file {path} (SSE_CONFIG / --config): ")?;
                match (*setting, value.as_str()) {
                    // The file as a whole: its [[routes]], or how many families they make.
                    ("SSE_CONFIG", _) => write!(f, "{value}: {reason}"),
                    (_, REDACTED) => {
                        let key = file_key(setting);
                        write!(
                            f,
                            "`{key}` ({setting}) has an invalid value ({REDACTED}): {reason}"
                        )
                    }
                    _ => {
                        let key = file_key(setting);
                        write!(
                            f,
                            "`{key}` ({setting}) has an invalid value {value:?}: {reason}"
                        )
                    }
                }
            }
            ConfigError::Invalid {
                setting,
                value,
                reason,
                file: None,
            } => {
                f.write_str(setting)?;
                match super::cli::settings().find(|s| s.0 == *setting) {
                    Some(("SSE_CONFIG", flag, _)) => write!(f, " (flag --{flag})")?,
                    Some((_, flag, _)) => {
                        let key = flag.replace('-', "_");
                        write!(f, " (flag --{flag}, file key `{key}`)")?
                    }
                    None => {}
                }
                match value.as_str() {
                    REDACTED => write!(f, " has an invalid value ({REDACTED}): {reason}"),
                    _ => write!(f, " has an invalid value {value:?}: {reason}"),
                }
            }
            ConfigError::CommandLine(reason) => {
                write!(f, "{reason}; run with --help to list the settings")
            }
            ConfigError::File { path, reason } => {
                let path = path.display();
                write!(f, "config file {path} (SSE_CONFIG / --config): {reason}")
            }
        }
    }
}

/// The file key of the setting whose environment variable is `setting`.
fn file_key(setting: &str) -> String {
    let flag = super::cli::settings().find(|s| s.0 == setting);
    flag.map_or_else(|| setting.to_lowercase(), |s| s.1.replace('-', "_"))
}

impl std::error::Error for ConfigError {}
