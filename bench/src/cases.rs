//! Every measured operation of the per-event hot path, as one table that both the criterion
//! suite (`benches/hot_path.rs`) and the instruction-count gate (`src/gate.rs`) run, so the
//! two measure exactly the same calls.
use std::hint::black_box;

use gateway::internals::encode::{encode_event, Event};
use gateway::internals::{jwt, parse_head, payload, resolve, Endpoint, Match, Parsed};
use gateway::internals::{Channels, PayloadRule, RequestHead, RouteTable};

use crate::fanout::Fanout;
use crate::fixtures;
use crate::validate::{seed_payloads, Library, Validator};

/// One operation, ready to run over and over.
pub trait Op {
    /// Does the operation once: the measured part.
    fn run(&mut self);
    /// Puts back what `run` changed that the gateway would also have restored before the
    /// next call (a stream's task taking its frame); not measured.
    fn reset(&mut self) {}
    /// Whether [`Op::reset`] does anything (else runs can be timed back to back).
    fn resets(&self) -> bool {
        false
    }
}

/// What one run processes, for throughput figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// This many input bytes.
    Bytes(u64),
    /// This many deliveries (events times subscribers).
    Deliveries(u64),
}

/// One row of the table.
pub struct Case {
    /// `group/name`, the criterion id; the gate names it `group_name`.
    pub id: String,
    /// What one run processes.
    pub per: Per,
    /// Runs counted by the gate (0: not gated). The count is per run, averaged over these.
    pub gate_runs: u32,
    /// Builds the operation (lazily: some hold 50,000 streams).
    pub make: Box<dyn Fn() -> Box<dyn Op>>,
}

impl Case {
    /// The case's name in the gate and its baseline: the id with `/` as `_`.
    pub fn gate_name(&self) -> String {
        self.id.replace('/', "_")
    }

    /// The criterion group (before the `/`).
    pub fn group(&self) -> &str {
        self.id.split_once('/').map_or(&*self.id, |(g, _)| g)
    }

    /// The name within the group (after the `/`).
    pub fn name(&self) -> &str {
        self.id.split_once('/').map_or(&*self.id, |(_, n)| n)
    }
}

/// Builds a case's input.
type MakeInput<T> = fn() -> T;

/// An operation without state to restore.
struct Plain<F>(F);

impl<F: FnMut()> Op for Plain<F> {
    fn run(&mut self) {
        (self.0)()
    }
}

fn case(
    id: impl Into<String>,
    per: Per,
    gate_runs: u32,
    make: impl Fn() -> Box<dyn Op> + 'static,
) -> Case {
    Case {
        id: id.into(),
        per,
        gate_runs,
        make: Box::new(make),
    }
}

fn plain(f: impl FnMut() + 'static) -> Box<dyn Op> {
    Box::new(Plain(f))
}

/// Leaks `v` so a parsed head can borrow it for as long as the case lives (cases are built
/// a few times per process).
fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

/// The whole table, in report order.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    http(&mut v);
    route(&mut v);
    sse(&mut v);
    payload_checks(&mut v);
    fanout(&mut v);
    jwt_cases(&mut v);
    v
}

/// Request-head parsing: a typical `EventSource` request, a large-header one, and the
/// typical one arriving in four reads (the connection parses again after each read).
fn http(v: &mut Vec<Case>) {
    let typical = fixtures::eventsource_get().len() as u64;
    let large = fixtures::large_head().len() as u64;
    v.push(case(
        "http/parse_eventsource_get",
        Per::Bytes(typical),
        200,
        || {
            let head = fixtures::eventsource_get();
            plain(move || {
                black_box(parse_head(black_box(&head)).is_ok());
            })
        },
    ));
    v.push(case(
        "http/parse_large_head",
        Per::Bytes(large),
        100,
        || {
            let head = fixtures::large_head();
            plain(move || {
                black_box(parse_head(black_box(&head)).is_ok());
            })
        },
    ));
    v.push(case(
        "http/parse_split_4_reads",
        Per::Bytes(typical),
        100,
        || {
            let head = fixtures::eventsource_get();
            let cuts = fixtures::split_points(&head);
            plain(move || {
                for k in cuts {
                    black_box(parse_head(black_box(&head[..k])).is_ok());
                }
            })
        },
    ));
}

