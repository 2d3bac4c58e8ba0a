//! `broker::durable`: the envelope every durable message from Redis is opened with, the ids
//! it carries (also what a client sends back as `Last-Event-ID`) and the floor entry of a
//! history list. Whatever the bytes, nothing panics; an opened envelope is exactly its
//! prefix, id, newline and payload; an id reads back from its own text.
//!
//! Fields: `wire bytes` (the whole input).
use bytes::Bytes;
use gateway::internals::durable::{self, DurableId, Envelope, Floor};

/// The target.
pub fn run(data: &[u8]) {
    let wire = Bytes::copy_from_slice(data);
    if let Envelope::Durable(tag, payload) = durable::open(&wire) {
        let mut again = durable::PREFIX.to_vec();
        again.extend_from_slice(&tag.id);
        again.push(b'\n');
        again.extend_from_slice(&payload);
        assert_eq!(again, data, "an envelope is prefix, id, newline, payload");
        let text = std::str::from_utf8(&tag.id).expect("ids are text");
        let id = DurableId::parse(text).expect("its id parses");
        assert_eq!(id.seq, tag.seq);
        assert_eq!(id.epoch.as_bytes(), &tag.epoch[..]);
    }
    if let Some(id) = std::str::from_utf8(data).ok().and_then(DurableId::parse) {
        let text = id.to_string();
        assert_eq!(DurableId::parse(&text), Some(id), "written ids parse back");
    }
    if let Some(f) = Floor::parse(data) {
        let text = format!("F {} {}", f.trimmed_upto, f.created_s);
        assert_eq!(Floor::parse(text.as_bytes()), Some(f));
    }
}
