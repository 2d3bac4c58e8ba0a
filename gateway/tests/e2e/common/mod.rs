//! Test support: a real gateway process on a free loopback port, raw HTTP over real sockets,
//! and a small SSE reader. Every wait is bounded, and every process started here is killed by
//! PID when its handle drops.
#![allow(dead_code)]

pub mod cluster;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The secret every test gateway signs player tokens with.
pub const SECRET: &str = "test-secret-0123456789";

/// A gateway process started for one test.
pub struct Gateway {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Everything it logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts the gateway binary on 127.0.0.1:0 with 2 cores, a 1 s keep-alive and the test
    /// secret, plus `env` overrides; waits (at most 20 s) for its start-up line.
    pub fn start(env: &[(&str, &str)]) -> Gateway {
        Gateway::start_under(env, None)
    }

    /// As [`Gateway::start`], under an open-file limit (soft and hard) of `nofile` when given.
    pub fn start_under(env: &[(&str, &str)], nofile: Option<u64>) -> Gateway {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        if let Some(nofile) = nofile {
            limit_nofile(&mut cmd, nofile);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SSE_LISTEN", "127.0.0.1:0")
            .env("SSE_CORES", "2")
            .env("SSE_AUTH_SECRET", SECRET)
            .env("SSE_KEEPALIVE_PERIOD", "1s")
            .env("SSE_DRAIN_PERIOD", "1s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn gateway");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                let mut rd = BufReader::new(stderr);
                let mut raw = Vec::new();
                while matches!(rd.read_until(b'\n', &mut raw), Ok(n) if n > 0) {
                    let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                    raw.clear();
                    let addr = line
                        .contains("gateway started")
                        .then(|| field(&line, "listen="))
                        .flatten();
                    log.lock().unwrap().push(line);
                    // Only the start-up line hands the sender over: lines logged before it
                    // (a core's Redis subscription) must not use it up.
                    if let Some(addr) = addr {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("listen address"),
            Err(e) => {
                let exited = child.try_wait();
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gateway did not start ({e:?}; exit status {exited:?}): {:?}",
                    log.lock().unwrap()
                );
            }
        };
        Gateway { child, addr, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident memory in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }

    /// Sends a signal to the gateway.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child this handle owns.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        wait_child(&mut self.child, within)
    }

    /// The admin listener's address (`SSE_ADMIN_LISTEN`), from the start-up line.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        let log = self.log.lock().unwrap();
        let line = log.iter().find(|l| l.contains("gateway started"))?;
        field(line, "admin_listen=")?.parse().ok()
    }

    /// The log so far, joined.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `GET path` and the parsed response.
    pub fn get(&self, path: &str) -> Response {
        request(
            self.addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }

    /// Publishes `data` (raw JSON) on `channel` through the HTTP API.
    pub fn publish(&self, channel: &str, data: &str) -> Response {
        let body = format!("{{\"channel\":\"{channel}\",\"data\":{data}}}");
        request(
            self.addr,
            format!(
                "POST /api/v1/publish HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &str) -> Response {
        request(
            self.addr,
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    }

    /// Reads one number from the stats JSON, by a dotted path like `events.delivered`.
    pub fn stat(&self, path: &str) -> i64 {
        let r = self.get("/api/v1/events/stats");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("stats JSON");
        let mut cur = &v;
        for k in path.split('.') {
            cur = &cur[k];
        }
        cur.as_i64()
            .unwrap_or_else(|| panic!("stat {path} missing in {v}"))
    }

    /// Open streams per core, from the stats.
    pub fn per_core(&self) -> Vec<i64> {
        let r = self.get("/api/v1/events/stats");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("stats JSON");
        let cores = v["connections"]["per_core"].as_array().expect("per_core");
        cores.iter().map(|n| n.as_i64().unwrap_or(-1)).collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) for `child` to exit; returns its exit code.
pub fn wait_child(child: &mut Child, within: Duration) -> Option<i32> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The value after `key` (such as `listen=`) in a log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    let i = line.find(key)? + key.len();
    Some(
        line[i..]
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_string(),
    )
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Raw head.
    pub head: String,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The `error` message of a JSON error body.
    pub fn error(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", self.text()));
        v["error"].as_str().expect("error field").to_string()
    }
}

/// Sends raw bytes and reads the response until the peer closes (at most 10 s).
pub fn request(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).expect("write");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    parse_response(&all)
        .unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&all)))
}

