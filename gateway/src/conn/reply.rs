//! A finite HTTP answer as a value (status, headers, body), its rendering into a write
//! buffer, and the bounded write every answer leaves the gateway with.
use std::borrow::Cow;
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::http::response::{write_response, Status};
use crate::util::json::escape_json_into;

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: Status,
    /// `Content-Type`, when there is a body.
    pub content_type: Option<&'static str>,
    /// Headers after the CORS ones (`Allow`, a preflight's `Access-Control-*`).
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: Status, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: Some("application/json"),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A `{"error": ...}` reply: every error a client gets has this one shape.
    pub fn error(status: Status, message: &str) -> Reply {
        let mut body = Vec::with_capacity(message.len() + 16);
        body.extend_from_slice(b"{\"error\":\"");
        escape_json_into(&mut body, message);
        body.extend_from_slice(b"\"}");
        Reply::json(status, body)
    }

    /// A reply without a body (`204` to a preflight).
    pub fn empty(status: Status) -> Reply {
        Reply {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (after the CORS headers).
    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// Appends the response to `out`: the CORS headers for `allow_origin` first, then the
    /// reply's own; `head_only` (a `HEAD` request) leaves the body out but keeps its length.
    pub fn render(
        &self,
        allow_origin: Option<&str>,
        keep_alive: bool,
        head_only: bool,
        out: &mut BytesMut,
    ) {
        let mut headers = cors_headers(allow_origin);
        headers.extend(self.headers.iter().map(|(n, v)| (*n, v.as_ref())));
        write_response(
            out,
            self.status,
            self.content_type,
            &headers,
            &self.body,
            keep_alive,
        );
        if head_only {
            out.truncate(out.len() - self.body.len());
        }
    }
}

/// The CORS headers of a response: `Access-Control-Allow-Origin` when the request's origin
/// is allowed, with `Vary: Origin` when the value echoes that origin (so caches keep one copy
/// per origin). Empty when CORS is not configured or the origin is not allowed.
pub fn cors_headers(allow_origin: Option<&str>) -> Vec<(&'static str, &str)> {
    match allow_origin {
        None => Vec::new(),
        Some("*") => vec![("Access-Control-Allow-Origin", "*")],
        Some(o) => vec![("Access-Control-Allow-Origin", o), ("Vary", "Origin")],
    }
}

/// Writes a response unless the client stops reading for `limit`: a client that pipelines
/// requests and never reads the answers would otherwise hold its socket (and megabytes of
/// kernel buffers) forever. `None`: the write failed or timed out; close the connection.
pub async fn write_within(
    stream: &mut TcpStream,
    out: BytesMut,
    limit: Duration,
) -> Option<BytesMut> {
    match monoio::time::timeout(limit, stream.write_all(out)).await {
        Ok((Ok(_), out)) => Some(out),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(
        reply: &Reply,
        allow_origin: Option<&str>,
        keep_alive: bool,
        head_only: bool,
    ) -> String {
        let mut out = BytesMut::new();
        reply.render(allow_origin, keep_alive, head_only, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn replies_render_byte_exact() {
        #[rustfmt::skip]
        let cases: &[(Reply, Option<&str>, bool, bool, &str)] = &[
            // (reply, allowed origin, keep-alive, HEAD, bytes)
            (Reply::error(Status::NotFound, "no such stream"), None, true, false,
             "HTTP/1.1 404 Not Found\r\nContent-Length: 26\r\nContent-Type: application/json\r\n\r\n{\"error\":\"no such stream\"}"),
            (Reply::error(Status::BadRequest, ""), None, false, false,
             "HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"error\":\"\"}"),
            (Reply::error(Status::Unauthorized, "bad \"token\"\n").with_header("WWW-Authenticate", "Bearer"), None, true, false,
             "HTTP/1.1 401 Unauthorized\r\nContent-Length: 27\r\nContent-Type: application/json\r\nWWW-Authenticate: Bearer\r\n\r\n{\"error\":\"bad \\\"token\\\"\\n\"}"),
            (Reply::error(Status::HeaderFieldsTooLarge, "\u{1}"), None, false, false,
             "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 18\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"error\":\"\\u0001\"}"),
            (Reply::error(Status::MethodNotAllowed, "m").with_header("Allow", "GET"), Some("https://a"), true, false,
             "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 13\r\nContent-Type: application/json\r\nAccess-Control-Allow-Origin: https://a\r\nVary: Origin\r\nAllow: GET\r\n\r\n{\"error\":\"m\"}"),
            (Reply::json(Status::Ok, &b"{\"ok\":1}"[..]), Some("*"), true, true,
             "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nContent-Type: application/json\r\nAccess-Control-Allow-Origin: *\r\n\r\n"),
            (Reply::empty(Status::NoContent).with_header("Access-Control-Max-Age", "600"), Some("https://a"), true, false,
             "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: https://a\r\nVary: Origin\r\nAccess-Control-Max-Age: 600\r\n\r\n"),
        ];
        for (reply, origin, keep_alive, head_only, want) in cases {
            assert_eq!(
                &rendered(reply, *origin, *keep_alive, *head_only),
                want,
                "{reply:?}"
            );
        }
    }
}
