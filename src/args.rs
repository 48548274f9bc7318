//! Typed argument decoding: find a handler's arity from its argument type
//! (so a wrong count is reported like Python's `TypeError`), then decode the
//! msgpack array straight into that type.

use crate::error::ServiceError;
use crate::service::{ArgInfo, Args};
use serde::de::{self, DeserializeOwned, Visitor};
use std::fmt;

/// How many positional arguments `A` takes: `Some(n)` for tuples (and 0 for
/// `()`), `None` for anything else (a `Vec`, a struct…), which receives the
/// whole argument array.
pub(crate) fn arity<A: DeserializeOwned>() -> Option<usize> {
    let mut probe = Probe(None);
    let _ = A::deserialize(&mut probe);
    probe.0
}

/// Introspection names for a typed handler with no declared names.
pub(crate) fn placeholder_names(arity: Option<usize>) -> Option<Vec<ArgInfo>> {
    arity.map(|n| {
        (0..n)
            .map(|i| ArgInfo {
                name: format!("arg{i}"),
                default: None,
            })
            .collect()
    })
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
                .map_err(|e| ServiceError::type_error(e.to_string()));
        }
    }
    rmp_serde::from_slice(args.raw()).map_err(|e| {
        ServiceError::type_error(format!(
            "{method}() expects arguments {}: {e}",
            std::any::type_name::<A>()
        ))
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
