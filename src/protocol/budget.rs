//! What decoding one message's values may cost in memory: a budget charged
//! as each array element, map entry and string is built, whether into
//! dynamic [`Value`]s or through serde into a handler's types.
//!
//! A msgpack nil is one byte and a [`Value`] 40; through `Vec` growth, an
//! array of nils cost about a hundred times its size. The budget counts the
//! decoded structure (every element and entry at its size in memory, every
//! string and byte string at an allocation's overhead), not the payload
//! bytes, which cannot outgrow the message they came in. Past the budget,
//! decoding stops with [`Exceeded`] before allocating more.

use super::msgpack::{Container, Reader};
use super::{DecodeError, MAX_DEPTH};
use rmpv::Value;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use std::cell::Cell;
use std::fmt;

/// The default cap on what one message's decoded values may take
/// (`max_decoded_size` on servers, clients and receivers).
pub const DEFAULT_MAX_DECODED_SIZE: usize = 64 << 20;

/// Decoded structure may take at most this many bytes per byte of input
/// (and never more than the cap). Any dynamic value fits: the largest
/// charge per input byte is a one-byte string in an array, 56 bytes.
const PER_INPUT_BYTE: usize = 64;

/// What a string, byte string or ext value is charged besides its place in
/// its container: the allocator's overhead for a small allocation.
const PER_ALLOCATION: usize = 16;

/// The budget for decoding `len` bytes under the cap `max`.
pub(crate) fn for_input(len: usize, max: usize) -> usize {
    max.min(len.saturating_mul(PER_INPUT_BYTE))
}

/// Decoding would have taken more memory than its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// The cap that applied (`max_decoded_size`).
    pub max: usize,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "decoding would take more than {} of memory (max_decoded_size {} bytes, or {}× the message)",
            human(self.max),
            self.max,
            PER_INPUT_BYTE
        )
    }
}

impl std::error::Error for Exceeded {}

/// `n` bytes as KiB/MiB for a person.
fn human(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// The running count of one decode.
struct Meter {
    left: Cell<usize>,
    depth: Cell<usize>,
    max: usize,
    /// The budget ran out (whatever error the decoder then reported).
    exceeded: Cell<bool>,
}

impl Meter {
    fn new(input: usize, max: usize) -> Meter {
        Meter {
            left: Cell::new(for_input(input, max)),
            depth: Cell::new(0),
            max,
            exceeded: Cell::new(false),
        }
    }

    fn charge(&self, n: usize) -> Result<(), Exceeded> {
        match self.left.get().checked_sub(n) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(Exceeded { max: self.max })
            }
        }
    }

    /// Charge `n` items of `each` bytes at once (a container's room).
    fn charge_items(&self, n: usize, each: usize) -> Result<(), Exceeded> {
        self.charge(n.saturating_mul(each))
    }

    /// How many items of at least this many bytes the rest of the budget
    /// takes: a container's size hint is capped to it, so no decoder
    /// reserves room it could never fill.
    fn room(&self, each: usize) -> usize {
        self.left.get() / each
    }
}

// ---- dynamic values -------------------------------------------------------

/// Why a budgeted dynamic decode failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ValueError {
    /// Not one well-formed msgpack value within the depth limit.
    Invalid(DecodeError),
    /// Over budget.
    Exceeded(Exceeded),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Invalid(e) => e.fmt(f),
            ValueError::Exceeded(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ValueError {}

impl From<DecodeError> for ValueError {
    fn from(e: DecodeError) -> Self {
        ValueError::Invalid(e)
    }
}

impl From<Exceeded> for ValueError {
    fn from(e: Exceeded) -> Self {
        ValueError::Exceeded(e)
    }
}

/// Decode the first msgpack value of `raw` into a dynamic [`Value`] (msgpack
/// types kept: ext values, strings that are not UTF-8), within the budget
/// for `raw`'s length under `max` and [`MAX_DEPTH`].
pub(crate) fn read_value(raw: &[u8], max: usize) -> Result<Value, ValueError> {
    let meter = Meter::new(raw.len(), max);
    let mut r = Reader::new(raw);
    value(&mut r, 0, &meter)
}

fn value(r: &mut Reader<'_>, depth: usize, meter: &Meter) -> Result<Value, ValueError> {
    const EACH: usize = std::mem::size_of::<Value>();
    match r.container()? {
        Container::Array(n) => {
            let n = n as usize;
            if depth + 1 > MAX_DEPTH {
                return Err(DecodeError::TooDeep.into());
            }
            meter.charge_items(n, EACH)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(value(r, depth + 1, meter)?);
            }
            Ok(Value::Array(items))
        }
        Container::Map(n) => {
            let n = n as usize;
            if depth + 1 > MAX_DEPTH {
                return Err(DecodeError::TooDeep.into());
            }
            meter.charge_items(n, 2 * EACH)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let k = value(r, depth + 1, meter)?;
                let v = value(r, depth + 1, meter)?;
                entries.push((k, v));
            }
            Ok(Value::Map(entries))
        }
        Container::Other => {
            // A scalar or a leaf: its bytes are exactly known (and already
            // checked against the input), so rmpv reads it without guessing.
            let start = r.pos;
            r.skip(depth)?;
            let leaf = &r.buf[start..r.pos];
            if matches!(leaf[0], 0xa0..=0xbf | 0xc4..=0xc9 | 0xd4..=0xdb) {
                meter.charge(PER_ALLOCATION)?;
            }
            rmpv::decode::read_value(&mut &leaf[..])
                .map_err(|_| ValueError::Invalid(DecodeError::Malformed("bad scalar")))
        }
    }
}

