//! Response writing: appends whole responses to the connection's preallocated write buffer.
//!
//! The gateway answers a handful of small responses (errors, publish acknowledgements,
//! preflights) and one long-lived kind, the event stream. Each writer appends straight
//! into the caller's `BytesMut`, formatting numbers and escaping JSON in place, so the
//! only allocation is the buffer growing, and none at all once it is large enough.

use bytes::{BufMut, BytesMut};

use crate::util::decimal::put_decimal;

/// The response statuses the gateway sends; a closed set so every one has a known reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200: a request served (health, metrics, an opened stream).
    Ok,
    /// 202: a published event accepted for delivery.
    Accepted,
    /// 204: a CORS preflight answered; never carries a body.
    NoContent,
    /// 400: a malformed request or parameter.
    BadRequest,
    /// 401: missing or invalid credentials.
    Unauthorized,
    /// 403: valid credentials without access to the resource.
    Forbidden,
    /// 404: no route for the path.
    NotFound,
    /// 405: a route that does not take this method.
    MethodNotAllowed,
    /// 408: the head did not arrive in time.
    RequestTimeout,
    /// 411: a body-carrying request without a length.
    LengthRequired,
    /// 413: a body larger than the configured limit.
    PayloadTooLarge,
    /// 415: a publish body that is not declared `application/json`.
    UnsupportedMediaType,
    /// 431: a request head over the size or header-count limit.
    HeaderFieldsTooLarge,
    /// 500: a bug or unexpected failure in the gateway.
    InternalServerError,
    /// 503: overloaded or draining; the client should retry elsewhere or later.
    ServiceUnavailable,
    /// 504: an upstream (Redis) took the request and did not answer in time: the outcome is
    /// unknown.
    GatewayTimeout,
}

/// Every [`Status`], for reverse lookup.
const ALL_STATUSES: [Status; 16] = [
    Status::Ok,
    Status::Accepted,
    Status::NoContent,
    Status::BadRequest,
    Status::Unauthorized,
    Status::Forbidden,
    Status::NotFound,
    Status::MethodNotAllowed,
    Status::RequestTimeout,
    Status::LengthRequired,
    Status::PayloadTooLarge,
    Status::UnsupportedMediaType,
    Status::HeaderFieldsTooLarge,
    Status::InternalServerError,
    Status::ServiceUnavailable,
    Status::GatewayTimeout,
];

impl Status {
    /// The numeric status code, as written in the status line.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::Accepted => 202,
            Status::NoContent => 204,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::LengthRequired => 411,
            Status::PayloadTooLarge => 413,
            Status::UnsupportedMediaType => 415,
            Status::HeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::ServiceUnavailable => 503,
            Status::GatewayTimeout => 504,
        }
    }

    /// The reason phrase written after the code, for humans reading the wire.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Accepted => "Accepted",
            Status::NoContent => "No Content",
            Status::BadRequest => "Bad Request",
            Status::Unauthorized => "Unauthorized",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::LengthRequired => "Length Required",
            Status::PayloadTooLarge => "Payload Too Large",
            Status::UnsupportedMediaType => "Unsupported Media Type",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::GatewayTimeout => "Gateway Timeout",
        }
    }

    /// The status for a numeric code, so errors that carry a bare code (such as
    /// `HttpError::status`) can be answered; `None` for codes the gateway never sends.
    pub fn from_code(code: u16) -> Option<Status> {
        ALL_STATUSES.into_iter().find(|s| s.code() == code)
    }
}

/// `Content-Type` of a non-empty body written without one.
const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Appends a complete response (status line, `Content-Length`, `Content-Type` if body non-empty or content_type given, the extra headers in order, `Connection: close` when !keep_alive, blank line, body).
///
/// This is how every finite response leaves the gateway. A non-empty body without a
/// `content_type` is labelled `text/plain; charset=utf-8`. A 204 is written without
/// `Content-Length`, `Content-Type` or body, as RFC 9110 §8.6 and §15.3.5 require.
/// CR, LF and NUL in header names and values become spaces, so a value that came from a
/// client (an echoed `Origin`) can never split the response.
pub fn write_response(
    out: &mut BytesMut,
    status: Status,
    content_type: Option<&str>,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) {
    let content_type = match content_type {
        None if !body.is_empty() => Some(DEFAULT_CONTENT_TYPE),
        other => other,
    };
    out.reserve(128 + body.len());
    if write_head(
        out,
        status,
        content_type,
        body.len(),
        extra_headers,
        keep_alive,
    ) {
        out.put_slice(body);
    }
}

