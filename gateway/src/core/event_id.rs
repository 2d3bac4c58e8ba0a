//! Event ids: `<run>.<core>.<seq>`, written by the hub for every event and read back from a
//! reconnecting client's `Last-Event-ID`.
//!
//! The run tag (random per start of the process) keeps an id of an earlier run from being
//! taken for one of this run's; the core says which core's history can answer a resume (so
//! the stream is placed there); the sequence number orders events of one core, across all of
//! its channels, and is never reused within a run.
//!
//! These ids are per node: events of the durable path (Redis 7, `ssegw_publish`) carry a
//! [`DurableId`](crate::broker::durable::DurableId) instead, `<epoch>-<seq>-<unix_s>`, the
//! same on every node; the two forms cannot be taken for each other (that one has no `.`).
use std::fmt;

/// One event id, borrowed from the text it was parsed from or written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId<'a> {
    /// The run tag of the process that issued it (no `.` in it).
    pub run: &'a str,
    /// The core that issued it.
    pub core: usize,
    /// The core's sequence number of the event.
    pub seq: u64,
}

impl<'a> EventId<'a> {
    /// Reads `<run>.<core>.<seq>`; `None` for anything else.
    pub fn parse(text: &'a str) -> Option<EventId<'a>> {
        let (run, rest) = text.split_once('.')?;
        let (core, seq) = rest.split_once('.')?;
        if run.is_empty() || !all_digits(core) || !all_digits(seq) {
            return None;
        }
        Some(EventId {
            run,
            core: core.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// Reads an id issued by run `run`; `None` for ids of other runs or other shapes.
    pub fn of_run(text: &'a str, run: &str) -> Option<EventId<'a>> {
        EventId::parse(text).filter(|id| id.run == run)
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl fmt::Display for EventId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.run, self.core, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_ids_parse_back_and_nothing_else_does() {
        let id = EventId {
            run: "k3x9a0b1",
            core: 1,
            seq: 42,
        };
        assert_eq!(id.to_string(), "k3x9a0b1.1.42");
        assert_eq!(EventId::parse("k3x9a0b1.1.42"), Some(id));
        assert_eq!(EventId::of_run("k3x9a0b1.1.42", "k3x9a0b1"), Some(id));
        assert_eq!(EventId::of_run("k3x9a0b1.1.42", "other"), None);
        for bad in [
            "",
            "r",
            "r.1",
            "r.1.",
            "r..1",
            ".1.1",
            "r.x.1",
            "r.1.x",
            "r.1.+5",
            "r.-1.5",
            "r.1.5.6",
            "r.1. 5",
            "r.99999999999999999999.1",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
    }
}
