//! A real browser (Debian's headless chromium, driven by `tests-js/browser.js`) runs a player
//! page from another origin whose native `EventSource` reads the gateway's player stream. The
//! stream is cut by a TCP proxy in the test; the browser's own reconnect (after the gateway's
//! `retry:`) is what brings it back, and events published after that arrive.
//!
//! Needs `node`, `/usr/bin/chromium` and `tests-js/node_modules/playwright-core`: run
//! `scripts/install-deps`. Without them the test fails; it never skips.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Most connections a [`Proxy`] ever accepts; later ones are closed at once. A test's pages
/// open a handful of streams and reconnect a few times: this bounds the proxy's threads and
/// sockets if a page reconnects in a loop.
const PROXY_MAX_CONNECTIONS: usize = 256;

/// How long a connection accepted while a [`Proxy`] is cut waits to be re-pointed before it
/// is closed.
const PROXY_HOLD: Duration = Duration::from_secs(30);

/// A loopback TCP proxy, as a load balancer in front of the gateway: the test can sever its
/// live connections, and *cut* it (sever, and hold new connections) and re-point it at another
/// node, which lets the held ones through. It keeps the request head of every connection the
/// browser made through it. Bounded: [`PROXY_MAX_CONNECTIONS`] connections in all, three
/// threads each (the hand-over and one per direction).
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    /// Where new connections go; `None` while cut (they wait, at most [`PROXY_HOLD`]).
    upstream: Arc<(Mutex<Option<SocketAddr>>, Condvar)>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub(crate) fn start(upstream: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let up = Arc::new((Mutex::new(Some(upstream)), Condvar::new()));
        let live = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (up2, live2, heads2) = (up.clone(), live.clone(), heads.clone());
        std::thread::spawn(move || {
            for c in l.incoming().take(PROXY_MAX_CONNECTIONS) {
                let Ok(c) = c else { return };
                let Ok(c2) = c.try_clone() else { continue };
                // Registered before it waits: a cut closes held connections too.
                live2.lock().unwrap().push(c2);
                let (up, live, heads) = (up2.clone(), live2.clone(), heads2.clone());
                std::thread::spawn(move || Proxy::forward(c, &up, &live, heads));
            }
        });
        Proxy {
            addr,
            upstream: up,
            live,
            heads,
        }
    }

    /// Connects `c` to the upstream (waiting while cut) and copies bytes both ways.
    fn forward(
        c: TcpStream,
        up: &(Mutex<Option<SocketAddr>>, Condvar),
        live: &Mutex<Vec<TcpStream>>,
        heads: Arc<Mutex<Vec<String>>>,
    ) {
        let target = {
            let (lock, cv) = up;
            let guard = lock.lock().unwrap();
            let (guard, _) = cv
                .wait_timeout_while(guard, PROXY_HOLD, |t| t.is_none())
                .unwrap();
            *guard
        };
        let Some(u) = target.and_then(|t| TcpStream::connect(t).ok()) else {
            let _ = c.shutdown(Shutdown::Both);
            return;
        };
        let (Ok(c2), Ok(u2), Ok(u3)) = (c.try_clone(), u.try_clone(), u.try_clone()) else {
            return;
        };
        live.lock().unwrap().push(u3);
        for (mut a, mut b, heads) in [(c, u, Some(heads)), (u2, c2, None)] {
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 16384];
                while let Ok(n) = a.read(&mut buf) {
                    if n == 0 || b.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if let Some(h) = &heads {
                        if head.len() < 16384 && !head.ends_with(b"\r\n\r\n") {
                            head.extend_from_slice(&buf[..n]);
                            if let Some(e) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                                head.truncate(e + 4);
                                h.lock()
                                    .unwrap()
                                    .push(String::from_utf8_lossy(&head).into_owned());
                            }
                        }
                    }
                }
                let _ = b.shutdown(Shutdown::Both);
            });
        }
    }

    /// Cuts every connection made so far, both ways; new ones are still accepted.
    pub(crate) fn sever(&self) {
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Severs every connection and holds new ones until [`Proxy::repoint`]: a balancer
    /// that lost its backend, which a browser sees as a dropped stream whose reconnect hangs.
    pub(crate) fn cut(&self) {
        *self.upstream.0.lock().unwrap() = None;
        self.sever();
    }

    /// Sends new connections, and those held by a cut, to `upstream`.
    pub(crate) fn repoint(&self, upstream: SocketAddr) {
        *self.upstream.0.lock().unwrap() = Some(upstream);
        self.upstream.1.notify_all();
    }

    /// The request heads seen so far, in order.
    pub(crate) fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// The value of header `name` in a raw request head.
pub(crate) fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn tests_js() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests-js")
}

