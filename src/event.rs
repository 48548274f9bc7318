//! The zerorpc event codec: one msgpack array `[header, name, args]` per
//! ZeroMQ message, exactly as zerorpc-python 0.6.3 writes and reads it.
//!
//! Decoding is a single validating walk over the payload that never
//! allocates in proportion to a length prefix and caps nesting depth, so
//! hostile input costs at most its own size. The header fields the framework
//! routes on (`message_id`, `response_to`) and the `args` are kept as
//! zero-copy slices of the raw msgpack bytes: ids are echoed back with their
//! original msgpack type (bin, str or int) byte for byte, and arguments are
//! deserialized once, straight into the handler's types.

use bytes::Bytes;
use smallvec::SmallVec;
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Protocol version written in every header (`v: 3`).
pub const PROTOCOL_VERSION: u8 = 3;
/// Successful reply: args `[result]`.
pub const OK: &str = "OK";
/// Error reply: args `[name, message, traceback]`.
pub const ERR: &str = "ERR";
/// One streamed item: args is the bare item.
pub const STREAM: &str = "STREAM";
/// End of a stream: args nil.
pub const STREAM_DONE: &str = "STREAM_DONE";
/// Heartbeat on a channel: args `[0]`.
pub const HEARTBEAT: &str = "_zpc_hb";
/// Flow-control credit on a channel: args `[n]`.
pub const MORE: &str = "_zpc_more";

/// Maximum nesting of arrays and maps accepted from the network. Deep enough
/// for any real payload, shallow enough that recursive decoders in handlers
/// (serde, rmpv) cannot overflow a task's stack.
pub const MAX_DEPTH: usize = 256;

/// A message id as zrpc generates them: 32 ASCII hex bytes (an 8-digit
/// counter followed by 24 random digits), sent as msgpack bin like Python.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId([u8; 32]);

impl MessageId {
    /// A fresh id, unique within this process and (with overwhelming
    /// probability) across processes.
    pub fn new() -> Self {
        static BASE: OnceLock<[u8; 24]> = OnceLock::new();
        static COUNTER: OnceLock<AtomicU64> = OnceLock::new();
        let base = BASE.get_or_init(|| {
            let mut b = [0u8; 24];
            hex_into(&rand::random::<[u8; 12]>(), &mut b);
            b
        });
        let counter = COUNTER.get_or_init(|| AtomicU64::new(u64::from(rand::random::<u32>())));
        // The counter wraps at 2^32 (8 hex digits); the random base keeps ids
        // unique across processes.
        let n = counter.fetch_add(1, Ordering::Relaxed) as u32;
        let mut id = [0u8; 32];
        hex_into(&n.to_be_bytes(), &mut id[..8]);
        id[8..].copy_from_slice(base);
        MessageId(id)
    }

    /// The 32 ASCII bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Recognise one of our own ids in a raw msgpack `response_to` value
    /// (`c4 20 <32 bytes>`).
    pub fn from_raw(raw: &[u8]) -> Option<MessageId> {
        if raw.len() == 34 && raw[0] == 0xc4 && raw[1] == 32 {
            let mut id = [0u8; 32];
            id.copy_from_slice(&raw[2..]);
            Some(MessageId(id))
        } else {
            None
        }
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.0).unwrap_or("?"))
    }
}

fn hex_into(src: &[u8], dst: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in src.iter().enumerate() {
        dst[2 * i] = HEX[(b >> 4) as usize];
        dst[2 * i + 1] = HEX[(b & 15) as usize];
    }
}

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
    /// The event name (method name or a reserved name), if it was a valid str.
    pub name: Result<&'a str, &'static str>,
    /// Raw msgpack of `args`.
    pub args: Bytes,
}

