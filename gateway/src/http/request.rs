//! Request-head parsing: bytes in, [`Parsed::Complete`] / [`Parsed::Partial`] / [`HttpError`] out.
//!
//! The connection loop reads into a buffer and calls [`parse_head`] after every read. The
//! parser is stateless: it re-parses the buffer from the start each time, so a head split
//! across any number of reads gives the same answer as one read. Everything it returns
//! borrows from that buffer; nothing is copied or allocated, not even on the error path.
//!
//! Tokenising is `httparse`'s job. This module adds what `httparse` leaves to the caller:
//! the size limits, the origin-form check on the target, `?`/`#` splitting, connection
//! persistence, body framing (`Content-Length` / `Transfer-Encoding`) and picking out the
//! handful of headers the gateway acts on.

use std::fmt;

/// Longest request head accepted, in bytes (request line, headers and the blank line).
///
/// A stream request is a short `GET`; a peer that sends more is broken or hostile, and
/// bounding the head bounds both the read buffer and the parser's work per read.
pub const MAX_HEAD: usize = 8 * 1024;

/// Most header lines accepted; more is answered like an oversized head (431).
///
/// It is also the length of the stack array handed to `httparse`, so parsing never
/// allocates.
pub const MAX_HEADERS: usize = 64;

/// The request method, reduced to the ones the gateway routes on.
///
/// Methods are case-sensitive (RFC 9110 §9.1): `get` is [`Method::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`: opening a stream, health and metrics.
    Get,
    /// `HEAD`: like `GET` without a body; some probes use it.
    Head,
    /// `POST`: publishing events.
    Post,
    /// `OPTIONS`: CORS preflight.
    Options,
    /// Any other method; routing answers it with 405.
    Other,
}

/// Why a head was rejected; the connection answers it with [`HttpError::status`] and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not a valid HTTP/1.x request head, or one whose framing is ambiguous (400).
    Malformed,
    /// Larger than [`MAX_HEAD`] bytes or more than [`MAX_HEADERS`] header lines (431).
    HeadTooLarge,
}

impl HttpError {
    /// The response status code this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed => 400,
            HttpError::HeadTooLarge => 431,
        }
    }

    /// Short human-readable text for the error body and logs.
    pub fn message(self) -> &'static str {
        match self {
            HttpError::Malformed => "malformed request head",
            HttpError::HeadTooLarge => "request head too large (limit 8 KiB and 64 headers)",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for HttpError {}

/// How the request body is framed, so the connection knows how many bytes follow the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Neither `Content-Length` nor `Transfer-Encoding`: the request has no body.
    None,
    /// `Content-Length: n`. `Length(0)` is kept distinct from [`BodyKind::None`] so a
    /// `POST` with an explicit empty body is not mistaken for one lacking a length (411).
    Length(usize),
    /// `Transfer-Encoding: ... chunked`: the body is chunk-framed.
    Chunked,
}

/// Outcome of parsing a buffer that may not yet hold the whole head.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The whole head was in the buffer.
    Complete(T),
    /// The buffer ends inside the head: read more and parse again.
    Partial,
}

/// A parsed request head, borrowing from the read buffer (zero copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'b> {
    /// The request method.
    pub method: Method,
    /// The target up to the first `?` (or `#`), still percent-encoded; always starts with `/`.
    pub path: &'b str,
    /// The target after the first `?`, without any `#fragment`; `""` when there is none.
    pub query: &'b str,
    /// `0` for HTTP/1.0, `1` for HTTP/1.1; no other version gets this far.
    pub minor_version: u8,
    /// Whether the connection may carry another request after this one: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// How the body after the head is framed.
    pub body: BodyKind,
    /// The `Authorization` value (e.g. `Bearer <jwt>`), if sent.
    pub authorization: Option<&'b [u8]>,
    /// The `Last-Event-ID` value a reconnecting `EventSource` sends, for replay.
    pub last_event_id: Option<&'b [u8]>,
    /// The `Origin` value, for CORS.
    pub origin: Option<&'b [u8]>,
    /// The `Access-Control-Request-Method` value of a CORS preflight.
    pub access_control_request_method: Option<&'b [u8]>,
    /// The `Access-Control-Request-Headers` value of a CORS preflight.
    pub access_control_request_headers: Option<&'b [u8]>,
    /// The `Content-Type` value (publish bodies must be JSON).
    pub content_type: Option<&'b [u8]>,
    /// Whether the request carries `Forwarded`, `X-Forwarded-For` or `X-Real-IP` (any value):
    /// a proxy relayed it, so the peer address is the proxy's, not the client's.
    pub forwarded: bool,
    /// Bytes of the buffer taken by the head, leading blank lines included; the body, if
    /// any, starts at this offset.
    pub head_len: usize,
}