/// Parses one response (head + Content-Length body, or everything after the head).
pub fn parse_response(all: &[u8]) -> Option<Response> {
    let end = all.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut r = Response {
        status,
        head,
        body: Vec::new(),
    };
    let rest = &all[end + 4..];
    r.body = match r
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(n) => rest[..n.min(rest.len())].to_vec(),
        None => rest.to_vec(),
    };
    Some(r)
}

/// Mints a player token valid for an hour.
pub fn player_token(brand: i64, player: i64) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    gateway::auth::jwt::sign_hs256(
        &format!("{{\"brand_id\":{brand},\"player_id\":{player},\"exp\":{exp}}}"),
        SECRET.as_bytes(),
    )
}

/// A token (signed with [`SECRET`], valid 10 minutes) whose `channels` claim lists `channels`
/// (seed 003's private channels).
pub fn channel_token(channels: &[&str]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let list: Vec<String> = channels.iter().map(|c| format!("\"{c}\"")).collect();
    gateway::auth::jwt::sign_hs256(
        &format!("{{\"channels\":[{}],\"exp\":{exp}}}", list.join(",")),
        SECRET.as_bytes(),
    )
}

/// A player event payload as seed 000 describes it.
pub fn player_event(brand: i64, player: i64, n: u64) -> String {
    format!("{{\"brand_id\":{brand},\"player_id\":{player},\"event_type\":\"notification\",\"event_data\":{{\"n\":{n}}}}}")
}

/// One SSE event as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `event:` (empty for unnamed).
    pub event: String,
    /// `id:` of this event.
    pub id: String,
    /// Data lines joined with `\n`.
    pub data: String,
}

/// A raw SSE connection over a real socket with a minimal spec-following reader.
pub struct Sse {
    /// The socket.
    pub stream: TcpStream,
    /// The response head.
    pub head: String,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
    /// Every byte of the body received so far, for byte-exact assertions.
    pub raw: Vec<u8>,
    /// Comments seen.
    pub comments: Vec<String>,
    /// `retry:` values seen.
    pub retries: Vec<u64>,
}

impl Sse {
    /// Opens `GET path` with extra header lines (each ending in `\r\n`).
    pub fn open(addr: SocketAddr, path: &str, headers: &str) -> Sse {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{headers}\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let end = loop {
            if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break e;
            }
            let n = stream.read(&mut tmp).expect("read head");
            assert!(
                n > 0,
                "closed before head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let rest = buf[end + 4..].to_vec();
        Sse {
            stream,
            head,
            raw: rest.clone(),
            buf: rest,
            comments: Vec::new(),
            retries: Vec::new(),
        }
    }

    /// Opens a player stream for `brand`/`player` with a valid token.
    pub fn player(addr: SocketAddr, brand: i64, player: i64) -> Sse {
        let s = Sse::open(
            addr,
            &format!("/sse?token={}", player_token(brand, player)),
            "",
        );
        assert!(s.head.starts_with("HTTP/1.1 200"), "{}", s.head);
        s
    }

    /// Opens a private jackpot channel (`ws_user_<player>`) with a token listing it.
    pub fn private(addr: SocketAddr, channel: &str) -> Sse {
        let s = Sse::open(
            addr,
            &format!(
                "/subscribe?channel={channel}&token={}",
                channel_token(&[channel])
            ),
            "",
        );
        assert_eq!(s.status(), 200, "{}", s.head);
        s
    }

    /// The status code of the response head.
    pub fn status(&self) -> u16 {
        self.head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The next event, or `None` when the stream ends or `within` passes.
    pub fn next_event(&mut self, within: Duration) -> Option<Event> {
        let end = Instant::now() + within;
        loop {
            if let Some(ev) = self.parse_one() {
                return Some(ev);
            }
            let left = end.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut tmp = [0u8; 8192];
            match self.stream.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    self.raw.extend_from_slice(&tmp[..n]);
                }
            }
        }
    }

