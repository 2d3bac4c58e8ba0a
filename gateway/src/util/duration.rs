//! Durations as settings and route rows write them: `500ms`, `10s`, `2m`, `1h`, or a bare
//! number of seconds. No fractions, and at most [`MAX`], so later `Instant + Duration`
//! arithmetic can never overflow.
use std::time::Duration;

/// Longest duration [`parse`] accepts (keeps deadline arithmetic far from overflow).
pub const MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds, surrounding whitespace
/// allowed. Zero is accepted; a caller that needs a positive duration says so. The error is
/// the reason, worded to follow the value's name ("must be ...", "is too large").
pub fn parse(text: &str) -> Result<Duration, String> {
    const FORM: &str = "must be a duration such as 500ms, 10s, 2m, 1h, or a number of seconds";
    let t = text.trim();
    let digits_end = t
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(FORM.to_string());
    }
    let n: u64 = digits.parse().map_err(|_| "is too large".to_string())?;
    let duration = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(FORM.to_string()),
    };
    match duration {
        None => Err("is too large".to_string()),
        Some(d) if d > MAX => Err("must be at most 24h".to_string()),
        Some(d) => Ok(d),
    }
}

/// A duration the way [`parse`] reads it where it can (`10s`, `500ms`), for messages.
pub fn format(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{d:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let cases: &[(&str, Result<Duration, &str>)] = &[
            ("1s", Ok(Duration::from_secs(1))),
            ("500ms", Ok(Duration::from_millis(500))),
            ("2m", Ok(Duration::from_secs(120))),
            ("1h", Ok(Duration::from_secs(3600))),
            ("15", Ok(Duration::from_secs(15))),
            (" 15s ", Ok(Duration::from_secs(15))),
            ("0", Ok(Duration::ZERO)),
            ("24h", Ok(MAX)),
            ("86400s", Ok(MAX)),
            ("1x", Err("duration")),
            ("1.5s", Err("duration")),
            ("-1s", Err("duration")),
            ("s", Err("duration")),
            ("", Err("duration")),
            ("1 s", Err("duration")),
            ("25h", Err("at most 24h")),
            ("86401s", Err("at most 24h")),
            ("99999999999999999999h", Err("too large")),
            ("9999999999999999999h", Err("too large")),
        ];
        for (text, want) in cases {
            match (parse(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{text}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn format_forms() {
        let cases = [
            (Duration::from_secs(10), "10s"),
            (Duration::ZERO, "0s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(1500), "1.5ms"),
        ];
        for (d, want) in cases {
            assert_eq!(format(d), want);
        }
    }
}
