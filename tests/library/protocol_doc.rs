//! PROTOCOL.md's test vectors are real: every ```hex block decodes as an
//! event with zrpc's decoder and with rmpv, and re-encodes to the same
//! bytes (so the vectors are canonical msgpack, as every peer sends it).
//! And the README's protocol quick start, a raw pyzmq request, is answered.

use crate::common;

use zerorpc::protocol::Event;

fn vectors() -> Vec<Vec<u8>> {
    let doc = include_str!("../../PROTOCOL.md");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```hex" {
            let hex: String = lines
                .by_ref()
                .take_while(|l| l.trim() != "```")
                .collect::<Vec<_>>()
                .concat();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
                .collect();
            out.push(bytes);
        }
    }
    out
}

#[test]
fn every_vector_decodes_and_re_encodes_byte_for_byte() {
    let vectors = vectors();
    assert!(vectors.len() >= 12, "PROTOCOL.md lost its vectors");
    for bytes in vectors {
        let frame = bytes::Bytes::from(bytes.clone());
        let ev = Event::decode(&frame).unwrap_or_else(|e| panic!("{e}: {frame:02x?}"));
        assert!(ev.message_id.is_some());
        let value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let mut again = Vec::new();
        rmpv::encode::write_value(&mut again, &value).unwrap();
        assert_eq!(again, bytes, "not canonical: {value}");
        let arr = value.as_array().unwrap();
        assert_eq!(arr.len(), 3);
        assert_eq!(Some(arr[1].as_str().unwrap()), ev.name.ok());
    }
}

/// zrpc's own encoder writes the documented zrpc request (its fresh id
/// swapped for the vector's).
#[test]
fn the_zrpc_request_vector_is_what_zrpc_sends() {
    let doc = vectors();
    let mut extra = zerorpc::protocol::HeaderExtra::default();
    extra.set_timeout_ms(30_000);
    let (id, mut ours) =
        zerorpc::protocol::encode_request_with_header("add", &extra, &[0x92, 0x01, 0x02]);
    let at = ours
        .windows(32)
        .position(|w| w == id.as_bytes())
        .expect("the id is in the frame");
    ours[at..at + 32].copy_from_slice(b"0123456789abcdef0123456789abcdef");
    assert!(doc.contains(&ours), "not in PROTOCOL.md: {ours:02x?}");
}

/// The README's "Protocol quick start": a request made by hand with pyzmq
/// and msgpack (zerorpc-python's own dependencies), no zerorpc library.
#[tokio::test]
async fn the_readme_protocol_quick_start_is_answered() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("## Protocol quick start")
        .expect("the README has a Protocol quick start")..];
    let start = section.find("```python\n").expect("a python block") + "```python\n".len();
    let script = &section[start..start + section[start..].find("```").expect("its end")];
    assert!(script.contains("tcp://127.0.0.1:4242"), "{script}");

    let (server, ep) = common::serve(common::test_service()).await;
    let script = script.replace("tcp://127.0.0.1:4242", &ep);
    let out = tokio::process::Command::new(common::python())
        .args(["-c", &script])
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), out)
        .await
        .expect("the script finished")
        .expect("python runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK [5]\n");
    server
        .close(std::time::Duration::from_secs(1))
        .await
        .unwrap();
}
