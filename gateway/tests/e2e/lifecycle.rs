//! Process lifecycle: SIGTERM drain, start-up errors, the epoll fallback, and the server as a
//! library (`start_on` with listeners the caller bound, and its start-up handshake). Tests
//! here signal the gateway process, so they live in their own file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use gateway::config::Config;
use gateway::error::StartError;
use gateway::server::start::{bind, start_on};

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn sigterm_sends_jittered_retry_closes_streams_and_exits_0() {
    let mut gw = Gateway::start(&[("SSE_DRAIN_PERIOD", "1s")]);
    let mut streams: Vec<Sse> = (1..=4).map(|p| Sse::player(gw.addr, 1, p)).collect();
    for s in streams.iter_mut() {
        s.next_event(5 * SEC).expect("connected");
    }
    assert!(eventually(5 * SEC, || gw.stat("connections.total") == 4));
    gw.signal(libc::SIGTERM);
    for s in streams.iter_mut() {
        assert!(s.closed_within(8 * SEC), "stream closed by the drain");
        assert_eq!(
            s.retries.len(),
            2,
            "the opening retry and the drain's: {:?}",
            String::from_utf8_lossy(&s.raw)
        );
        assert!(
            (1000..=5000).contains(&s.retries[1]),
            "jittered {}",
            s.retries[1]
        );
    }
    assert_eq!(gw.wait_exit(10 * SEC), Some(0), "exit 0 after draining");
    assert!(gw.log_text().contains("draining"));
}

#[test]
fn a_bad_setting_stops_start_up_naming_it() {
    let cases: &[(&str, &str, &str)] = &[
        ("SSE_CORES", "many", "SSE_CORES"),
        ("SSE_CONNECTION_LIMIT", "0", "SSE_CONNECTION_LIMIT"),
        ("SSE_KEEPALIVE_PERIOD", "soon", "SSE_KEEPALIVE_PERIOD"),
        ("SSE_LISTEN", "nowhere", "SSE_LISTEN"),
    ];
    for (k, v, named) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .env_clear()
            .env(k, v)
            .output()
            .expect("run gateway");
        assert_eq!(out.status.code(), Some(2), "{k}={v}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{k}={v}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SSE_CONNECTION_LIMIT"));
}

#[test]
fn check_config_validates_settings_file_and_routes_then_exits() {
    let write = |name: &str, text: &str| {
        let path = std::env::temp_dir().join(format!("gw-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = write(
        "good.toml",
        "listen = \"127.0.0.1:0\"\ncores = 2\n\n[[routes]]\nname = \"orders\"\n\
         path = \"/shops/{shop}/orders\"\nchannel = \"orders:{shop}\"\n",
    );
    let bad_setting = write("bad-setting.toml", "connection_limit = 0\n");
    let bad_route = write(
        "bad-route.toml",
        "[[routes]]\nname = \"orders\"\npath = \"/o\"\nchannel = \"orders:{shop}\"\n",
    );
    let check = |file: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .env_clear()
            .env("SSE_CONFIG", file)
            .arg("--check-config")
            .output()
            .expect("run gateway");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, stdout, stderr) = check(&good);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "config OK: listen 127.0.0.1:0, 2 cores, 7 route families\n"
    );
    let (code, stdout, stderr) = check(&bad_setting);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    // The value is the file's: the message names the file and its key.
    let head = format!("error: config file {}", bad_setting.display());
    assert!(stderr.starts_with(&head), "{stderr}");
    assert!(
        stderr.contains("`connection_limit` (SSE_CONNECTION_LIMIT) has an invalid value \"0\""),
        "{stderr}"
    );
    let (code, _, stderr) = check(&bad_route);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("SSE_CONFIG") && stderr.contains("route \"orders\""),
        "{stderr}"
    );
    for file in [good, bad_setting, bad_route] {
        let _ = std::fs::remove_file(file);
    }
}

#[test]
fn flags_override_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .env("SSE_CORES", "1")
        .args(["--cores", "zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SSE_CORES"));
}

#[test]
fn forced_epoll_driver_serves_streams_and_says_so() {
    let gw = Gateway::start(&[("SSE_IO_DRIVER", "epoll")]);
    assert!(gw.log_text().contains("driver=epoll"), "{}", gw.log_text());
    let r = gw.get("/api/v1/events/stats");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["driver"], "epoll");
    // Players on both cores, so handoffs between epoll runtimes are exercised too.
    let mut streams: Vec<(i64, Sse)> = (1..=6).map(|p| (p, Sse::player(gw.addr, 2, p))).collect();
    for (_, s) in streams.iter_mut() {
        s.next_event(5 * SEC).unwrap();
    }
    for (p, _) in streams.iter() {
        assert_eq!(
            gw.publish(&format!("SSE::2::{p}"), &player_event(2, *p, 1))
                .status,
            202
        );
    }
    for (p, s) in streams.iter_mut() {
        assert_eq!(
            s.next_app_event(5 * SEC).unwrap().data,
            player_event(2, *p, 1)
        );
    }
}