/// Appends the head of an SSE stream: `HTTP/1.1 200 OK`, `Content-Type: text/event-stream`, `Cache-Control: no-cache`, `X-Accel-Buffering: no`, `Connection: keep-alive`, the extra headers, blank line. No Content-Length and no chunked encoding: the body ends when the connection closes.
///
/// Framing the stream by connection close keeps every event a plain write of its
/// pre-encoded bytes, shared across subscribers; `X-Accel-Buffering: no` stops nginx
/// from holding events back.
pub fn write_stream_head(out: &mut BytesMut, extra_headers: &[(&str, &str)]) {
    out.put_slice(
        b"HTTP/1.1 200 OK\r\n\
          Content-Type: text/event-stream\r\n\
          Cache-Control: no-cache\r\n\
          X-Accel-Buffering: no\r\n\
          Connection: keep-alive\r\n",
    );
    put_headers(out, extra_headers);
    out.put_slice(b"\r\n");
}

/// Writes the status line and headers of a finite response, through the blank line.
/// Returns whether the status allows a body (every one but 204).
fn write_head(
    out: &mut BytesMut,
    status: Status,
    content_type: Option<&str>,
    body_len: usize,
    extra_headers: &[(&str, &str)],
    keep_alive: bool,
) -> bool {
    out.put_slice(b"HTTP/1.1 ");
    put_decimal(out, u64::from(status.code()));
    out.put_u8(b' ');
    out.put_slice(status.reason().as_bytes());
    out.put_slice(b"\r\n");
    let has_body = status != Status::NoContent;
    if has_body {
        out.put_slice(b"Content-Length: ");
        put_decimal(out, body_len as u64);
        out.put_slice(b"\r\n");
        if let Some(content_type) = content_type {
            put_headers(out, &[("Content-Type", content_type)]);
        }
    }
    put_headers(out, extra_headers);
    if !keep_alive {
        out.put_slice(b"Connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    has_body
}

/// Writes `Name: value\r\n` lines.
fn put_headers(out: &mut BytesMut, headers: &[(&str, &str)]) {
    for (name, value) in headers {
        put_field(out, name);
        out.put_slice(b": ");
        put_field(out, value);
        out.put_slice(b"\r\n");
    }
}

/// Writes a header name or value with CR, LF and NUL replaced by spaces.
fn put_field(out: &mut BytesMut, field: &str) {
    let bytes = field.as_bytes();
    if !bytes.iter().copied().any(breaks_field) {
        out.put_slice(bytes);
        return;
    }
    for &b in bytes {
        out.put_u8(if breaks_field(b) { b' ' } else { b });
    }
}

/// Bytes that would end a header line (or that peers treat as ending it).
fn breaks_field(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `bytes` back as a response and returns (code, reason, headers, body), checking
    /// on the way that `Content-Length`, when present, counts exactly the body.
    fn parse_back(bytes: &[u8]) -> (u16, String, Vec<(String, String)>, Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let status = response.parse(bytes).expect("response parses");
        let httparse::Status::Complete(head_len) = status else {
            panic!("incomplete response head: {bytes:?}");
        };
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8(h.value.to_vec()).expect("utf-8 value");
                (h.name.to_string(), value)
            })
            .collect();
        let body = bytes[head_len..].to_vec();
        if let Some((_, len)) = headers.iter().find(|(n, _)| n == "Content-Length") {
            assert_eq!(len.parse::<usize>().ok(), Some(body.len()), "{bytes:?}");
        }
        let code = response.code.expect("code");
        let reason = response.reason.expect("reason").to_string();
        (code, reason, headers, body)
    }

    /// Extra headers, as the writers take them.
    type Headers = &'static [(&'static str, &'static str)];

    /// (status, content_type, extra_headers, body, keep_alive, want) for `write_response`.
    type ResponseCase = (
        Status,
        Option<&'static str>,
        Headers,
        &'static [u8],
        bool,
        &'static str,
    );

    fn text(out: &BytesMut) -> &str {
        std::str::from_utf8(out).expect("responses are ASCII here")
    }

    #[test]
    fn status_table() {
        #[rustfmt::skip]
        let cases = [
            (Status::Ok, 200, "OK"),
            (Status::Accepted, 202, "Accepted"),
            (Status::NoContent, 204, "No Content"),
            (Status::BadRequest, 400, "Bad Request"),
            (Status::Unauthorized, 401, "Unauthorized"),
            (Status::Forbidden, 403, "Forbidden"),
            (Status::NotFound, 404, "Not Found"),
            (Status::MethodNotAllowed, 405, "Method Not Allowed"),
            (Status::RequestTimeout, 408, "Request Timeout"),
            (Status::LengthRequired, 411, "Length Required"),
            (Status::PayloadTooLarge, 413, "Payload Too Large"),
            (Status::UnsupportedMediaType, 415, "Unsupported Media Type"),
            (Status::HeaderFieldsTooLarge, 431, "Request Header Fields Too Large"),
            (Status::InternalServerError, 500, "Internal Server Error"),
            (Status::ServiceUnavailable, 503, "Service Unavailable"),
            (Status::GatewayTimeout, 504, "Gateway Timeout"),
        ];
        assert_eq!(cases.len(), ALL_STATUSES.len());
        for (status, code, reason) in cases {
            assert_eq!(status.code(), code, "{status:?}");
            assert_eq!(status.reason(), reason, "{status:?}");
            assert_eq!(Status::from_code(code), Some(status), "{code}");
        }
        for code in [0, 100, 201, 302, 418, 429, 502, 999, u16::MAX] {
            assert_eq!(Status::from_code(code), None, "{code}");
        }
    }

    #[test]
    fn write_response_table() {
        #[rustfmt::skip]
        let cases: &[ResponseCase] = &[
            // (status, content_type, extra_headers, body, keep_alive, want)
            (Status::Accepted, Some("application/json"), &[], b"{\"ok\":true}", true, "HTTP/1.1 202 Accepted\r\nContent-Length: 11\r\nContent-Type: application/json\r\n\r\n{\"ok\":true}"),
            (Status::Ok, None, &[], b"ok\n", true, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nok\n"),
            (Status::Ok, None, &[], b"", true, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            (Status::Ok, Some("text/plain"), &[], b"", true, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: text/plain\r\n\r\n"),
            (Status::RequestTimeout, None, &[], b"", false, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            (Status::MethodNotAllowed, None, &[("Allow", "GET, HEAD"), ("X-A", "1")], b"", false, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nAllow: GET, HEAD\r\nX-A: 1\r\nConnection: close\r\n\r\n"),
            (Status::NoContent, Some("text/plain"), &[("Access-Control-Allow-Origin", "https://a")], b"", true, "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: https://a\r\n\r\n"),
            (Status::Ok, None, &[("Access-Control-Allow-Origin", "https://a\r\nSet-Cookie: x=1")], b"", true, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nAccess-Control-Allow-Origin: https://a  Set-Cookie: x=1\r\n\r\n"),
            (Status::Ok, None, &[("X-Y", "a\0b\nc")], b"", true, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Y: a b c\r\n\r\n"),
        ];
        for &(status, content_type, extra, body, keep_alive, want) in cases {
            let mut out = BytesMut::from(&b"kept|"[..]);
            write_response(&mut out, status, content_type, extra, body, keep_alive);
            let got = text(&out);
            assert_eq!(
                got.strip_prefix("kept|"),
                Some(want),
                "{status:?} {extra:?}"
            );
            let (code, reason, _, parsed_body) = parse_back(&out[5..]);
            assert_eq!((code, reason.as_str()), (status.code(), status.reason()));
            assert_eq!(
                parsed_body,
                if status == Status::NoContent {
                    &b""[..]
                } else {
                    body
                }
            );
        }
    }

    #[test]
    fn big_body_length() {
        let body = vec![b'x'; 1_234_567];
        let mut out = BytesMut::new();
        write_response(
            &mut out,
            Status::Ok,
            Some("application/octet-stream"),
            &[],
            &body,
            true,
        );
        let (code, _, headers, parsed_body) = parse_back(&out);
        assert_eq!(code, 200);
        assert!(headers.contains(&("Content-Length".into(), "1234567".into())));
        assert_eq!(parsed_body.len(), body.len());
    }

    #[test]
    fn write_stream_head_table() {
        #[rustfmt::skip]
        let cases: &[(Headers, &str)] = &[
            (&[], "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: keep-alive\r\n\r\n"),
            (&[("Access-Control-Allow-Origin", "https://a"), ("Vary", "Origin")], "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: keep-alive\r\nAccess-Control-Allow-Origin: https://a\r\nVary: Origin\r\n\r\n"),
        ];
        for &(extra, want) in cases {
            let mut out = BytesMut::new();
            write_stream_head(&mut out, extra);
            assert_eq!(text(&out), want, "{extra:?}");
            let (code, _, headers, body) = parse_back(&out);
            assert_eq!(code, 200);
            assert!(body.is_empty());
            assert!(!headers
                .iter()
                .any(|(n, _)| n == "Content-Length" || n == "Transfer-Encoding"));
        }
    }

    #[test]
    fn put_headers_table() {
        #[rustfmt::skip]
        let cases: &[(Headers, &str)] = &[
            (&[], ""),
            (&[("A", "1"), ("B", "")], "A: 1\r\nB: \r\n"),
            (&[("X\nY", "v")], "X Y: v\r\n"),
            (&[("X", "\r\n\r\nHTTP/1.1 200 OK")], "X:     HTTP/1.1 200 OK\r\n"),
            (&[("X", "é\0")], "X: é \r\n"),
        ];
        for &(headers, want) in cases {
            let mut out = BytesMut::new();
            put_headers(&mut out, headers);
            assert_eq!(text(&out), want, "{headers:?}");
        }
    }
}
