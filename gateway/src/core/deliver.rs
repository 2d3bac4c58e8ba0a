//! Delivery of one published message on one core: the per-event hot path, as a plain function
//! of the core's hub and the route table, so the gateway and the benchmarks call the same
//! code (no runtime, no sockets, no counters: the caller turns the outcome into stats).
//!
//! Steps: find the channel's family (the hub's own record first, else the route table), keep
//! only the copy of the family's own Redis pattern, drop another core's owner-placed channel
//! after one hash, create or skip an unknown channel by the family's rules, validate the
//! payload, encode the event once with its id and queue the shared frame on every subscriber.
use std::borrow::Cow;

use bytes::BytesMut;

use crate::broker::message::Message;
use crate::core::hub::{Fanout, Hub};
use crate::route::payload::{self, PayloadError};
use crate::route::table::{owner_core, EventName, Family, Greeting, Placement, RouteTable};
use crate::sse::encode::{encode_event, Event};

/// Which core delivers, among how many (owner placement hashes channels onto cores).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// This core's index.
    pub core: usize,
    /// Number of cores of the node.
    pub cores: usize,
}

impl Place {
    /// Whether this core serves streams of family `f` on `channel` (only the owner core, for
    /// owner-placed families).
    pub fn accepts(self, routes: &RouteTable, f: usize, channel: &[u8]) -> bool {
        match routes.families[f].placement {
            Placement::Local => true,
            Placement::Owner => owner_core(channel, self.cores) == self.core,
        }
    }
}

/// Why a message was not delivered on this core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The channel name is not UTF-8, so no family can claim it.
    NotUtf8,
    /// No route family claims the channel.
    Unrouted,
    /// A copy that arrived through another family's Redis pattern (a channel matching two
    /// patterns arrives once per pattern); only its own family's copy is taken. Not counted.
    OtherPattern,
    /// An owner-placed channel that another core owns.
    OtherCore,
    /// Nobody here subscribes to the channel or watches its family. Remembered by the hub, so
    /// a client resuming across this point is told it may have missed something.
    NoSubscriber,
    /// The payload fails its family's rule.
    Invalid(PayloadError),
}

impl Dropped {
    /// Whether the message counts as received by this core (every copy but another
    /// pattern's duplicate).
    pub fn received(self) -> bool {
        self != Dropped::OtherPattern
    }
}

/// What delivering one message did on this core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Encoded once and queued for the channel's subscribers.
    Delivered(Fanout),
    /// Not delivered, and why.
    Dropped(Dropped),
}

/// Delivers `msg` to the subscribers in `hub`. `own(family)` says whether this copy is the
/// family's own (the Redis pattern it matched is the family's); everything else is taken.
/// `scratch` is the core's encode buffer.
pub fn deliver(
    hub: &mut Hub,
    routes: &RouteTable,
    place: Place,
    msg: &Message,
    own: impl Fn(usize) -> bool,
    scratch: &mut BytesMut,
) -> Delivery {
    if let Some(tag) = &msg.durable {
        // Whatever becomes of it here, it reached this core (see `Hub::durable_arrived`).
        hub.durable_arrived(tag);
    }
    let Ok(channel) = std::str::from_utf8(&msg.channel) else {
        return Delivery::Dropped(Dropped::NotUtf8);
    };
    let known = hub.family_of(channel);
    let Some(family) = known.or_else(|| routes.family_of_channel(channel)) else {
        return Delivery::Dropped(Dropped::Unrouted);
    };
    if !own(family) {
        return Delivery::Dropped(Dropped::OtherPattern);
    }
    let fam = &routes.families[family];
    if known.is_none() {
        if !place.accepts(routes, family, &msg.channel) {
            return Delivery::Dropped(Dropped::OtherCore);
        }
        // Families that greet with the latest message keep their channels on every core
        // from the first message on (streams keep the ones they create); a stream here that
        // takes every channel of the family (`topics=all`) makes the message create its
        // channel. Either only within the channel budget: beyond it, dropped.
        let created = if fam.greeting == Greeting::Latest {
            hub.keep(channel, family)
        } else {
            hub.watches(family) && hub.create(channel, family)
        };
        if !created {
            hub.note_dropped(family);
            return Delivery::Dropped(Dropped::NoSubscriber);
        }
    }
    let (event, data) = match event_of(fam, &msg.payload) {
        Ok(e) => e,
        Err(e) => return Delivery::Dropped(Dropped::Invalid(e)),
    };
    let durable = msg.durable.as_ref();
    let out = hub.publish_as(
        channel,
        &msg.payload,
        msg.arrived,
        durable,
        scratch,
        |id, out| encode_one(event.as_deref(), data, id, out),
    );
    match out {
        Some(fanout) => Delivery::Delivered(fanout),
        // The channel exists by now (known, kept or created above).
        None => Delivery::Dropped(Dropped::NoSubscriber),
    }
}

/// The event name and data of `payload` in family `fam`, or why its rule refuses it.
fn event_of<'a>(
    fam: &'a Family,
    payload: &'a [u8],
) -> Result<(Option<Cow<'a, str>>, &'a [u8]), PayloadError> {
    match &fam.event_name {
        EventName::FromPayload => {
            let ev = payload::typed_event(payload)?;
            Ok((Some(ev.name), ev.data))
        }
        name => {
            payload::check(fam.payload, payload)?;
            Ok(match name {
                EventName::Fixed(n) => (Some(Cow::Borrowed(n.as_str())), payload),
                _ => (None, payload),
            })
        }
    }
}

/// Encodes an event read back from Redis's history (a resume on a node whose memory did not
/// hold it) exactly as its delivery would have; `false` when its family's rule refuses it
/// (it was not delivered live either).
pub fn encode_stored(fam: &Family, payload: &[u8], id: &str, out: &mut BytesMut) -> bool {
    let Ok((event, data)) = event_of(fam, payload) else {
        return false;
    };
    encode_one(event.as_deref(), data, id, out);
    true
}