    /// The next event whose data is not a keep-alive.
    pub fn next_app_event(&mut self, within: Duration) -> Option<Event> {
        let end = Instant::now() + within;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let ev = self.next_event(left)?;
            if !ev.data.contains("\"type\":\"keepalive\"") {
                return Some(ev);
            }
        }
    }

    /// Whether the server closes the stream within `within` (reading and discarding).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        let mut tmp = [0u8; 8192];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut tmp) {
                Ok(0) => return true,
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    self.raw.extend_from_slice(&tmp[..n]);
                    // Record comments and retry values; the events themselves are discarded.
                    while self.parse_one().is_some() {}
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
        false
    }

    /// Parses one complete event block from the buffer (LF line endings, as the gateway
    /// writes them); comments and `retry:` are recorded, blocks without data skipped.
    fn parse_one(&mut self) -> Option<Event> {
        loop {
            let end = self.buf.windows(2).position(|w| w == b"\n\n")?;
            let block: Vec<u8> = self.buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block[..end]).into_owned();
            let mut ev = Event {
                event: String::new(),
                id: String::new(),
                data: String::new(),
            };
            let mut has_data = false;
            for line in text.split('\n') {
                if let Some(c) = line.strip_prefix(':') {
                    self.comments.push(c.trim_start().to_string());
                    continue;
                }
                let (k, v) = line.split_once(':').unwrap_or((line, ""));
                let v = v.strip_prefix(' ').unwrap_or(v);
                match k {
                    "data" => {
                        if has_data {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(v);
                        has_data = true;
                    }
                    "id" => ev.id = v.to_string(),
                    "event" => ev.event = v.to_string(),
                    "retry" => self.retries.push(v.parse().unwrap_or(0)),
                    _ => {}
                }
            }
            if has_data {
                return Some(ev);
            }
        }
    }
}

/// Whether a Redis server answers `PING` on `port` (`+PONG`, or an error such as `-NOAUTH`).
/// A bare connect is not proof: a connect to a port in the ephemeral range nobody listens on
/// can pick that same port as its source and connect to itself, and would read its own
/// `PING` back.
pub fn redis_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut b = [0u8; 1];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut b)
            .is_ok_and(|k| k == 1 && (b[0] == b'+' || b[0] == b'-'))
}

/// A loopback port that was free a moment ago (bound, then released for a server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits until `f` holds, polling every 20 ms, at most `within`.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A real `redis-server` on a free loopback port (installed by `scripts/install-deps`),
/// killed by PID when dropped. It can be killed (`kill -9`) and started again on the same
/// port, as an operator's restart would.
pub struct Redis {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// Extra `redis-server` arguments (kept for restarts).
    args: Vec<String>,
}

impl Redis {
    /// Starts a server with `args` added (`--requirepass x`, ...); waits until it answers.
    ///
    /// A free port can be taken between choosing it and the server binding it (loopback
    /// clients of parallel tests draw their source ports from the same range): a server that
    /// exits at start is started again on another port.
    pub fn start(args: &[&str]) -> Redis {
        let mut r = Redis {
            child: None,
            port: 0,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..5 {
            r.port = free_port();
            if r.try_start() {
                return r;
            }
        }
        panic!("redis-server did not start on five free ports");
    }

    /// `redis://127.0.0.1:<port>` with `auth@` and `/db` as given.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits (at most 10 s) until it answers.
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server did not start on port {}",
            self.port
        );
    }

    /// Starts the server on `self.port`; whether it answered `PING` within 10 s. A server
    /// that exited (its port was taken) is reaped and `false` returned.
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by scripts/install-deps)");
        self.child = Some(child);
        let ok = eventually(Duration::from_secs(10), || {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
            exited || redis_answers(self.port)
        });
        if ok && redis_answers(self.port) {
            return true;
        }
        self.kill9();
        false
    }

    /// `kill -9`: no goodbye to its clients.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to the server (SIGSTOP: a peer that stops answering without a reset).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on the PID of a child this handle owns.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Runs `redis-cli` with `input` on its stdin (`-x`: the last argument, for payloads
    /// too long for a command line); its stdout, trimmed.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> String {
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Subscribers of `channel` as `PUBSUB <count> channel` reports them (`NUMSUB` for
    /// classic subscribers, `SHARDNUMSUB` for sharded ones); -1 when the answer is not one.
    pub fn subscribers(&self, count: &str, channel: &str) -> i64 {
        let out = self.cli(&["PUBSUB", count, channel]);
        out.lines()
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(-1)
    }

    /// Runs `redis-cli` against it; its stdout, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill9();
    }
}

/// `/readyz`'s status: 200 once every core is subscribed (with Redis).
pub fn ready(gw: &Gateway) -> u16 {
    gw.get("/readyz").status
}

/// The next event of a player stream, skipping its greeting and keep-alives (5 s at most).
pub fn next_player_event(s: &mut Sse) -> Option<Event> {
    loop {
        let ev = s.next_app_event(Duration::from_secs(5))?;
        if !ev.data.contains("\"type\":\"connected\"") {
            return Some(ev);
        }
    }
}

/// Makes `cmd`'s process start under an open-file limit (soft and hard) of `nofile`.
pub fn limit_nofile(cmd: &mut Command, nofile: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit(2) is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
