//! Loading through every layer, errors and validation. Parsers of single values are tested
//! where they live (`broker::target`, `http::cors`, `values.rs`, `util::duration`,
//! `auth::secret`).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::cli::testing::rows;
use super::*;
use crate::broker::target::Seed;

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

/// The flag (without `--`) of the setting whose environment variable is `env`.
fn flag_of(env: &str) -> String {
    let setting = cli::settings().find(|s| s.0 == env);
    setting.expect("a setting").1.to_string()
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
        env: "SSE_PENDING_LIMIT",
        text: "300",
        toml: "pending_limit = 300",
        check: |c| c.pending_limit == 300,
    },
    Case {
        env: "SSE_METRICS_TOPICS",
        text: "0",
        toml: "metrics_topics = 0",
        check: |c| c.metrics_topics == 0,
    },
    Case {
        env: "EVENTS_REDIS_STORAGE",
        text: "redis://r.example:6380/2",
        toml: r#"events_redis_storage = "redis://r.example:6380/2""#,
        check: |c| {
            c.events_redis_storage
                == Some(RedisTarget {
                    seeds: vec![Seed::new("r.example", 6380)],
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
        env: "SSE_HISTORY_BYTES",
        text: "2097152",
        toml: "history_bytes = 2097152",
        check: |c| c.history_bytes == 2_097_152,
    },
    Case {
        env: "SSE_REPLAY_LIMIT",
        text: "65536",
        toml: "replay_limit = 65536",
        check: |c| c.replay_limit == 65536,
    },
    Case {
        env: "SSE_WRITE_TIMEOUT",
        text: "5s",
        toml: r#"write_timeout = "5s""#,
        check: |c| c.write_timeout == Duration::from_secs(5),
    },
    Case {
        env: "SSE_CHANNEL_LIMIT",
        text: "1000",
        toml: "channel_limit = 1000",
        check: |c| c.channel_limit == 1000,
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
        env: "SSE_JWT_LEEWAY",
        text: "2m",
        toml: r#"jwt_leeway = "2m""#,
        check: |c| c.jwt_leeway == Duration::from_secs(120),
    },
    Case {
        env: "SSE_ADMIN_LISTEN",
        text: "127.0.0.1:9090",
        toml: r#"admin_listen = "127.0.0.1:9090""#,
        check: |c| c.admin_listen == Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
    },
    Case {
        env: "SSE_STATUS_VIEWERS",
        text: "3",
        toml: "status_viewers = 3",
        check: |c| c.status_viewers == 3,
    },
    Case {
        env: "SSE_STATUS_PERIOD",
        text: "250ms",
        toml: r#"status_period = "250ms""#,
        check: |c| c.status_period == Duration::from_millis(250),
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
        env: "SSE_REDIS_SUBSCRIBE",
        text: "channel",
        toml: r#"redis_subscribe = "channel""#,
        check: |c| c.redis_subscribe == RedisSubscribe::Channel,
    },
    Case {
        env: "SSE_CHANNEL_IDLE",
        text: "30s",
        toml: r#"channel_idle = "30s""#,
        check: |c| c.channel_idle == Duration::from_secs(30),
    },
    Case {
        env: "SSE_HISTORY_TTL",
        text: "10m",
        toml: r#"history_ttl = "10m""#,
        check: |c| c.history_ttl == Duration::from_secs(600),
    },
    Case {
        env: "SSE_RESUME_READS",
        text: "32",
        toml: "resume_reads = 32",
        check: |c| c.resume_reads == 32,
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
    for (env, ..) in rows().iter().filter(|(env, ..)| *env != "SSE_CONFIG") {
        assert!(
            CASES.iter().any(|c| c.env == *env),
            "no test case for {env}"
        );
    }
    assert_eq!(rows().len(), CASES.len() + 1, "every case is a setting");
}

#[test]
fn each_setting_from_env_flag_and_file() {
    for case in CASES {
        assert!(
            !(case.check)(&Config::default()),
            "{}: case equals the default",
            case.env
        );

        let c = load_with(&[], &[(case.env, case.text)]).unwrap();
        assert!((case.check)(&c), "{} from env", case.env);

        let flag = format!("--{}", flag_of(case.env));
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
        (&["--cores=4", "--cores=5"], &[], 5),
    ];
    for (argv, env, want) in cases {
        let c = load_with(argv, env).unwrap();
        assert_eq!(c.cores, *want, "{argv:?} {env:?}");
    }
    // A setting the later layers don't mention keeps the file's value.
    let c = load_with(&["--config", &path, "--cores", "4"], &[]).unwrap();
    assert_eq!(c.history, 5);
    // A list from a later layer replaces the file's, not adds to it.
    let file = TempFile::new("api_keys = [\"a\", \"b\"]");
    let c = load_with(&["--config", &file.path()], &[("SSE_API_KEYS", "c")]).unwrap();
    assert_eq!(c.api_keys, vec![Secret::new("c")]);
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
    assert_eq!(c.config_file.as_deref(), Some(from_flag.0.as_path()));
}

#[test]
fn file_values_are_validated_only_when_they_win() {
    let file = TempFile::new("cores = 0");
    let path = file.path();
    let err = load_with(&["--config", &path], &[]).unwrap_err();
    assert_eq!(setting_of(&err), "SSE_CORES");
    let c = load_with(&["--config", &path, "--cores", "2"], &[]).unwrap();
    assert_eq!(c.cores, 2);
    // A value that does not parse is an error even where a later layer overrides it.
    let file = TempFile::new("listen = \"nowhere\"");
    let err = load_with(&["--config", &file.path(), "--listen=1.2.3.4:5"], &[]).unwrap_err();
    assert_eq!(setting_of(&err), "SSE_LISTEN");
}

#[test]
fn empty_env_var_counts_as_unset() {
    let file = TempFile::new("cores = 2");
    let c = load_with(
        &["--config", &file.path()],
        &[
            ("SSE_AUTH_SECRET", ""),
            ("EVENTS_REDIS_STORAGE", ""),
            ("SSE_CORES", ""),
            ("SSE_CONFIG", ""),
        ],
    )
    .unwrap();
    assert!(c.auth_secret.is_none());
    assert!(c.events_redis_storage.is_none());
    assert_eq!(c.cores, 2, "the file's value, not an empty override");
    let c = load_with(&[], &[("SSE_CORES", ""), ("SSE_CONFIG", "")]).unwrap();
    assert_eq!(c.cores, default_cores());
    assert!(c.config_file.is_none());
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
        ("SSE_METRICS_TOPICS", "10001", "at most 10000"),
        ("SSE_PENDING_LIMIT", "many", "whole number"),
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
        ("SSE_REPLAY_LIMIT", "1023", "at least 1024"),
        ("SSE_WRITE_TIMEOUT", "0s", "greater than 0"),
        ("SSE_HISTORY_TTL", "0s", "greater than 0"),
        ("SSE_RESUME_READS", "0", "from 1 to 1024"),
        ("SSE_RESUME_READS", "1025", "from 1 to 1024"),
        ("SSE_CHANNEL_LIMIT", "63", "at least 64"),
        (
            "SSE_CORS_ORIGINS",
            "https://a.example/",
            "must be written as browsers send it: https://a.example",
        ),
        ("SSE_CORS_ORIGINS", "a.example", "scheme://host"),
        (
            "SSE_CORS_ORIGINS",
            "https://A.example",
            "browsers send it: https://a.example",
        ),
        ("SSE_CORS_ORIGINS", "*, https://a.example", "only entry"),
        ("SSE_IO_DRIVER", "uring", "auto, io_uring, epoll"),
        ("SSE_REDIS_SUBSCRIBE", "channels", "pattern, channel"),
        ("SSE_CHANNEL_IDLE", "0s", "greater than 0"),
        ("SSE_CHANNEL_IDLE", "25h", "at most 24h"),
        ("SSE_HEAD_TIMEOUT", "0s", "greater than 0"),
        ("SSE_STATUS_VIEWERS", "1025", "from 0 (page off) to 1024"),
        ("SSE_STATUS_PERIOD", "50ms", "from 100ms to 1m"),
        ("SSE_STATUS_PERIOD", "90s", "from 100ms to 1m"),
    ];
    for (env, value, reason) in cases {
        let flag = format!("--{}", flag_of(env));
        let joined = format!("{flag}={value}");
        for (argv, vars) in [
            (vec![], vec![(*env, *value)]),
            (vec![joined.as_str()], vec![]),
        ] {
            let err = load_with(&argv, &vars).unwrap_err();
            assert_eq!(setting_of(&err), *env, "{env}={value}");
            let msg = err.to_string();
            assert!(msg.contains(env), "{msg}");
            assert!(msg.contains(&flag), "{msg}");
            assert!(msg.contains(reason), "{env}={value}: {msg}");
            // The offending value (for a list: the offending item) is quoted in the message.
            let shown = value.split(',').next().unwrap_or_default().trim();
            assert!(msg.contains(&format!("{shown:?}")), "{msg}");
        }
    }
}

#[test]
fn invalid_message_names_setting_flag_and_file_key() {
    let err = load_with(&["--cores", "0"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SSE_CORES (flag --cores, file key `cores`) has an invalid value \"0\": \
         must be from 1 to 1024"
    );
    let err = load_with(&["--auth-secret= x"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SSE_AUTH_SECRET (flag --auth-secret, file key `auth_secret`) has an invalid value \
         ([redacted]): must not start or end with whitespace (a copy-paste slip?)"
    );
    let err = load_with(&["--events-redis-storage", "redis-main"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "EVENTS_REDIS_STORAGE (flag --events-redis-storage, file key `events_redis_storage`) \
         has an invalid value \"redis-main\": missing port; expected \
         redis://[user:pass@]host:port[/db] or host:port"
    );
}

#[test]
fn secrets_are_never_echoed_in_errors() {
    let file = TempFile::new("auth_secret = \" hunter2 \"");
    let typed = TempFile::new("api_keys = [\"k\", 7654321]\nauth_secret = 1234567");
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
            vec!["--config", file.0.to_str().unwrap()],
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
        assert_eq!(setting_of(&err), *setting, "{argv:?} {env:?}");
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
    // A wrongly typed secret in the file: its type is named, never its value.
    let err = load_with(&["--config", &typed.path()], &[]).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, ConfigError::File { .. }), "{shown}");
    assert!(
        !shown.contains("7654321") && !shown.contains("1234567"),
        "{shown}"
    );
    assert!(
        shown.contains("`api_keys` (SSE_API_KEYS) must be"),
        "{shown}"
    );
    // A secret meant as a value but split from its flag is not echoed. (clap reads
    // `-hunter2` as the help flag's short form, so `--auth-secret` lacks its value.)
    let split: &[(&[&str], &str)] = &[
        (&["--auth-secret", "-zhunter2"], "'-z'"),
        (&["--auth-secret=my", "hunter2"], "argument 2"),
        (&["--auth-secret", "-hunter2"], "--auth-secret"),
    ];
    for (argv, want) in split {
        let err = load_with(argv, &[]).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains(want) && !shown.contains("hunter2"),
            "{shown}"
        );
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
        (
            "nope = 1",
            &["unknown field `nope`", "`listen`", "`routes`"],
        ),
        (
            "cores = \"four\"",
            &["`cores` (SSE_CORES) must be an integer"],
        ),
        (
            "api_keys = 5",
            &["`api_keys` (SSE_API_KEYS) must be a string or an array of strings"],
        ),
        ("api_keys = [1, 2]", &["`api_keys`", "array of strings"]),
        (
            "drain_period = 1.5",
            &["`drain_period` (SSE_DRAIN_PERIOD) must be a duration string"],
        ),
        ("config = \"x.toml\"", &["unknown field `config`"]),
        (
            "connection-limit = 10",
            &["unknown field `connection-limit`", "`connection_limit`"],
        ),
        ("cores = 2.5", &["`cores` (SSE_CORES) must be an integer"]),
        (
            "history = \"5\"",
            &["`history` (SSE_HISTORY) must be an integer"],
        ),
        ("listen = 8080", &["`listen` (SSE_LISTEN) must be a string"]),
        ("check_config = true", &["unknown field `check_config`"]),
        (
            "[listen]\nx = 1",
            &["`listen` (SSE_LISTEN) must be a string"],
        ),
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
        assert!(msg.contains("SSE_CONFIG / --config"), "{msg}");
        for want in *wants {
            assert!(msg.contains(want), "{toml}: {msg}");
        }
    }
}

/// A bad value the file gave names the file and its key; the same value from a variable or
/// a flag names those, and a file value they override is not blamed for their fault.
#[test]
fn file_borne_values_name_the_file() {
    let file = TempFile::new("cores = 0\nauth_secret = \" hunter2\"\n");
    let path = file.path();
    let config = ["--config", path.as_str()];
    let head = format!("config file {path} (SSE_CONFIG / --config): ");
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str, bool);
    let cases: Vec<Case> = vec![
        (
            config.to_vec(),
            vec![],
            "`cores` (SSE_CORES) has an invalid value \"0\": must be from 1 to 1024",
            true,
        ),
        (
            [&config[..], &["--cores", "2"]].concat(),
            vec![],
            "`auth_secret` (SSE_AUTH_SECRET) has an invalid value ([redacted]): must not start",
            true,
        ),
        (
            config.to_vec(),
            vec![("SSE_CORES", "2000")],
            "SSE_CORES (flag --cores, file key `cores`) has an invalid value \"2000\"",
            false,
        ),
        (
            [&config[..], &["--cores=5000"]].concat(),
            vec![],
            "SSE_CORES (flag --cores, file key `cores`) has an invalid value \"5000\"",
            false,
        ),
    ];
    for (argv, env, want, names_file) in cases {
        let err = load_with(&argv, &env).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(want), "{argv:?} {env:?}: {msg}");
        assert_eq!(
            msg.starts_with(&head),
            names_file,
            "{argv:?} {env:?}: {msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }
    // A value that does not parse, from the file, under a flag that overrides it.
    let file = TempFile::new("listen = \"nowhere\"\n");
    let err = load_with(&["--config", &file.path(), "--listen", "127.0.0.1:0"], &[]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("config file {}", file.path())),
        "{msg}"
    );
    assert!(
        msg.contains("`listen` (SSE_LISTEN) has an invalid value \"nowhere\""),
        "{msg}"
    );
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
fn routes_are_built_and_checked_with_the_config() {
    let builtin = RouteTable::builtin().families.len();
    let file = TempFile::new(
        "cores = 2\n[[routes]]\nname = \"a\"\npath = \"/a\"\nchannel = \"a:{x}\"\n\
         channel_param = \"x\"\n",
    );
    let c = load_with(&["--config", &file.path()], &[]).unwrap();
    assert_eq!(c.routes.families.len(), builtin + 1);
    assert_eq!(c.routes.families.last().unwrap().name, "a");
    assert_eq!(load_with(&[], &[]).unwrap().routes.families.len(), builtin);

    let bad =
        TempFile::new("[[routes]]\nname = \"orders\"\npath = \"/o\"\nchannel = \"o:{shop}\"\n");
    let err = load_with(&["--config", &bad.path()], &[]).unwrap_err();
    assert_eq!(setting_of(&err), "SSE_CONFIG");
    let msg = err.to_string();
    let head = format!(
        "config file {} (SSE_CONFIG / --config): [[routes]]: route \"orders\": ",
        bad.path()
    );
    assert!(msg.starts_with(&head), "{msg}");
    assert!(msg.contains("{shop}"), "{msg}");
    let bad = TempFile::new("routes = 5");
    let err = load_with(&["--config", &bad.path()], &[]).unwrap_err();
    assert!(err.to_string().contains("array of tables"), "{err}");
}

#[test]
fn too_many_route_families_fail_validation() {
    let mut routes = RouteTable::builtin();
    let spare = crate::stats::ROUTE_SLOTS - routes.families.len();
    let rows: String = (0..=spare)
        .map(|i| {
            format!(
                "[[routes]]\nname = \"r{i}\"\npath = \"/r{i}\"\nchannel = \"r{i}:{{x}}\"\n\
                 channel_param = \"x\"\n"
            )
        })
        .collect();
    let file = TempFile::new(&rows);
    let err = load_with(&["--config", &file.path()], &[]).unwrap_err();
    assert_eq!(setting_of(&err), "SSE_CONFIG");
    let msg = err.to_string();
    assert!(msg.contains("at most 16 route families"), "{msg}");
    assert!(msg.contains(&file.path()), "{msg}");
    assert!(msg.contains("17 route families"), "{msg}");
    // The same rule holds for a hand-built config.
    routes.families.truncate(1);
    let one = routes.families[0].clone();
    routes.families.resize(crate::stats::ROUTE_SLOTS + 1, one);
    let config = Config {
        routes,
        ..Config::default()
    };
    assert_eq!(setting_of(&config.validate().unwrap_err()), "SSE_CONFIG");
}

#[test]
fn command_line_errors() {
    // Each message names the flag, or the position of a stray argument (never its text, which
    // may be a secret), and points to --help.
    let cases: &[(&[&str], &[&str])] = &[
        (&["--nope"], &["unexpected argument '--nope'"]),
        (&["--nope=secret"], &["unexpected argument '--nope'"]),
        (&["-x"], &["unexpected argument '-x'"]),
        (
            &["--cores", "2", "stray"],
            &["unexpected argument 3", "--name=value"],
        ),
        (&["--cores=2", "stray"], &["argument 2"]),
        (&["--auth-secret", "s", "s"], &["argument 3"]),
        (&["--check-config", "x"], &["argument 2"]),
        (&["--", "x"], &["argument 2"]),
        (&["--cores"], &["a value is required for '--cores <N>'"]),
        (
            &["--cores", "--listen", "1.2.3.4:5"],
            &["value is required for '--cores <N>'"],
        ),
        (&["--config="], &["value is required for '--config <PATH>'"]),
        (&["--check-config=yes"], &["'--check-config'"]),
    ];
    for (argv, wants) in cases {
        let err = load_with(argv, &[]).unwrap_err();
        assert!(
            matches!(err, ConfigError::CommandLine(_)),
            "{argv:?}: {err:?}"
        );
        let msg = err.to_string();
        for want in *wants {
            assert!(msg.contains(want), "{argv:?}: {msg}");
        }
        assert!(
            msg.ends_with("; run with --help to list the settings"),
            "{msg}"
        );
        assert!(!msg.contains("secret") && !msg.contains("stray"), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
    }
    let help: &[&[&str]] = &[
        &["-h"],
        &["--cores", "2", "--help"],
        &["--nope", "--help"],
        &["x", "-h"],
    ];
    for argv in help {
        assert_eq!(
            load_with(argv, &[]).unwrap_err(),
            ConfigError::Help,
            "{argv:?}"
        );
    }
}

#[test]
fn flag_value_may_start_with_dash_in_joined_form() {
    let c = load_with(&["--auth-secret=--x"], &[]).unwrap();
    assert_eq!(c.auth_secret.unwrap().expose(), "--x");
    let c = load_with(&["--auth-secret=-x"], &[]).unwrap();
    assert_eq!(c.auth_secret.unwrap().expose(), "-x");
    let c = load_with(&[], &[("SSE_AUTH_SECRET", "--x")]).unwrap();
    assert_eq!(c.auth_secret.unwrap().expose(), "--x");
}

#[test]
fn check_config_flag() {
    assert!(!load_with(&[], &[]).unwrap().check_config);
    let c = load_with(
        &["--check-config", "--cores=2", "--listen=127.0.0.1:9"],
        &[],
    )
    .unwrap();
    assert!(c.check_config);
    let families = c.routes.families.len();
    assert_eq!(
        c.summary(),
        format!("listen 127.0.0.1:9, 2 cores, {families} route families")
    );
    let c = load_with(&["--cores=1"], &[]).unwrap();
    assert!(c.summary().contains(", 1 core,"), "{}", c.summary());
    // It is a flag only: the environment does not turn it on.
    let c = load_with(&[], &[("SSE_CHECK_CONFIG", "1")]).unwrap();
    assert!(!c.check_config);
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
fn cors_origins_from_settings() {
    let cases: &[(&str, CorsOrigins)] = &[
        (" * ", CorsOrigins::Any),
        (" , ", CorsOrigins::None),
        (
            "https://a.example,,",
            CorsOrigins::List(vec!["https://a.example".into()]),
        ),
    ];
    for (text, want) in cases {
        let c = load_with(&[], &[("SSE_CORS_ORIGINS", text)]).unwrap();
        assert_eq!(&c.cors_origins, want, "{text:?}");
    }
}

#[test]
fn debug_output_hides_every_secret() {
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
                drain_period: Duration::from_secs(86_401),
                ..Config::default()
            },
            "SSE_DRAIN_PERIOD",
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
                publish_token: Some(Secret::new("t\n")),
                ..Config::default()
            },
            "SSE_PUBLISH_TOKEN",
        ),
        (
            Config {
                jwt_leeway: Duration::from_secs(301),
                ..Config::default()
            },
            "SSE_JWT_LEEWAY",
        ),
        (
            Config {
                admin_listen: Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
                ..Config::default()
            },
            "SSE_ADMIN_LISTEN",
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
                    seeds: vec![Seed::new("", 1)],
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
    let err = Config {
        head_timeout: Duration::from_millis(1500),
        drain_period: Duration::from_secs(90_000),
        ..Config::default()
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("\"90000s\""), "{err}");
}

#[test]
fn settings_follow_the_naming_rule_and_defaults() {
    for (env, flag, _) in rows() {
        let want = env
            .trim_start_matches("SSE_")
            .to_lowercase()
            .replace('_', "-");
        assert_eq!(flag, want, "{env}");
    }
    // The defaults are the fields' clap defaults, which --help shows.
    let c = Config::default();
    assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
    assert_eq!(c.cores, default_cores());
    let counts = (c.connection_limit, c.event_buffer, c.history);
    assert_eq!(counts, (50_000, 50, 64));
    assert_eq!(c.drain_period, Duration::from_secs(10));
    assert_eq!(c.head_timeout, Duration::from_secs(10));
    assert_eq!(c.io_driver, IoDriverChoice::Auto);
    assert_eq!(c.cors_origins, CorsOrigins::None);
    assert!(c.events_redis_storage.is_none() && c.keepalive_period.is_none());
    assert!(c.auth_secret.is_none() && c.publish_token.is_none() && c.api_keys.is_empty());
    assert!(c.config_file.is_none() && !c.check_config);
    assert_eq!(
        c.routes.families.len(),
        RouteTable::builtin().families.len()
    );
    let usage = Config::usage();
    let shown = [
        "[default: 0.0.0.0:8080]",
        "[default: 50000]",
        "[default: 10s]",
        "[default: auto]",
    ];
    for shown in shown {
        assert!(usage.contains(shown), "{shown}: {usage}");
    }
}

#[test]
fn usage_lists_every_setting() {
    let usage = Config::usage();
    assert!(usage.contains("--help"));
    assert!(usage.contains("--check-config"));
    for (env, flag, help) in rows() {
        assert!(usage.contains(&format!("--{flag} <")), "{flag}");
        assert!(usage.contains(&format!("[env: {env}]")), "{env}");
        assert!(usage.contains(&help), "{env}");
    }
}

#[test]
fn error_is_a_std_error() {
    let err: Box<dyn std::error::Error> = Box::new(ConfigError::Help);
    assert!(!err.to_string().is_empty());
    let err = error::invalid("SSE_AUTH_SECRET", REDACTED, "is not valid UTF-8");
    assert_eq!(
        err.to_string(),
        "SSE_AUTH_SECRET (flag --auth-secret, file key `auth_secret`) has an invalid value \
         ([redacted]): is not valid UTF-8"
    );
}

#[test]
fn publish_beyond_loopback_without_a_token_is_warned_about() {
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let token = Some(Secret::new("t"));
    #[rustfmt::skip]
    let cases: &[(&str, Option<&str>, bool, Option<&str>)] = &[
        ("0.0.0.0:8080", None, false, Some("0.0.0.0:8080 (SSE_LISTEN)")),
        ("[::]:8080", None, false, Some("[::]:8080 (SSE_LISTEN)")),
        ("10.1.2.3:8080", None, false, Some("10.1.2.3:8080 (SSE_LISTEN)")),
        ("0.0.0.0:8080", None, true, None),
        ("127.0.0.1:8080", None, false, None),
        ("[::1]:8080", None, false, None),
        ("[::ffff:127.0.0.1]:8080", None, false, None),
        // With an admin listener, publish is there: that address is what counts.
        ("0.0.0.0:8080", Some("127.0.0.1:9090"), false, None),
        ("127.0.0.1:8080", Some("0.0.0.0:9090"), false, Some("0.0.0.0:9090 (SSE_ADMIN_LISTEN)")),
        ("127.0.0.1:8080", Some("0.0.0.0:9090"), true, None),
    ];
    for (listen, admin, with_token, want) in cases {
        let c = Config {
            listen: addr(listen),
            admin_listen: admin.map(addr),
            publish_token: if *with_token { token.clone() } else { None },
            ..Config::default()
        };
        let got = c.exposure_warning();
        match want {
            None => assert_eq!(got, None, "{listen} {admin:?}"),
            Some(w) => {
                let got = got.unwrap_or_default();
                assert!(got.contains(w), "{listen} {admin:?}: {got}");
                assert!(got.contains("SSE_PUBLISH_TOKEN"), "{got}");
            }
        }
    }
}

/// The start-up line that says which families are off names them and the setting each needs.
#[test]
fn families_off_name_the_setting_they_need() {
    let off = load_with(&[], &[]).unwrap().families_off().unwrap();
    assert_eq!(
        off,
        "streams off, answering 401: player, jackpot_user (SSE_AUTH_SECRET unset); \
         game_type, game (SSE_API_KEYS unset)"
    );
    let keys = load_with(&[], &[("SSE_API_KEYS", "k")]).unwrap();
    let off = keys.families_off().unwrap();
    assert_eq!(
        off,
        "streams off, answering 401: player, jackpot_user (SSE_AUTH_SECRET unset)"
    );
    let all = load_with(&["--api-keys", "k", "--auth-secret", "s"], &[]).unwrap();
    assert_eq!(all.families_off(), None);
}
