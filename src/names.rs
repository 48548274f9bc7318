//! Tables keyed by method name, looked up once or twice per request.
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
