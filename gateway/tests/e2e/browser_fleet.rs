//! The seeds' own browser clients resume on another node (issue 15): three gateway nodes on
//! one real `redis-server`, one headless Chromium with a page per seed family (the player
//! page of seeds 000/001, seed 002's `SSEClient`, seed 003's two jackpot `EventSource`s,
//! seed 004's listeners on `topics=transactions,wallets` and on every topic), all reaching
//! the nodes through one loopback proxy, as through a load balancer. Events go out through
//! the durable path (HTTP publish on every node; the player's also by `FCALL ssegw_publish`
//! straight to Redis, as a service would) before, during and after a cut: the proxy drops
//! every stream, holds the reconnects, and sends them to another node. Each browser
//! reconnects by itself to the same URL with its `Last-Event-ID` and gets every event exactly
//! once, in order, with no reset; the node it lands on counts the resumes and the Redis
//! reads they cost.
//!
//! One family cannot resume on another node by design (docs/ARCHITECTURE.md, "Resume on any
//! node"): a stream on every topic (seed 004's "Subscribe to all events"), since Redis cannot
//! list a family's channels. Its page gets the documented reset, then live events.
//!
//! The control: `SSE_TEST_PLAIN_PUBLISH=1` sends every event with plain `PUBLISH` instead
//! (per-node ids and history, as before the durable path), and the test fails: the node the
//! browsers land on answers their ids with resets, and what was published during the cut is
//! missing.
//!
//! One Chromium start for all pages; about 10 s in all.

use std::time::Duration;

use serde_json::Value;

use crate::browser::{header, kind, message_json, Browser, Proxy};
use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

const BRAND: i64 = 7;
const PLAYER: i64 = 4242;
const WS: &str = "8mQhEnuznUe01IsGOE4mPw";
const GROUP: &str = "fce39b15-9fc1";
const JACKPOT_PLAYER: &str = "a@b.com";
const API_KEY: &str = "sk_live_xxxxx";
const HISTORY_GONE: &str = "history does not reach back to Last-Event-ID";

/// The pages, in the order given to the browser (a line's `page` is this index).
const PLAYER_PAGE: usize = 0;
const GAME_PAGE: usize = 1;
const JACKPOT_PAGE: usize = 2;
const TOPICS_PAGE: usize = 3;
const ALL_PAGE: usize = 4;

/// One node on `redis`: one core, so that whose memory answers a resume is not left to
/// `SO_REUSEPORT`.
fn node(redis: &Redis) -> Gateway {
    let gw = Gateway::start(&[
        ("EVENTS_REDIS_STORAGE", &redis.url()),
        ("SSE_CORES", "1"),
        ("SSE_CORS_ORIGINS", "*"),
        ("SSE_API_KEYS", API_KEY),
    ]);
    assert!(
        eventually(10 * SEC, || ready(&gw) == 200),
        "{}",
        gw.log_text()
    );
    gw
}

fn broadcast_channel() -> String {
    format!("{WS}_broadcast_{GROUP}")
}

fn user_channel() -> String {
    format!("{WS}_user_{JACKPOT_PLAYER}")
}

/// An event of one of the families, as its publisher sends it.
#[derive(Clone, Copy)]
enum Ev {
    /// Player event `n` (seed 000's envelope).
    Player(u64),
    /// Crash round `n` (seed 002).
    Round(u64),
    /// The jackpot's value (seed 003's broadcast).
    Value(&'static str),
    /// The player's jackpot win `n` (seed 003's private channel).
    Win(u64),
    /// A business event `(topic, type, n)` (seed 004).
    Topic(&'static str, &'static str, u64),
}

impl Ev {
    fn channel(self) -> String {
        match self {
            Ev::Player(_) => format!("SSE::{BRAND}::{PLAYER}"),
            Ev::Round(_) => "stream:crash".into(),
            Ev::Value(_) => broadcast_channel(),
            Ev::Win(_) => user_channel(),
            Ev::Topic(t, _, _) => format!("events:{t}"),
        }
    }

