//! The boundary error type: start-up and configuration failures with context a person can act on.
use std::fmt;

/// Why the gateway could not start. Hot paths use small enums of their own; this type is for
/// the edges, where a message must name what to fix.
#[derive(Debug)]
pub enum StartError {
    /// A setting is invalid (the message names it).
    Config(crate::config::ConfigError),
    /// Binding the listen address failed.
    Bind {
        /// The address we tried.
        addr: std::net::SocketAddr,
        /// The setting that named it, as `SSE_LISTEN / --listen`.
        setting: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A core's runtime could not be built (for example io_uring was forced but is unavailable).
    Runtime {
        /// Which core.
        core: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// A core cannot serve on the listener it was given (not a listening socket, or the
    /// runtime refused to register it).
    Listener {
        /// Which core.
        core: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// A worker thread could not be spawned (or died while starting).
    Thread(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Bind {
                addr,
                setting,
                source,
            } => write!(f, "cannot listen on {addr} ({setting}): {source}"),
            StartError::Runtime { core, source } => write!(
                f,
                "core {core}: cannot build the I/O runtime: {source} (try SSE_IO_DRIVER=epoll)"
            ),
            StartError::Listener { core, source } => {
                write!(f, "core {core}: cannot serve on its listener: {source}")
            }
            StartError::Thread(e) => write!(f, "cannot start a worker thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::Bind { source, .. }
            | StartError::Runtime { source, .. }
            | StartError::Listener { source, .. } => Some(source),
            StartError::Thread(e) => Some(e),
        }
    }
}

impl From<crate::config::ConfigError> for StartError {
    fn from(e: crate::config::ConfigError) -> Self {
        StartError::Config(e)
    }
}