impl<'a> Event<'a> {
    /// Decode a payload frame. Trailing bytes after the event are ignored, as
    /// Python's `Unpacker` does.
    pub fn decode(frame: &'a Bytes) -> Result<Event<'a>, DecodeError> {
        let buf = &frame[..];
        let mut r = Reader { buf, pos: 0 };
        let n = match r.container()? {
            Container::Array(n) => n,
            _ => return Err(DecodeError::NotAnEvent("event is not an array")),
        };
        if n != 3 {
            return Err(DecodeError::NotAnEvent("event array must have 3 elements"));
        }
        let Ids {
            message_id,
            response_to,
            version,
        } = r.header()?;
        let name = match r.str_or_skip()? {
            Some(s) => std::str::from_utf8(s).map_err(|_| "event name is not valid UTF-8"),
            None => Err("event name is not a msgpack str"),
        };
        let args_start = r.pos;
        r.skip(0)?;
        Ok(Event {
            message_id,
            response_to,
            version,
            name,
            args: frame.slice(args_start..r.pos),
        })
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
}

/// The message id and version of a request whose header is readable even
/// though the rest of the event is not (bad args, bad name), so the server
/// can still answer it with an `ERR`. `None` for anything else.
pub fn request_id(frame: &Bytes) -> Option<(Bytes, Option<i64>)> {
    let mut r = Reader {
        buf: &frame[..],
        pos: 0,
    };
    if !matches!(r.container(), Ok(Container::Array(3))) {
        return None;
    }
    match r.header().ok()? {
        Ids {
            message_id: Some(id),
            response_to: None,
            version,
        } => Some((frame.slice_ref(id), version)),
        _ => None,
    }
}

/// Header of an outgoing event.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    /// This event's own id.
    pub message_id: &'a MessageId,
    /// Raw msgpack of the channel id this event belongs to (echoed verbatim).
    pub response_to: Option<&'a [u8]>,
}

/// Encode `[header, name, args]` into `out`; `args` writes the raw msgpack of
/// the args value.
pub fn encode_with(
    out: &mut Vec<u8>,
    header: Header<'_>,
    name: &str,
    args: impl FnOnce(&mut Vec<u8>),
) {
    out.push(0x93);
    out.push(if header.response_to.is_some() {
        0x83
    } else {
        0x82
    });
    out.extend_from_slice(b"\xaamessage_id\xc4\x20");
    out.extend_from_slice(header.message_id.as_bytes());
    out.extend_from_slice(b"\xa1v");
    out.push(PROTOCOL_VERSION);
    if let Some(rt) = header.response_to {
        out.extend_from_slice(b"\xabresponse_to");
        out.extend_from_slice(rt);
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
    encode_request_with(name, args.len(), |o| o.extend_from_slice(args))
}

/// [`encode_request`] with the args written in place by `args` (no
/// separate buffer to copy from); `args_len` is a capacity hint.
pub fn encode_request_with(
    name: &str,
    args_len: usize,
    args: impl FnOnce(&mut Vec<u8>),
) -> (MessageId, Vec<u8>) {
    let id = MessageId::new();
    let header = Header {
        message_id: &id,
        response_to: None,
    };
    let mut out = Vec::with_capacity(64 + name.len() + args_len);
    encode_with(&mut out, header, name, args);
    (id, out)
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

/// Write a msgpack str.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_str(out, s);
}

/// Args of `_zpc_hb`: `[0]`.
pub const HEARTBEAT_ARGS: &[u8] = &[0x91, 0x00];

/// Read a msgpack integer from a complete raw value.
pub fn read_int(raw: &[u8]) -> Option<i64> {
    let mut r = raw;
    rmp::decode::read_int::<i64, _>(&mut r).ok()
}

/// If `raw` is a msgpack array, its length.
pub fn array_len(raw: &[u8]) -> Option<u32> {
    let mut r = Reader { buf: raw, pos: 0 };
    match r.container() {
        Ok(Container::Array(n)) => Some(n),
        _ => None,
    }
}

/// The raw bytes of the first element of a msgpack array (the value of an
/// `OK [value]`, the count of `_zpc_more [n]`); `None` if `raw` is not a
/// non-empty array. The input must already be validated (it came through
/// [`Event::decode`]).
pub fn first_item(raw: &Bytes) -> Option<Bytes> {
    let mut r = Reader { buf: raw, pos: 0 };
    match r.container().ok()? {
        Container::Array(n) if n > 0 => {}
        _ => return None,
    }
    let start = r.pos;
    r.skip(1).ok()?;
    Some(raw.slice(start..r.pos))
}

/// A short, human description of the msgpack type of a raw value.
pub fn type_name(raw: &[u8]) -> &'static str {
    match raw.first() {
        None => "nothing",
        Some(0xc0) => "nil",
        Some(0xc2 | 0xc3) => "bool",
        Some(0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3) => "int",
        Some(0xca | 0xcb) => "float",
        Some(0xa0..=0xbf | 0xd9..=0xdb) => "str",
        Some(0xc4..=0xc6) => "bin",
        Some(0x90..=0x9f | 0xdc | 0xdd) => "array",
        Some(0x80..=0x8f | 0xde | 0xdf) => "map",
        Some(_) => "ext",
    }
}

enum Container {
    Array(u32),
    Map(u32),
    Other,
}

/// A bounds-checked cursor over msgpack bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The header (second element of an event): its ids, each as the raw
    /// msgpack slice of `frame`, so they are echoed with their own type.
    fn header(&mut self) -> Result<Ids<'a>, DecodeError> {
        let mut ids = Ids {
            message_id: None,
            response_to: None,
            version: None,
        };
        let header_start = self.pos;
        match self.container()? {
            Container::Map(entries) => {
                for _ in 0..entries {
                    let key = self.str_or_skip()?;
                    let start = self.pos;
                    self.skip(1)?;
                    let raw = &self.buf[start..self.pos];
                    // Compared as bytes: equal to an ASCII key means valid.
                    match key {
                        Some(b"message_id") => ids.message_id = Some(raw),
                        Some(b"response_to") => ids.response_to = Some(raw),
                        Some(b"v") => ids.version = read_int(raw),
                        _ => {}
                    }
                }
            }
            // A v1 peer may send a non-map header; Python treats it as `{}`.
            _ => {
                self.pos = header_start;
                self.skip(0)?;
            }
        }
        Ok(ids)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(DecodeError::Malformed("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(DecodeError::Malformed("truncated"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError::Malformed("truncated"))?;
        self.pos = end;
        Ok(s.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn advance(&mut self, n: u64) -> Result<(), DecodeError> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(DecodeError::Malformed(
                "length prefix runs past the end of the message",
            ));
        }
        self.pos += n as usize;
        Ok(())
    }

    /// Peek the next value: if it is an array or map, consume its header.
    fn container(&mut self) -> Result<Container, DecodeError> {
        let start = self.pos;
        let m = self.byte()?;
        let c = match m {
            0x90..=0x9f => Container::Array(u32::from(m & 0x0f)),
            0xdc => Container::Array(self.be(2)? as u32),
            0xdd => Container::Array(self.be(4)? as u32),
            0x80..=0x8f => Container::Map(u32::from(m & 0x0f)),
            0xde => Container::Map(self.be(2)? as u32),
            0xdf => Container::Map(self.be(4)? as u32),
            _ => {
                self.pos = start;
                return Ok(Container::Other);
            }
        };
        // Every element takes at least one byte: a claimed length larger than
        // what is left is a lie, caught here before anyone allocates for it.
        let (n, per) = match c {
            Container::Array(n) => (u64::from(n), 1),
            Container::Map(n) => (u64::from(n), 2),
            Container::Other => (0, 0),
        };
        if n * per > (self.buf.len() - self.pos) as u64 {
            return Err(DecodeError::Malformed(
                "length prefix runs past the end of the message",
            ));
        }
        Ok(c)
    }

    /// Read a str (returning its bytes, not yet checked as UTF-8) or skip
    /// any other value (returning None).
    fn str_or_skip(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let start = self.pos;
        let m = self.byte()?;
        let len = match m {
            0xa0..=0xbf => u64::from(m & 0x1f),
            0xd9 => self.be(1)?,
            0xda => self.be(2)?,
            0xdb => self.be(4)?,
            _ => {
                self.pos = start;
                self.skip(1)?;
                return Ok(None);
            }
        };
        let s = self.pos;
        self.advance(len)?;
        Ok(Some(&self.buf[s..self.pos]))
    }

    /// Skip one complete value, validating structure; `depth` is the nesting
    /// level of the value being skipped.
    fn skip(&mut self, depth: usize) -> Result<(), DecodeError> {
        match self.skip_marker()? {
            0 => Ok(()),
            children => self.skip_nested(depth, children),
        }
    }

    /// Read one marker and its payload; the number of values a container
    /// holds (checked against the bytes left), 0 for anything else.
    fn skip_marker(&mut self) -> Result<u64, DecodeError> {
        let m = self.byte()?;
        let (children, skip) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (2 * u64::from(m & 0x0f), 0),
            0x90..=0x9f => (u64::from(m & 0x0f), 0),
            0xa0..=0xbf => (0, u64::from(m & 0x1f)),
            0xc1 => return Err(DecodeError::Malformed("reserved marker 0xc1")),
            0xc4 | 0xd9 => (0, self.be(1)?),
            0xc5 | 0xda => (0, self.be(2)?),
            0xc6 | 0xdb => (0, self.be(4)?),
            0xc7 => (0, self.be(1)? + 1),
            0xc8 => (0, self.be(2)? + 1),
            0xc9 => (0, self.be(4)? + 1),
            0xca => (0, 4),
            0xcb => (0, 8),
            0xcc | 0xd0 => (0, 1),
            0xcd | 0xd1 => (0, 2),
            0xce | 0xd2 => (0, 4),
            0xcf | 0xd3 => (0, 8),
            0xd4 => (0, 2),
            0xd5 => (0, 3),
            0xd6 => (0, 5),
            0xd7 => (0, 9),
            0xd8 => (0, 17),
            0xdc => (self.be(2)?, 0),
            0xdd => (self.be(4)?, 0),
            0xde => (2 * self.be(2)?, 0),
            0xdf => (2 * self.be(4)?, 0),
        };
        self.advance(skip)?;
        // Every value takes at least one byte: a larger count is a lie.
        if children > (self.buf.len() - self.pos) as u64 {
            return Err(DecodeError::Malformed(
                "length prefix runs past the end of the message",
            ));
        }
        Ok(children)
    }

