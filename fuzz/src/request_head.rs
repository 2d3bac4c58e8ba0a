//! `http::request::parse_head` on arbitrary bytes.
//!
//! Beyond "never panics", it checks the parser's promises: whatever it returns borrows from
//! the input and stays within [`MAX_HEAD`]; the path is in origin form; and it is stateless,
//! so a head split at any byte gives `Partial` before its end and the same answer after it
//! (the connection re-parses after every read).

use gateway::internals::{parse_head, BodyKind, HttpError, Parsed, MAX_HEAD};

/// Whether `part` lies inside `whole` (borrowed from it, not copied).
fn within(part: &[u8], whole: &[u8]) -> bool {
    let (start, end) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
    let (lo, hi) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    part.is_empty() || (lo <= start && end <= hi)
}

/// One input.
pub fn run(buf: &[u8]) {
    let full = parse_head(buf);
    // A few split points chosen by the input itself, plus both ends: checking every prefix
    // would cost O(n²) parses per input and slow the fuzzer a hundredfold.
    let seed = buf
        .iter()
        .fold(0usize, |h, &b| h.wrapping_mul(31) ^ usize::from(b));
    let mut cuts = vec![0, buf.len() / 2, buf.len().saturating_sub(1)];
    if !buf.is_empty() {
        cuts.push(seed % buf.len());
    }
    match &full {
        Ok(Parsed::Complete(head)) => {
            let n = head.head_len;
            assert!(
                n > 0 && n <= buf.len() && n <= MAX_HEAD,
                "head_len {n} of {}",
                buf.len()
            );
            assert!(head.path.starts_with('/'), "path {:?}", head.path);
            assert!(!head.path.contains(['?', '#']), "path {:?}", head.path);
            assert!(!head.query.contains('#'), "query {:?}", head.query);
            assert!(head.minor_version <= 1);
            for field in [head.path.as_bytes(), head.query.as_bytes()]
                .into_iter()
                .chain(head.authorization)
                .chain(head.last_event_id)
                .chain(head.origin)
                .chain(head.access_control_request_method)
                .chain(head.access_control_request_headers)
            {
                assert!(within(field, &buf[..n]), "a field outside the head");
            }
            if let BodyKind::Chunked = head.body {
                assert_eq!(head.minor_version, 1, "chunked in HTTP/1.0");
            }
            // The head alone parses to the same head; anything after it is never looked at.
            assert_eq!(parse_head(&buf[..n]), full, "head alone");
            cuts.push(n - 1);
            for k in cuts {
                let got = parse_head(&buf[..k]);
                if k < n {
                    assert_eq!(got, Ok(Parsed::Partial), "split at {k} of head {n}");
                } else {
                    assert_eq!(got, full, "split at {k} after head {n}");
                }
            }
        }
        Ok(Parsed::Partial) => {
            assert!(buf.len() < MAX_HEAD, "partial at {} bytes", buf.len());
            for k in cuts {
                assert_eq!(parse_head(&buf[..k]), Ok(Parsed::Partial), "split at {k}");
            }
        }
        Err(e) => {
            if *e == HttpError::HeadTooLarge {
                // Either too many header lines, or no end within MAX_HEAD bytes.
                assert!(e.status() == 431);
            }
            for k in cuts {
                let got = parse_head(&buf[..k]);
                assert!(
                    got == Ok(Parsed::Partial) || got == full,
                    "split at {k}: {got:?}, whole: {full:?}"
                );
            }
        }
    }
}
