//! Events: one msgpack array `[header, name, args]` per ZeroMQ message,
//! exactly as zerorpc-python 0.6.3 writes and reads it.
//!
//! Decoding is a single validating walk over the payload that never
//! allocates in proportion to a length prefix and caps nesting depth, so
//! hostile input costs at most its own size. The header fields the framework
//! routes on (`message_id`, `response_to`) and the `args` are zero-copy
//! slices of the received frame: ids are echoed back with their original
//! msgpack type (bin, str or int) byte for byte, and arguments are
//! deserialized once, straight into the handler's types.

use super::msgpack::{read_int, write_map_len, write_str, write_uint, Container, Reader};
use super::{
    MessageId, ERR, HEARTBEAT, MAX_DEPTH, MORE, OK, PROTOCOL_VERSION, STREAM, STREAM_DONE,
};
use bytes::Bytes;
use std::borrow::Cow;
use std::fmt;

/// Why a payload is not a usable zerorpc event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not well-formed msgpack (truncated, bad marker, length past the end).
    Malformed(&'static str),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Well-formed msgpack that is not `[header, name, args]`.
    NotAnEvent(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(why) => write!(f, "malformed msgpack: {why}"),
            DecodeError::TooDeep => write!(f, "msgpack nested deeper than {MAX_DEPTH} levels"),
            DecodeError::NotAnEvent(why) => write!(f, "not a zerorpc event: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// One decoded event, borrowing the received frame: the ids and the name
/// point into it, and `args` is a zero-copy slice of it.
#[derive(Clone, Debug)]
pub struct Event<'a> {
    /// Raw msgpack of the header's `message_id` (any type), if present.
    pub message_id: Option<&'a [u8]>,
    /// Raw msgpack of `response_to`, if present.
    pub response_to: Option<&'a [u8]>,
    /// Header `v`, if present and an integer.
    pub version: Option<i64>,
    /// Header `timeout_ms`: the caller's remaining time when it sent the
    /// request, if present and a non-negative integer (zrpc's deadline;
    /// other peers ignore the key).
    pub timeout_ms: Option<u64>,
    /// Raw msgpack of header `api_version`: the version of the method's
    /// namespace the caller requires (zrpc; other peers ignore the key).
    pub api_version: Option<&'a [u8]>,
    /// The event name (method name or a reserved name), if it was a valid str.
    pub name: Result<&'a str, &'static str>,
    /// Raw msgpack of the whole header (a map for v2+ peers), for the keys
    /// the framework does not route on (a peer's task context, say).
    pub header: &'a [u8],
    /// Raw msgpack of `args`.
    pub args: Bytes,
}

impl<'a> Event<'a> {
    /// Decode a payload frame. Trailing bytes after the event are ignored, as
    /// Python's `Unpacker` does.
    pub fn decode(frame: &'a Bytes) -> Result<Event<'a>, DecodeError> {
        Self::decode_with(frame, usize::MAX).map(|(ev, _)| ev)
    }

    /// [`Event::decode`], except that `args` of `walk_below` bytes or more
    /// are not walked: they are the rest of the frame, unchecked (and
    /// `false` comes back), for whoever decodes them to check. A server
    /// leaves the walk of a large request to the request's own task.
    pub(crate) fn decode_with(
        frame: &'a Bytes,
        walk_below: usize,
    ) -> Result<(Event<'a>, bool), DecodeError> {
        let buf = &frame[..];
        let mut r = Reader::new(buf);
        let n = match r.container()? {
            Container::Array(n) => n,
            _ => return Err(DecodeError::NotAnEvent("event is not an array")),
        };
        if n != 3 {
            return Err(DecodeError::NotAnEvent("event array must have 3 elements"));
        }
        let header_start = r.pos;
        let Ids {
            message_id,
            response_to,
            version,
            timeout_ms,
            api_version,
        } = header(&mut r)?;
        let header = &buf[header_start..r.pos];
        let name = match r.str_or_skip()? {
            Some(s) => std::str::from_utf8(s).map_err(|_| "event name is not valid UTF-8"),
            None => Err("event name is not a msgpack str"),
        };
        let args_start = r.pos;
        let walked = buf.len() - args_start < walk_below;
        let args_end = match walked {
            true => {
                r.skip(0)?;
                r.pos
            }
            false => buf.len(),
        };
        let ev = Event {
            message_id,
            response_to,
            version,
            timeout_ms,
            api_version,
            name,
            header,
            args: frame.slice(args_start..args_end),
        };
        Ok((ev, walked))
    }
}

/// An event name to keep: a reserved one (all a reply normally carries)
/// borrows its constant, others are copied.
pub(crate) fn owned_name(s: &str) -> Cow<'static, str> {
    match s {
        OK => Cow::Borrowed(OK),
        ERR => Cow::Borrowed(ERR),
        STREAM => Cow::Borrowed(STREAM),
        STREAM_DONE => Cow::Borrowed(STREAM_DONE),
        HEARTBEAT => Cow::Borrowed(HEARTBEAT),
        MORE => Cow::Borrowed(MORE),
        _ => Cow::Owned(s.to_owned()),
    }
}

/// The ids in an event's header.
struct Ids<'a> {
    message_id: Option<&'a [u8]>,
    response_to: Option<&'a [u8]>,
    version: Option<i64>,
    timeout_ms: Option<u64>,
    api_version: Option<&'a [u8]>,
}

/// The message id and version of a request whose header is readable even
/// though the rest of the event is not (bad args, bad name), so the server
/// can still answer it with an `ERR`. `None` for anything else.
pub fn request_id(frame: &Bytes) -> Option<(Bytes, Option<i64>)> {
    let mut r = Reader::new(&frame[..]);
    if !matches!(r.container(), Ok(Container::Array(3))) {
        return None;
    }
    match header(&mut r).ok()? {
        Ids {
            message_id: Some(id),
            response_to: None,
            version,
            ..
        } => Some((frame.slice_ref(id), version)),
        _ => None,
    }
}

/// The `response_to` of a reply whose header is readable even though the
/// rest of the event is not (bad args, bad name), so the client can fail
/// that call at once instead of letting it time out. `None` for anything
/// else.
pub(crate) fn reply_to(frame: &Bytes) -> Option<&[u8]> {
    let mut r = Reader::new(&frame[..]);
    if !matches!(r.container(), Ok(Container::Array(3))) {
        return None;
    }
    header(&mut r).ok()?.response_to
}

/// The header key of a request carrying the caller's remaining time, in
/// milliseconds (zrpc's deadline; PROTOCOL.md §5).
pub const TIMEOUT_KEY: &str = "timeout_ms";

/// The header key of a request that requires a version of its method's
/// namespace, as a `"MAJOR.MINOR"` str (zrpc; PROTOCOL.md §5).
pub const API_VERSION_KEY: &str = "api_version";

/// Header of an outgoing event.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    /// This event's own id.
    pub message_id: &'a MessageId,
    /// Raw msgpack of the channel id this event belongs to (echoed verbatim).
    pub response_to: Option<&'a [u8]>,
}

