//! Opening a stream on its core: the prelude (`retry:`, greeting, and for a resuming client
//! what it missed or a reset) and the subscription happen in one synchronous step, so nothing
//! published in between can be missed or delivered twice; the [`Registration`] gives every
//! piece back when the stream ends, however it ends.
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::broker::durable::DurableId;
use crate::core::durable::{DurableRead, HISTORY_GONE};
use crate::core::hub::{Membership, Resume, OVER_REPLAY_LIMIT};
use crate::core::refusal::{Refusal, RETRY_MS};
use crate::core::shard::Shard;
use crate::core::subscriber::Subscriber;
use crate::route::resolve::StreamSpec;
use crate::route::table::{Greeting, SlowPolicy};
use crate::sse::encode::{encode_event, encode_retry, Event};
use crate::sse::system::{encode_connected, encode_reset};
use crate::stats::bump;

/// Seconds since the Unix epoch (system events carry whole seconds, UTC).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A registered stream: owns its place in the hub, the core and the node's count, and gives
/// them back when dropped.
pub struct Registration {
    /// Its core.
    shard: Rc<Shard>,
    /// Its queue, shared with the hub.
    sub: Rc<Subscriber>,
    /// Its channels in the hub.
    membership: Membership,
    /// Its key in the core's stream list.
    stream_key: usize,
}

impl Registration {
    /// The stream's queue.
    pub fn sub(&self) -> &Subscriber {
        &self.sub
    }

    /// The stream's core.
    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// Records events written to the client: their latency from arrival, and the count.
    /// Empties `arrivals` (and keeps it small when a burst made it grow).
    pub fn delivered(&self, arrivals: &mut Vec<Instant>) {
        if arrivals.is_empty() {
            return;
        }
        let stats = self.shard.stats();
        let now = Instant::now();
        let hist = &stats.latency[self.sub.family];
        for t in arrivals.drain(..) {
            hist.record(now.saturating_duration_since(t));
            bump(&stats.events_delivered);
        }
        if arrivals.capacity() > 64 {
            arrivals.shrink_to(8);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let shard = &self.shard;
        shard.hub.borrow_mut().unsubscribe(&self.membership);
        shard.streams.borrow_mut().try_remove(self.stream_key);
        shard.stats().streams_open[self.sub.family].fetch_sub(1, Relaxed);
        shard.node.close_stream();
    }
}

impl Shard {
    /// Opens an admitted stream on this core: appends its prelude to `out` (after the head
    /// the caller wrote), registers it, and returns what a resuming client missed, to be
    /// written after `out`. A refusal writes nothing and releases the stream's place in the
    /// node's count.
    ///
    /// Prelude and subscription happen in this one synchronous call: nothing published in
    /// between can be missed or delivered twice. The prelude is returned rather than queued,
    /// so no cut or conflation of the queue can drop it. The replay is the history's own
    /// shared frames (at most `SSE_REPLAY_LIMIT` bytes), never a copy of them.
    ///
    /// A resume from a durable id that this core's memory cannot answer returns a
    /// [`DurableRead`] too: the stream is subscribed already (so nothing published from now
    /// on is missed), and [`Shard::read_durable`] then reads what it missed from Redis and
    /// gives the rest of its prelude.
    pub fn open_stream(
        self: &Rc<Self>,
        spec: StreamSpec,
        out: &mut BytesMut,
    ) -> Result<Opened, Refusal> {
        let family = spec.family;
        let fam = self.family(family);
        let refusal = if self.draining.is_set() {
            Some(Refusal::Draining)
        } else if !self.source_up.get() {
            bump(&self.stats().rejected_redis);
            Some(Refusal::Unsubscribed {
                named: fam.named_system_events,
            })
        } else if !self.hub.borrow_mut().admit(&spec.channels) {
            bump(&self.stats().rejected_channel_limit);
            Some(Refusal::ChannelLimit)
        } else {
            None
        };
        if let Some(r) = refusal {
            self.node.close_stream();
            return Err(r);
        }
        // Room made for its channels may have evicted others.
        self.unsubscribe_dropped();
        let sub = Rc::new(
            Subscriber::new(family, self.take_slot(), self.config().event_buffer)
                .conflating(fam.slow == SlowPolicy::Conflate),
        );
        let (replay, read) = self.encode_prelude(&spec, &sub, out);
        let membership = {
            let mut hub = self.hub.borrow_mut();
            if let (Greeting::Latest, Some(channel)) = (fam.greeting, spec.channels.one()) {
                // A channel that greets with its latest message remembers it from creation
                // on, whether a stream or a message creates it.
                hub.keep(channel, family);
            }
            // The prelude may carry a reset's fresh id: other cores must honour it too.
            self.node.note_issued(self.id, hub.issued());
            hub.subscribe(spec.channels, family, sub.clone())
        };
        let stream_key = self.streams.borrow_mut().insert(sub.clone());
        self.wheel
            .borrow_mut()
            .add(stream_key, sub.slot, family, self.ticks.get());
        self.stats().streams_open[family].fetch_add(1, Relaxed);
        let reg = Registration {
            shard: self.clone(),
            sub,
            membership,
            stream_key,
        };
        Ok(Opened { reg, replay, read })
    }

