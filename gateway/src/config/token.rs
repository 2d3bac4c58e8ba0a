//! `gateway token ...`: mints a development token with the code the gateway verifies with
//! ([`crate::auth::jwt::Grant`]), so a newcomer can open player and private jackpot streams
//! without writing a JWT issuer first.
//!
//! The token alone goes to stdout (`TOKEN=$(gateway token --brand 1001 --player 12345)`);
//! errors go to stderr with exit code 2, like a bad setting. It is for development and tests:
//! a production issuer is the platform's own login service, which signs with the same
//! `SSE_AUTH_SECRET`. The secret is read from `SSE_AUTH_SECRET` like the gateway reads it
//! (`--secret` also works, but shows in `ps` and the shell history).
use std::error::Error as _;
use std::sync::LazyLock;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Command, CommandFactory, FromArgMatches, Parser};

use super::{check_secret, ConfigError};
use crate::auth::jwt::Grant;
use crate::auth::Secret;
use crate::util::duration;

/// The first argument that selects this subcommand: `gateway token ...`.
pub const SUBCOMMAND: &str = "token";

/// Said after the flags in `gateway token --help`.
const AFTER_HELP: &str = "\
Examples (development only):
  export SSE_AUTH_SECRET=dev-only-secret
  TOKEN=$(gateway token --brand 1001 --player 12345)       # GET /sse?token=$TOKEN
  TOKEN=$(gateway token --channel ws1_user_p1)             # GET /subscribe?channel=ws1_user_p1&token=$TOKEN
Only the token is printed, on stdout.";

/// The subcommand's arguments as clap knows them.
#[derive(Debug, Parser)]
#[command(name = "gateway token", long_about = None, after_long_help = AFTER_HELP)]
#[command(about = "Mint an HS256 development token for player and private jackpot streams")]
#[command(args_override_self = true)]
struct TokenArgs {
    /// The brand_id claim of a player token (the stream of channel SSE::{brand}::{player}).
    #[arg(
        long,
        value_name = "ID",
        requires = "player",
        allow_negative_numbers = true
    )]
    brand: Option<i64>,
    /// The player_id claim of a player token; needs --brand.
    #[arg(
        long,
        value_name = "ID",
        requires = "brand",
        allow_negative_numbers = true
    )]
    player: Option<i64>,
    /// A private channel (<workspace>_user_<player>) for the channels claim; repeat the flag
    /// or separate channels with commas.
    #[arg(long = "channel", value_name = "CHANNEL", value_delimiter = ',')]
    channels: Vec<String>,
    /// How long the token is valid (the exp claim): 500ms, 10s, 2m, 1h (at most 24h).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "1h")]
    ttl: Duration,
    /// HS256 secret to sign with; default: the environment variable SSE_AUTH_SECRET, which
    /// the gateway must have too.
    #[arg(long, value_name = "SECRET")]
    secret: Option<String>,
}

/// The subcommand, built once.
static COMMAND: LazyLock<Command> = LazyLock::new(TokenArgs::command);

/// The `gateway token --help` text.
pub fn usage() -> String {
    COMMAND.clone().render_long_help().to_string()
}

/// Mints the token `args` (after `token`) ask for, with the secret from `--secret` or
/// `env("SSE_AUTH_SECRET")` (empty is unset, as for the gateway), valid from `now_unix` for
/// `--ttl`. [`ConfigError::Help`] for `-h`/`--help`; any other error names what to fix and
/// never echoes the secret.
pub fn mint(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    now_unix: u64,
) -> Result<String, ConfigError> {
    let matches = COMMAND
        .clone()
        .try_get_matches_from(
            std::iter::once("gateway token").chain(args.iter().map(|a| a.as_str())),
        )
        .map_err(|e| clap_error(args, &e))?;
    let args = TokenArgs::from_arg_matches(&matches).map_err(|e| clap_error(args, &e))?;
    let secret = args
        .secret
        .or_else(|| env("SSE_AUTH_SECRET"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ConfigError::CommandLine(
                "no secret to sign with: set SSE_AUTH_SECRET (the gateway's) or give --secret"
                    .into(),
            )
        })?;
    let secret = Secret::new(secret);
    check_secret("SSE_AUTH_SECRET", Some(&secret))?;
    if args.ttl.is_zero() {
        return Err(ConfigError::CommandLine(
            "--ttl must be greater than 0".into(),
        ));
    }
    let channels: Vec<String> = args
        .channels
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    let player = args.brand.zip(args.player);
    if player.is_none() && channels.is_empty() {
        return Err(ConfigError::CommandLine(
            "say what the token grants: --brand and --player (a player stream), --channel \
             (private jackpot channels), or both"
                .into(),
        ));
    }
    let grant = Grant {
        player,
        channels,
        exp: now_unix.saturating_add(args.ttl.as_secs().max(1)),
    };
    Ok(grant.mint(secret.expose().as_bytes()))
}

