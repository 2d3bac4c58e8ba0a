//! `broker::resp::Reader`, the path every byte from Redis takes: whatever Redis (or anything
//! on the unencrypted path to it) sends, the reader never panics, never recurses (a frame
//! nested 100,000 deep is in the seeds), and gives the same frames, skips and error whether
//! the bytes arrive at once, byte by byte, or in the chunks the input chooses.
//!
//! Fields: `chunk sizes (each byte + 1) 0xFF small limits? (non-empty: channel 8, payload
//! 16) 0xFF wire bytes`.
use bytes::BytesMut;
use gateway::internals::resp::{FrameError, Limits, Next, Reader};

use crate::fields;

/// What one read loop saw: each frame or skip in order, then how it ended.
type Outcome = (Vec<Next>, Option<FrameError>);

/// Feeds `wire` to a fresh reader in pieces of the sizes `chunks` gives (cycled; a size of
/// `usize::MAX` means all at once) and collects what it returns.
fn read(wire: &[u8], chunks: &[usize], limits: Limits) -> Outcome {
    let mut reader = Reader::new();
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    let mut at = 0;
    let mut i = 0;
    loop {
        loop {
            match reader.next_with(&mut buf, limits) {
                Ok(Next::Partial) => break,
                Ok(n) => seen.push(n),
                Err(e) => return (seen, Some(e)),
            }
        }
        if at == wire.len() {
            return (seen, None);
        }
        let n = chunks[i % chunks.len()].min(wire.len() - at);
        buf.extend_from_slice(&wire[at..at + n]);
        at += n;
        i += 1;
    }
}

/// The target.
pub fn run(data: &[u8]) {
    let f = fields(data, 3);
    let limits = if f[1].is_empty() {
        Limits::WIRE
    } else {
        Limits {
            channel: 8,
            payload: 16,
        }
    };
    let wire = f[2];
    let chosen: Vec<usize> = f[0].iter().map(|&b| b as usize + 1).collect();
    let whole = read(wire, &[usize::MAX], limits);
    let bytewise = read(wire, &[1], limits);
    assert_eq!(whole, bytewise, "byte by byte");
    if !chosen.is_empty() {
        let chunked = read(wire, &chosen, limits);
        assert_eq!(whole, chunked, "in chunks {chosen:?}");
    }
}
