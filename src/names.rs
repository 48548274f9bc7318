//! Method names: the tables keyed by them, looked up once or twice per
//! request, and the short copy each call in flight keeps.
//!
//! They are filled by the application (its methods) before any request
//! arrives, and the network only looks names up, so SipHash's resistance
//! to chosen keys buys nothing here (a caller cannot add entries, so it
//! cannot build collisions) and FNV-1a is several times cheaper on short
//! names.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A table keyed by method name.
pub(crate) type NameMap<V> = HashMap<String, V, BuildHasherDefault<Fnv>>;

/// FNV-1a, 64-bit.
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A method name kept by each call in flight: stored inline up to
/// [`ShortName::INLINE`] bytes (every name seen in practice), so starting a
/// call allocates nothing for it.
#[derive(Clone)]
pub(crate) enum ShortName {
    Inline {
        len: u8,
        bytes: [u8; ShortName::INLINE],
    },
    Heap(Box<str>),
}

impl ShortName {
    pub(crate) const INLINE: usize = 30;

    pub(crate) fn new(name: &str) -> ShortName {
        match name.len() {
            len @ 0..=ShortName::INLINE => {
                let mut bytes = [0; ShortName::INLINE];
                bytes[..len].copy_from_slice(name.as_bytes());
                ShortName::Inline {
                    len: len as u8,
                    bytes,
                }
            }
            _ => ShortName::Heap(name.into()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Copied whole from a str, so always UTF-8.
            ShortName::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            ShortName::Heap(s) => s,
        }
    }
}

impl std::fmt::Display for ShortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ShortName> for String {
    fn from(name: ShortName) -> String {
        name.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::ShortName;

    #[test]
    fn short_names_keep_any_name() {
        for name in [
            "",
            "add",
            "héllo wörld",
            &"x".repeat(30),
            &"y".repeat(31),
            &"é".repeat(40),
        ] {
            assert_eq!(ShortName::new(name).as_str(), name);
            assert_eq!(ShortName::new(name).to_string(), name);
        }
        assert!(matches!(
            ShortName::new(&"x".repeat(30)),
            ShortName::Inline { .. }
        ));
        assert!(matches!(
            ShortName::new(&"x".repeat(31)),
            ShortName::Heap(_)
        ));
    }
}
