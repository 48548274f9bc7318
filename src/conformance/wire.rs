//! Events as the kit writes and reads them: any id type, any header, and
//! every received event decoded whole (header included), so the checks can
//! look at exactly what a peer sent.

use crate::protocol::{msgpack, Event};
use crate::Value;
use bytes::Bytes;

/// A message id of one of the types peers use: bin (Python, zrpc), str
/// (node's 36-character ids), int.
#[derive(Clone, Debug)]
pub(crate) enum Id {
    Bin(Vec<u8>),
    Str(String),
    Int(i64),
}

impl Id {
    /// A fresh bin id, unique in this run.
    pub(crate) fn fresh() -> Id {
        Id::Bin(crate::protocol::MessageId::new().as_bytes().to_vec())
    }

    pub(crate) fn value(&self) -> Value {
        match self {
            Id::Bin(b) => Value::Binary(b.clone()),
            Id::Str(s) => Value::from(s.as_str()),
            Id::Int(i) => Value::from(*i),
        }
    }

    /// The id's msgpack bytes, as a peer must echo them.
    pub(crate) fn raw(&self) -> Vec<u8> {
        msgpack::encode_value(&self.value())
    }
}

/// An event payload: `[header, name, args]`. `v` is left out when `None`
/// (a v1 event).
pub(crate) fn event(
    id: &Id,
    v: Option<i64>,
    response_to: Option<&Value>,
    name: &str,
    args: Value,
) -> Vec<u8> {
    let mut header = vec![(Value::from("message_id"), id.value())];
    if let Some(v) = v {
        header.push((Value::from("v"), Value::from(v)));
    }
    if let Some(rt) = response_to {
        header.push((Value::from("response_to"), rt.clone()));
    }
    msgpack::encode_value(&Value::Array(vec![
        Value::Map(header),
        Value::from(name),
        args,
    ]))
}

/// An event received, with its frames and everything decoded.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) frames: Vec<Bytes>,
    pub(crate) header: Vec<(Value, Value)>,
    pub(crate) name: String,
    pub(crate) args: Value,
    /// The raw msgpack of `response_to`, if any.
    pub(crate) response_to_raw: Option<Vec<u8>>,
    /// The raw msgpack of `message_id`, if any.
    pub(crate) message_id_raw: Option<Vec<u8>>,
}

impl Seen {
    /// Decode the last frame of a message.
    pub(crate) fn decode(frames: Vec<Bytes>) -> Result<Seen, String> {
        let payload = frames.last().cloned().ok_or("an empty message")?;
        let ev = Event::decode(&payload).map_err(|e| e.to_string())?;
        let (response_to_raw, message_id_raw) = (
            ev.response_to.map(<[u8]>::to_vec),
            ev.message_id.map(<[u8]>::to_vec),
        );
        let name = ev.name.map_err(str::to_string)?.to_string();
        let whole = crate::protocol::budget::read_value(
            &payload,
            crate::protocol::budget::DEFAULT_MAX_DECODED_SIZE,
        )
        .map_err(|e| e.to_string())?;
        let Value::Array(mut parts) = whole else {
            return Err("not an array".into());
        };
        let args = parts.pop().unwrap_or(Value::Nil);
        let header = match parts.first() {
            Some(Value::Map(h)) => h.clone(),
            _ => Vec::new(),
        };
        Ok(Seen {
            frames,
            header,
            name,
            args,
            response_to_raw,
            message_id_raw,
        })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.header
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Its args as an array, if they are one.
    pub(crate) fn items(&self) -> Option<&[Value]> {
        self.args.as_array().map(Vec::as_slice)
    }

    /// The msgpack type of a raw value, for messages.
    pub(crate) fn type_of(raw: &[u8]) -> &'static str {
        msgpack::type_name(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_any_id_type() {
        for id in [Id::Bin(b"ab".to_vec()), Id::Str("x".into()), Id::Int(7)] {
            let payload = event(
                &id,
                Some(3),
                Some(&Value::from(1)),
                "m",
                Value::Array(vec![]),
            );
            let seen = Seen::decode(vec![Bytes::new(), payload.into()]).unwrap();
            assert_eq!(seen.message_id_raw, Some(id.raw()));
            assert_eq!(seen.get("v"), Some(&Value::from(3)));
            assert_eq!(seen.response_to_raw, Some(vec![1]));
            assert_eq!(seen.name, "m");
        }
        let v1 = event(&Id::Int(1), None, None, "m", Value::Nil);
        let seen = Seen::decode(vec![v1.into()]).unwrap();
        assert!(seen.get("v").is_none());
    }
}
