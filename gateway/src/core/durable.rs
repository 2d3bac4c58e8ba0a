//! A resume from a durable id that this core's memory cannot answer (a node that just
//! started, a client that was on another node, a channel this core did not hold): the
//! missed events are read from Redis's history (`FCALL_RO ssegw_read`, one call for all the
//! stream's channels), merged by Redis's order and replayed, then the stream goes live.
//!
//! No gap, no duplicate: the stream is subscribed before the read is sent (so every event
//! published from then on is queued for it), and the read's answer decides the seam. If an
//! event was queued meanwhile, the replay stops before the first one queued (events arrive in
//! Redis's order, so everything after it is queued too); if none was, the replay takes
//! everything up to Redis's counter at the read and the stream skips queued events up to it
//! (one that was published before the read may still be on its way).
//!
//! Bounds: one read per resume, at most `SSE_RESUME_READS` in flight per core (more wait,
//! counted), each answered within 2 s (a wait included) or the resume is a reset; what a
//! read may return is capped at `SSE_REPLAY_LIMIT` bytes by the function itself.
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::broker::durable::{self, DurableId, Envelope, History};
use crate::broker::message::PUBLISH_TIMEOUT;
use crate::core::deliver::encode_stored;
use crate::core::hub::{OVER_REPLAY_LIMIT, REPLAY_PART_COST};
use crate::core::shard::Shard;
use crate::core::subscriber::Subscriber;
use crate::route::resolve::Channels;
use crate::sse::system::encode_reset;
use crate::stats::bump;
use crate::util::wait::{until, wake_all};

/// The reason of a reset when history (in memory or in Redis) does not reach back.
pub const HISTORY_GONE: &str = "history does not reach back to Last-Event-ID";

/// The reason of a reset when the id names another Redis data set.
pub const OTHER_DATA_SET: &str =
    "Last-Event-ID is from another Redis data set (Redis restarted without its data)";

/// The reason of a reset when Redis's history could not be read.
pub const UNREADABLE: &str = "Redis's history cannot be read now";

/// Most bytes one read may ask Redis for, whatever `SSE_REPLAY_LIMIT` says: an answer stays
/// well under the 8 MiB frame bound of `broker::resp`.
const MAX_READ: usize = 4 << 20;

/// What a resume must read from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableRead {
    /// The stream's channels.
    channels: Box<[Box<str>]>,
    /// Its family.
    family: usize,
    /// The id's epoch.
    epoch: Box<str>,
    /// The id's seq.
    seq: u64,
    /// The id's time.
    unix_s: u64,
}

impl DurableRead {
    /// The read a resume of `channels` from `from` needs; `None` for every channel of a
    /// family (`topics=all`), whose channels Redis cannot list.
    pub fn of(channels: &Channels, family: usize, from: &DurableId) -> Option<DurableRead> {
        let channels = match channels {
            Channels::One(c) => Box::new([c.clone()]) as Box<[Box<str>]>,
            Channels::Many(list) => list.clone(),
            Channels::All => return None,
        };
        Some(DurableRead {
            channels,
            family,
            epoch: from.epoch.into(),
            seq: from.seq,
            unix_s: from.unix_s,
        })
    }

    fn from(&self) -> DurableId<'_> {
        DurableId {
            epoch: &self.epoch,
            seq: self.seq,
            unix_s: self.unix_s,
        }
    }
}

/// One of the core's `SSE_RESUME_READS`, given back when dropped.
struct Permit<'a>(&'a Shard);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let s = self.0;
        s.resume_reads.set(s.resume_reads.get() - 1);
        // Every waiter tries again.
        wake_all(&s.resume_waiters);
    }
}