// ---- serde types ----------------------------------------------------------

/// Why a budgeted typed decode failed.
#[derive(Debug)]
pub(crate) enum TypedError {
    /// The bytes do not make a `T`.
    Invalid(rmp_serde::decode::Error),
    /// Over budget.
    Exceeded(Exceeded),
}

impl fmt::Display for TypedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypedError::Invalid(e) => e.fmt(f),
            TypedError::Exceeded(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TypedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TypedError::Invalid(e) => Some(e),
            TypedError::Exceeded(e) => Some(e),
        }
    }
}

/// Deserialize `T` from msgpack `raw` within the budget for its length
/// under `max` and [`MAX_DEPTH`].
pub(crate) fn from_slice<T: DeserializeOwned>(raw: &[u8], max: usize) -> Result<T, TypedError> {
    let meter = Meter::new(raw.len(), max);
    let mut de = rmp_serde::Deserializer::from_read_ref(raw);
    let decoded = T::deserialize(Metered {
        inner: &mut de,
        meter: &meter,
    });
    match decoded {
        Ok(v) => Ok(v),
        Err(_) if meter.exceeded.get() => Err(TypedError::Exceeded(Exceeded { max })),
        Err(e) => Err(TypedError::Invalid(e)),
    }
}

/// A deserializer whose containers are charged to a [`Meter`].
struct Metered<'m, D> {
    inner: D,
    meter: &'m Meter,
}

fn over<E: de::Error>(e: Exceeded) -> E {
    E::custom(e)
}

macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.inner.$method(Counted { inner: visitor, meter: self.meter })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Metered<'_, D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let v = Counted {
            inner: visitor,
            meter: self.meter,
        };
        self.inner.deserialize_unit_struct(name, v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let v = Counted {
            inner: visitor,
            meter: self.meter,
        };
        self.inner.deserialize_newtype_struct(name, v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let v = Counted {
            inner: visitor,
            meter: self.meter,
        };
        self.inner.deserialize_tuple(len, v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let v = Counted {
            inner: visitor,
            meter: self.meter,
        };
        self.inner.deserialize_tuple_struct(name, len, v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let v = Counted {
            inner: visitor,
            meter: self.meter,
        };
        self.inner.deserialize_struct(name, fields, v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let v = Counted {
            inner: visitor,
            meter: self.meter,
        };
        self.inner.deserialize_enum(name, variants, v)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor whose containers are charged to a [`Meter`].
struct Counted<'m, V> {
    inner: V,
    meter: &'m Meter,
}

macro_rules! pass {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

macro_rules! allocating {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.meter.charge(PER_ALLOCATION).map_err(over)?;
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Counted<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    pass!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
    );

    allocating!(
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Metered {
            inner: d,
            meter: self.meter,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Metered {
            inner: d,
            meter: self.meter,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let _level = Level::enter(self.meter).map_err(de::Error::custom)?;
        self.inner.visit_seq(Seq {
            inner: seq,
            meter: self.meter,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let _level = Level::enter(self.meter).map_err(de::Error::custom)?;
        self.inner.visit_map(Map {
            inner: map,
            meter: self.meter,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Enum {
            inner: data,
            meter: self.meter,
        })
    }
}

/// One level of nesting, left when dropped.
struct Level<'m>(&'m Meter);

impl<'m> Level<'m> {
    fn enter(meter: &'m Meter) -> Result<Level<'m>, DecodeError> {
        let depth = meter.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        meter.depth.set(depth);
        Ok(Level(meter))
    }
}

impl Drop for Level<'_> {
    fn drop(&mut self) {
        self.0.depth.set(self.0.depth.get() - 1);
    }
}

/// A seed whose value is decoded through a [`Metered`] deserializer.
struct Seed<'m, S> {
    inner: S,
    meter: &'m Meter,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Metered {
            inner: d,
            meter: self.meter,
        })
    }
}

/// Every element costs its size in memory.
fn size_of_seed<'de, S: DeserializeSeed<'de>>(_: &S) -> usize {
    std::mem::size_of::<S::Value>().max(1)
}

struct Seq<'m, A> {
    inner: A,
    meter: &'m Meter,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        // Charged once it is there (the end of a sequence costs nothing);
        // what it holds was charged as it was decoded.
        let each = size_of_seed(&seed);
        let item = self.inner.next_element_seed(Seed {
            inner: seed,
            meter: self.meter,
        })?;
        if item.is_some() {
            self.meter.charge(each).map_err(over)?;
        }
        Ok(item)
    }

    fn size_hint(&self) -> Option<usize> {
        // Capped so that a decoder reserving room for the elements to come
        // (serde's do, up to a megabyte) never reserves past the budget.
        self.inner
            .size_hint()
            .map(|n| n.min(self.meter.room(std::mem::size_of::<usize>() * 4)))
    }
}

struct Map<'m, A> {
    inner: A,
    meter: &'m Meter,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let each = size_of_seed(&seed);
        let key = self.inner.next_key_seed(Seed {
            inner: seed,
            meter: self.meter,
        })?;
        if key.is_some() {
            self.meter.charge(each).map_err(over)?;
        }
        Ok(key)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.meter.charge(size_of_seed(&seed)).map_err(over)?;
        self.inner.next_value_seed(Seed {
            inner: seed,
            meter: self.meter,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner
            .size_hint()
            .map(|n| n.min(self.meter.room(std::mem::size_of::<usize>() * 8)))
    }
}

struct Enum<'m, A> {
    inner: A,
    meter: &'m Meter,
}

impl<'m, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'m, A> {
    type Error = A::Error;
    type Variant = Variant<'m, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let meter = self.meter;
        let (v, variant) = self.inner.variant_seed(Seed { inner: seed, meter })?;
        Ok((
            v,
            Variant {
                inner: variant,
                meter,
            },
        ))
    }
}