/// A parsed stream request of one family, with what resolving it needs.
struct Request {
    table: RouteTable,
    config: gateway::internals::Config,
    head: RequestHead<'static>,
}

impl Request {
    fn new(family: &str) -> Request {
        let (_, raw) = fixtures::family_requests()
            .into_iter()
            .find(|(f, _)| *f == family)
            .expect("a request for every family");
        let Ok(Parsed::Complete(head)) = parse_head(leak(raw)) else {
            panic!("the {family} request parses");
        };
        Request {
            table: RouteTable::builtin(),
            config: fixtures::config(),
            head,
        }
    }

    /// Route matching: the family (or API endpoint) of the request's method and path.
    fn lookup(&self) -> Match {
        self.table
            .lookup(self.head.method, black_box(self.head.path))
    }

    /// Matching plus channel derivation (with the family's authentication), as the
    /// connection does for a stream request; returns the channel's length.
    fn resolve(&self) -> usize {
        let Match::Found(Endpoint::Stream(i)) = self.lookup() else {
            return 0;
        };
        resolve(
            &self.table,
            i,
            black_box(&self.head),
            &self.config.keys(),
            fixtures::NOW_UNIX,
        )
        .map_or(0, |s| match &s.channels {
            Channels::One(c) => c.len(),
            Channels::Many(list) => list.iter().map(|c| c.len()).sum(),
            Channels::All => 1,
        })
    }
}

/// Route matching and channel derivation, per family.
fn route(v: &mut Vec<Case>) {
    for (family, raw) in fixtures::family_requests() {
        let len = raw.len() as u64;
        v.push(case(
            format!("route/match_{family}"),
            Per::Bytes(len),
            200,
            move || {
                let r = Request::new(family);
                plain(move || {
                    black_box(r.lookup());
                })
            },
        ));
        v.push(case(
            format!("route/resolve_{family}"),
            Per::Bytes(len),
            100,
            move || {
                let r = Request::new(family);
                plain(move || {
                    black_box(r.resolve());
                })
            },
        ));
    }
}

/// SSE encoding of one event into the core's reused buffer, with and without `id:`.
fn sse(v: &mut Vec<Case>) {
    let payloads: [(&str, MakeInput<Vec<u8>>, u32); 4] = [
        ("small", || fixtures::ENVELOPE_000.to_vec(), 200),
        ("1k", || fixtures::json_payload(1024), 100),
        ("16k", || fixtures::json_payload(16 * 1024), 20),
        ("multiline", fixtures::multiline_payload, 100),
    ];
    for (size, make_payload, runs) in payloads {
        for with_id in [true, false] {
            let len = make_payload().len() as u64;
            let suffix = if with_id { "id" } else { "noid" };
            v.push(case(
                format!("sse/encode_{size}_{suffix}"),
                Per::Bytes(len),
                runs,
                move || {
                    let data = make_payload();
                    let mut out = bytes::BytesMut::with_capacity(64 * 1024);
                    plain(move || {
                        out.clear();
                        encode_event(
                            &Event {
                                id: with_id.then_some("k3x9a0b1.0.42"),
                                event: None,
                                data: black_box(&data),
                                retry: None,
                            },
                            &mut out,
                        );
                        black_box(out.len());
                    })
                },
            ));
        }
    }
}