/// Fails (never skips) when what the browser tests need is not installed.
fn require_browser_tools() {
    let fix =
        "run scripts/install-deps (installs Debian's chromium, node and tests-js/node_modules)";
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(node, Ok(s) if s.success()),
        "node is missing: {fix}"
    );
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: {fix}");
    assert!(
        tests_js().join("node_modules/playwright-core").is_dir(),
        "tests-js/node_modules/playwright-core is missing: {fix}"
    );
}

/// One run of `tests-js/browser.js`: the page's JSON lines as they arrive. Dropping it ends
/// the run: stdin is closed (the harness then closes chromium and exits), and whatever is
/// still alive after a bounded wait is killed by PID.
pub(crate) struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Browser {
    fn start(page: &str, params: &[(&str, &str)], timeout: Duration) -> Browser {
        let mut args = vec![
            "--page".to_string(),
            tests_js().join("pages").join(page).display().to_string(),
        ];
        for (k, v) in params {
            args.extend(["--param".to_string(), format!("{k}={v}")]);
        }
        Browser::launch(&args, timeout)
    }

    /// Opens several pages of `tests-js/pages` in one browser (each in a context of its own,
    /// each line tagged with the page's index): one Chromium start for all of them.
    pub(crate) fn start_pages(pages: &[(&str, Vec<(&str, String)>)], timeout: Duration) -> Browser {
        let mut args = Vec::new();
        for (page, params) in pages {
            args.extend([
                "--page".to_string(),
                tests_js().join("pages").join(page).display().to_string(),
            ]);
            for (k, v) in params {
                args.extend(["--param".to_string(), format!("{k}={v}")]);
            }
        }
        Browser::launch(&args, timeout)
    }

    /// Opens `url` as it is (a page the gateway serves itself), with `init_script` (a file
    /// of `tests-js/pages`) added to it before its own scripts run.
    pub(crate) fn open_url(url: &str, init_script: &str, timeout: Duration) -> Browser {
        let script = tests_js().join("pages").join(init_script);
        let args = [
            "--url".to_string(),
            url.to_string(),
            "--init-script".to_string(),
            script.display().to_string(),
        ];
        Browser::launch(&args, timeout)
    }

    /// Runs `tests-js/browser.js` with `args`, reading its lines as they come.
    fn launch(args: &[String], timeout: Duration) -> Browser {
        require_browser_tools();
        let dir = tests_js();
        let mut cmd = Command::new("node");
        cmd.current_dir(&dir)
            .arg(dir.join("browser.js"))
            .args(args)
            .args(["--timeout-ms", &timeout.as_millis().to_string()])
            .arg("--exit-on-stdin-close");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node (installed by scripts/install-deps)");
        let stdin = child.stdin.take();
        let lines = Arc::new(Mutex::new(Vec::new()));
        {
            let lines = lines.clone();
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    match serde_json::from_str(&l) {
                        Ok(v) => lines.lock().unwrap().push(v),
                        Err(_) => eprintln!("browser.js (not JSON): {l}"),
                    }
                }
            });
        }
        Browser {
            child,
            stdin,
            lines,
        }
    }

    pub(crate) fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// The page's lines (without the harness's own).
    fn page_lines(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| !v["kind"].as_str().unwrap_or("").starts_with("harness."))
            .collect()
    }

    fn browser_pid(&self) -> Option<i32> {
        self.lines().iter().find_map(|v| {
            (v["kind"] == "harness.ready")
                .then(|| v["browserPid"].as_i64())
                .flatten()
                .map(|p| p as i32)
        })
    }

    /// All lines, one per row, for failure messages.
    pub(crate) fn dump(&self) -> String {
        self.lines()
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits (at most `within`) until `f` holds over the lines; gives up early when the page's
    /// EventSource is closed for good (`readyState` 2: it will not reconnect, e.g. a CORS
    /// refusal) or the harness has exited.
    pub(crate) fn wait_for(
        &mut self,
        within: Duration,
        mut f: impl FnMut(&[Value]) -> bool,
    ) -> bool {
        let end = Instant::now() + within;
        loop {
            let lines = self.lines();
            if f(&lines) {
                return true;
            }
            let dead = lines
                .iter()
                .any(|v| v["kind"] == "error" && v["readyState"] == 2)
                || matches!(self.child.try_wait(), Ok(Some(_)));
            if dead || Instant::now() >= end {
                // One last look: the reader thread may have been a line behind.
                std::thread::sleep(Duration::from_millis(100));
                return f(&self.lines());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends the run: closes stdin and waits (bounded) for the harness to close chromium and
    /// exit; returns its exit code.
    pub(crate) fn finish(&mut self, within: Duration) -> Option<i32> {
        drop(self.stdin.take());
        wait_child(&mut self.child, within)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.finish(Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The harness closes chromium on every way out, and playwright kills it when node
        // exits; this is the last resort, by the PID the harness reported (chromium leads its
        // own process group, which holds its helper processes).
        if let Some(pid) = self.browser_pid() {
            // SAFETY: kill(2) with signal 0 only checks; then SIGKILL to the process group
            // of the chromium this test started.
            unsafe {
                if libc::kill(pid, 0) == 0 {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
        }
    }
}

pub(crate) fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

/// The data of a `message` line, parsed as JSON (`Null` if it is not JSON).
pub(crate) fn message_json(v: &Value) -> Value {
    serde_json::from_str(v["data"].as_str().unwrap_or("")).unwrap_or(Value::Null)
}

fn is_system(v: &Value, ty: &str) -> bool {
    kind(v) == "message" && message_json(v)["type"] == ty
}

/// The data of every application event (not a system message) the page received, in order.
fn app_events(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|v| kind(v) == "message" && message_json(v).get("event_type").is_some())
        .map(|v| v["data"].as_str().unwrap_or("").to_string())
        .collect()
}

fn count(lines: &[Value], f: impl Fn(&Value) -> bool) -> usize {
    lines.iter().filter(|v| f(v)).count()
}

#[test]
fn browser_eventsource_receives_events_across_reconnects() {
    let (brand, player) = (7, 4242);
    let channel = format!("SSE::{brand}::{player}");
    let gw = Gateway::start(&[("SSE_CORS_ORIGINS", "*")]);
    let proxy = Proxy::start(gw.addr);
    let token = player_token(brand, player);
    let gateway = format!("http://{}", proxy.addr);
    let mut b = Browser::start(
        "player.html",
        &[("gateway", &gateway), ("token", &token)],
        Duration::from_secs(60),
    );
    let publish = |n: u64| {
        let r = gw.publish(&channel, &player_event(brand, player, n));
        assert!(r.status / 100 == 2, "publish {n}: {r:?}");
    };

    // The page, served from its own origin, opens the stream and is greeted.
    let opened = b.wait_for(Duration::from_secs(30), |l| {
        count(l, |v| is_system(v, "connected")) == 1
    });
    let page_origin = b
        .lines()
        .iter()
        .find(|v| v["kind"] == "harness.ready")
        .and_then(|v| v["origin"].as_str().map(str::to_string));
    assert!(
        opened,
        "the browser's EventSource did not open the stream and get the `connected` message \
         (a cross-origin load from {page_origin:?} to {gateway}; a CORS refusal shows as a \
         console error and `readyState` 2). Lines:\n{}\nGateway log:\n{}",
        b.dump(),
        gw.log_text()
    );
    let heads = proxy.heads();
    assert_eq!(
        header(&heads[0], "origin"),
        page_origin,
        "the page's request was cross-origin: {heads:?}"
    );
    assert!(
        header(&heads[0], "accept").is_some_and(|a| a.contains("text/event-stream")),
        "{heads:?}"
    );

    // Two events, delivered to onmessage with their data unchanged and an id each.
    publish(1);
    publish(2);
    let want2 = vec![
        player_event(brand, player, 1),
        player_event(brand, player, 2),
    ];
    assert!(
        b.wait_for(Duration::from_secs(10), |l| app_events(l) == want2),
        "the two events before the cut:\n{}",
        b.dump()
    );
    let before = b.page_lines();
    for v in before.iter().filter(|v| kind(v) == "message") {
        if message_json(v).get("event_type").is_some() {
            assert!(
                !v["id"].as_str().unwrap_or("").is_empty(),
                "events carry ids: {v}"
            );
        }
    }

    // Cut the stream. The browser notices (an error while CONNECTING, so it will retry) and
    // reconnects by itself, greeted again.
    let opens_before = count(&before, |v| kind(v) == "open");
    assert_eq!(opens_before, 1, "one open before the cut:\n{}", b.dump());
    proxy.sever();
    let reconnected = b.wait_for(Duration::from_secs(20), |l| {
        count(l, |v| kind(v) == "open") == 2 && count(l, |v| is_system(v, "connected")) == 2
    });
    assert!(
        reconnected,
        "the browser reconnected by itself after the cut:\n{}\nGateway log:\n{}",
        b.dump(),
        gw.log_text()
    );
    let after_cut = b.page_lines();
    let i_err = after_cut
        .iter()
        .position(|v| kind(v) == "error")
        .expect("an error event for the cut");
    assert_eq!(
        after_cut[i_err]["readyState"],
        0,
        "the cut left the EventSource CONNECTING (it retries), not CLOSED:\n{}",
        b.dump()
    );
    assert!(
        after_cut[..i_err]
            .iter()
            .filter(|v| kind(v) == "open")
            .count()
            == 1,
        "the error came after the first open and before the second:\n{}",
        b.dump()
    );
    // The reconnect is a new request through the proxy, resuming from the last id seen.
    let heads = proxy.heads();
    assert_eq!(heads.len(), 2, "exactly one reconnect: {heads:?}");
    let last_id = after_cut[..i_err]
        .iter()
        .rev()
        .find(|v| kind(v) == "message")
        .and_then(|v| v["id"].as_str())
        .unwrap_or("")
        .to_string();
    assert_eq!(
        header(&heads[1], "last-event-id").unwrap_or_default(),
        last_id,
        "the browser sent back the last event id it saw: {heads:?}"
    );

    // An event published after the reconnect arrives; nothing is duplicated.
    publish(3);
    let mut want3 = want2.clone();
    want3.push(player_event(brand, player, 3));
    assert!(
        b.wait_for(Duration::from_secs(10), |l| app_events(l) == want3),
        "the event after the reconnect:\n{}\nGateway log:\n{}",
        b.dump(),
        gw.log_text()
    );
    let all = b.page_lines();
    let last_open = all.iter().rposition(|v| kind(v) == "open").unwrap();
    assert_eq!(
        app_events(&all[last_open..]),
        vec![player_event(brand, player, 3)],
        "the third event came on the new connection:\n{}",
        b.dump()
    );

    let code = b.finish(Duration::from_secs(15));
    assert_eq!(
        code,
        Some(0),
        "browser.js closed chromium and exited by itself:\n{}",
        b.dump()
    );
    assert!(
        b.lines().iter().any(|v| v["kind"] == "harness.exit"),
        "{}",
        b.dump()
    );
}

// ---- The seeds' own client code (tests-js/pages/seed-00N.html, instrumented by
// ---- tests-js/pages/instrument.js, which reports each event a seed handler receives).

/// Events a seed's handlers received: `(handler, data)` for streams whose URL contains `url`.
fn handled(lines: &[Value], url: &str) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|v| kind(v) == "event" && v["url"].as_str().unwrap_or("").contains(url))
        .map(|v| {
            (
                v["handler"].as_str().unwrap_or("").to_string(),
                v["data"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The seed's own `console.log` lines whose first argument starts with `prefix`.
fn logs(lines: &[Value], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|v| kind(v) == "log")
        .filter_map(|v| v["args"][0].as_str())
        .filter(|a| a.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn opens(lines: &[Value], url: &str) -> usize {
    count(lines, |v| {
        kind(v) == "open" && v["url"].as_str().unwrap_or("").contains(url)
    })
}

/// Cuts every stream through `proxy`, publishes with `during` while the browser is away, and
/// waits until each of `urls` has reconnected by itself.
fn cut_and_reconnect(b: &mut Browser, proxy: &Proxy, urls: &[&str], during: impl FnOnce()) {
    let before: Vec<usize> = urls.iter().map(|u| opens(&b.lines(), u)).collect();
    proxy.sever();
    during();
    let back = b.wait_for(Duration::from_secs(20), |l| {
        urls.iter().zip(&before).all(|(u, n)| opens(l, u) == n + 1)
    });
    assert!(
        back,
        "every EventSource reconnected by itself:\n{}",
        b.dump()
    );
}

fn round(n: u64) -> String {
    format!(r#"{{"round_id":{n},"game_slug":"crash","extras":"{{\"point\": \"11.72\"}}"}}"#)
}

#[test]
fn seed_002_sseclient_gets_initial_then_rounds_and_misses_nothing_across_a_cut() {
    let gw = Gateway::start(&[("SSE_CORS_ORIGINS", "*"), ("SSE_API_KEYS", "sk_live_xxxxx")]);
    let proxy = Proxy::start(gw.addr);
    let publish = |n| assert_eq!(gw.publish("stream:crash", &round(n)).status, 202);
    publish(512);
    let gateway = format!("http://{}", proxy.addr);
    let mut b = Browser::start(
        "seed-002.html",
        &[("gateway", &gateway)],
        Duration::from_secs(90),
    );
    let rounds = |n: u64| -> Vec<String> {
        (512..512 + n)
            .map(|i| format!("Round {i}: {{\"point\":\"11.72\"}}"))
            .collect()
    };
    assert!(
        b.wait_for(Duration::from_secs(30), |l| logs(l, "Round ") == rounds(1)),
        "the SSEClient logged the initial round:\n{}\nGateway log:\n{}",
        b.dump(),
        gw.log_text()
    );
    assert_eq!(logs(&b.lines(), "Initial result:").len(), 1, "{}", b.dump());
    assert_eq!(logs(&b.lines(), "SSE connected").len(), 1, "{}", b.dump());
    publish(513);
    assert!(
        b.wait_for(Duration::from_secs(10), |l| logs(l, "Round ") == rounds(2)),
        "{}",
        b.dump()
    );
    cut_and_reconnect(&mut b, &proxy, &["/sse/crash"], || publish(514));
    publish(515);
    assert!(
        b.wait_for(Duration::from_secs(10), |l| logs(l, "Round ") == rounds(4)),
        "the round published during the cut arrives once, then live ones:\n{}",
        b.dump()
    );
    let h = handled(&b.lines(), "/sse/crash");
    let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["initial", "message", "message", "message"],
        "{}",
        b.dump()
    );
    assert_eq!(b.finish(Duration::from_secs(15)), Some(0), "{}", b.dump());
}

#[test]
fn seed_003_two_eventsources_get_broadcast_and_private_events_across_a_cut() {
    let (ws, group, player) = ("8mQhEnuznUe01IsGOE4mPw", "fce39b15-9fc1", "a@b.com");
    let broadcast = format!("{ws}_broadcast_{group}");
    let user = format!("{ws}_user_{player}");
    let gw = Gateway::start(&[("SSE_CORS_ORIGINS", "*")]);
    let proxy = Proxy::start(gw.addr);
    let token = channel_token(&[&user]);
    let gateway = format!("http://{}", proxy.addr);
    let mut b = Browser::start(
        "seed-003.html",
        &[
            ("gateway", &gateway),
            ("workspace", ws),
            ("group", group),
            ("player", player),
            ("token", &token),
        ],
        Duration::from_secs(90),
    );
    assert!(
        b.wait_for(Duration::from_secs(30), |l| opens(l, "_broadcast_") == 1
            && opens(l, "_user_") == 1),
        "both EventSources opened:\n{}\nGateway log:\n{}",
        b.dump(),
        gw.log_text()
    );
    let value = |v: &str| {
        format!(
            r#"{{"reason":"jackpot_value","jackpotInstance":"3XiLXZkU_5","jackpot":"3XiLXZkU","channel":"{broadcast}","currency":"EUR","value":"{v}"}}"#
        )
    };
    let won = format!(
        r#"{{"reason":"jackpot_won","jackpotInstance":"6sca3_LR_7","jackpot":"6sca3_LR","channel":"{user}","currency":"EUR","value":"1,408.20","jackpotNewInstance":"6sca3_LR_8"}}"#
    );
    assert_eq!(gw.publish(&broadcast, &value("372.2")).status, 202);
    assert_eq!(gw.publish(&user, &won).status, 202);
    let want_b = |vals: &[&str]| -> Vec<(String, String)> {
        vals.iter()
            .map(|v| ("onmessage".to_string(), value(v)))
            .collect()
    };
    assert!(
        b.wait_for(Duration::from_secs(10), |l| handled(l, "_broadcast_")
            == want_b(&["372.2"])
            && handled(l, "_user_")
                == vec![("onmessage".to_string(), won.clone())]),
        "each onmessage got its channel's event:\n{}",
        b.dump()
    );
    cut_and_reconnect(&mut b, &proxy, &["_broadcast_", "_user_"], || {
        assert_eq!(gw.publish(&broadcast, &value("380.0")).status, 202);
    });
    assert_eq!(gw.publish(&broadcast, &value("390.5")).status, 202);
    assert!(
        b.wait_for(Duration::from_secs(10), |l| handled(l, "_broadcast_")
            == want_b(&["372.2", "380.0", "390.5"])),
        "the value published during the cut arrives once, then the live one:\n{}",
        b.dump()
    );
    assert_eq!(handled(&b.lines(), "_user_").len(), 1, "{}", b.dump());
    assert_eq!(b.finish(Duration::from_secs(15)), Some(0), "{}", b.dump());
}

#[test]
fn seed_004_add_event_listener_gets_its_topic_by_type_across_a_cut() {
    let gw = Gateway::start(&[("SSE_CORS_ORIGINS", "*")]);
    let proxy = Proxy::start(gw.addr);
    let gateway = format!("http://{}", proxy.addr);
    let mut b = Browser::start(
        "seed-004.html",
        &[("gateway", &gateway)],
        Duration::from_secs(90),
    );
    assert!(
        b.wait_for(Duration::from_secs(30), |l| opens(l, "/api/v1/events") == 1),
        "the EventSource opened:\n{}\nGateway log:\n{}",
        b.dump(),
        gw.log_text()
    );
    let send = |topic: &str, kind: &str, data: &str| {
        let r = gw.post(
            "/api/v1/events/broadcast",
            &format!("{{\"topic\":\"{topic}\",\"type\":\"{kind}\",\"data\":{data}}}"),
        );
        assert_eq!(r.status, 202, "{}", r.text());
    };
    let txn = |n: u32| {
        format!(
            r#"{{"transaction_id":"t{n}","type":"transfer","amount":10000,"status":"pending"}}"#
        )
    };
    send("transactions", "transaction.created", &txn(1));
    send("wallets", "wallet.created", r#"{"wallet_id":"w1"}"#);
    send("users", "user.registered", r#"{"user_id":"u1"}"#);
    let want = |ns: &[u32]| -> Vec<(String, String)> {
        ns.iter()
            .map(|n| ("transaction.created".to_string(), txn(*n)))
            .collect()
    };
    assert!(
        b.wait_for(Duration::from_secs(10), |l| handled(l, "/api/v1/events")
            == want(&[1])),
        "{}",
        b.dump()
    );
    cut_and_reconnect(&mut b, &proxy, &["/api/v1/events"], || {
        send("transactions", "transaction.created", &txn(2))
    });
    send("transactions", "transaction.created", &txn(3));
    assert!(
        b.wait_for(Duration::from_secs(10), |l| handled(l, "/api/v1/events")
            == want(&[1, 2, 3])),
        "only its topic, the one published during the cut once, then live:\n{}",
        b.dump()
    );
    assert_eq!(
        logs(&b.lines(), "New transaction:").len(),
        3,
        "{}",
        b.dump()
    );
    assert!(logs(&b.lines(), "New wallet:").is_empty(), "{}", b.dump());
    assert_eq!(b.finish(Duration::from_secs(15)), Some(0), "{}", b.dump());
}
