//! Message ids: how zrpc names the events it sends, and how it recognises
//! its own ids when a peer echoes them in `response_to`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A message id as zrpc generates them: 32 ASCII hex bytes (an 8-digit
/// counter followed by 24 random digits), sent as msgpack bin like
/// zerorpc-python.
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

    /// The id as it travels: msgpack bin 8 (`c4 20` then the 32 bytes).
    pub fn to_raw(&self) -> [u8; 34] {
        let mut raw = [0u8; 34];
        raw[0] = 0xc4;
        raw[1] = 32;
        raw[2..].copy_from_slice(&self.0);
        raw
    }

    /// Recognise one of our ids in a raw msgpack value (a peer's
    /// `response_to`): the same 32 bytes as msgpack bin or str, of any
    /// length width. (Python and zrpc echo the exact bytes; other peers may
    /// re-encode them as a str.) The flag is false when the bytes were not
    /// the bin 8 zrpc sent.
    pub fn from_raw(raw: &[u8]) -> Option<(MessageId, bool)> {
        let (body, exact) = match raw {
            [0xc4, 32, body @ ..] => (body, true),
            [0xd9, 32, body @ ..] | [0xc5 | 0xda, 0, 32, body @ ..] => (body, false),
            [0xc6 | 0xdb, 0, 0, 0, 32, body @ ..] => (body, false),
            _ => return None,
        };
        let id: [u8; 32] = body.try_into().ok()?;
        Some((MessageId(id), exact))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_hex_and_distinct() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert_ne!(a, b);
        assert!(a.as_bytes().iter().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.as_bytes()[8..], b.as_bytes()[8..]);
        let raw = a.to_raw();
        assert_eq!(&raw[..2], &[0xc4, 32]);
        assert_eq!(MessageId::from_raw(&raw), Some((a, true)));
        assert_eq!(MessageId::from_raw(&raw[1..]), None);
        assert_eq!(MessageId::from_raw(&raw[..33]), None);
    }

    #[test]
    fn our_ids_are_recognised_whatever_their_msgpack_type() {
        let id = MessageId::new();
        let body = id.as_bytes();
        for (prefix, exact) in [
            (&[0xc4u8, 32][..], true),
            (&[0xd9, 32], false),
            (&[0xda, 0, 32], false),
            (&[0xc5, 0, 32], false),
            (&[0xdb, 0, 0, 0, 32], false),
        ] {
            let mut raw = prefix.to_vec();
            raw.extend_from_slice(body);
            assert_eq!(MessageId::from_raw(&raw), Some((id, exact)), "{prefix:x?}");
        }
        // A fixstr cannot hold 32 bytes; a 31-byte one is not ours.
        let mut raw = vec![0xbf];
        raw.extend_from_slice(&body[..31]);
        assert_eq!(MessageId::from_raw(&raw), None);
    }
}