/// Extra header entries of an outgoing request: metadata, `timeout_ms`,
/// `traceparent`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderExtra {
    /// `timeout_ms`, written straight into the frame (every zrpc call
    /// carries it: no buffer of its own).
    timeout_ms: Option<u64>,
    count: usize,
    /// Other entries, encoded as msgpack key/value pairs.
    pairs: Vec<u8>,
}

impl HeaderExtra {
    /// No extra entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.timeout_ms.is_none()
    }

    /// Add `key: value`.
    pub fn push(&mut self, key: &str, value: &rmpv::Value) {
        write_str(&mut self.pairs, key);
        super::msgpack::write_value(&mut self.pairs, value);
        self.count += 1;
    }

    /// Set `timeout_ms`: the caller's remaining time, in milliseconds.
    pub fn set_timeout_ms(&mut self, ms: u64) {
        self.timeout_ms = Some(ms);
    }

    fn entries(&self) -> usize {
        self.count + usize::from(self.timeout_ms.is_some())
    }

    fn write(&self, out: &mut Vec<u8>) {
        if let Some(ms) = self.timeout_ms {
            out.extend_from_slice(b"\xaatimeout_ms");
            write_uint(out, ms);
        }
        out.extend_from_slice(&self.pairs);
    }
}

/// Encode `[header, name, args]` into `out`; `args` writes the raw msgpack of
/// the args value.
pub(crate) fn encode_with(
    out: &mut Vec<u8>,
    header: Header<'_>,
    name: &str,
    args: impl FnOnce(&mut Vec<u8>),
) {
    encode_with_extra(out, header, None, name, args)
}

