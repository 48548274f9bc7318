//! [`Blob`]: binary data that is not copied out of the message it came in.
//!
//! A handler that takes `serde_bytes::ByteBuf` (or `Vec<u8>`) gets a copy
//! of the bytes the request carried: for a 1 MiB argument, a megabyte
//! allocated and copied per call. A [`Blob`] decoded by zrpc (a handler's
//! argument, a call's result, a stream's item) is instead a view of the
//! received message: no allocation, no copy, the memory freed when the last
//! view of the message goes.
//!
//! How: while zrpc decodes a value from a message at least [`SHARE_FROM`]
//! bytes long, it lends that message's buffer to a thread-local slot; a
//! `Blob` being deserialized from bytes lying inside that buffer takes a
//! slice of it. Anywhere else (another serde format, a smaller message, a
//! value built in memory) it copies, as `ByteBuf` would. Both ways give the
//! same bytes; only the cost differs.

use bytes::Bytes;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;

/// Messages shorter than this are decoded without lending their buffer:
/// copying a few bytes costs less than the bookkeeping.
pub const SHARE_FROM: usize = 1024;

thread_local! {
    /// The buffer of the message being decoded on this thread, if lent.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Binary data (msgpack `bin`, or `str` as zerorpc-python 2 sent bytes),
/// shared with the message it was received in instead of copied out of it.
///
/// Use it where a handler or a caller would use `serde_bytes::ByteBuf` or
/// `Vec<u8>` for large binary values:
///
/// ```
/// use zerorpc::{Blob, Service, ServiceError};
/// let svc = Service::new("store").method("size", |(data,): (Blob,)| async move {
///     Ok::<_, ServiceError>(data.len())
/// });
/// # let _ = svc;
/// ```
///
/// On the wire it is a plain msgpack `bin`, so peers see no difference
/// (zerorpc-python gets `bytes`, zerorpc-node a `Buffer`).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Blob(Bytes);

impl Blob {
    /// A blob of `bytes` (no copy).
    pub fn new(bytes: impl Into<Bytes>) -> Blob {
        Blob(bytes.into())
    }

    /// The bytes, as [`Bytes`] (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl std::ops::Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Bytes> for Blob {
    fn from(b: Bytes) -> Blob {
        Blob(b)
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Blob {
        Blob(v.into())
    }
}

impl From<&'static [u8]> for Blob {
    fn from(s: &'static [u8]) -> Blob {
        Blob(Bytes::from_static(s))
    }
}

impl From<Blob> for Bytes {
    fn from(b: Blob) -> Bytes {
        b.0
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        d.deserialize_bytes(BlobVisitor)
    }
}

struct BlobVisitor;

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("binary data")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Blob, E> {
        Ok(Blob(shared(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
        Ok(Blob(Bytes::copy_from_slice(v)))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
        Ok(Blob(v.into()))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Blob, E> {
        Ok(Blob(shared(v.as_bytes())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Blob, E> {
        Ok(Blob(Bytes::copy_from_slice(v.as_bytes())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Blob, E> {
        Ok(Blob(v.into()))
    }

    /// An array of small integers (how some peers encode a byte list).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Blob(out.into()))
    }
}

/// `v` as a slice of the lent buffer if it lies inside it, else a copy.
fn shared(v: &[u8]) -> Bytes {
    SOURCE.with(|s| match &*s.borrow() {
        Some(src) if within(src, v) => src.slice_ref(v),
        _ => Bytes::copy_from_slice(v),
    })
}

/// Whether `v` lies inside `src` (addresses compared, nothing read).
fn within(src: &[u8], v: &[u8]) -> bool {
    let (start, end) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
    let (vs, ve) = (v.as_ptr() as usize, v.as_ptr() as usize + v.len());
    !v.is_empty() && start <= vs && ve <= end
}

/// Run `decode` (which reads from `source`) with `source` lent to the
/// [`Blob`]s it makes, if it is large enough to be worth sharing. The slot
/// is restored afterwards, so decodes may nest.
pub(crate) fn decoding<T>(source: &Bytes, decode: impl FnOnce() -> T) -> T {
    if source.len() < SHARE_FROM {
        return decode();
    }
    let outer = SOURCE.with(|s| s.replace(Some(source.clone())));
    // Restored even if `decode` panics (a handler's Deserialize impl).
    struct Restore(Option<Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            SOURCE.with(|s| *s.borrow_mut() = outer);
        }
    }
    let _restore = Restore(outer);
    decode()
}

/// `raw` (which lies in `source`) decoded from msgpack within the decoding
/// budget of `max_decoded` (see [`crate::protocol::budget`]), `source` lent
/// to the [`Blob`]s in it.
pub(crate) fn from_msgpack<T: serde::de::DeserializeOwned>(
    source: &Bytes,
    raw: &[u8],
    max_decoded: usize,
) -> Result<T, crate::protocol::budget::TypedError> {
    decoding(source, || {
        crate::protocol::budget::from_slice(raw, max_decoded)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(data: &[u8]) -> Vec<u8> {
        rmp_serde::to_vec(&Blob::new(data.to_vec())).unwrap()
    }

    #[test]
    fn a_large_message_is_shared_not_copied() {
        let data = vec![7u8; 4096];
        let frame = Bytes::from(bin(&data));
        let blob: Blob = decoding(&frame, || rmp_serde::from_slice(&frame)).unwrap();
        assert_eq!(&blob[..], &data[..]);
        assert!(
            within(&frame, &blob),
            "the blob is a view of the frame, not a copy"
        );
    }

    #[test]
    fn small_messages_and_other_buffers_are_copied() {
        let small = Bytes::from(bin(b"abc"));
        let blob: Blob = decoding(&small, || rmp_serde::from_slice(&small)).unwrap();
        assert_eq!(&blob[..], b"abc");
        assert!(!within(&small, &blob));

        // Decoding a buffer other than the one lent: a copy.
        let lent = Bytes::from(vec![0u8; 4096]);
        let other = bin(&[9u8; 2048]);
        let blob: Blob = decoding(&lent, || rmp_serde::from_slice(&other)).unwrap();
        assert_eq!(&blob[..], &[9u8; 2048][..]);
        assert!(!within(&lent, &blob) && !within(&other, &blob));
    }

    #[test]
    fn the_slot_is_restored_after_nested_decodes_and_panics() {
        let outer = Bytes::from(vec![1u8; 2048]);
        let inner = Bytes::from(vec![2u8; 2048]);
        decoding(&outer, || {
            decoding(&inner, || ());
            SOURCE.with(|s| assert_eq!(s.borrow().as_ref(), Some(&outer)));
        });
        let _ = std::panic::catch_unwind(|| decoding(&inner, || panic!("a Deserialize impl")));
        SOURCE.with(|s| assert!(s.borrow().is_none()));
    }

    #[test]
    fn strings_and_byte_arrays_decode_too() {
        let s: Blob = rmp_serde::from_slice(&rmp_serde::to_vec("héllo").unwrap()).unwrap();
        assert_eq!(&s[..], "héllo".as_bytes());
        let a: Blob =
            rmp_serde::from_slice(&rmp_serde::to_vec(&vec![1u8, 2, 255]).unwrap()).unwrap();
        assert_eq!(&a[..], &[1, 2, 255]);
        assert_eq!(bin(b"xyz"), vec![0xc4, 3, b'x', b'y', b'z']);
        // zerorpc-python sends `bytes` as msgpack str, UTF-8 or not.
        let raw: Blob = rmp_serde::from_slice(&[0xa2, 0xff, 0xfe]).unwrap();
        assert_eq!(&raw[..], &[0xff, 0xfe]);
    }
}
