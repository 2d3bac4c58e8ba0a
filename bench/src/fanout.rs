//! In-process fan-out: one core's hub with N idle streams on one broadcast channel, and the
//! per-event work the core does for them, without sockets and without the kernel.
//!
//! [`Fanout::publish`] calls the gateway's own delivery function (`core::deliver::deliver`,
//! what each core runs for every message): find the channel's family, check the payload,
//! encode the event once (with its id) and queue the shared frame on every subscriber, waking
//! its task. [`Fanout::drain`] is what each stream's task then does before its write: take
//! the frame (and drop it once written). Left out: the stats counters, the task scheduling
//! itself and the write syscall, which costs far more than all of this (see
//! `docs/BENCHMARKS.md`).
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use gateway::internals::{
    deliver, Channels, Delivery, Hub, Message, Place, RouteTable, SlowPolicy, Subscriber,
};

use crate::fixtures;

/// One core's hub with `subscribers` idle streams of seed 003's jackpot broadcast channel.
pub struct Fanout {
    /// The core's channel registry.
    hub: Hub,
    /// The streams' queues, as their tasks hold them.
    subs: Vec<Rc<Subscriber>>,
    /// The route table (family rules).
    routes: RouteTable,
    /// The published message, stamped when it reached the node.
    msg: Message,
    /// Encode buffer (one per core in the gateway, 64 KiB).
    encode_buf: BytesMut,
}

/// `SSE_EVENT_BUFFER`'s default.
const EVENT_BUFFER: usize = 50;

/// `SSE_HISTORY`'s default.
const HISTORY: usize = 64;

impl Fanout {
    /// A hub holding `subscribers` streams of the jackpot broadcast channel, each waiting
    /// for its next frame.
    pub fn new(subscribers: usize) -> Fanout {
        let routes = RouteTable::builtin();
        let channel = fixtures::JACKPOT_CHANNEL;
        let family = routes
            .family_of_channel(channel)
            .expect("the jackpot channel has a family");
        let conflate = routes.families[family].slow == SlowPolicy::Conflate;
        let mut hub = Hub::new("k3x9a0b1", 0, HISTORY);
        let subs: Vec<Rc<Subscriber>> = (0..subscribers)
            .map(|slot| {
                let sub = Rc::new(Subscriber::new(family, slot, EVENT_BUFFER).conflating(conflate));
                hub.subscribe(Channels::One(channel.into()), family, sub.clone());
                sub
            })
            .collect();
        let f = Fanout {
            hub,
            subs,
            routes,
            msg: Message {
                channel: Bytes::from_static(channel.as_bytes()),
                payload: Bytes::from_static(fixtures::JACKPOT_VALUE_003),
                arrived: Instant::now(),
                durable: None,
            },
            encode_buf: BytesMut::with_capacity(64 * 1024),
        };
        f.arm();
        f
    }

    /// One published event, delivered on this core; returns the number of frames queued.
    pub fn publish(&mut self) -> usize {
        let place = Place { core: 0, cores: 1 };
        let out = deliver(
            &mut self.hub,
            &self.routes,
            place,
            &self.msg,
            |_| true,
            &mut self.encode_buf,
        );
        match out {
            Delivery::Delivered(o) => o.queued + o.conflated,
            Delivery::Dropped(_) => 0,
        }
    }

    /// Every stream takes its frame, as its task does before writing; returns the bytes taken.
    pub fn drain(&self) -> usize {
        let mut n = 0;
        for s in &self.subs {
            if let Some(frame) = s.take_single() {
                n += frame.bytes.len();
            }
        }
        n
    }

    /// Every stream waits again for its next frame (its waker registered), as an idle
    /// stream's task does, so the next publish wakes each one.
    pub fn arm(&self) {
        let mut cx = Context::from_waker(Waker::noop());
        for s in &self.subs {
            let ready = pin!(s.ready());
            let _ = ready.poll(&mut cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_reaches_every_stream_once() {
        let mut f = Fanout::new(100);
        for _ in 0..3 {
            assert_eq!(f.publish(), 100);
            let bytes = f.drain();
            assert!(bytes > 100 * fixtures::JACKPOT_VALUE_003.len(), "{bytes}");
            assert_eq!(f.drain(), 0);
            f.arm();
        }
    }
}
