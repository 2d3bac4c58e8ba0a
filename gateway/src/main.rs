//! The gateway binary: parse the settings, start one shard per core, drain on SIGTERM.
use std::process::ExitCode;
use std::time::Duration;

use gateway::config::{token, Config, ConfigError};
use gateway::server::start;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == token::SUBCOMMAND)
    {
        return mint_token();
    }
    let config = match Config::from_process() {
        Ok(c) if c.check_config => {
            if let Some(warning) = c.exposure_warning() {
                eprintln!("warning: {warning}");
            }
            print_out(&format!("config OK: {}", c.summary()));
            return ExitCode::SUCCESS;
        }
        Ok(c) => c,
        Err(ConfigError::Help) => {
            print_out(&Config::usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SSE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let drain_period = config.drain_period;
    let running = match start::start(config) {
        Ok(r) => r,
        Err(e) => {
            // Once, as the settings' errors are: not also through the log.
            eprintln!("error: {e}");
            // A setting to fix (2, like the settings checked before start-up) or the
            // environment refused (1).
            let code = if matches!(e, gateway::error::StartError::Config(_)) {
                2
            } else {
                1
            };
            return ExitCode::from(code);
        }
    };
    let node = running.node().clone();
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]);
    match signals {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                for sig in signals.forever() {
                    // SIGTERM drains over the period; SIGINT (Ctrl-C) closes at once.
                    let period = if sig == signal_hook::consts::SIGTERM {
                        drain_period
                    } else {
                        Duration::ZERO
                    };
                    if !node.drain(period) {
                        // A second signal: stop now.
                        std::process::exit(0);
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot install signal handlers; SIGTERM will not drain")
        }
    }
    running.wait();
    tracing::info!("drained; exiting");
    ExitCode::SUCCESS
}

/// `gateway token ...`: prints a development token (and nothing else) on stdout.
fn mint_token() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(2)
        .map(|a| a.into_string())
        .collect();
    let Ok(args) = args else {
        eprintln!("error: an argument is not valid UTF-8");
        return ExitCode::from(2);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match token::mint(&args, &|name| std::env::var(name).ok(), now) {
        Ok(token) => print_out(&token),
        Err(ConfigError::Help) => print_out(&token::usage()),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// Prints a line to stdout; a closed pipe (`gateway --help | head`) is not an error.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}
