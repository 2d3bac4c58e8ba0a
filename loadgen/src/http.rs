//! The little HTTP/1.1 client side loadgen needs: split a URL, and read a response head
//! (through `httparse`, zero-copy) to learn the status and how the body is framed.
use std::net::{SocketAddr, ToSocketAddrs};

/// Largest response head loadgen accepts.
pub const MAX_HEAD: usize = 16 * 1024;

/// A parsed `http://host:port/path?query` (the path may still hold placeholders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Where to connect (resolved once).
    pub addr: SocketAddr,
    /// The `Host` header value.
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Splits and resolves an `http://` URL.
pub fn parse_url(s: &str) -> Result<Url, String> {
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| format!("{s}: only http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{s}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{s}: no IPv4 address"))?;
    Ok(Url {
        addr,
        host: host.to_string(),
        path: path.to_string(),
    })
}

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (an event stream without chunking).
    Close,
}

/// A complete response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Bytes of the head, with its final blank line.
    pub len: usize,
    /// Body framing.
    pub framing: Framing,
}

/// A response head loadgen cannot read (malformed, or over `MAX_HEAD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHead;

/// Parses a response head from the start of `buf`: `Ok(None)` while incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, BadHead> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let mut framing = Framing::Close;
            for h in r.headers.iter() {
                if h.name.eq_ignore_ascii_case("transfer-encoding")
                    && h.value.eq_ignore_ascii_case(b"chunked")
                {
                    framing = Framing::Chunked;
                } else if h.name.eq_ignore_ascii_case("content-length") && framing == Framing::Close
                {
                    let n = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or(BadHead)?;
                    framing = Framing::Length(n);
                }
            }
            Ok(Some(Head {
                status: r.code.unwrap_or(0),
                len,
                framing,
            }))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Ok(None),
        _ => Err(BadHead),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:8080/sse?token={token}").unwrap();
        assert_eq!(u.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(u.host, "127.0.0.1:8080");
        assert_eq!(u.path, "/sse?token={token}");
        assert_eq!(parse_url("http://127.0.0.1:81").unwrap().path, "/");
        assert!(parse_url("https://x/").is_err());
    }

    #[test]
    fn heads() {
        type Case<'a> = (&'a [u8], Option<(u16, Framing)>);
        let cases: &[Case<'_>] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata",
                Some((200, Framing::Close)),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Some((200, Framing::Chunked)),
            ),
            (
                b"HTTP/1.1 202 Accepted\r\ncontent-length: 24\r\n\r\n",
                Some((202, Framing::Length(24))),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-", None),
        ];
        for (raw, want) in cases {
            let got = parse_head(raw).unwrap().map(|h| (h.status, h.framing));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(raw));
        }
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