    /// Skip the `children` values of a container just opened at `depth`.
    /// Iterative, so hostile nesting cannot exhaust the stack.
    fn skip_nested(&mut self, depth: usize, children: u64) -> Result<(), DecodeError> {
        if depth + 1 > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        // Values still to skip per open container, outer ones first. The
        // first levels live inline, so a typical event is walked without
        // allocating; deeper nesting spills to the heap.
        let mut pending: SmallVec<[u64; 8]> = SmallVec::new();
        let mut remaining = children;
        loop {
            while remaining == 0 {
                match pending.pop() {
                    Some(r) => remaining = r,
                    None => return Ok(()),
                }
            }
            remaining -= 1;
            let children = self.skip_marker()?;
            if children > 0 {
                if depth + pending.len() + 2 > MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                pending.push(remaining);
                remaining = children;
            }
        }
    }
}

/// Check that `raw` is exactly one well-formed msgpack value within the depth
/// limit.
pub fn validate(raw: &[u8]) -> Result<(), DecodeError> {
    let mut r = Reader { buf: raw, pos: 0 };
    r.skip(0)?;
    if r.pos != raw.len() {
        return Err(DecodeError::Malformed("trailing bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Bytes {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        Bytes::from(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<_>>(),
        )
    }

    const REQ_ADD: &str = "9382aa6d6573736167655f6964c4203031323334353637383961626364656630313233343536373839616263646566a17603a3616464920102";
    const OK_3: &str = "9383aa6d6573736167655f6964c4203332373238306336353835313462383461326438393861343333353365343635a17603ab726573706f6e73655f746fc4203031323334353637383961626364656630313233343536373839616263646566a24f4b9103";
    const HB: &str = "9383aa6d6573736167655f6964c4203332373238303764353835313462383461326438393861343333353365343635a17603ab726573706f6e73655f746fc4206161616161616161616161616161616161616161616161616161616161616131a75f7a70635f68629100";

    fn id_of(raw: &[u8]) -> MessageId {
        let mut id = [0u8; 32];
        id.copy_from_slice(&raw[2..34]);
        MessageId(id)
    }

    #[test]
    fn first_item_of_arrays() {
        assert_eq!(first_item(&hex("920102")).as_deref(), Some(&[1u8][..]));
        // [[1, 2], 3] → [1, 2]
        assert_eq!(
            first_item(&hex("9292010203")).as_deref(),
            Some(&[0x92u8, 1, 2][..])
        );
        assert_eq!(first_item(&hex("90")), None, "empty array");
        assert_eq!(first_item(&hex("01")), None, "not an array");
    }

    #[test]
    fn nesting_limit_is_exact() {
        let nested = |levels: usize| {
            let mut v = vec![0x91; levels];
            v.push(0x00);
            v
        };
        assert_eq!(validate(&nested(MAX_DEPTH)), Ok(()));
        assert_eq!(validate(&nested(MAX_DEPTH + 1)), Err(DecodeError::TooDeep));
    }

    #[test]
    fn nesting_deeper_than_the_inline_stack_is_walked() {
        // 40 nested arrays around 1, then a sibling 2: the skip stack spills
        // to the heap and must come back in order.
        let mut v = vec![0x92];
        v.extend(std::iter::repeat_n(0x91, 40));
        v.extend([0x01, 0x02]);
        assert_eq!(validate(&v), Ok(()));
        let mut short = v.clone();
        short.pop();
        assert!(validate(&short).is_err(), "the sibling is missing");
        v.push(0x03);
        assert!(validate(&v).is_err(), "a trailing byte");
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
    fn generated_ids_are_hex_and_distinct() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert_ne!(a, b);
        assert!(a.as_bytes().iter().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.as_bytes()[8..], b.as_bytes()[8..]);
        let mut raw = vec![0xc4, 32];
        raw.extend_from_slice(a.as_bytes());
        assert_eq!(MessageId::from_raw(&raw), Some(a));
        assert_eq!(MessageId::from_raw(&raw[1..]), None);
    }

    #[test]
    fn hostile_payloads_are_rejected_cheaply() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (vec![0x92, 0x80, 0xa1], "array of 2"),
            (vec![0xc1], "reserved marker"),
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

    #[test]
    fn type_names() {
        assert_eq!(type_name(&[0x05]), "int");
        assert_eq!(type_name(&[0xc0]), "nil");
        assert_eq!(type_name(&[0x81]), "map");
        assert_eq!(type_name(&[0xc4]), "bin");
        assert!(validate(&[0x92, 0x01]).is_err());
        assert!(validate(&[0x92, 0x01, 0x02]).is_ok());
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
