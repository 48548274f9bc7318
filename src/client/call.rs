//! What a call puts on the wire and how its answer reads: arguments as a
//! msgpack array, the request frame, the value of `OK` and the error of
//! `ERR`.

use super::core::First;
use crate::error::{Error, RemoteError, Source};
use crate::protocol::{self, budget, buffers, msgpack, HeaderExtra, MessageId};
use bytes::Bytes;
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Encode call arguments as a msgpack array: `()` becomes `[]`, a tuple or
/// sequence is the array itself, and any other value becomes a single
/// argument.
pub(crate) fn encode_args<A: Serialize>(args: &A) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    encode_args_into(&mut out, args)?;
    Ok(out)
}

/// [`encode_args`], appended to `out`.
fn encode_args_into<A: Serialize>(out: &mut Vec<u8>, args: &A) -> Result<(), Error> {
    let start = out.len();
    rmp_serde::encode::write_named(&mut buffers::Writer(out), args)
        .map_err(|e| Error::encode("the arguments", e))?;
    match out.get(start) {
        Some(0xc0) => out[start] = 0x90,
        Some(0x90..=0x9f | 0xdc | 0xdd) => {}
        _ => out.insert(start, 0x91),
    }
    Ok(())
}

/// A request frame for typed args, encoded in place, with `extra` header
/// entries.
pub(super) fn request_serde<A: Serialize>(
    method: &str,
    extra: &HeaderExtra,
    args: &A,
) -> Result<(MessageId, Bytes), Error> {
    let id = MessageId::new();
    let mut result = Ok(());
    let frame = buffers::exact(|out| {
        protocol::encode_request_into(out, &id, method, Some(extra), |out| {
            result = encode_args_into(out, args);
        })
    });
    result.map(|()| (id, frame))
}

/// A request frame for dynamic args, encoded in place, with `extra` header
/// entries.
pub(super) fn request_dynamic(
    method: &str,
    extra: &HeaderExtra,
    args: Vec<Value>,
) -> (MessageId, Bytes) {
    let args = Value::Array(args);
    let len = msgpack::len_hint(&args);
    if len > buffers::SCRATCH {
        // Sized once from the values, not grown from a scratch buffer.
        let (id, frame) = protocol::encode_request_extra(method, Some(extra), len, |out| {
            msgpack::write_value(out, &args)
        });
        return (id, buffers::into_bytes(frame));
    }
    let id = MessageId::new();
    let frame = buffers::exact(|out| {
        protocol::encode_request_into(out, &id, method, Some(extra), |out| {
            msgpack::write_value(out, &args)
        })
    });
    (id, frame)
}

/// The value of a one-event reply: `OK [value]`, or the error of `ERR`.
pub(super) fn single_value(method: &str, first: First) -> Result<Bytes, Error> {
    match &*first.name {
        protocol::OK => msgpack::first_item(&first.args)
            .ok_or_else(|| Error::Protocol(format!("OK reply to {method} has no value"))),
        protocol::ERR => Err(Error::Remote(parse_err(&first.args))),
        other => Err(Error::Protocol(format!(
            "unexpected {other} reply to {method}"
        ))),
    }
}

/// How a reply value becomes the caller's type, within the decoding
/// budget of its second argument (the client's `max_decoded_size`).
pub(super) type Decode<T> = fn(&[u8], usize) -> Result<T, Source>;

/// Into any serde type.
pub(super) fn decode_serde<R: DeserializeOwned>(raw: &[u8], max: usize) -> Result<R, Source> {
    budget::from_slice(raw, max).map_err(|e| Arc::new(e) as Source)
}

/// Into a dynamic value, msgpack types kept.
pub(super) fn decode_value(raw: &[u8], max: usize) -> Result<Value, Source> {
    budget::read_value(raw, max).map_err(|e| Arc::new(e) as Source)
}

/// The most an `ERR`'s `[name, message, traceback]` may take decoded.
const ERR_MAX_DECODED: usize = 1 << 20;

/// Read `ERR` args: `[name, message, traceback]` (v2+) or `[repr]` (v1).
pub(super) fn parse_err(args: &Bytes) -> RemoteError {
    let items: Vec<String> = match budget::read_value(args, ERR_MAX_DECODED) {
        Ok(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s.into_str().unwrap_or_default(),
                Value::Nil => String::new(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut it = items.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(name), Some(message), tb) => RemoteError {
            name,
            message,
            traceback: tb.unwrap_or_default(),
        },
        (Some(repr), None, _) => RemoteError {
            name: "RemoteError".into(),
            message: repr,
            traceback: String::new(),
        },
        _ => RemoteError {
            name: "RemoteError".into(),
            message: "malformed ERR reply".into(),
            traceback: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_encoding_shapes() {
        assert_eq!(encode_args(&()).unwrap(), vec![0x90]);
        assert_eq!(encode_args(&(1, 2)).unwrap(), vec![0x92, 1, 2]);
        assert_eq!(encode_args(&vec![1]).unwrap(), vec![0x91, 1]);
        assert_eq!(encode_args(&"x").unwrap(), vec![0x91, 0xa1, b'x']);
    }

    #[test]
    fn err_parsing() {
        let raw = msgpack::encode_value(&Value::Array(vec![
            "NameError".into(),
            "x".into(),
            "tb".into(),
        ]));
        let e = parse_err(&Bytes::from(raw));
        assert_eq!(
            (e.name.as_str(), e.message.as_str(), e.traceback.as_str()),
            ("NameError", "x", "tb")
        );
        let raw = msgpack::encode_value(&Value::Array(vec!["ValueError('x')".into()]));
        assert_eq!(parse_err(&Bytes::from(raw)).message, "ValueError('x')");
    }
}
