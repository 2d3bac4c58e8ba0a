//! CORS (`SSE_CORS_ORIGINS`): preflights answered, `Access-Control-Allow-Origin` on streams
//! for allowed origins, and no `Access-Control-*` header at all when unset.

use crate::common::*;

fn stream_head(gw: &Gateway, origin: &str) -> Response {
    let s = Sse::open(
        gw.addr,
        &format!("/sse?token={}", player_token(1, 1)),
        &format!("Origin: {origin}\r\n"),
    );
    parse_response(format!("{}\r\n\r\n", s.head).as_bytes()).unwrap()
}

fn preflight(gw: &Gateway, path: &str, origin: &str) -> Response {
    request(
        gw.addr,
        format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: last-event-id\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn unset_means_no_access_control_headers_at_all() {
    let gw = Gateway::start(&[]);
    let h = stream_head(&gw, "https://casino.example.com");
    assert_eq!(h.status, 200);
    assert!(
        !h.head.to_ascii_lowercase().contains("access-control"),
        "{}",
        h.head
    );
    let p = preflight(&gw, "/sse", "https://casino.example.com");
    assert_eq!(p.status, 405);
    assert!(
        !p.head.to_ascii_lowercase().contains("access-control"),
        "{}",
        p.head
    );
}

#[test]
fn any_origin_gets_a_wildcard() {
    let gw = Gateway::start(&[("SSE_CORS_ORIGINS", "*")]);
    let h = stream_head(&gw, "https://casino.example.com");
    assert_eq!(
        h.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let p = preflight(&gw, "/sse", "https://casino.example.com");
    assert_eq!(p.status, 204, "{}", p.head);
    assert_eq!(
        p.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        p.header("access-control-allow-methods").as_deref(),
        Some("GET, OPTIONS")
    );
    let allowed = p
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("last-event-id") && allowed.contains("authorization"),
        "{allowed}"
    );
    assert_eq!(
        preflight(&gw, "/nope", "https://casino.example.com").status,
        404
    );
    let pp = preflight(&gw, "/api/v1/publish", "https://casino.example.com");
    assert_eq!(
        pp.header("access-control-allow-methods").as_deref(),
        Some("POST, OPTIONS")
    );
    // Refusals carry the header too, so a page can read them.
    let r = request(
        gw.addr,
        b"GET /sse HTTP/1.1\r\nHost: t\r\nOrigin: https://x.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
}

#[test]
fn a_list_echoes_allowed_origins_only() {
    let gw = Gateway::start(&[(
        "SSE_CORS_ORIGINS",
        "https://casino.example.com, http://localhost:3000",
    )]);
    let h = stream_head(&gw, "http://localhost:3000");
    assert_eq!(
        h.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    assert_eq!(h.header("vary").as_deref(), Some("Origin"));
    let other = stream_head(&gw, "https://evil.example");
    assert_eq!(
        other.status, 200,
        "the stream itself is served; the browser enforces CORS"
    );
    assert_eq!(other.header("access-control-allow-origin"), None);
    let p = preflight(&gw, "/sse", "https://evil.example");
    assert_eq!(p.status, 403);
    assert_eq!(p.header("access-control-allow-origin"), None);
    let ok = preflight(&gw, "/sse", "https://casino.example.com");
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin").as_deref(),
        Some("https://casino.example.com")
    );
}