/// One event with its id, as every stream of its channel gets it (live or replayed).
#[inline]
fn encode_one(event: Option<&str>, data: &[u8], id: &str, out: &mut BytesMut) {
    encode_event(
        &Event {
            id: Some(id),
            event,
            data,
            retry: None,
        },
        out,
    )
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::core::hub::Fanout;
    use crate::core::subscriber::Subscriber;
    use crate::route::resolve::Channels;

    const PLAYER: &[u8] =
        br#"{"brand_id":1,"player_id":2,"event_type":"bonus","event_data":{"x":1}}"#;

    fn msg(channel: &[u8], payload: &[u8]) -> Message {
        Message {
            channel: Bytes::copy_from_slice(channel),
            payload: Bytes::copy_from_slice(payload),
            arrived: Instant::now(),
            durable: None,
        }
    }

    fn queued(n: usize) -> Delivery {
        Delivery::Delivered(Fanout {
            queued: n,
            cut: 0,
            conflated: 0,
        })
    }

    /// A player channel of `brand` owned by core `core` of 2.
    fn player_channel(brand: u32, core: usize) -> String {
        (0..)
            .map(|i| format!("SSE::{brand}::{i}"))
            .find(|c| owner_core(c.as_bytes(), 2) == core)
            .unwrap_or_default()
    }

    fn frames(sub: &Subscriber) -> String {
        let mut out = BytesMut::new();
        sub.take_into(&mut out, &mut Vec::new());
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn every_reason_a_message_is_dropped_and_every_way_it_is_delivered() {
        let routes = RouteTable::builtin();
        let family = |name: &str| routes.families.iter().position(|f| f.name == name).unwrap();
        let (player, game, topic) = (family("player"), family("game"), family("topic"));
        let place = Place { core: 0, cores: 2 };
        let mut hub = Hub::new("r", 0, 4);
        let mut scratch = BytesMut::new();
        let mine = player_channel(1, 0);
        let theirs = player_channel(1, 1);
        let nobodys = player_channel(9, 0);
        let sub = Rc::new(Subscriber::new(player, 0, 8));
        hub.subscribe(Channels::One(mine.as_str().into()), player, sub.clone());
        let watcher = Rc::new(Subscriber::new(topic, 1, 8));

        let mut run = |hub: &mut Hub, m: Message, own: bool| {
            deliver(hub, &routes, place, &m, |_| own, &mut scratch)
        };
        use Dropped::*;
        let cases: Vec<(&str, Message, bool, Delivery)> = vec![
            (
                "not UTF-8",
                msg(&[0xff, 0xfe], PLAYER),
                true,
                Delivery::Dropped(NotUtf8),
            ),
            (
                "no family",
                msg(b"nobody:1", PLAYER),
                true,
                Delivery::Dropped(Unrouted),
            ),
            (
                "another pattern's copy",
                msg(mine.as_bytes(), PLAYER),
                false,
                Delivery::Dropped(OtherPattern),
            ),
            (
                "another core's player",
                msg(theirs.as_bytes(), PLAYER),
                true,
                Delivery::Dropped(OtherCore),
            ),
            (
                "nobody subscribes",
                msg(nobodys.as_bytes(), PLAYER),
                true,
                Delivery::Dropped(NoSubscriber),
            ),
            (
                "not JSON",
                msg(mine.as_bytes(), b"nope"),
                true,
                Delivery::Dropped(Invalid(PayloadError::NotJson)),
            ),
            (
                "not the envelope",
                msg(mine.as_bytes(), b"{}"),
                true,
                Delivery::Dropped(Invalid(PayloadError::Field("brand_id"))),
            ),
            (
                "a subscriber",
                msg(mine.as_bytes(), PLAYER),
                true,
                queued(1),
            ),
            (
                "a kept channel, created by its first message",
                msg(b"stream:crash", b"{\"m\":1}"),
                true,
                queued(0),
            ),
            (
                "a topic nobody watches",
                msg(b"events:a", br#"{"type":"t","data":1}"#),
                true,
                Delivery::Dropped(NoSubscriber),
            ),
        ];
        for (what, m, own, want) in cases {
            assert_eq!(run(&mut hub, m, own), want, "{what}");
        }
        // Only the delivered event reached the stream, encoded once with this core's id.
        assert_eq!(
            frames(&sub),
            format!(
                "id: r.0.1\ndata: {}\n\n",
                std::str::from_utf8(PLAYER).unwrap()
            )
        );
        // The kept channel remembers its latest message for the next stream's greeting.
        assert_eq!(
            hub.latest("stream:crash").map(|(id, p)| (id, p.to_vec())),
            Some(("r.0.2".into(), b"{\"m\":1}".to_vec()))
        );
        assert_eq!(hub.family_of("stream:crash"), Some(game));
        // A stream watching every topic makes a topic's first message create its channel.
        hub.subscribe(Channels::All, topic, watcher.clone());
        let typed = msg(b"events:a", br#"{"type":"t","data":{"v":1}}"#);
        assert_eq!(run(&mut hub, typed, true), queued(1));
        assert_eq!(frames(&watcher), "id: r.0.3\nevent: t\ndata: {\"v\":1}\n\n");
        let untyped = msg(b"events:a", br#"{"data":1}"#);
        assert!(matches!(
            run(&mut hub, untyped, true),
            Delivery::Dropped(Invalid(_))
        ));
        assert!(NoSubscriber.received() && OtherCore.received() && Unrouted.received());
        assert!(
            !OtherPattern.received(),
            "a pattern's duplicate is not a second receipt"
        );
    }
}
