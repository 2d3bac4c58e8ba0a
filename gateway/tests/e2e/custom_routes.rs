//! A route family defined only in the TOML config file (`SSE_CONFIG`, `[[routes]]`) is served
//! like a built-in one; a bad row stops start-up naming the row and what is wrong.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("gw-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const ORDERS: &str = r#"
[[routes]]
name = "orders"
path = "/shops/{shop}/orders"
channel = "orders:{shop}"
event = "order"
keepalive_period = "1s"

[[routes]]
name = "desk"
path = "/desk"
channel = "desk:{desk}"
channel_list_param = "desks"
payload = "typed_event"
"#;

#[test]
fn a_family_from_the_config_file_is_served() {
    let file = TempFile::new("orders.toml", ORDERS);
    let gw = Gateway::start(&[("SSE_CONFIG", file.0.to_str().unwrap())]);
    let mut acme = Sse::open(gw.addr, "/shops/acme/orders", "");
    let mut other = Sse::open(gw.addr, "/shops/other/orders", "");
    let mut desk = Sse::open(gw.addr, "/desk?desks=fx,rates", "");
    assert_eq!(acme.status(), 200, "{}", acme.head);
    assert_eq!(desk.status(), 200, "{}", desk.head);
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.orders")
        == 2
        && gw.stat("connections.per_route.desk") == 1));
    assert_eq!(gw.publish("orders:acme", r#"{"order":1}"#).status, 202);
    assert_eq!(gw.publish("orders:other", r#"{"order":2}"#).status, 202);
    let r = gw.publish("desk:fx", r#"{"type":"quote","data":{"px":1.1}}"#);
    assert_eq!(r.status, 202, "{}", r.text());
    let ev = acme.next_event(5 * SEC).expect("acme's order");
    assert_eq!(
        (ev.event.as_str(), ev.data.as_str()),
        ("order", r#"{"order":1}"#)
    );
    assert_eq!(
        other.next_event(5 * SEC).expect("other's").data,
        r#"{"order":2}"#
    );
    let ev = desk.next_event(5 * SEC).expect("quote");
    assert_eq!(
        (ev.event.as_str(), ev.data.as_str()),
        ("quote", r#"{"px":1.1}"#)
    );
    assert!(!acme.closed_within(Duration::from_millis(1500)));
    assert!(
        acme.comments.iter().any(|c| c.starts_with("heartbeat ")),
        "the family's keep-alive: {:?}",
        acme.comments
    );
    assert_eq!(gw.get("/desk?desks=a%20b").status, 400);
    assert!(
        gw.stat("topics.desk/fx") == 1,
        "list families count per value"
    );
}

#[test]
fn a_bad_route_row_stops_start_up_naming_it() {
    let file = TempFile::new(
        "bad.toml",
        "[[routes]]\nname = \"orders\"\npath = \"/o\"\nchannel = \"orders:{shop}\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .env("SSE_LISTEN", "127.0.0.1:0")
        .env("SSE_CONFIG", &file.0)
        .output()
        .expect("run gateway");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SSE_CONFIG"), "{err}");
    assert!(err.contains("route \"orders\""), "{err}");
    assert!(err.contains("{shop}"), "{err}");
}
