//! URL, channel, claims and body templates: `{name}` placeholders expanded per stream or per
//! event. Parsed once into literal and variable segments, so expanding one costs a few
//! copies and integer writes, never a search. A `{` that does not start a known placeholder
//! is literal text, so JSON bodies like `{"channel":"{channel}","data":{payload}}` need no
//! escaping.
use std::io::Write;

/// A placeholder a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// `{i}`: the stream's index, 0-based over the whole run.
    I,
    /// `{player}`: the player (channel number) the stream belongs to / the event goes to.
    Player,
    /// `{brand}`: the brand id of the run.
    Brand,
    /// `{channel}`: the channel name, itself expanded from the channel template.
    Channel,
    /// `{token}`: the stream's token, minted from the secret or read from a file.
    Token,
    /// `{seq}`: the event's sequence number on its channel.
    Seq,
    /// `{t}`: the event's intended send time, unix microseconds.
    T,
    /// `{payload}`: the event payload, expanded from the payload template.
    Payload,
    /// `{payload_escaped}`: the payload escaped for the inside of a JSON string, for publish
    /// APIs that carry the event text in one (Pushpin: `"content":"data: {payload_escaped}\n\n"`).
    PayloadEscaped,
    /// `{exp}`: a token expiry (unix seconds, a day from now).
    Exp,
}

const NAMES: &[(&str, Var)] = &[
    ("i", Var::I),
    ("player", Var::Player),
    ("brand", Var::Brand),
    ("channel", Var::Channel),
    ("token", Var::Token),
    ("seq", Var::Seq),
    ("t", Var::T),
    ("payload", Var::Payload),
    ("payload_escaped", Var::PayloadEscaped),
    ("exp", Var::Exp),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Box<[u8]>),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Literal text and placeholders, in order.
    segs: Vec<Seg>,
}

/// The values placeholders expand to. Unset byte fields expand to nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Vars<'a> {
    /// `{i}`
    pub i: u64,
    /// `{player}`
    pub player: u64,
    /// `{brand}`
    pub brand: u64,
    /// `{channel}`
    pub channel: &'a [u8],
    /// `{token}`
    pub token: &'a [u8],
    /// `{seq}`
    pub seq: u64,
    /// `{t}`
    pub t: u64,
    /// `{payload}`
    pub payload: &'a [u8],
    /// `{exp}`
    pub exp: u64,
}

impl Template {
    /// Parses `s`. Never fails: unknown `{...}` is literal text.
    pub fn parse(s: &str) -> Template {
        let b = s.as_bytes();
        let mut segs = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'{' {
                let hit = NAMES.iter().find(|(name, _)| {
                    b[i + 1..].starts_with(name.as_bytes())
                        && b.get(i + 1 + name.len()) == Some(&b'}')
                });
                if let Some((name, var)) = hit {
                    if !lit.is_empty() {
                        segs.push(Seg::Lit(std::mem::take(&mut lit).into_boxed_slice()));
                    }
                    segs.push(Seg::Var(*var));
                    i += name.len() + 2;
                    continue;
                }
            }
            lit.push(b[i]);
            i += 1;
        }
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit.into_boxed_slice()));
        }
        Template { segs }
    }

    /// Whether the template uses `v` (so a caller can skip computing it).
    pub fn uses(&self, v: Var) -> bool {
        self.segs.contains(&Seg::Var(v))
    }

    /// Appends the expansion to `out`.
    pub fn render(&self, v: &Vars<'_>, out: &mut Vec<u8>) {
        for s in &self.segs {
            match s {
                Seg::Lit(l) => out.extend_from_slice(l),
                Seg::Var(var) => {
                    // Writing to a Vec cannot fail.
                    let _ = match var {
                        Var::I => write!(out, "{}", v.i),
                        Var::Player => write!(out, "{}", v.player),
                        Var::Brand => write!(out, "{}", v.brand),
                        Var::Seq => write!(out, "{}", v.seq),
                        Var::T => write!(out, "{}", v.t),
                        Var::Exp => write!(out, "{}", v.exp),
                        Var::Channel => out.write_all(v.channel),
                        Var::Token => out.write_all(v.token),
                        Var::Payload => out.write_all(v.payload),
                        Var::PayloadEscaped => {
                            let text = String::from_utf8_lossy(v.payload);
                            gateway::util::json::escape_json_into(out, &text);
                            Ok(())
                        }
                    };
                }
            }
        }
    }

    /// The expansion as a new string (for per-stream, not per-event, use).
    pub fn render_string(&self, v: &Vars<'_>) -> String {
        let mut out = Vec::new();
        self.render(v, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_known_placeholders_and_keeps_json_braces() {
        let v = Vars {
            i: 7,
            player: 42,
            brand: 1,
            channel: b"SSE::1::42",
            token: b"tok",
            seq: 3,
            t: 1_700_000_000_000_000,
            payload: br#"{"a":1}"#,
            exp: 9,
        };
        let cases: &[(&str, &str)] = &[
            ("/sse?token={token}&i={i}", "/sse?token=tok&i=7"),
            ("SSE::{brand}::{player}", "SSE::1::42"),
            (
                r#"{"channel":"{channel}","data":{payload}}"#,
                r#"{"channel":"SSE::1::42","data":{"a":1}}"#,
            ),
            (
                r#"{"event_data":{"seq":{seq},"t":{t}}}"#,
                r#"{"event_data":{"seq":3,"t":1700000000000000}}"#,
            ),
            ("{unknown}{", "{unknown}{"),
            (
                r#"{"items":[{"channel":"{channel}","formats":{"http-stream":{"content":"data: {payload_escaped}\n\n"}}}]}"#,
                r#"{"items":[{"channel":"SSE::1::42","formats":{"http-stream":{"content":"data: {\"a\":1}\n\n"}}}]}"#,
            ),
            ("{exp}{i", "9{i"),
            ("", ""),
        ];
        for (tpl, want) in cases {
            assert_eq!(Template::parse(tpl).render_string(&v), *want, "{tpl}");
        }
        assert!(Template::parse("/sub?id={channel}").uses(Var::Channel));
        assert!(!Template::parse("/sub?id={channel}").uses(Var::Token));
    }
}