    /// A keep-alive slot for a new stream: consecutive streams get consecutive slots, so one
    /// timer tick writes to about 1/slots of the streams instead of all at once.
    fn take_slot(&self) -> usize {
        let s = self.next_slot.get();
        self.next_slot.set(s.wrapping_add(1));
        s
    }

    /// `retry:`, then the family's greeting and, for a client with `Last-Event-ID`, a reset
    /// or the events it missed (returned, to be written after `out`). A family that greets
    /// with the latest message sends it as `initial` unless the client resumed (it would be a
    /// duplicate of a replayed or already seen event, and after a reset "no partial history
    /// follows").
    ///
    /// A resume from a durable id that is not a reset skips live events up to that id (a
    /// node whose subscription lags may still receive some); after a reset nothing is
    /// skipped (the id may be of another epoch, whose numbers mean nothing now).
    fn encode_prelude(
        &self,
        spec: &StreamSpec,
        sub: &Subscriber,
        out: &mut BytesMut,
    ) -> (Vec<Bytes>, Option<DurableRead>) {
        let family = self.family(spec.family);
        encode_retry(RETRY_MS, out);
        if family.greeting == Greeting::Connected {
            encode_connected(unix_now(), out);
        }
        let mut hub = self.hub.borrow_mut();
        let mut resumed = false;
        let mut replay = Vec::new();
        let mut read = None;
        let durable = spec.last_event_id.as_deref().and_then(DurableId::parse);
        if let Some(from) = durable {
            resumed = true;
            if let Some(missed) = hub.resume_durable(&spec.channels, spec.family, &from) {
                bump(&self.stats().resumes);
                sub.skip_upto(from.seq);
                replay = missed;
            } else if let Some(r) = DurableRead::of(&spec.channels, spec.family, &from)
                .filter(|_| self.durable_capable())
            {
                sub.skip_upto(from.seq);
                read = Some(r);
            } else {
                bump(&self.stats().resets);
                let cursor = hub.reset_cursor(&spec.channels, spec.family);
                encode_reset(Some(&cursor), family.named_system_events, HISTORY_GONE, out);
            }
        } else if let Some(last) = &spec.last_event_id {
            resumed = true;
            match hub.resume(&spec.channels, spec.family, last) {
                Resume::Replay(missed) => {
                    bump(&self.stats().resumes);
                    replay = missed;
                }
                Resume::Reset { newest_id, reason } => {
                    bump(&self.stats().resets);
                    if reason == OVER_REPLAY_LIMIT {
                        bump(&self.stats().resets_replay_limit);
                    }
                    encode_reset(
                        newest_id.as_deref(),
                        family.named_system_events,
                        reason,
                        out,
                    );
                }
            }
        }
        if family.greeting == Greeting::Latest && !resumed {
            if let Some((id, payload)) = spec.channels.one().and_then(|c| hub.latest(c)) {
                encode_event(
                    &Event {
                        id: Some(&id),
                        event: Some("initial"),
                        data: &payload,
                        retry: None,
                    },
                    out,
                );
            }
        }
        (replay, read)
    }
}

/// A stream just opened: its registration, what its prelude replays from memory, and what
/// it must still read from Redis before that prelude is complete.
pub struct Opened {
    /// The stream's place in the core.
    pub reg: Registration,
    /// Replayed events, written after the prelude.
    pub replay: Vec<Bytes>,
    /// A resume memory could not answer: read Redis with [`Shard::read_durable`] first.
    pub read: Option<DurableRead>,
}