/// Why a read's answer is a reset: the reason and the cursor id to give.
type Refused = (&'static str, Option<String>);

impl Shard {
    /// Whether a resume can read Redis's history here (Redis is the broker).
    pub fn durable_capable(&self) -> bool {
        self.broker.redis().is_some()
    }

    /// Reads what a stream resuming from a durable id missed from Redis and gives the rest
    /// of its prelude: a reset (bytes to write after the prelude) or the missed events.
    pub async fn read_durable(&self, sub: &Subscriber, read: DurableRead) -> (Bytes, Vec<Bytes>) {
        let family = self.family(read.family);
        let answer = match self.read_history(&read).await {
            Some(history) => self.replay_history(sub, &read, history),
            None => {
                bump(&self.stats().resume_redis_failed);
                // A cursor of this node's, so the client's Last-Event-ID moves past the reset:
                // a later resume from it gets what came after it (here) or a reset (on
                // another node), never the events this reset told the client to refetch.
                let channels = Channels::Many(read.channels.clone());
                let cursor = self.hub.borrow_mut().reset_cursor(&channels, read.family);
                Err((UNREADABLE, Some(cursor)))
            }
        };
        match answer {
            Ok(parts) => {
                bump(&self.stats().resumes);
                (Bytes::new(), parts)
            }
            Err((reason, cursor)) => {
                // Nothing is skipped after a reset (see `Shard::open_stream`).
                sub.skip_upto(0);
                bump(&self.stats().resets);
                if reason == OVER_REPLAY_LIMIT {
                    bump(&self.stats().resets_replay_limit);
                }
                let mut out = BytesMut::new();
                encode_reset(
                    cursor.as_deref(),
                    family.named_system_events,
                    reason,
                    &mut out,
                );
                (out.freeze(), Vec::new())
            }
        }
    }

    /// Waits for a permit (at most [`PUBLISH_TIMEOUT`]), then reads the histories; `None`
    /// when that failed or took too long.
    async fn read_history(&self, read: &DurableRead) -> Option<History> {
        let redis = self.broker.redis()?;
        let cap = self.config().resume_reads;
        if self.resume_reads.get() >= cap {
            bump(&self.stats().resume_redis_waits);
            let wait = until(|| self.resume_reads.get() < cap, &self.resume_waiters);
            monoio::time::timeout(PUBLISH_TIMEOUT, wait).await.ok()?;
        }
        self.resume_reads.set(self.resume_reads.get() + 1);
        let _permit = Permit(self);
        bump(&self.stats().resume_redis_reads);
        let keys: Vec<Vec<u8>> = read
            .channels
            .iter()
            .map(|c| durable::history_key(c.as_bytes()))
            .collect();
        let max = self.config().replay_limit.min(MAX_READ);
        // The publisher's own timeout bounds the read (PUBLISH_TIMEOUT); this one only
        // covers a connect that hangs.
        let call = redis.read_history(&keys, read.seq, max);
        let frame = monoio::time::timeout(PUBLISH_TIMEOUT + Duration::from_secs(1), call)
            .await
            .ok()?
            .ok()?;
        durable::parse_history(frame)
    }

    /// The events of `history` the stream missed, encoded as live delivery would have, or
    /// why it gets a reset instead (see the module's doc for the seam with live events).
    fn replay_history(
        &self,
        sub: &Subscriber,
        read: &DurableRead,
        history: History,
    ) -> Result<Vec<Bytes>, Refused> {
        let from = read.from();
        let cursor = (!history.epoch.is_empty()).then(|| {
            format!(
                "{}-{}-{}",
                String::from_utf8_lossy(&history.epoch),
                history.counter,
                history.now_s
            )
        });
        if history.epoch != from.epoch.as_bytes() {
            return Err((OTHER_DATA_SET, cursor));
        }
        if history.over {
            return Err((OVER_REPLAY_LIMIT, cursor));
        }
        let ttl = self.config().history_ttl.as_secs();
        let complete = history.lists.len() == read.channels.len()
            && history
                .lists
                .iter()
                .all(|(floor, _)| durable::complete(*floor, from, history.now_s, ttl));
        if !complete {
            return Err((HISTORY_GONE, cursor));
        }
        let first_live = sub.first_live();
        let upto = match first_live {
            0 => history.counter,
            first => first - 1,
        };
        let mut missed: Vec<(u64, Bytes, Bytes)> = Vec::new();
        for (_, entries) in &history.lists {
            for entry in entries {
                if let Envelope::Durable(tag, payload) = durable::open(entry) {
                    if tag.seq > from.seq && tag.seq <= upto {
                        missed.push((tag.seq, tag.id, payload));
                    }
                }
            }
        }
        missed.sort_unstable_by_key(|(seq, _, _)| *seq);
        missed.dedup_by_key(|(seq, _, _)| *seq);
        let family = self.family(read.family);
        let mut parts = Vec::with_capacity(missed.len());
        let mut cost = 0usize;
        let mut scratch = BytesMut::new();
        for (_, id, payload) in missed {
            scratch.clear();
            let id = std::str::from_utf8(&id).unwrap_or_default();
            if encode_stored(family, &payload, id, &mut scratch) {
                cost += scratch.len() + REPLAY_PART_COST;
                parts.push(Bytes::copy_from_slice(&scratch));
            }
        }
        if cost > self.config().replay_limit {
            return Err((OVER_REPLAY_LIMIT, cursor));
        }
        if first_live == 0 {
            sub.skip_upto(history.counter);
        }
        Ok(parts)
    }
}
