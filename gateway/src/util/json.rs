//! JSON string escaping: the one escaper for every JSON text the gateway writes itself
//! (error bodies, system events, API replies). Payloads are never re-encoded.
use bytes::BufMut;

/// Lowercase hex digits, for `\u00XX` escapes.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the body of a JSON string literal for `s` (no surrounding quotes): `"` and `\`
/// are backslash-escaped, `\n` `\r` `\t` use their short escapes, other control characters
/// `\u00XX`; everything else, non-ASCII UTF-8 included, is copied in whole runs.
///
/// Error messages and other text put into JSON may quote client input; escaping keeps the
/// JSON valid whatever it contains.
pub fn escape_json_into(out: &mut impl BufMut, s: &str) {
    let bytes = s.as_bytes();
    let mut clean_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.put_slice(&bytes[clean_from..i]);
        clean_from = i + 1;
        if escape.is_empty() {
            out.put_slice(b"\\u00");
            out.put_u8(HEX[usize::from(b >> 4)]);
            out.put_u8(HEX[usize::from(b & 0xf)]);
        } else {
            out.put_slice(escape);
        }
    }
    out.put_slice(&bytes[clean_from..]);
}

/// Bytes [`escape_json_into`] writes for `s`.
pub fn escaped_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            // (input, want)
            ("", ""),
            ("plain", "plain"),
            ("a\"b\\c\n\u{1}", "a\\\"b\\\\c\\n\\u0001"),
            ("\r\t", "\\r\\t"),
            ("\u{0}\u{8}\u{c}\u{1f}", "\\u0000\\u0008\\u000c\\u001f"),
            (" \u{7f}", " \u{7f}"),
            ("é€😀", "é€😀"),
            ("/<>'", "/<>'"),
            ("\"\"", "\\\"\\\""),
        ];
        for &(input, want) in cases {
            let mut out = Vec::new();
            escape_json_into(&mut out, input);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?}");
            assert_eq!(escaped_len(input), want.len(), "{input:?}");
            let back: String = serde_json::from_str(&format!("\"{want}\"")).unwrap();
            assert_eq!(back, input);
        }
    }
}
