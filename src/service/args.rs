//! A call's arguments: the raw msgpack array as received, decoded on demand
//! — straight into a handler's typed tuple (its arity found from the type,
//! so a wrong count is reported like Python's `TypeError`), or into dynamic
//! values.

use super::items::{Incoming, IncomingSlot};
use crate::error::{clip, ServiceError, QUOTE_LIMIT};
use crate::protocol::budget::{self, TypedError, ValueError};
use crate::protocol::msgpack;
use bytes::Bytes;
use rmpv::Value;
use serde::de::{self, DeserializeOwned, Visitor};
use std::fmt;

/// The arguments of one call: a msgpack array, decoded on demand.
#[derive(Clone, Debug)]
pub struct Args {
    raw: Bytes,
    len: usize,
    /// The most memory decoding these arguments may take (see
    /// [`budget`]).
    max_decoded: usize,
    /// The caller's stream of items, for a client-stream or bidirectional
    /// method (PROTOCOL.md §9.1).
    incoming: IncomingSlot,
}

impl Args {
    /// Wrap a raw msgpack array. Returns `None` if `raw` is not an array.
    pub fn from_raw(raw: Bytes) -> Option<Args> {
        Args::try_from_raw(raw).ok()
    }

    /// [`Args::from_raw`], giving `raw` back when it is not an array.
    pub(crate) fn try_from_raw(raw: Bytes) -> Result<Args, Bytes> {
        match msgpack::array_len(&raw) {
            Some(len) => Ok(Args {
                raw,
                len: len as usize,
                max_decoded: budget::DEFAULT_MAX_DECODED_SIZE,
                incoming: IncomingSlot::default(),
            }),
            None => Err(raw),
        }
    }

    /// The arguments checked to be one well-formed msgpack value within the
    /// depth limit (bytes after it dropped): for arguments that arrived
    /// unchecked (a large request's, walked by its own task, not the
    /// server's core). Malformed ones are a `ProtocolError`, as the core
    /// answers them.
    pub(crate) fn checked(mut self) -> Result<Args, ServiceError> {
        let mut r = msgpack::Reader::new(&self.raw);
        match r.skip(0) {
            Ok(()) => {
                self.raw.truncate(r.pos);
                Ok(self)
            }
            Err(e) => Err(ServiceError::new(
                "ProtocolError",
                format!("malformed request: {e}"),
            )),
        }
    }

    /// The same arguments, decoded under the cap `max_decoded` (the
    /// server's or receiver's `max_decoded_size`).
    pub(crate) fn with_max_decoded(mut self, max_decoded: usize) -> Args {
        self.max_decoded = max_decoded;
        self
    }

    /// The same arguments, with the caller's stream of items.
    pub(crate) fn with_incoming(mut self, incoming: Incoming) -> Args {
        self.incoming = IncomingSlot::new(incoming);
        self
    }

    /// The caller's stream of items, once (none for a plain call).
    pub(crate) fn take_incoming(&self) -> Option<Incoming> {
        self.incoming.take()
    }

    /// Build from values (for tests and in-process calls).
    pub fn from_values(values: &[Value]) -> Args {
        let buf = msgpack::encode_value(&Value::Array(values.to_vec()));
        Args {
            raw: buf.into(),
            len: values.len(),
            max_decoded: budget::DEFAULT_MAX_DECODED_SIZE,
            incoming: IncomingSlot::default(),
        }
    }

    /// Number of positional arguments.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw msgpack array.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Deserialize the whole argument array into `T` (a tuple, a `Vec`, …).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ServiceError> {
        crate::blob::from_msgpack(&self.raw, &self.raw, self.max_decoded)
            .map_err(|e| typed_error("arguments", e))
    }

    /// The arguments as dynamic values, msgpack types preserved.
    pub fn values(&self) -> Result<Vec<Value>, ServiceError> {
        match budget::read_value(&self.raw, self.max_decoded) {
            Ok(Value::Array(v)) => Ok(v),
            Ok(_) => Err(ServiceError::type_error("arguments are not an array")),
            Err(ValueError::Exceeded(e)) => Err(memory_error("arguments", e)),
            Err(e) => Err(type_error(&format!("cannot decode arguments: {e}"))),
        }
    }
}

/// Reads a call's arguments one by one, by name: what the methods of a
/// `#[zerorpc::service]` decode with. Counts are checked first and reported
/// as Python does (`add() missing 1 required positional argument: 'b'`),
/// then each argument names itself in its error.
#[doc(hidden)]
pub struct ArgReader<'a> {
    method: &'a str,
    /// The arguments' buffer (lent to the [`Blob`](crate::Blob)s decoded).
    source: &'a Bytes,
    reader: msgpack::Reader<'a>,
    given: usize,
    next: usize,
    /// Each argument's decoding budget cap.
    max_decoded: usize,
}