/// [`encode_with`] plus extra header entries after the standard ones.
pub(crate) fn encode_with_extra(
    out: &mut Vec<u8>,
    header: Header<'_>,
    extra: Option<&HeaderExtra>,
    name: &str,
    args: impl FnOnce(&mut Vec<u8>),
) {
    out.push(0x93);
    let entries = 2 + usize::from(header.response_to.is_some()) + extra.map_or(0, |e| e.entries());
    write_map_len(out, entries);
    out.extend_from_slice(b"\xaamessage_id\xc4\x20");
    out.extend_from_slice(header.message_id.as_bytes());
    out.extend_from_slice(b"\xa1v");
    out.push(PROTOCOL_VERSION);
    if let Some(rt) = header.response_to {
        out.extend_from_slice(b"\xabresponse_to");
        out.extend_from_slice(rt);
    }
    if let Some(extra) = extra {
        extra.write(out);
    }
    write_str(out, name);
    args(out);
}

/// Encode an event whose args are already msgpack.
pub fn encode(header: Header<'_>, name: &str, args: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + name.len() + args.len());
    encode_with(&mut out, header, name, |o| o.extend_from_slice(args));
    out
}

/// Encode a new event that opens a channel (a request) or stands alone (a
/// one-way event): a fresh id and no `response_to`.
pub fn encode_request(name: &str, args: &[u8]) -> (MessageId, Vec<u8>) {
    encode_request_extra(name, None, args.len(), |o| o.extend_from_slice(args))
}

/// [`encode_request`] with extra header entries, and the args written in
/// place by `args` (no separate buffer to copy from); `args_len` is a
/// capacity hint.
pub(crate) fn encode_request_extra(
    name: &str,
    extra: Option<&HeaderExtra>,
    args_len: usize,
    args: impl FnOnce(&mut Vec<u8>),
) -> (MessageId, Vec<u8>) {
    let id = MessageId::new();
    let extra_len = extra.map_or(0, |e| e.pairs.len() + 20);
    let mut out = Vec::with_capacity(64 + name.len() + extra_len + args_len);
    encode_request_into(&mut out, &id, name, extra, args);
    (id, out)
}

/// A request (new channel `id`) appended to `out`.
pub(crate) fn encode_request_into(
    out: &mut Vec<u8>,
    id: &MessageId,
    name: &str,
    extra: Option<&HeaderExtra>,
    args: impl FnOnce(&mut Vec<u8>),
) {
    let header = Header {
        message_id: id,
        response_to: None,
    };
    encode_with_extra(out, header, extra, name, args);
}

/// [`encode_request`] with extra header entries (metadata, `timeout_ms`).
pub fn encode_request_with_header(
    name: &str,
    extra: &HeaderExtra,
    args: &[u8],
) -> (MessageId, Vec<u8>) {
    encode_request_extra(name, Some(extra), args.len(), |o| o.extend_from_slice(args))
}

