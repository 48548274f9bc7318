//! The msgpack primitives the codec is built on: a bounds-checked reader
//! that validates and skips values without allocating from length prefixes,
//! and the few writers the framework needs (strings, dynamic values).
//!
//! Everything here is crate-private; [`crate::protocol`] exposes the event
//! level.

use super::{DecodeError, MAX_DEPTH};
use bytes::Bytes;
use rmpv::Value;
use smallvec::SmallVec;

/// Write a msgpack str.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_str(out, s);
}

/// A msgpack map length (written by hand: rmp's writer goes through
/// `io::Write` and its errors, on every request).
pub(crate) fn write_map_len(out: &mut Vec<u8>, n: usize) {
    match n {
        0..=15 => out.push(0x80 | n as u8),
        16..=0xffff => {
            out.push(0xde);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdf);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

/// A msgpack unsigned integer in its shortest form.
pub(crate) fn write_uint(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Read a msgpack integer from a complete raw value.
pub(crate) fn read_int(raw: &[u8]) -> Option<i64> {
    // A positive fixint (every header's `v`) without rmp's generic reader.
    if let [m @ 0x00..=0x7f] = raw {
        return Some(i64::from(*m));
    }
    let mut r = raw;
    rmp::decode::read_int::<i64, _>(&mut r).ok()
}

/// If `raw` is a msgpack array, its length.
pub(crate) fn array_len(raw: &[u8]) -> Option<u32> {
    let mut r = Reader::new(raw);
    match r.container() {
        Ok(Container::Array(n)) => Some(n),
        _ => None,
    }
}

/// The raw bytes of the first element of a msgpack array (the value of an
/// `OK [value]`, the count of `_zpc_more [n]`); `None` if `raw` is not a
/// non-empty array. The input must already be validated (it came through
/// [`Event::decode`]).
pub(crate) fn first_item(raw: &Bytes) -> Option<Bytes> {
    let mut r = Reader::new(raw);
    match r.container().ok()? {
        Container::Array(n) if n > 0 => {}
        _ => return None,
    }
    let start = r.pos;
    r.skip(1).ok()?;
    Some(raw.slice(start..r.pos))
}

/// An array whose first element is a str, split: that str's bytes (not
/// yet checked as UTF-8), and the other elements as an array of their own
/// (`[name, a, b]` gives `name` and `[a, b]`). `None` for anything else.
pub(crate) fn split_name(raw: &[u8]) -> Option<(&[u8], Vec<u8>)> {
    let mut r = Reader::new(raw);
    let n = match r.container().ok()? {
        Container::Array(n) if n > 0 => n,
        _ => return None,
    };
    let name = r.str_or_skip().ok()??;
    let mut rest = Vec::with_capacity(5 + raw.len() - r.pos);
    rmp::encode::write_array_len(&mut rest, n - 1).ok()?;
    rest.extend_from_slice(&raw[r.pos..]);
    Some((name, rest))
}

/// What a message id is compared by, wherever calls are matched to it:
/// the contents of a str or bin (a peer that echoes a bin id as a str
/// still matches), or the whole raw value of another type.
pub(crate) fn id_content(raw: &[u8]) -> (bool, &[u8]) {
    match str_or_bin(raw) {
        Some(content) => (true, content),
        None => (false, raw),
    }
}

/// The str value of `key` in the msgpack map `raw` (an event's header),
/// if it is there and a str (bytes, not yet checked as UTF-8).
pub(crate) fn map_str<'a>(raw: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut r = Reader::new(raw);
    let Ok(Container::Map(n)) = r.container() else {
        return None;
    };
    for _ in 0..n {
        let k = r.str_or_skip().ok()?;
        if k == Some(key.as_bytes()) {
            return r.str_or_skip().ok()?;
        }
        r.skip(1).ok()?;
    }
    None
}

/// A short, human description of the msgpack type of a raw value.
pub(crate) fn type_name(raw: &[u8]) -> &'static str {
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

pub(crate) enum Container {
    Array(u32),
    Map(u32),
    Other,
}

/// A bounds-checked cursor over msgpack bytes.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
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
    pub(crate) fn container(&mut self) -> Result<Container, DecodeError> {
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
    #[inline]
    pub(crate) fn str_or_skip(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
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

    /// Skip one value of a map at the top level of an event (depth 1).
    /// The values event headers hold (ids, the version, a timeout) are
    /// scalars, skipped here at once; anything else takes the general walk.
    #[inline]
    pub(crate) fn skip_value(&mut self) -> Result<(), DecodeError> {
        let Some(&m) = self.buf.get(self.pos) else {
            return Err(DecodeError::Malformed("truncated"));
        };
        let len = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Some(1),
            0xa0..=0xbf => Some(1 + usize::from(m & 0x1f)),
            0xc4 | 0xd9 => self.buf.get(self.pos + 1).map(|&n| 2 + usize::from(n)),
            0xcc | 0xd0 => Some(2),
            0xcd | 0xd1 => Some(3),
            0xce | 0xd2 => Some(5),
            0xcf | 0xd3 => Some(9),
            _ => None,
        };
        match len {
            Some(n) if n <= self.buf.len() - self.pos => {
                self.pos += n;
                Ok(())
            }
            _ => self.skip(1),
        }
    }

    /// Skip one complete value, validating structure; `depth` is the nesting
    /// level of the value being skipped.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<(), DecodeError> {
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
            // Runs of one-byte values (nil, bools, small ints), what a large
            // flat array is mostly made of, in a tight loop.
            while remaining > 0
                && matches!(
                    self.buf.get(self.pos),
                    Some(0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff)
                )
            {
                self.pos += 1;
                remaining -= 1;
            }
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
    let mut r = Reader::new(raw);
    r.skip(0)?;
    if r.pos != raw.len() {
        return Err(DecodeError::Malformed("trailing bytes"));
    }
    Ok(())
}
/// Encode a dynamic value exactly as it was received: unlike
/// `rmpv::encode::write_value`, a str holding invalid UTF-8 stays a str.
pub(crate) fn encode_value(v: &Value) -> Vec<u8> {
    let mut buf = Vec::with_capacity(len_hint(v));
    write_value(&mut buf, v);
    buf
}

/// About how many bytes `v` encodes to (exact for flat values), to size
/// buffers once instead of growing them by copying.
pub(crate) fn len_hint(v: &Value) -> usize {
    match v {
        Value::String(s) => 5 + s.as_bytes().len(),
        Value::Binary(b) => 5 + b.len(),
        Value::Array(items) => 5 + items.iter().map(len_hint).sum::<usize>(),
        Value::Map(entries) => {
            5 + entries
                .iter()
                .map(|(k, v)| len_hint(k) + len_hint(v))
                .sum::<usize>()
        }
        Value::Ext(_, data) => 6 + data.len(),
        _ => 9,
    }
}

/// [`encode_value`], appended to `buf`.
pub(crate) fn write_value(buf: &mut Vec<u8>, v: &Value) {
    // Writing to a Vec cannot fail.
    match v {
        Value::String(s) if s.as_str().is_none() => {
            let _ = rmp::encode::write_str_len(buf, s.as_bytes().len() as u32);
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            let _ = rmp::encode::write_array_len(buf, items.len() as u32);
            items.iter().for_each(|i| write_value(buf, i));
        }
        Value::Map(entries) => {
            write_map_len(buf, entries.len());
            for (k, v) in entries {
                write_value(buf, k);
                write_value(buf, v);
            }
        }
        other => {
            let _ = rmpv::encode::write_value(buf, other);
        }
    }
}

/// The contents of a complete raw msgpack str or bin (of any length
/// width); `None` for any other type.
pub(crate) fn str_or_bin(raw: &[u8]) -> Option<&[u8]> {
    let (len, at) = match *raw.first()? {
        m @ 0xa0..=0xbf => (usize::from(m & 0x1f), 1),
        0xd9 | 0xc4 => (usize::from(*raw.get(1)?), 2),
        0xda | 0xc5 => (
            usize::from(u16::from_be_bytes([*raw.get(1)?, *raw.get(2)?])),
            3,
        ),
        0xdb | 0xc6 => (
            u32::from_be_bytes(raw.get(1..5)?.try_into().ok()?) as usize,
            5,
        ),
        _ => return None,
    };
    raw.get(at..usize::checked_add(at, len)?)
}

/// Bytes from hex text (whitespace ignored), for test vectors.
#[cfg(test)]
pub(crate) fn hex(s: &str) -> Bytes {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scalar fast path skips exactly what the general walk does, and
    /// fails where it fails: every marker byte, each followed by short
    /// and long payloads, and each cut short.
    #[test]
    fn skip_value_agrees_with_skip() {
        for m in 0..=255u8 {
            for tail in [&[][..], &[3, 1, 2, 3][..], &[0x20; 40][..], &[0xff; 9][..]] {
                let mut buf = vec![m];
                buf.extend_from_slice(tail);
                for end in 0..=buf.len() {
                    let bytes = &buf[..end];
                    let (mut a, mut b) = (Reader::new(bytes), Reader::new(bytes));
                    let (ra, rb) = (a.skip_value(), b.skip(1));
                    assert_eq!(ra.is_ok(), rb.is_ok(), "marker {m:#04x}, {bytes:02x?}");
                    if ra.is_ok() {
                        assert_eq!(a.pos, b.pos, "marker {m:#04x}, {bytes:02x?}");
                    }
                }
            }
        }
    }

    #[test]
    fn read_int_reads_every_width() {
        for n in [
            0i64,
            5,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            1 << 40,
            -1,
            -33,
            -200,
        ] {
            let mut raw = Vec::new();
            rmp::encode::write_sint(&mut raw, n).unwrap();
            assert_eq!(read_int(&raw), Some(n));
        }
        assert_eq!(read_int(&[]), None);
        assert_eq!(read_int(&[0xa1, b'x']), None);
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
    fn str_and_bin_contents_whatever_their_width() {
        assert_eq!(str_or_bin(&hex("a3616263")), Some(&b"abc"[..]));
        assert_eq!(str_or_bin(&hex("d903616263")), Some(&b"abc"[..]));
        assert_eq!(str_or_bin(&hex("c40361626 3")), Some(&b"abc"[..]));
        assert_eq!(str_or_bin(&hex("da0003616263")), Some(&b"abc"[..]));
        assert_eq!(str_or_bin(&hex("c6000000 03616263")), Some(&b"abc"[..]));
        assert_eq!(str_or_bin(&hex("cd3039")), None, "an int");
        assert_eq!(str_or_bin(&hex("c40461")), None, "truncated");
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
}
