//! Property-based fuzzing of the event decoder (proptest), bounded so it runs
//! in the normal suite in about a second. Properties: decoding arbitrary or
//! mutated bytes never panics; a well-formed event always decodes, with its
//! ids and args returned byte for byte; `request_id` agrees with `decode`.
//! Raise the case count with `PROPTEST_CASES=100000 cargo test --test fuzz_decoder`.

use bytes::Bytes;
use proptest::prelude::*;
use rmpv::Value;
use zerorpc::protocol::{self as event, Event};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(1000),
        ..ProptestConfig::default()
    }
}

/// Any msgpack value, nested a few levels.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::Binary),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

/// A well-formed event: a header map with a message id of any type (and
/// maybe `response_to` and `v`), a str name, and args of any shape.
fn event() -> impl Strategy<Value = (Value, Value, Option<Value>, String, Value)> {
    (
        value(),
        value(),
        prop::option::of(0i64..5),
        ".{0,20}",
        prop::collection::vec(value(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(id, rt, v, name, args, has_rt)| {
            let mut header = vec![(Value::from("message_id"), id.clone())];
            if has_rt {
                header.push((Value::from("response_to"), rt.clone()));
            }
            let v = v.map(Value::from);
            if let Some(v) = &v {
                header.push((Value::from("v"), v.clone()));
            }
            let ev = Value::Array(vec![
                Value::Map(header),
                Value::from(name.as_str()),
                Value::Array(args),
            ]);
            (ev, id, has_rt.then_some(rt), name, v.unwrap_or(Value::Nil))
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let frame = Bytes::from(bytes);
        if let Ok(ev) = Event::decode(&frame) {
            // Whatever is accepted is well-formed msgpack.
            prop_assert!(event::validate(&ev.args).is_ok());
        }
        let _ = event::request_id(&frame);
    }

    #[test]
    fn well_formed_events_decode_exactly((ev, id, rt, name, v) in event()) {
        let frame = Bytes::from(encode(&ev));
        let got = Event::decode(&frame).expect("a well-formed event decodes");
        prop_assert_eq!(got.message_id, Some(&encode(&id)[..]));
        prop_assert_eq!(got.response_to.map(<[u8]>::to_vec), rt.as_ref().map(encode));
        prop_assert_eq!(got.name.as_deref(), Ok(name.as_str()));
        prop_assert_eq!(got.version, v.as_i64());
        prop_assert_eq!(&got.args[..], &encode(&ev.as_array().unwrap()[2])[..]);
        // request_id: the same id (byte for byte) and version, for a
        // request only.
        match event::request_id(&frame) {
            Some((req_id, version)) => {
                prop_assert!(rt.is_none());
                prop_assert_eq!(&req_id[..], &encode(&id)[..]);
                prop_assert_eq!(version, v.as_i64());
            }
            None => prop_assert!(rt.is_some()),
        }
    }

    #[test]
    fn mutated_events_never_panic(
        (ev, ..) in event(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
    ) {
        let mut bytes = encode(&ev);
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                2 => { bytes.remove(i); }
                // A length marker claiming 4 G items or bytes.
                _ => { bytes.splice(i..i, [0xdd, 0xff, 0xff, 0xff, 0xff]); }
            }
        }
        let frame = Bytes::from(bytes);
        if let Ok(ev) = Event::decode(&frame) {
            prop_assert!(event::validate(&ev.args).is_ok());
        }
        let _ = event::request_id(&frame);
    }
}

/// Counts the bytes this test binary allocates, so hostile input can be
/// shown to cost nothing in proportion to what it claims.
struct Counting;

thread_local! {
    // Per thread, so proptest cases running beside this test are not counted.
    // A const-initialised Cell needs no allocation of its own.
    static ALLOCATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter only adds an atomic increment.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|n| n.set(n.get() + layout.size()));
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Headers claiming 4 G items or bytes, and a million levels of nesting,
/// are rejected having allocated (almost) nothing: at most 4 KiB each,
/// whatever size they claim.
#[test]
fn hostile_payloads_are_rejected_cheaply() {
    let mut deep = vec![0x93, 0x80, 0xa1, b'x'];
    deep.extend(std::iter::repeat_n(0x91, 1_000_000));
    deep.push(0x00);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            vec![0xdd, 0xff, 0xff, 0xff, 0xff],
            "array claiming 4G items",
        ),
        (
            vec![0x93, 0xdf, 0xff, 0xff, 0xff, 0xff],
            "map claiming 4G entries",
        ),
        (
            vec![0x93, 0x80, 0xdb, 0xff, 0xff, 0xff, 0xff],
            "str claiming 4 GiB",
        ),
        (
            vec![0x93, 0x80, 0xa1, b'x', 0xc6, 0xff, 0xff, 0xff, 0xff],
            "bin claiming 4 GiB",
        ),
        (deep, "a million levels of nesting"),
    ];
    for (bytes, what) in cases {
        let frame = Bytes::from(bytes);
        let before = ALLOCATED.with(|n| n.get());
        let decoded = Event::decode(&frame);
        let allocated = ALLOCATED.with(|n| n.get()) - before;
        assert!(decoded.is_err(), "{what} must be rejected");
        // The skip stack may spill to the heap, bounded by MAX_DEPTH u64s
        // (2 KiB) grown by doubling: under 4 KiB in all.
        assert!(allocated <= 4096, "{what}: {allocated} bytes allocated");
    }
}