/// Encode an event on the channel `response_to` (raw msgpack id, echoed
/// verbatim) with a fresh id of its own.
pub fn encode_reply(response_to: &[u8], name: &str, args: &[u8]) -> Vec<u8> {
    let id = MessageId::new();
    let header = Header {
        message_id: &id,
        response_to: Some(response_to),
    };
    encode(header, name, args)
}

/// Encode an `ERR [name, message, traceback]` reply.
pub fn encode_err(response_to: &[u8], name: &str, message: &str, traceback: &str) -> Vec<u8> {
    let id = MessageId::new();
    let mut out = Vec::with_capacity(128 + message.len() + traceback.len());
    let header = Header {
        message_id: &id,
        response_to: Some(response_to),
    };
    encode_with(&mut out, header, ERR, |o| {
        o.push(0x93);
        write_str(o, name);
        write_str(o, message);
        write_str(o, traceback);
    });
    out
}

/// Args of `_zpc_hb`: `[0]`.
pub(crate) const HEARTBEAT_ARGS: &[u8] = &[0x91, 0x00];

/// The header (second element of an event): its ids, each as the raw
/// msgpack slice of `frame`, so they are echoed with their own type.
fn header<'a>(r: &mut Reader<'a>) -> Result<Ids<'a>, DecodeError> {
    let mut ids = Ids {
        message_id: None,
        response_to: None,
        version: None,
        timeout_ms: None,
        api_version: None,
    };
    let header_start = r.pos;
    match r.container()? {
        Container::Map(entries) => {
            for _ in 0..entries {
                let key = r.str_or_skip()?;
                let start = r.pos;
                r.skip_value()?;
                let raw = &r.buf[start..r.pos];
                // Compared as bytes: equal to an ASCII key means valid.
                match key {
                    Some(b"message_id") => ids.message_id = Some(raw),
                    Some(b"response_to") => ids.response_to = Some(raw),
                    Some(b"v") => ids.version = read_int(raw),
                    Some(k) if k == TIMEOUT_KEY.as_bytes() => {
                        ids.timeout_ms = read_int(raw).and_then(|ms| u64::try_from(ms).ok())
                    }
                    Some(k) if k == API_VERSION_KEY.as_bytes() => ids.api_version = Some(raw),
                    _ => {}
                }
            }
        }
        // A v1 peer may send a non-map header; Python treats it as `{}`.
        _ => {
            r.pos = header_start;
            r.skip(0)?;
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::msgpack::{hex, validate};

    const REQ_ADD: &str = "9382aa6d6573736167655f6964c4203031323334353637383961626364656630313233343536373839616263646566a17603a3616464920102";
    const OK_3: &str = "9383aa6d6573736167655f6964c4203332373238306336353835313462383461326438393861343333353365343635a17603ab726573706f6e73655f746fc4203031323334353637383961626364656630313233343536373839616263646566a24f4b9103";
    const HB: &str = "9383aa6d6573736167655f6964c4203332373238303764353835313462383461326438393861343333353365343635a17603ab726573706f6e73655f746fc4206161616161616161616161616161616161616161616161616161616161616131a75f7a70635f68629100";

    fn id_of(raw: &[u8]) -> MessageId {
        MessageId::from_raw(raw).expect("one of our ids").0
    }

    #[test]
    fn request_vector_roundtrips() {
        let frame = hex(REQ_ADD);
        let ev = Event::decode(&frame).unwrap();
        assert_eq!(ev.name.as_deref(), Ok("add"));
        assert_eq!(ev.version, Some(3));
        assert!(ev.response_to.is_none());
        let mid = ev.message_id.unwrap();
        assert_eq!(&mid[..2], &[0xc4, 0x20]);
        assert_eq!(&mid[2..], b"0123456789abcdef0123456789abcdef");
        assert_eq!(&ev.args[..], &[0x92, 0x01, 0x02]);
        let again = encode(
            Header {
                message_id: &id_of(mid),
                response_to: None,
            },
            "add",
            &ev.args,
        );
        assert_eq!(Bytes::from(again), frame);
    }

    #[test]
    fn reply_vectors_roundtrip() {
        for (vector, name, args) in [
            (OK_3, OK, &[0x91, 0x03][..]),
            (HB, HEARTBEAT, HEARTBEAT_ARGS),
        ] {
            let frame = hex(vector);
            let ev = Event::decode(&frame).unwrap();
            assert_eq!(ev.name.as_deref(), Ok(name));
            assert_eq!(&ev.args[..], args);
            let id = id_of(ev.message_id.as_ref().unwrap());
            let rt = ev.response_to.unwrap();
            let again = encode(
                Header {
                    message_id: &id,
                    response_to: Some(rt),
                },
                name,
                &ev.args,
            );
            assert_eq!(Bytes::from(again), frame, "re-encoding {name}");
        }
    }

    #[test]
    fn stream_tail_vectors() {
        let id = MessageId::new();
        let rt = hex("c4200123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        let h = || Header {
            message_id: &id,
            response_to: Some(&rt),
        };
        assert!(encode(h(), STREAM, &[0x00]).ends_with(&hex("a653545245414d00")));
        assert!(encode(h(), MORE, &[0x91, 0x64]).ends_with(&hex("a95f7a70635f6d6f72659164")));
        assert!(encode(h(), STREAM_DONE, &[0xc0]).ends_with(&hex("ab53545245414d5f444f4e45c0")));
        assert_eq!(encode(h(), STREAM, &[0x00]).len(), 104);
    }

    #[test]
    fn middleware_header_keys_are_tolerated() {
        let frame = hex("9384aa6d6573736167655f6964c420303132333435363738396162636465663031323334353637383961626364656 6a17603a874726163655f6964a974726163652d313233a47370616e07a3616464920102");
        let ev = Event::decode(&frame).unwrap();
        assert_eq!(ev.name.as_deref(), Ok("add"));
        assert_eq!(ev.version, Some(3));
        assert_eq!(&ev.args[..], &[0x92, 1, 2]);
    }

    #[test]
    fn ids_of_any_type_are_kept_verbatim() {
        // str id (node style) and int id.
        for id in [&b"\xa4abcd"[..], &b"\xcd\x30\x39"[..]] {
            let mut f = vec![0x93, 0x81, 0xaa];
            f.extend_from_slice(b"message_id");
            f.extend_from_slice(id);
            f.extend_from_slice(b"\xa1x\x90");
            let f = Bytes::from(f);
            let ev = Event::decode(&f).unwrap();
            assert_eq!(ev.message_id.unwrap(), id);
        }
    }

    #[test]
    fn malformed_events_are_rejected() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (vec![0x92, 0x80, 0xa1], "array of 2"),
            (vec![0xc1], "reserved marker"),
            // Huge length claims: tests/fuzz_decoder.rs also measures
            // that rejecting them allocates nothing to speak of.
            (vec![0x93, 0x80, 0xa3, b'a'], "truncated name"),
            (vec![0x01], "not an array"),
        ];
        for (bytes, what) in cases {
            assert!(
                Event::decode(&Bytes::from(bytes)).is_err(),
                "{what} must be rejected"
            );
        }
        // A million levels of nesting in args.
        let mut deep = vec![0x93, 0x80, 0xa1, b'x'];
        deep.extend(std::iter::repeat_n(0x91, 1_000_000));
        deep.push(0x00);
        assert_eq!(
            Event::decode(&Bytes::from(deep)).unwrap_err(),
            DecodeError::TooDeep
        );
    }

    #[test]
    fn lenient_cases_decode_with_flags() {
        // Header as array (v1 style): no message_id; bin name: flagged.
        let f = Bytes::from_static(b"\x93\x90\xc4\x03add\x90");
        let ev = Event::decode(&f).unwrap();
        assert!(ev.message_id.is_none());
        assert!(ev.name.is_err());
        // Invalid UTF-8 in name.
        let f = Bytes::from_static(b"\x93\x80\xa2\xff\xfe\x90");
        let ev = Event::decode(&f).unwrap();
        assert_eq!(ev.name, Err("event name is not valid UTF-8"));
        // Bin header keys are skipped, so no message_id is found.
        let f = Bytes::from_static(b"\x93\x81\xc4\x01v\x03\xa1x\x90");
        let ev = Event::decode(&f).unwrap();
        assert!(ev.version.is_none());
    }

    /// A seeded mutation fuzzer over the captured vectors and richer events:
    /// whatever the bytes, decoding returns (never panics, never allocates
    /// from a length prefix), and anything accepted survives re-encoding.
    /// Runs a bounded number of cases in the normal suite.
    #[test]
    fn fuzz_decoder_with_mutations() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5a5c);
        let id = MessageId::new();
        let mut seeds: Vec<Vec<u8>> = [REQ_ADD, OK_3, HB]
            .iter()
            .map(|h| hex(h).to_vec())
            .collect();
        let header = Header {
            message_id: &id,
            response_to: Some(b"\xc4\x02ab"),
        };
        seeds.push(encode(
            header,
            STREAM,
            b"\x82\xa1k\x93\x01\xcb\x3f\xf0\0\0\0\0\0\0\xc0\xa1b\xc4\x01\xff",
        ));
        seeds.push(encode_err(b"\xa2id", "ValueError", "bad", "Traceback\n"));
        seeds.push(encode(header, MORE, &[0x91, 0x64]));
        // Markers that claim huge lengths, to splice in.
        let huge: [&[u8]; 5] = [
            b"\xdd\xff\xff\xff\xff",
            b"\xdf\xff\xff\xff\xff",
            b"\xdb\xff\xff\xff\xff",
            b"\xc6\xff\xff\xff\xff",
            b"\xc9\xff\xff\xff\xff\x01",
        ];
        let (mut accepted, cases) = (0, 40_000);
        for _ in 0..cases {
            let mut b = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(1..=4) {
                let at = rng.gen_range(0..=b.len());
                match rng.gen_range(0..6) {
                    0 if !b.is_empty() => {
                        let i = rng.gen_range(0..b.len());
                        b[i] ^= 1 << rng.gen_range(0..8);
                    }
                    1 => b.insert(at, rng.gen()),
                    2 => b.truncate(at),
                    3 => {
                        let end = rng.gen_range(at..=b.len());
                        b.drain(at..end);
                    }
                    4 => {
                        let m = huge[rng.gen_range(0..huge.len())];
                        b.splice(at..at, m.iter().copied());
                    }
                    _ if !b.is_empty() => {
                        let i = rng.gen_range(0..b.len());
                        b[i] = rng.gen();
                    }
                    _ => {}
                }
            }
            let frame = Bytes::from(b);
            let Ok(ev) = Event::decode(&frame) else {
                continue;
            };
            accepted += 1;
            assert!(validate(&ev.args).is_ok());
            let _ = crate::service::Args::from_raw(ev.args.clone()).map(|a| a.values());
            if let (Ok(name), Some(_)) = (&ev.name, &ev.message_id) {
                let again = encode(
                    Header {
                        message_id: &id,
                        response_to: ev.response_to,
                    },
                    name,
                    &ev.args,
                );
                let again = Bytes::from(again);
                let back = Event::decode(&again).expect("re-encoded event decodes");
                assert_eq!((back.name.as_ref(), &back.args), (Ok(name), &ev.args));
                assert_eq!(back.response_to, ev.response_to);
            }
        }
        // The mutations must leave some events valid, or this tests nothing.
        assert!(accepted > cases / 20, "only {accepted} of {cases} accepted");
    }
}