    /// The payload on the channel; for a topic event, what its handler receives is `data`.
    fn payload(self) -> String {
        match self {
            Ev::Topic(_, ty, _) => format!(r#"{{"type":"{ty}","data":{}}}"#, self.data()),
            _ => self.data(),
        }
    }

    /// What the page's handler receives as `event.data`.
    fn data(self) -> String {
        match self {
            Ev::Player(n) => player_event(BRAND, PLAYER, n),
            Ev::Round(n) => {
                format!(
                    r#"{{"round_id":{n},"game_slug":"crash","extras":"{{\"point\": \"11.72\"}}"}}"#
                )
            }
            Ev::Value(v) => format!(
                r#"{{"reason":"jackpot_value","jackpotInstance":"3XiLXZkU_5","jackpot":"3XiLXZkU","channel":"{}","currency":"EUR","value":"{v}"}}"#,
                broadcast_channel()
            ),
            Ev::Win(n) => format!(
                r#"{{"reason":"jackpot_won","jackpotInstance":"6sca3_LR_{n}","jackpot":"6sca3_LR","channel":"{}","currency":"EUR","value":"1,408.20"}}"#,
                user_channel()
            ),
            Ev::Topic(_, _, n) => format!(r#"{{"id":"e{n}","amount":{n}}}"#),
        }
    }

    /// `(handler, data)` as the instrumented seed page reports it.
    fn handled(self, handler: &str) -> (String, String) {
        let handler = match self {
            Ev::Topic(_, ty, _) => ty,
            _ => handler,
        };
        (handler.to_string(), self.data())
    }
}

/// Where an event is published.
#[derive(Clone, Copy)]
enum Via<'a> {
    /// A node's HTTP API (seed 004's events through its broadcast endpoint).
    Node(&'a Gateway),
    /// `FCALL ssegw_publish` on Redis, as a service that publishes to Redis itself.
    Fcall,
}

/// Publishes `ev`: through the durable path as `via` says, or, for the control, by plain
/// `PUBLISH`.
fn publish_ev(redis: &Redis, plain: bool, via: Via, ev: Ev) {
    let (channel, payload) = (ev.channel(), ev.payload());
    if plain {
        let n = redis.cli(&["PUBLISH", &channel, &payload]);
        assert_eq!(n, "3", "one receiver per node: {channel}");
        return;
    }
    match via {
        Via::Fcall => {
            let args = ["FCALL", "ssegw_publish", "1", &channel, &payload];
            assert_eq!(redis.cli(&args), "3", "one receiver per node: {channel}");
        }
        Via::Node(gw) => {
            let r = match ev {
                Ev::Topic(t, ty, _) => gw.post(
                    "/api/v1/events/broadcast",
                    &format!(r#"{{"topic":"{t}","type":"{ty}","data":{}}}"#, ev.data()),
                ),
                _ => gw.publish(&channel, &payload),
            };
            assert_eq!(r.status, 202, "{channel}: {}", r.text());
        }
    }
}

fn on_page(v: &Value, page: usize) -> bool {
    v["page"].as_u64() == Some(page as u64)
}

fn url_has(v: &Value, url: &str) -> bool {
    v["url"].as_str().unwrap_or("").contains(url)
}

/// The `(handler, data)` of events an instrumented seed page's handlers got on its streams
/// whose URL contains `url`.
fn handled(lines: &[Value], page: usize, url: &str) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|v| on_page(v, page) && kind(v) == "event" && url_has(v, url))
        .map(|v| {
            (
                v["handler"].as_str().unwrap_or("").to_string(),
                v["data"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The data of the player page's application events (not system messages), in order.
fn player_events(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|v| on_page(v, PLAYER_PAGE) && kind(v) == "message")
        .filter(|v| message_json(v).get("event_type").is_some())
        .map(|v| v["data"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The player page's system messages of type `ty` (`connected`, `reset`, ...).
fn player_system(lines: &[Value], ty: &str) -> usize {
    lines
        .iter()
        .filter(|v| on_page(v, PLAYER_PAGE) && kind(v) == "message")
        .filter(|v| message_json(v)["type"] == ty)
        .count()
}

/// Lines of kind `k` on `page` for streams whose URL contains `url` (the player page's lines
/// carry no URL: it has one stream).
fn count_kind(lines: &[Value], page: usize, k: &str, url: &str) -> usize {
    lines
        .iter()
        .filter(|v| on_page(v, page) && kind(v) == k)
        .filter(|v| page == PLAYER_PAGE || url_has(v, url))
        .count()
}

/// Lost connections (an `error` without data; one with data is the gateway's error event).
fn drops(lines: &[Value], page: usize, url: &str) -> usize {
    lines
        .iter()
        .filter(|v| on_page(v, page) && kind(v) == "error" && v.get("data").is_none())
        .filter(|v| page == PLAYER_PAGE || url_has(v, url))
        .count()
}

/// The id the stream had seen last (what its reconnect must send as `Last-Event-ID`).
fn last_id(lines: &[Value], page: usize, url: &str) -> String {
    lines
        .iter()
        .rev()
        .filter(|v| on_page(v, page) && matches!(kind(v), "event" | "message" | "reset"))
        .filter(|v| page == PLAYER_PAGE || url_has(v, url))
        .find_map(|v| v["id"].as_str().filter(|id| !id.is_empty()))
        .unwrap_or("")
        .to_string()
}

/// Every stream of the pages: `(page, a part of its URL, of its request line)`.
fn streams(token: &str) -> Vec<(usize, &'static str, String)> {
    vec![
        (PLAYER_PAGE, "", format!("GET /sse?token={token} ")),
        (GAME_PAGE, "/sse/crash", "GET /sse/crash?".into()),
        (JACKPOT_PAGE, "_broadcast_", "_broadcast_".into()),
        (JACKPOT_PAGE, "_user_", "_user_".into()),
        (
            TOPICS_PAGE,
            "/api/v1/events",
            "GET /api/v1/events?topics=transactions,wallets ".into(),
        ),
        (ALL_PAGE, "/api/v1/events", "GET /api/v1/events ".into()),
    ]
}

#[test]
fn the_seeds_browser_clients_resume_on_another_node_through_a_cut() {
    let plain = std::env::var_os("SSE_TEST_PLAIN_PUBLISH").is_some_and(|v| v == "1");
    let redis = Redis::start(&[]);
    let [a, b, c] = [node(&redis), node(&redis), node(&redis)];
    let send = |via: Via, ev: Ev| publish_ev(&redis, plain, via, ev);
    let proxy = Proxy::start(a.addr);
    let gateway = format!("http://{}", proxy.addr);
    let token = player_token(BRAND, PLAYER);
    let user_token = channel_token(&[&user_channel()]);

    // A round before the game page opens: seed 002's client is greeted with it (`initial`).
    send(Via::Node(&c), Ev::Round(512));

    let g = || ("gateway", gateway.clone());
    let mut br = Browser::start_pages(
        &[
            ("player.html", vec![g(), ("token", token.clone())]),
            ("seed-002.html", vec![g()]),
            (
                "seed-003.html",
                vec![
                    g(),
                    ("workspace", WS.into()),
                    ("group", GROUP.into()),
                    ("player", JACKPOT_PLAYER.into()),
                    ("token", user_token),
                ],
            ),
            (
                "seed-004.html",
                vec![g(), ("topics", "transactions,wallets".into())],
            ),
            ("seed-004.html", vec![g(), ("topics", "all".into())]),
        ],
        Duration::from_secs(90),
    );
    let streams = streams(&token);
    let all_open = |l: &[Value], n: usize| {
        streams
            .iter()
            .all(|(p, url, _)| count_kind(l, *p, "open", url) == n)
    };
    assert!(
        br.wait_for(30 * SEC, |l| all_open(l, 1)
            && player_system(l, "connected") == 1
            && handled(l, GAME_PAGE, "/sse/crash").len() == 1),
        "every page's streams opened on node A:\n{}\nNode A's log:\n{}",
        br.dump(),
        a.log_text()
    );

    // Before the cut, while the streams are on node A: published on every node and by FCALL.
    let before = [
        (Via::Node(&a), Ev::Player(1)),
        (Via::Fcall, Ev::Player(2)),
        (Via::Node(&b), Ev::Round(513)),
        (Via::Node(&a), Ev::Value("372.2")),
        (Via::Node(&a), Ev::Win(1)),
        (
            Via::Node(&a),
            Ev::Topic("transactions", "transaction.created", 1),
        ),
        (Via::Node(&c), Ev::Topic("wallets", "wallet.created", 2)),
        (Via::Node(&a), Ev::Topic("users", "user.registered", 3)),
    ];
    // During the cut, on node C and by FCALL; after it (the streams on node B), on A, B and
    // by FCALL.
    let during = [
        (Via::Fcall, Ev::Player(3)),
        (Via::Node(&c), Ev::Player(4)),
        (Via::Node(&c), Ev::Round(514)),
        (Via::Node(&c), Ev::Value("380.0")),
        (Via::Node(&c), Ev::Win(2)),
        (Via::Node(&c), Ev::Topic("wallets", "wallet.created", 4)),
        (Via::Node(&c), Ev::Topic("users", "user.registered", 5)),
        (
            Via::Node(&c),
            Ev::Topic("transactions", "transaction.created", 6),
        ),
    ];
    let after = [
        (Via::Fcall, Ev::Player(5)),
        (Via::Node(&b), Ev::Player(6)),
        (Via::Node(&a), Ev::Round(515)),
        (Via::Node(&b), Ev::Value("390.5")),
        (Via::Node(&a), Ev::Win(3)),
        (
            Via::Node(&a),
            Ev::Topic("transactions", "transaction.created", 7),
        ),
        (Via::Node(&b), Ev::Topic("users", "user.registered", 8)),
        (Via::Node(&a), Ev::Topic("wallets", "wallet.created", 9)),
    ];

    // What each page's handlers must have got, given which events were sent so far.
    let players = |evs: &[&[(Via, Ev)]]| -> Vec<String> {
        evs.iter()
            .flat_map(|e| e.iter())
            .filter(|(_, e)| matches!(e, Ev::Player(_)))
            .map(|(_, e)| e.data())
            .collect()
    };
    let of = |evs: &[&[(Via, Ev)]], f: fn(&Ev) -> bool, handler: &str| {
        evs.iter()
            .flat_map(|e| e.iter())
            .filter(|(_, e)| f(e))
            .map(|(_, e)| e.handled(handler))
            .collect::<Vec<_>>()
    };
    let game = |evs: &[&[(Via, Ev)]]| {
        let mut v = vec![Ev::Round(512).handled("initial")];
        v.extend(of(evs, |e| matches!(e, Ev::Round(_)), "message"));
        v
    };
    let values = |evs: &[&[(Via, Ev)]]| of(evs, |e| matches!(e, Ev::Value(_)), "onmessage");
    let wins = |evs: &[&[(Via, Ev)]]| of(evs, |e| matches!(e, Ev::Win(_)), "onmessage");
    let two_topics = |evs: &[&[(Via, Ev)]]| {
        of(
            evs,
            |e| matches!(e, Ev::Topic("transactions" | "wallets", _, _)),
            "",
        )
    };
    let every_topic = |evs: &[&[(Via, Ev)]]| of(evs, |e| matches!(e, Ev::Topic(..)), "");
    let seen = |l: &[Value], evs: &[&[(Via, Ev)]], all_topics: &[&[(Via, Ev)]]| {
        player_events(l) == players(evs)
            && handled(l, GAME_PAGE, "/sse/crash") == game(evs)
            && handled(l, JACKPOT_PAGE, "_broadcast_") == values(evs)
            && handled(l, JACKPOT_PAGE, "_user_") == wins(evs)
            && handled(l, TOPICS_PAGE, "/api/v1/events") == two_topics(evs)
            && handled(l, ALL_PAGE, "/api/v1/events") == every_topic(all_topics)
    };

    for (via, ev) in before {
        send(via, ev);
    }
    assert!(
        br.wait_for(10 * SEC, |l| seen(l, &[&before], &[&before])),
        "every page got the events published before the cut, once each:\n{}",
        br.dump()
    );
    let at_cut = br.lines();
    let ids: Vec<String> = streams
        .iter()
        .map(|(p, url, _)| last_id(&at_cut, *p, url))
        .collect();
    for ((p, url, _), id) in streams.iter().zip(&ids) {
        assert!(!id.is_empty(), "page {p} {url}: an id before the cut");
        if !plain {
            assert!(!id.contains('.'), "a durable id, not a node's: {id}");
        }
    }
    let (reads, resumes) = (b.stat("resume_redis_reads"), b.stat("resumes"));
    assert_eq!((reads, resumes), (0, 0), "node B served nothing yet");

    // The cut: every stream dropped; their reconnects wait at the proxy.
    proxy.cut();
    assert!(
        br.wait_for(10 * SEC, |l| streams
            .iter()
            .all(|(p, url, _)| drops(l, *p, url) == 1)),
        "every stream noticed the cut:\n{}",
        br.dump()
    );
    for (via, ev) in during {
        send(via, ev);
    }
    // Nothing can have arrived while cut: the browsers' reconnects are held.
    assert!(seen(&br.lines(), &[&before], &[&before]), "{}", br.dump());
    proxy.repoint(b.addr);
    assert!(
        br.wait_for(20 * SEC, |l| all_open(l, 2)),
        "every stream reconnected by itself, to node B:\n{}\nNode B's log:\n{}",
        br.dump(),
        b.log_text()
    );
    // What was missed arrives, then live events. The stream on every topic cannot resume on
    // another node: a reset, and no partial history.
    assert!(
        br.wait_for(10 * SEC, |l| seen(l, &[&before, &during], &[&before])),
        "what was published during the cut arrived once, in order, on node B:\n{}\nNode B's \
         log:\n{}",
        br.dump(),
        b.log_text()
    );
    for (via, ev) in after {
        send(via, ev);
    }
    assert!(
        br.wait_for(10 * SEC, |l| seen(
            l,
            &[&before, &during, &after],
            &[&before, &after]
        )),
        "then live events, once each:\n{}",
        br.dump()
    );

    // Each reconnect was a new request through the proxy carrying the stream's last id.
    let heads = proxy.heads();
    assert_eq!(
        heads.len(),
        2 * streams.len(),
        "one reconnect each: {heads:#?}"
    );
    for ((p, _, line), id) in streams.iter().zip(&ids) {
        let mine: Vec<&String> = heads.iter().filter(|h| h.contains(line.as_str())).collect();
        assert_eq!(mine.len(), 2, "page {p} {line}: {heads:#?}");
        assert_eq!(header(mine[0], "last-event-id"), None, "{}", mine[0]);
        assert_eq!(
            header(mine[1], "last-event-id").as_deref(),
            Some(id.as_str()),
            "page {p}: the browser sent back the last id it saw: {}",
            mine[1]
        );
    }

    // No reset reached a page but the one on every topic, whose reset is documented.
    let lines = br.lines();
    assert_eq!(player_system(&lines, "reset"), 0, "{}", br.dump());
    assert_eq!(player_system(&lines, "connected"), 2, "{}", br.dump());
    for page in [GAME_PAGE, JACKPOT_PAGE, TOPICS_PAGE] {
        assert_eq!(
            count_kind(&lines, page, "reset", ""),
            0,
            "page {page}:\n{}",
            br.dump()
        );
    }
    let resets: Vec<&Value> = lines
        .iter()
        .filter(|v| on_page(v, ALL_PAGE) && kind(v) == "reset")
        .collect();
    assert_eq!(resets.len(), 1, "{}", br.dump());
    let reason = serde_json::from_str::<Value>(resets[0]["data"].as_str().unwrap_or(""))
        .unwrap_or(Value::Null);
    assert_eq!(reason["reason"], HISTORY_GONE, "{}", br.dump());
    // Live events came with durable ids, the same on every node.
    if !plain {
        for v in lines
            .iter()
            .filter(|v| matches!(kind(v), "event" | "message"))
        {
            let id = v["id"].as_str().unwrap_or("");
            assert!(!id.contains('.'), "a durable id, not a node's: {v}");
        }
    }

    // Node B answered five resumes (the stream on every topic got the reset). What its
    // memory could not prove it held, it read from Redis, one read per stream: four. The
    // game channel's resume cost nothing: a channel that greets with its latest round is
    // kept from the first message on, stream or not, so B's memory held every round since
    // before the id; the other channels had no stream on B, so their messages were dropped
    // there.
    assert_eq!(b.stat("resumes"), 5, "{}", b.log_text());
    assert_eq!(b.stat("resets"), 1, "{}", b.log_text());
    assert_eq!(b.stat("resume_redis_reads"), 4, "{}", b.log_text());
    assert_eq!(b.stat("resume_redis_failed"), 0);

    assert_eq!(br.finish(15 * SEC), Some(0), "{}", br.dump());
}
