//! Micro-benchmarks of the event codec: encoding and decoding a typical
//! request (`add(2, 3)` with a v3 header) and its reply.
//! Run with `cargo bench --bench codec`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use zerorpc::protocol::{self as event, Event};

fn codec(c: &mut Criterion) {
    let args = [0x92, 0x02, 0x03]; // [2, 3]
    let (_, request) = event::encode_request("add", &args);
    let request = Bytes::from(request);
    let request_id = Event::decode(&request).unwrap().message_id.unwrap();
    let reply = Bytes::from(event::encode_reply(request_id, event::OK, &[0x91, 0x05]));

    c.bench_function("encode request add(2, 3)", |b| {
        b.iter(|| event::encode_request(black_box("add"), black_box(&args)))
    });
    c.bench_function("decode request add(2, 3)", |b| {
        b.iter(|| Event::decode(black_box(&request)).unwrap())
    });
    c.bench_function("encode reply OK [5]", |b| {
        b.iter(|| event::encode_reply(black_box(request_id), event::OK, black_box(&[0x91, 0x05])))
    });
    c.bench_function("decode reply OK [5]", |b| {
        b.iter(|| Event::decode(black_box(&reply)).unwrap())
    });
    c.bench_function("validate args [2, 3]", |b| {
        b.iter(|| event::validate(black_box(&args)).unwrap())
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