impl<'a> ArgReader<'a> {
    /// Check `args` against parameters `names`, the first `required` of
    /// which must be given.
    pub fn new(
        method: &'a str,
        args: &'a Args,
        names: &[&str],
        required: usize,
    ) -> Result<ArgReader<'a>, ServiceError> {
        let (given, total) = (args.len(), names.len());
        if given > total {
            let takes = if required == total {
                format!("{total} positional argument{}", plural(total))
            } else {
                format!("from {required} to {total} positional arguments")
            };
            let verb = if given == 1 { "was" } else { "were" };
            return Err(ServiceError::type_error(format!(
                "{method}() takes {takes} but {given} {verb} given"
            )));
        }
        if given < required {
            let missing: Vec<String> = names[given..required]
                .iter()
                .map(|n| format!("'{n}'"))
                .collect();
            let list = match missing.as_slice() {
                [one] => one.clone(),
                [init @ .., last] => format!("{} and {last}", init.join(", ")),
                [] => String::new(),
            };
            return Err(ServiceError::type_error(format!(
                "{method}() missing {} required positional argument{}: {list}",
                missing.len(),
                plural(missing.len())
            )));
        }
        let mut reader = msgpack::Reader::new(args.raw());
        reader
            .container()
            .map_err(|e| type_error(&format!("{method}() arguments: {e}")))?;
        Ok(ArgReader {
            method,
            source: args.raw(),
            reader,
            given,
            next: 0,
            max_decoded: args.max_decoded,
        })
    }

    /// The next argument, `name`, as a `T`.
    pub fn arg<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, ServiceError> {
        let start = self.reader.pos;
        self.reader
            .skip(1)
            .map_err(|e| type_error(&format!("{}() argument '{name}': {e}", self.method)))?;
        self.next += 1;
        let raw = &self.reader.buf[start..self.reader.pos];
        crate::blob::from_msgpack(self.source, raw, self.max_decoded).map_err(|e| match e {
            TypedError::Exceeded(e) => {
                memory_error(&format!("{}() argument '{name}'", self.method), e)
            }
            e => type_error(&format!(
                "{}() argument '{name}' must be {}: {e}",
                self.method,
                std::any::type_name::<T>()
            )),
        })
    }

    /// The next argument if the caller gave it (a trailing optional one).
    pub fn optional<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, ServiceError> {
        if self.next >= self.given {
            return Ok(None);
        }
        self.arg::<Option<T>>(name)
    }

    /// Every argument was read (the counts were checked up front).
    pub fn done(self) -> Result<(), ServiceError> {
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A `TypeError` whose message may quote the caller's argument (serde's
/// messages do): clipped, so a huge argument is not sent back whole.
fn type_error(message: &str) -> ServiceError {
    ServiceError::type_error(clip(message, 4 * QUOTE_LIMIT))
}

/// Arguments refused because decoding them would take more memory than
/// their budget: Python's name for running out of memory.
fn memory_error(what: &str, e: budget::Exceeded) -> ServiceError {
    ServiceError::new("MemoryError", format!("{what}: {e}"))
}

fn typed_error(what: &str, e: TypedError) -> ServiceError {
    match e {
        TypedError::Exceeded(e) => memory_error(what, e),
        e => type_error(&e.to_string()),
    }
}

/// How many positional arguments `A` takes: `Some(n)` for tuples (and 0 for
/// `()`), `None` for anything else (a `Vec`, a struct…), which receives the
/// whole argument array.
pub(crate) fn arity<A: DeserializeOwned>() -> Option<usize> {
    let mut probe = Probe(None);
    let _ = A::deserialize(&mut probe);
    probe.0
}

/// Decode `args` into `A`, checking the count first.
pub(crate) fn decode_typed<A: DeserializeOwned>(
    method: &str,
    arity: Option<usize>,
    args: &Args,
) -> Result<A, ServiceError> {
    if let Some(n) = arity {
        if args.len() != n {
            let plural = if n == 1 { "" } else { "s" };
            let given = if args.len() == 1 { "was" } else { "were" };
            return Err(ServiceError::type_error(format!(
                "{method}() takes {n} positional argument{plural} but {} {given} given",
                args.len()
            )));
        }
        if n == 0 {
            // `()` deserializes from nil, not from an empty array.
            return A::deserialize(de::value::UnitDeserializer::<de::value::Error>::new())
                .map_err(|e| type_error(&e.to_string()));
        }
    }
    crate::blob::from_msgpack(args.raw(), args.raw(), args.max_decoded).map_err(|e| match e {
        TypedError::Exceeded(e) => memory_error(&format!("{method}() arguments"), e),
        e => type_error(&format!(
            "{method}() expects arguments {}: {e}",
            std::any::type_name::<A>()
        )),
    })
}

struct Probe(Option<usize>);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for &mut Probe {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, _: V) -> Result<V::Value, Stop> {
        self.0 = Some(len);
        Err(Stop)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        self.0 = Some(0);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit_struct newtype_struct seq
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arity_of_common_shapes() {
        assert_eq!(arity::<()>(), Some(0));
        assert_eq!(arity::<(i64,)>(), Some(1));
        assert_eq!(arity::<(i64, String, f64)>(), Some(3));
        assert_eq!(arity::<Vec<i64>>(), None);
    }
}