/// clap's error in one line; a stray word is named by position, as it may be a secret split
/// from `--secret` by a space.
fn clap_error(args: &[String], e: &clap::Error) -> ConfigError {
    match e.kind() {
        ErrorKind::DisplayHelp => ConfigError::Help,
        ErrorKind::UnknownArgument => {
            let text = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(s)) => s.as_str(),
                _ => "",
            };
            // Every flag but --help takes a value; a word after `--flag` (no `=`) is its value.
            let value_of_flag =
                |i: usize| i > 0 && args[i - 1].starts_with("--") && !args[i - 1].contains('=');
            let at = (0..args.len()).find(|&i| args[i] == text && !value_of_flag(i));
            let at = at.map_or(String::new(), |i| format!(" {}", i + 1));
            ConfigError::CommandLine(format!(
                "unexpected argument{at} after `gateway token`: see gateway token --help"
            ))
        }
        ErrorKind::MissingRequiredArgument => ConfigError::CommandLine(
            "--brand and --player go together: a player token has both claims".into(),
        ),
        ErrorKind::ValueValidation => {
            let reason = e.source().map(ToString::to_string).unwrap_or_default();
            ConfigError::CommandLine(format!("invalid value: {reason}"))
        }
        _ => {
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default();
            ConfigError::CommandLine(first.trim_start_matches("error: ").to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::{verify_hs256, AuthError, Claims};

    const NOW: u64 = 1_700_000_000;

    fn run(argv: &[&str], env_secret: Option<&str>) -> Result<String, ConfigError> {
        let args: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let secret = env_secret.map(str::to_string);
        mint(
            &args,
            &|name| {
                (name == "SSE_AUTH_SECRET")
                    .then(|| secret.clone())
                    .flatten()
            },
            NOW,
        )
    }

    /// Each command line gives the claims the gateway's verifier reads from its token.
    #[test]
    fn minted_tokens_verify_with_the_gateway_code() {
        let cases: &[(&[&str], Claims)] = &[
            (
                &["--brand", "1001", "--player", "12345"],
                Claims {
                    brand_id: Some(1001),
                    player_id: Some(12345),
                    exp: NOW + 3600,
                    ..Claims::default()
                },
            ),
            (
                &[
                    "--channel",
                    "ws1_user_p1",
                    "--channel=ws1_user_p2,ws2_user_p1",
                    "--ttl",
                    "5m",
                ],
                Claims {
                    channels: vec![
                        "ws1_user_p1".into(),
                        "ws1_user_p2".into(),
                        "ws2_user_p1".into(),
                    ],
                    exp: NOW + 300,
                    ..Claims::default()
                },
            ),
            (
                &[
                    "--player=-2",
                    "--brand=7",
                    "--channel",
                    "a_user_b",
                    "--ttl=10",
                ],
                Claims {
                    brand_id: Some(7),
                    player_id: Some(-2),
                    channels: vec!["a_user_b".into()],
                    exp: NOW + 10,
                },
            ),
        ];
        for (argv, want) in cases {
            let token = run(argv, Some("dev-secret")).unwrap();
            assert!(!token.contains(char::is_whitespace), "{token}");
            let got = verify_hs256(token.as_bytes(), b"dev-secret", NOW, 0);
            assert_eq!(got.as_ref(), Ok(want), "{argv:?}");
            let other = verify_hs256(token.as_bytes(), b"other", NOW, 0);
            assert_eq!(other, Err(AuthError::BadSignature), "{argv:?}");
        }
        // --secret wins over the environment.
        let token = run(
            &["--brand", "1", "--player", "2", "--secret", "flag"],
            Some("env"),
        )
        .unwrap();
        assert!(verify_hs256(token.as_bytes(), b"flag", NOW, 0).is_ok());
    }

    /// Refusals name what to fix and never the secret.
    #[test]
    fn refusals() {
        let cases: &[(&[&str], Option<&str>, &str)] = &[
            (
                &["--brand", "1", "--player", "2"],
                None,
                "no secret to sign with",
            ),
            (
                &["--brand", "1", "--player", "2"],
                Some(""),
                "no secret to sign with",
            ),
            (
                &["--brand", "1", "--player", "2"],
                Some(" hunter2"),
                "must not start or end",
            ),
            (&["--brand", "1"], Some("s"), "--player"),
            (&["--player", "1"], Some("s"), "--brand"),
            (&[], Some("s"), "say what the token grants"),
            (&["--channel", ""], Some("s"), "say what the token grants"),
            (
                &["--brand", "x", "--player", "2"],
                Some("s"),
                "invalid value",
            ),
            (
                &["--channel", "c", "--ttl", "0"],
                Some("s"),
                "--ttl must be greater than 0",
            ),
            (
                &["--channel", "c", "--ttl", "2d"],
                Some("s"),
                "must be a duration",
            ),
            (
                &["--channel", "c", "--ttl", "25h"],
                Some("s"),
                "at most 24h",
            ),
            (
                &["--channel", "c", "--secret=x", "hunter2"],
                None,
                "unexpected argument 4",
            ),
            (&["--nope"], Some("s"), "unexpected argument 1"),
        ];
        for (argv, secret, want) in cases {
            let err = run(argv, *secret).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(shown.contains(want), "{argv:?}: {shown}");
            assert!(!shown.contains("hunter2"), "{argv:?}: {shown}");
        }
        assert_eq!(run(&["--help"], None), Err(ConfigError::Help));
        assert!(usage().contains("SSE_AUTH_SECRET"));
    }
}
