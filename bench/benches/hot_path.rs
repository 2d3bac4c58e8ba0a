//! The per-event hot path: request-head parsing and SSE encoding.
use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gateway::internals::encode::{encode_event, Event};
use gateway::internals::parse_head;

const EVENTSOURCE_GET: &[u8] = b"GET /sse?token=eyJhbGciOiJIUzI1NiJ9.eyJicmFuZF9pZCI6MX0.sig HTTP/1.1\r\nHost: gw.example.com\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nOrigin: https://casino.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36\r\nAccept-Language: en-US,en;q=0.9\r\nLast-Event-ID: abc.0.41\r\n\r\n";

fn http(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Bytes(EVENTSOURCE_GET.len() as u64));
    g.bench_function("parse_eventsource_get", |b| {
        b.iter(|| parse_head(black_box(EVENTSOURCE_GET)).is_ok())
    });
    g.finish();
}

fn sse(c: &mut Criterion) {
    let payload = br#"{"brand_id":1001,"player_id":12345,"event_type":"notification","event_data":{"title":"Bonus","amount":"10.00"}}"#;
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("encode_player_event", |b| {
        b.iter(|| {
            out.clear();
            encode_event(
                &Event {
                    id: Some("k3x9a0b1.0.42"),
                    event: None,
                    data: black_box(payload),
                    retry: None,
                },
                &mut out,
            );
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, http, sse);
criterion_main!(benches);