/// Published-payload validation: the gateway's check (gated), and each JSON library on each
/// seed's real payloads (the comparison behind the gateway's choice).
fn payload_checks(v: &mut Vec<Case>) {
    let envelope = fixtures::ENVELOPE_000;
    v.push(case(
        "payload/check_envelope_000",
        Per::Bytes(envelope.len() as u64),
        200,
        move || {
            plain(move || {
                black_box(payload::check(PayloadRule::PlayerEnvelope, black_box(envelope)).is_ok());
            })
        },
    ));
    for (name, data, shape) in seed_payloads() {
        for lib in Library::ALL {
            v.push(case(
                format!("payload/{name}_{}", lib.name()),
                Per::Bytes(data.len() as u64),
                0,
                move || {
                    let mut val = Validator::default();
                    plain(move || {
                        black_box(val.check(lib, shape, black_box(data)));
                    })
                },
            ));
        }
    }
}

/// Publishing one event to N idle streams of one channel, and the streams taking it.
struct Enqueue(Fanout);

impl Op for Enqueue {
    fn run(&mut self) {
        black_box(self.0.publish());
    }
    fn reset(&mut self) {
        self.0.drain();
        self.0.arm();
    }
    fn resets(&self) -> bool {
        true
    }
}

/// Each of N streams taking its frame after a publish.
struct Dequeue(Fanout);

impl Op for Dequeue {
    fn run(&mut self) {
        black_box(self.0.drain());
    }
    fn reset(&mut self) {
        self.0.arm();
        self.0.publish();
    }
    fn resets(&self) -> bool {
        true
    }
}

/// In-process fan-out of one event on one core.
fn fanout(v: &mut Vec<Case>) {
    for (label, n, runs) in [("1k", 1_000, 20), ("10k", 10_000, 4), ("50k", 50_000, 0)] {
        v.push(case(
            format!("fanout/enqueue_{label}"),
            Per::Deliveries(n as u64),
            runs,
            move || Box::new(Enqueue(Fanout::new(n))),
        ));
        v.push(case(
            format!("fanout/dequeue_{label}"),
            Per::Deliveries(n as u64),
            runs,
            move || {
                let mut f = Fanout::new(n);
                f.publish();
                Box::new(Dequeue(f))
            },
        ));
    }
}

/// JWT verification of the two token kinds.
fn jwt_cases(v: &mut Vec<Case>) {
    let kinds: [(&str, MakeInput<String>); 2] = [
        ("verify_player", fixtures::player_token),
        ("verify_channels", fixtures::channel_token),
    ];
    for (name, token) in kinds {
        v.push(case(
            format!("jwt/{name}"),
            Per::Bytes(token().len() as u64),
            100,
            move || {
                let t = token();
                plain(move || {
                    black_box(
                        jwt::verify_hs256(
                            black_box(t.as_bytes()),
                            fixtures::SECRET.as_bytes(),
                            fixtures::NOW_UNIX,
                            30,
                        )
                        .is_ok(),
                    );
                })
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_case_runs() {
        let cases = all();
        let mut names: Vec<String> = cases.iter().map(Case::gate_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cases.len());
        for c in cases.iter().filter(|c| !c.id.ends_with("50k")) {
            let mut op = (c.make)();
            op.run();
            op.reset();
            op.run();
        }
    }

    #[test]
    fn every_family_resolves_to_its_channel() {
        let want = [
            ("player", "SSE::1001::12345"),
            ("game_type", "stream:type:multiplier"),
            ("game", "stream:crash"),
            ("jackpot", fixtures::JACKPOT_CHANNEL),
            ("jackpot_user", "8mQhEnuznUe01IsGOE4mPw_user_a@b.com"),
        ];
        for (family, channel) in want {
            let r = Request::new(family);
            let Match::Found(Endpoint::Stream(i)) = r.lookup() else {
                panic!("{family}: no stream route");
            };
            let spec = resolve(&r.table, i, &r.head, &r.config.keys(), fixtures::NOW_UNIX)
                .unwrap_or_else(|e| panic!("{family}: {e:?}"));
            assert_eq!(r.table.families[spec.family].name, family);
            assert_eq!(spec.channels.one(), Some(channel));
        }
    }
}
