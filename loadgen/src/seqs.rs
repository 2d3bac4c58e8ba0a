//! Loss and duplicate accounting. Event `k` of a run goes to channel `k % channels` with
//! sequence number `k / channels`, so from the number of events sent the expected sequence
//! numbers of every channel follow without any bookkeeping on the publishing side; each stream
//! keeps the set of sequence numbers it received and compares it with that.

/// Largest sequence number accepted into a set (one bit each): a corrupt or foreign number
/// must not make a stream allocate without bound. 2^24 is 2 MiB of bits for one stream.
pub const MAX_SEQ: u64 = 1 << 24;

/// Which channel event `k` goes to, and its sequence number there.
pub fn target(k: u64, channels: u64) -> (u64, u64) {
    (k % channels, k / channels)
}

/// How many events channel `channel` (of `channels`) got when `sent` events were published.
pub fn expected_on_channel(channel: u64, channels: u64, sent: u64) -> u64 {
    sent / channels + u64::from(channel < sent % channels)
}

/// What one insert found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time this sequence number arrived.
    New,
    /// It had arrived before.
    Duplicate,
    /// Beyond `MAX_SEQ`: not tracked.
    OutOfRange,
}

/// The sequence numbers one stream has received.
#[derive(Debug, Default, Clone)]
pub struct SeqSet {
    /// One bit per sequence number, grown as needed.
    bits: Vec<u64>,
}

impl SeqSet {
    /// Records `seq`.
    pub fn insert(&mut self, seq: u64) -> Seen {
        if seq >= MAX_SEQ {
            return Seen::OutOfRange;
        }
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.bits.len() {
            self.bits.resize(w + 1, 0);
        }
        let mask = 1u64 << b;
        if self.bits[w] & mask != 0 {
            Seen::Duplicate
        } else {
            self.bits[w] |= mask;
            Seen::New
        }
    }

    /// How many of the sequence numbers `0..expected` never arrived.
    pub fn lost(&self, expected: u64) -> u64 {
        let full = (expected / 64) as usize;
        let mut have: u64 = self
            .bits
            .iter()
            .take(full)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let rest = expected % 64;
        if rest > 0 {
            if let Some(w) = self.bits.get(full) {
                have += u64::from((w & ((1u64 << rest) - 1)).count_ones());
            }
        }
        expected - have
    }

    /// How many received sequence numbers lie at or beyond `expected` (events the publisher
    /// never sent to this channel: a sign of crossed channels).
    pub fn unexpected(&self, expected: u64) -> u64 {
        let total: u64 = self.bits.iter().map(|w| u64::from(w.count_ones())).sum();
        total - (expected - self.lost(expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counts_add_up_to_sent() {
        for channels in [1u64, 2, 7, 1000] {
            for sent in [0u64, 1, 6, 7, 8, 999, 1000, 12345] {
                let sum: u64 = (0..channels)
                    .map(|c| expected_on_channel(c, channels, sent))
                    .sum();
                assert_eq!(sum, sent, "channels {channels} sent {sent}");
                // Every event k < sent lands on a channel below that channel's count.
                for k in 0..sent.min(50) {
                    let (c, s) = target(k, channels);
                    assert!(s < expected_on_channel(c, channels, sent));
                }
            }
        }
    }

    #[test]
    fn loss_and_duplicates() {
        // (received in this order, expected, lost, duplicates, unexpected)
        let cases: &[(&[u64], u64, u64, u64, u64)] = &[
            (&[], 0, 0, 0, 0),
            (&[], 5, 5, 0, 0),
            (&[0, 1, 2, 3, 4], 5, 0, 0, 0),
            (&[0, 1, 1, 2, 3, 4, 4], 5, 0, 2, 0),
            (&[4, 3, 2, 1, 0], 5, 0, 0, 0),
            (&[0, 2, 4], 5, 2, 0, 0),
            (&[0, 1, 2, 3, 4, 5], 5, 0, 0, 1),
            (&[63, 64, 65, 127, 128], 130, 125, 0, 0),
            (&[0, 200, 200], 64, 63, 1, 1),
        ];
        for (got, expected, lost, dups, unexpected) in cases {
            let mut s = SeqSet::default();
            let d = got
                .iter()
                .filter(|q| s.insert(**q) == Seen::Duplicate)
                .count() as u64;
            assert_eq!(s.lost(*expected), *lost, "{got:?} of {expected}");
            assert_eq!(d, *dups, "{got:?}");
            assert_eq!(
                s.unexpected(*expected),
                *unexpected,
                "{got:?} of {expected}"
            );
        }
        let mut s = SeqSet::default();
        assert_eq!(s.insert(MAX_SEQ), Seen::OutOfRange);
    }
}