/// Parses the request head at the start of `buf`.
///
/// Returns `Partial` while the head is incomplete and still under [`MAX_HEAD`]; the caller
/// reads more and calls again with the grown buffer. Only the first [`MAX_HEAD`] bytes are
/// ever looked at, so a large buffer (say, head plus body) costs no more than a full head.
///
/// Rules beyond `httparse`'s tokenising, each a `Malformed` when broken:
/// - the target must be in origin form (start with `/`): no `*`, no absolute URI;
/// - `Content-Length` must be all digits and fit `usize`; repeats must agree;
/// - `Transfer-Encoding` must end in `chunked`, apply `chunked` once, not be combined with
///   `Content-Length`, and not appear in an HTTP/1.0 request (RFC 9112 §6.1);
/// - at most one `Authorization` header, so the gateway cannot check a different
///   credential than a proxy in front of it did.
///
/// Other headers that the gateway reads keep their first occurrence.
pub fn parse_head(buf: &[u8]) -> Result<Parsed<RequestHead<'_>>, HttpError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed),
    };

    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HttpError::Malformed);
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    if minor_version > 1 {
        return Err(HttpError::Malformed);
    }
    if !target.starts_with('/') {
        return Err(HttpError::Malformed);
    }
    let target = match target.split_once('#') {
        Some((before, _fragment)) => before,
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let mut head = RequestHead {
        method,
        path,
        query,
        minor_version,
        keep_alive: false,
        body: BodyKind::None,
        authorization: None,
        last_event_id: None,
        origin: None,
        access_control_request_method: None,
        access_control_request_headers: None,
        content_type: None,
        forwarded: false,
        head_len,
    };
    let mut content_length: Option<usize> = None;
    // `Some(true)` once the codings so far end in `chunked`.
    let mut ends_chunked: Option<bool> = None;
    let mut close = false;
    let mut keep_alive_token = false;

    for header in req.headers.iter() {
        let name = header.name.as_bytes();
        let value = header.value;
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(HttpError::Malformed);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let mut empty = true;
            for coding in list_tokens(value) {
                // `chunked` must be the last coding, applied once: nothing may follow it.
                if ends_chunked == Some(true) {
                    return Err(HttpError::Malformed);
                }
                ends_chunked = Some(coding.eq_ignore_ascii_case(b"chunked"));
                empty = false;
            }
            if empty {
                return Err(HttpError::Malformed);
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in list_tokens(value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive_token |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"authorization") {
            if head.authorization.is_some() {
                return Err(HttpError::Malformed);
            }
            head.authorization = Some(value);
        } else if name.eq_ignore_ascii_case(b"last-event-id") {
            head.last_event_id.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"origin") {
            head.origin.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"access-control-request-method") {
            head.access_control_request_method.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"access-control-request-headers") {
            head.access_control_request_headers.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"content-type") {
            head.content_type.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"forwarded")
            || name.eq_ignore_ascii_case(b"x-forwarded-for")
            || name.eq_ignore_ascii_case(b"x-real-ip")
        {
            head.forwarded = true;
        }
    }

    // `close` wins over `keep-alive` wherever both appear.
    head.keep_alive = !close && (minor_version == 1 || keep_alive_token);
    head.body = match (content_length, ends_chunked) {
        (None, None) => BodyKind::None,
        (Some(n), None) => BodyKind::Length(n),
        (None, Some(true)) if minor_version == 1 => BodyKind::Chunked,
        // Both framings (request smuggling), a final coding other than chunked (length
        // unknowable), or chunked in HTTP/1.0 (undefined there).
        _ => return Err(HttpError::Malformed),
    };
    Ok(Parsed::Complete(head))
}

/// Reads a `Content-Length` value: one or more ASCII digits that fit in `usize`.
///
/// Signs, spaces inside, lists (`5, 5`) and empty values are refused: a length the
/// gateway reads differently from a proxy in front of it is how requests get smuggled.
fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    if value.is_empty() {
        return Err(HttpError::Malformed);
    }
    let mut n: usize = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(HttpError::Malformed);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(b - b'0')))
            .ok_or(HttpError::Malformed)?;
    }
    Ok(n)
}