#[test]
fn default_driver_is_named_in_the_start_up_line() {
    let gw = Gateway::start(&[]);
    let log = gw.log_text();
    let line = log.lines().find(|l| l.contains("gateway started")).unwrap();
    for f in [
        "listen=",
        "cores=2",
        "connection_limit=50000",
        "broker=embedded",
        "driver=",
    ] {
        assert!(line.contains(f), "{f} in {line}");
    }
    assert!(line.contains("driver=io_uring") || line.contains("driver=epoll"));
}

#[test]
fn a_second_gateway_on_a_served_port_refuses_to_start() {
    let gw = Gateway::start(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .env("SSE_LISTEN", gw.addr.to_string())
        .env("SSE_CORES", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SSE_LISTEN") && err.contains(&gw.addr.to_string()),
        "{err}"
    );
}

#[test]
fn an_unreachable_redis_starts_not_ready_with_the_password_redacted() {
    // A port nothing listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://user:hunter2@127.0.0.1:{port}/0");
    let gw = Gateway::start(&[("EVENTS_REDIS_STORAGE", url.as_str())]);
    let r = gw.get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        eventually(Duration::from_secs(5), || gw
            .log_text()
            .contains("cannot subscribe on Redis")),
        "{}",
        gw.log_text()
    );
    let log = gw.log_text();
    assert!(
        log.contains(&format!(
            "broker=redis://user:[redacted]@127.0.0.1:{port}/0"
        )),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "password redacted: {log}");
}

/// How one start of the binary under an open-file limit ended.
#[derive(Debug)]
enum Outcome {
    /// It logged "gateway started" (and was killed).
    Started,
    /// It exited with this code and stderr.
    Exited(Option<i32>, String),
}

/// Runs the gateway with `SSE_CORES=4` under an open-file limit of `nofile`, bounded to 20 s.
fn start_with_nofile_limit(nofile: u64) -> Outcome {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.env_clear()
        .env("SSE_LISTEN", "127.0.0.1:0")
        .env("SSE_CORES", "4")
        .env("SSE_IO_DRIVER", "io_uring")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    limit_nofile(&mut cmd, nofile);
    let mut child = cmd.spawn().expect("spawn gateway");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + 20 * SEC;
    let mut log = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if line.contains("gateway started") {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Outcome::Started;
                }
                log.push_str(&line);
                log.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("neither started nor exited within 20 s: {log}");
                }
            }
            // stderr closed: the process is exiting.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("wait");
                return Outcome::Exited(status.code(), log);
            }
        }
    }
}

#[test]
fn a_core_that_cannot_start_stops_the_process_before_started() {
    // Under a tight open-file limit the four listeners still bind, but a core's io_uring
    // ring (a descriptor of its own) cannot be created: start-up must fail with that core's
    // error, exit non-zero, and never say "gateway started". The exact limit depends on what
    // the process opens first, so walk up until the gateway starts.
    let mut core_failures = 0;
    for nofile in 4..64 {
        match start_with_nofile_limit(nofile) {
            Outcome::Started => {
                assert!(
                    core_failures > 0,
                    "started at a limit of {nofile} without a core failing below it"
                );
                return;
            }
            Outcome::Exited(code, log) => {
                assert!(!log.contains("gateway started"), "limit {nofile}: {log}");
                assert_ne!(code, Some(0), "limit {nofile}: {log}");
                if log.contains("core ") && log.contains("cannot build the I/O runtime") {
                    assert_eq!(code, Some(1), "limit {nofile}: {log}");
                    assert_eq!(
                        log.matches("error: ").count(),
                        1,
                        "limit {nofile}: the error printed once: {log}"
                    );
                    core_failures += 1;
                }
            }
        }
    }
    panic!("the gateway never started, even with 63 open files");
}

fn healthz_on(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn start_on_serves_on_the_given_listeners_and_stops_on_drain() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listeners = bind(addr, 2).expect("bind");
    let running = start_on(listeners, Config::default()).expect("start");
    let addr = running.local_addr();
    assert_ne!(addr.port(), 0);
    let answer = healthz_on(addr);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(running.node().drain(Duration::ZERO));
    running.wait();
}

#[test]
fn a_listener_that_is_not_listening_fails_the_start_naming_its_core() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut listeners = bind(addr, 1).expect("bind");
    // Bound, never listening: no core can accept on it.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&addr.into()).unwrap();
    listeners.push(socket.into());
    let err = match start_on(listeners, Config::default()) {
        Ok(running) => {
            running.node().drain(Duration::ZERO);
            running.wait();
            panic!("started on a socket that does not listen");
        }
        Err(e) => e,
    };
    assert!(
        matches!(err, StartError::Listener { core: 1, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("core 1") && msg.contains("not listening"),
        "{msg}"
    );
}