struct Variant<'m, A> {
    inner: A,
    meter: &'m Meter,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            meter: self.meter,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Counted {
                inner: visitor,
                meter: self.meter,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Counted {
                inner: visitor,
                meter: self.meter,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// `[nil × n]` as msgpack.
    fn nils(n: usize) -> Vec<u8> {
        let mut raw = vec![0xdd];
        raw.extend_from_slice(&(n as u32).to_be_bytes());
        raw.resize(5 + n, 0xc0);
        raw
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut raw = vec![0x91; depth];
        raw.push(0x01);
        raw
    }

    #[test]
    fn a_value_fits_at_most_its_share_per_input_byte() {
        assert!(std::mem::size_of::<Value>() + PER_ALLOCATION <= PER_INPUT_BYTE);
        let raw = nils(1000);
        let v = read_value(&raw, DEFAULT_MAX_DECODED_SIZE).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(1000));
        // The same through serde, as a handler's `Value` or `Vec<Value>`.
        let v: Vec<Value> = from_slice(&raw, DEFAULT_MAX_DECODED_SIZE).unwrap();
        assert_eq!(v.len(), 1000);
        // Short strings in an array: the most a byte of input is charged.
        let strs: Vec<&str> = vec![""; 1000];
        let raw = rmp_serde::to_vec(&strs).unwrap();
        assert!(read_value(&raw, DEFAULT_MAX_DECODED_SIZE).is_ok());
        assert_eq!(
            from_slice::<Vec<String>>(&raw, DEFAULT_MAX_DECODED_SIZE).unwrap(),
            vec![String::new(); 1000]
        );
    }

    #[test]
    fn an_array_of_nils_past_the_cap_is_refused_before_it_is_built() {
        let raw = nils(100_000);
        // 100 000 values of 32 bytes: 3.2 MB, over a 1 MiB cap.
        assert_eq!(
            read_value(&raw, 1 << 20),
            Err(ValueError::Exceeded(Exceeded { max: 1 << 20 }))
        );
        let e = from_slice::<Vec<Value>>(&raw, 1 << 20).unwrap_err();
        assert!(matches!(e, TypedError::Exceeded(Exceeded { max }) if max == 1 << 20));
        assert!(e.to_string().contains("1 MiB"), "{e}");
        let e = from_slice::<Value>(&raw, 1 << 20).unwrap_err();
        assert!(matches!(e, TypedError::Exceeded(_)), "{e}");
        // Under a larger cap it decodes.
        assert!(read_value(&raw, 8 << 20).is_ok());
        assert!(from_slice::<Vec<Option<u8>>>(&raw, 8 << 20).is_ok());
    }

    #[test]
    fn a_tiny_message_cannot_ask_for_more_than_its_multiple() {
        // 4 bytes of input may take at most 256 bytes, whatever the cap.
        assert_eq!(for_input(4, DEFAULT_MAX_DECODED_SIZE), 4 * PER_INPUT_BYTE);
        // An array claiming a million nils it does not hold is malformed,
        // not a million-value reservation.
        let mut raw = nils(1_000_000);
        raw.truncate(100);
        assert!(matches!(
            read_value(&raw, DEFAULT_MAX_DECODED_SIZE),
            Err(ValueError::Invalid(_))
        ));
        assert!(matches!(
            from_slice::<Vec<Value>>(&raw, DEFAULT_MAX_DECODED_SIZE),
            Err(TypedError::Invalid(_))
        ));
    }

    #[test]
    fn one_depth_limit_for_values_and_types() {
        assert!(read_value(&nested(MAX_DEPTH), DEFAULT_MAX_DECODED_SIZE).is_ok());
        assert_eq!(
            read_value(&nested(MAX_DEPTH + 1), DEFAULT_MAX_DECODED_SIZE),
            Err(ValueError::Invalid(DecodeError::TooDeep))
        );
        assert!(from_slice::<Value>(&nested(MAX_DEPTH), DEFAULT_MAX_DECODED_SIZE).is_ok());
        let e = from_slice::<Value>(&nested(MAX_DEPTH + 1), DEFAULT_MAX_DECODED_SIZE).unwrap_err();
        assert!(e.to_string().contains("deeper"), "{e}");
    }

    /// The metered deserializer decodes exactly what rmp_serde alone does:
    /// structs, enums of every shape, maps, options, bytes.
    #[test]
    fn metering_changes_nothing_that_fits() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        enum Shape {
            Unit,
            New(u32),
            Tuple(i8, String),
            Struct { x: f64, tags: Vec<String> },
        }
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Doc {
            name: String,
            shapes: Vec<Shape>,
            index: std::collections::BTreeMap<String, Option<i64>>,
            #[serde(with = "serde_bytes")]
            blob: Vec<u8>,
            pair: (bool, char),
        }
        let doc = Doc {
            name: "doc".into(),
            shapes: vec![
                Shape::Unit,
                Shape::New(7),
                Shape::Tuple(-3, "t".into()),
                Shape::Struct {
                    x: 1.5,
                    tags: vec!["a".into(), "b".into()],
                },
            ],
            index: [("k".to_string(), Some(1)), ("n".to_string(), None)]
                .into_iter()
                .collect(),
            blob: vec![0, 1, 255],
            pair: (true, 'é'),
        };
        for raw in [
            rmp_serde::to_vec(&doc).unwrap(),
            rmp_serde::to_vec_named(&doc).unwrap(),
        ] {
            let plain: Doc = rmp_serde::from_slice(&raw).unwrap();
            let metered: Doc = from_slice(&raw, DEFAULT_MAX_DECODED_SIZE).unwrap();
            assert_eq!(plain, metered);
            assert_eq!(metered, doc);
            let value = read_value(&raw, DEFAULT_MAX_DECODED_SIZE).unwrap();
            let mut back = Vec::new();
            rmpv::encode::write_value(&mut back, &value).unwrap();
            assert_eq!(back, raw, "a dynamic value re-encodes byte for byte");
        }
    }

    #[test]
    fn strings_that_are_not_utf8_and_ext_values_stay_as_they_were() {
        let raw = [0x92, 0xa2, 0xff, 0xfe, 0xd4, 0x05, 0x2a];
        let v = read_value(&raw, DEFAULT_MAX_DECODED_SIZE).unwrap();
        assert_eq!(super::super::msgpack::encode_value(&v), raw);
    }
}