/// Splits a comma-separated header value into its non-empty, whitespace-trimmed elements.
fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use BodyKind::{Chunked, Length};
    use HttpError::{HeadTooLarge, Malformed};

    /// The expected head of a bare `GET / HTTP/1.1`; cases override fields. A `head_len` of
    /// 0 stands for "the whole input".
    const GET: RequestHead<'static> = RequestHead {
        method: Method::Get,
        path: "/",
        query: "",
        minor_version: 1,
        keep_alive: true,
        body: BodyKind::None,
        authorization: None,
        last_event_id: None,
        origin: None,
        access_control_request_method: None,
        access_control_request_headers: None,
        content_type: None,
        forwarded: false,
        head_len: 0,
    };
    const POST: RequestHead<'static> = RequestHead {
        method: Method::Post,
        ..GET
    };
    const GET10: RequestHead<'static> = RequestHead {
        minor_version: 0,
        keep_alive: false,
        ..GET
    };

    type Want = Result<Parsed<RequestHead<'static>>, HttpError>;

    fn ok(head: RequestHead<'static>) -> Want {
        Ok(Parsed::Complete(head))
    }

    /// Parses `input` whole and then every proper prefix of it, as if it had arrived split at
    /// that byte: a prefix shorter than the head is `Partial`, a longer one (head plus part of
    /// the body) gives the same `Complete`; a rejected input is `Partial` or the same error
    /// at every prefix.
    fn check(name: &str, input: &[u8], want: &Want) {
        let mut want = copy(want);
        if let Ok(Parsed::Complete(head)) = &mut want {
            if head.head_len == 0 {
                head.head_len = input.len();
            }
        }
        let full = parse_head(input);
        assert_eq!(full, want, "case {name:?}: whole input");
        for k in 0..input.len() {
            let got = parse_head(&input[..k]);
            match &want {
                Ok(Parsed::Complete(head)) if k < head.head_len => {
                    assert_eq!(got, Ok(Parsed::Partial), "case {name:?}: split at {k}");
                }
                Ok(_) => assert_eq!(got, want, "case {name:?}: split at {k}"),
                Err(e) => assert!(
                    got == Ok(Parsed::Partial) || got == Err(*e),
                    "case {name:?}: split at {k}: {got:?}"
                ),
            }
        }
    }

    /// `Parsed` is deliberately not `Clone`; tests copy expectations by hand.
    fn copy(want: &Want) -> Want {
        match want {
            Ok(Parsed::Complete(head)) => Ok(Parsed::Complete(head.clone())),
            Ok(Parsed::Partial) => Ok(Parsed::Partial),
            Err(e) => Err(*e),
        }
    }

    #[test]
    fn parses_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], Want)] = &[
            ("eventsource", b"GET /events/orders?topic=a%2Cb HTTP/1.1\r\nHost: gw.example\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nLast-Event-ID: 42\r\nOrigin: https://app.example\r\nCookie: sid=abc; theme=dark\r\nUser-Agent: Mozilla/5.0\r\n\r\n", ok(RequestHead { path: "/events/orders", query: "topic=a%2Cb", last_event_id: Some(b"42"), origin: Some(b"https://app.example"), ..GET })),
            ("minimal", b"GET / HTTP/1.1\r\n\r\n", ok(GET)),
            ("empty buffer", b"", Ok(Parsed::Partial)),
            ("no blank line yet", b"GET / HTTP/1.1\r\nHost: x\r\n", Ok(Parsed::Partial)),
            // target splitting
            ("query", b"GET /s?a=1&b=2 HTTP/1.1\r\n\r\n", ok(RequestHead { path: "/s", query: "a=1&b=2", ..GET })),
            ("empty query", b"GET /s? HTTP/1.1\r\n\r\n", ok(RequestHead { path: "/s", query: "", ..GET })),
            ("second ? in query", b"GET /s?a?b HTTP/1.1\r\n\r\n", ok(RequestHead { path: "/s", query: "a?b", ..GET })),
            ("fragment no query", b"GET /s#frag HTTP/1.1\r\n\r\n", ok(RequestHead { path: "/s", query: "", ..GET })),
            ("fragment after query", b"GET /s?x=1#f?g HTTP/1.1\r\n\r\n", ok(RequestHead { path: "/s", query: "x=1", ..GET })),
            ("encoded path kept", b"GET /a%20b/c HTTP/1.1\r\n\r\n", ok(RequestHead { path: "/a%20b/c", ..GET })),
            ("utf-8 path", "GET /é HTTP/1.1\r\n\r\n".as_bytes(), ok(RequestHead { path: "/é", ..GET })),
            ("non-utf-8 path", b"GET /\xff HTTP/1.1\r\n\r\n", Err(Malformed)),
            ("absolute-form", b"GET http://example.com/ HTTP/1.1\r\n\r\n", Err(Malformed)),
            ("asterisk-form", b"OPTIONS * HTTP/1.1\r\n\r\n", Err(Malformed)),
            ("authority-form", b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", Err(Malformed)),
            ("query-only target", b"GET ?a=1 HTTP/1.1\r\n\r\n", Err(Malformed)),
            // methods
            ("head", b"HEAD /h HTTP/1.1\r\n\r\n", ok(RequestHead { method: Method::Head, path: "/h", ..GET })),
            ("preflight", b"OPTIONS /e HTTP/1.1\r\nOrigin: https://a\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization, last-event-id\r\n\r\n", ok(RequestHead { method: Method::Options, path: "/e", origin: Some(b"https://a"), access_control_request_method: Some(b"GET"), access_control_request_headers: Some(b"authorization, last-event-id"), ..GET })),
            ("other method", b"DELETE /x HTTP/1.1\r\n\r\n", ok(RequestHead { method: Method::Other, path: "/x", ..GET })),
            ("methods are case-sensitive", b"get / HTTP/1.1\r\n\r\n", ok(RequestHead { method: Method::Other, ..GET })),
            // body framing
            ("content-length", b"POST /publish HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", ok(RequestHead { path: "/publish", body: Length(5), head_len: 45, ..POST })),
            ("content-length 0", b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", ok(RequestHead { body: Length(0), ..POST })),
            ("content-length leading zeros", b"POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n", ok(RequestHead { body: Length(7), ..POST })),
            ("content-length same twice", b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n", ok(RequestHead { body: Length(5), ..POST })),
            ("content-length differs", b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Err(Malformed)),
            ("content-length 12a", b"POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n", Err(Malformed)),
            ("content-length -1", b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", Err(Malformed)),
            ("content-length +1", b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", Err(Malformed)),
            ("content-length empty", b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", Err(Malformed)),
            ("content-length inner space", b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", Err(Malformed)),
            ("content-length list", b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", Err(Malformed)),
            ("content-length overflow", b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", Err(Malformed)),
            ("chunked", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", ok(RequestHead { body: Chunked, ..POST })),
            ("chunked uppercase", b"POST / HTTP/1.1\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n", ok(RequestHead { body: Chunked, ..POST })),
            ("gzip then chunked", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", ok(RequestHead { body: Chunked, ..POST })),
            ("codings over two headers", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", ok(RequestHead { body: Chunked, ..POST })),
            ("te not chunked", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", Err(Malformed)),
            ("te chunked not last", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Err(Malformed)),
            ("te chunked twice", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Err(Malformed)),
            ("te empty", b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n", Err(Malformed)),
            ("te in http/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Err(Malformed)),
            ("cl then te", b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Err(Malformed)),
            ("te then cl", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", Err(Malformed)),
            // connection persistence
            ("1.0 default close", b"GET / HTTP/1.0\r\n\r\n", ok(GET10)),
            ("1.0 keep-alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", ok(RequestHead { keep_alive: true, ..GET10 })),
            ("1.0 Keep-Alive mixed case", b"GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n", ok(RequestHead { keep_alive: true, ..GET10 })),
            ("1.0 keep-alive and close", b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", ok(GET10)),
            ("1.0 other token", b"GET / HTTP/1.0\r\nConnection: upgrade\r\n\r\n", ok(GET10)),
            ("1.1 close", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", ok(RequestHead { keep_alive: false, ..GET })),
            ("1.1 close in list", b"GET / HTTP/1.1\r\nConnection: Upgrade ,CLOSE\r\n\r\n", ok(RequestHead { keep_alive: false, ..GET })),
            ("1.1 close in second header", b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", ok(RequestHead { keep_alive: false, ..GET })),
            ("1.1 keep-alive", b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", ok(GET)),
            ("1.1 closed is not close", b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", ok(GET)),
            // header names are case-insensitive; values are trimmed by httparse
            ("lowercase names", b"GET / HTTP/1.1\r\nlast-event-id: 7\r\norigin: o\r\nauthorization: Bearer t\r\n\r\n", ok(RequestHead { last_event_id: Some(b"7"), origin: Some(b"o"), authorization: Some(b"Bearer t"), ..GET })),
            ("uppercase names", b"GET / HTTP/1.1\r\nLAST-EVENT-ID: 7\r\nORIGIN: o\r\nAUTHORIZATION: Bearer t\r\n\r\n", ok(RequestHead { last_event_id: Some(b"7"), origin: Some(b"o"), authorization: Some(b"Bearer t"), ..GET })),
            ("value whitespace trimmed", b"GET / HTTP/1.1\r\nLast-Event-ID: \t 42 \t\r\n\r\n", ok(RequestHead { last_event_id: Some(b"42"), ..GET })),
            ("empty value", b"GET / HTTP/1.1\r\nLast-Event-ID:\r\n\r\n", ok(RequestHead { last_event_id: Some(b""), ..GET })),
            ("obs-text value", b"GET / HTTP/1.1\r\nOrigin: \xe9\r\n\r\n", ok(RequestHead { origin: Some(b"\xe9"), ..GET })),
            ("first last-event-id wins", b"GET / HTTP/1.1\r\nLast-Event-ID: 1\r\nLast-Event-ID: 2\r\n\r\n", ok(RequestHead { last_event_id: Some(b"1"), ..GET })),
            ("content-type", b"POST / HTTP/1.1\r\nContent-Type: application/json; charset=utf-8\r\nContent-type: text/plain\r\n\r\n", ok(RequestHead { content_type: Some(b"application/json; charset=utf-8"), ..POST })),
            ("forwarded", b"GET / HTTP/1.1\r\nForwarded: for=192.0.2.1\r\n\r\n", ok(RequestHead { forwarded: true, ..GET })),
            ("x-forwarded-for", b"GET / HTTP/1.1\r\nX-FORWARDED-FOR: 192.0.2.1\r\n\r\n", ok(RequestHead { forwarded: true, ..GET })),
            ("x-real-ip, empty value", b"GET / HTTP/1.1\r\nx-real-ip:\r\n\r\n", ok(RequestHead { forwarded: true, ..GET })),
            ("x-forwarded-host is not forwarded-for", b"GET / HTTP/1.1\r\nX-Forwarded-Host: a\r\n\r\n", ok(GET)),
            ("two authorizations", b"GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: a\r\n\r\n", Err(Malformed)),
            // malformed request lines
            ("garbage", b"GARBAGE\r\n\r\n", Err(Malformed)),
            ("missing version", b"GET /\r\n\r\n", Err(Malformed)),
            ("missing target", b"GET HTTP/1.1\r\n\r\n", Err(Malformed)),
            ("http/2.0", b"GET / HTTP/2.0\r\n\r\n", Err(Malformed)),
            ("http/1.2", b"GET / HTTP/1.2\r\n\r\n", Err(Malformed)),
            ("lowercase version", b"GET / http/1.1\r\n\r\n", Err(Malformed)),
            ("double space", b"GET  / HTTP/1.1\r\n\r\n", Err(Malformed)),
            ("leading space", b" GET / HTTP/1.1\r\n\r\n", Err(Malformed)),
            ("trailing space", b"GET / HTTP/1.1 \r\n\r\n", Err(Malformed)),
            ("tls hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", Err(Malformed)),
            // leading blank lines, as far as httparse tolerates them
            ("leading crlf", b"\r\nGET / HTTP/1.1\r\n\r\n", ok(GET)),
            ("two leading crlfs", b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", ok(GET)),
            ("bare lf line ends", b"GET / HTTP/1.1\nHost: x\n\n", ok(GET)),
            ("lone cr", b"\rGET / HTTP/1.1\r\n\r\n", Err(Malformed)),
            // bad header lines
            ("nul in value", b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", Err(Malformed)),
            ("control char in value", b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", Err(Malformed)),
            ("del in value", b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", Err(Malformed)),
            ("cr inside value", b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", Err(Malformed)),
            ("space in name", b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", Err(Malformed)),
            ("space before colon", b"GET / HTTP/1.1\r\nOrigin : x\r\n\r\n", Err(Malformed)),
            ("no colon", b"GET / HTTP/1.1\r\nOrigin\r\n\r\n", Err(Malformed)),
            ("obs-fold", b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", Err(Malformed)),
        ];
        for (name, input, want) in cases {
            check(name, input, want);
        }
    }

    /// `GET /` padded with one `X-Pad` header so that the whole head is `len` bytes.
    fn head_of_len(len: usize) -> Vec<u8> {
        let fixed = b"GET / HTTP/1.1\r\nX-Pad: \r\n\r\n".len();
        let mut head = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        head.resize(len - 4, b'p');
        head.extend_from_slice(b"\r\n\r\n");
        assert!(len > fixed);
        assert_eq!(head.len(), len);
        head
    }

    /// `GET /` with `n` headers.
    fn head_with_headers(n: usize) -> Vec<u8> {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..n {
            head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    #[test]
    fn limits_table() {
        let mut head_then_body = head_of_len(MAX_HEAD);
        head_then_body.extend_from_slice(&[b'b'; 100]);
        let mut unterminated = b"GET /".to_vec();
        unterminated.resize(MAX_HEAD + 500, b'a');
        let mut unterminated_8k = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        unterminated_8k.resize(MAX_HEAD, b'p');
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>, Want)> = vec![
            ("head of exactly 8 KiB", head_of_len(MAX_HEAD), ok(GET)),
            ("head of 8 KiB + 1", head_of_len(MAX_HEAD + 1), Err(HeadTooLarge)),
            ("8 KiB head then body", head_then_body, ok(RequestHead { head_len: MAX_HEAD, ..GET })),
            ("unterminated 8.5 KiB", unterminated, Err(HeadTooLarge)),
            ("unterminated, exactly 8 KiB so far", unterminated_8k, Err(HeadTooLarge)),
            ("64 headers", head_with_headers(MAX_HEADERS), ok(GET)),
            ("65 headers", head_with_headers(MAX_HEADERS + 1), Err(HeadTooLarge)),
        ];
        for (name, input, want) in &cases {
            check(name, input, want);
        }
    }

    #[test]
    fn error_status_and_message() {
        #[rustfmt::skip]
        let cases = [
            (Malformed, 400, "malformed request head"),
            (HeadTooLarge, 431, "request head too large (limit 8 KiB and 64 headers)"),
        ];
        for (error, status, message) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.message(), message, "{error:?}");
            assert_eq!(error.to_string(), message, "{error:?}");
        }
    }

    /// Deterministic fuzzing: heads built from request-ish fragments never panic, and a
    /// `Complete` head always satisfies the documented invariants.
    #[test]
    fn arbitrary_bytes_never_panic() {
        const PIECES: &[&[u8]] = &[
            b"GET ",
            b"POST ",
            b"/",
            b"?",
            b"#",
            b"a",
            b"%",
            b" ",
            b"HTTP/1.1",
            b"HTTP/1.0",
            b"\r\n",
            b"\n",
            b"\r",
            b":",
            b",",
            b"\0",
            b"\xff",
            b"Content-Length: ",
            b"Transfer-Encoding: ",
            b"chunked",
            b"Connection: ",
            b"close",
            b"keep-alive",
            b"Authorization: ",
            b"9",
            b"99999999999999999999",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut completes = 0;
        for _ in 0..20_000 {
            let mut input = b"GET / HTTP/1.1\r\n".to_vec();
            if next() % 4 == 0 {
                input.clear();
            }
            for _ in 0..(next() % 24) {
                input.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            if next() % 2 == 0 {
                input.extend_from_slice(b"\r\n\r\n");
            }
            if let Ok(Parsed::Complete(head)) = parse_head(&input) {
                completes += 1;
                assert!(head.head_len <= input.len().min(MAX_HEAD), "{input:?}");
                assert!(head.path.starts_with('/'), "{input:?}");
                assert!(!head.path.contains(['?', '#']), "{input:?}");
                assert!(!head.query.contains('#'), "{input:?}");
                assert!(head.minor_version <= 1, "{input:?}");
            }
        }
        assert!(
            completes > 100,
            "fuzzer produced only {completes} complete heads"
        );
    }
}
