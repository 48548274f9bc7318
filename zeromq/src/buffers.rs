//! zrpc patch (FORK.md item 26): large message buffers, recycled.
//!
//! A frame of 1 MiB used to be read into the connection's shared read
//! buffer, which had to grow a fresh megabyte for each such frame (the last
//! one still held by the message it became). With glibc, a megabyte freed
//! and allocated again for each message is often handed back to the system
//! and faulted in again page by page: measured, a third of a 1 MiB echo's
//! time. A large body is now read into a buffer of exactly its size, taken
//! from a small process-wide pool and given back when the last view of the
//! frame is dropped.
//!
//! The pool is public so that an application encoding large messages (zrpc
//! encodes its large requests and replies) draws on the same buffers: one
//! pool per process, the reader's and the encoder's buffers reused for
//! each other.

use bytes::Bytes;
use parking_lot::Mutex;

/// Buffers kept for reuse.
const KEEP: usize = 8;
/// Larger buffers are freed, not kept (so at most 32 MiB stay idle after a
/// burst of large messages).
const KEEP_EACH: usize = 4 << 20;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for `len` bytes: a kept one if one is large
/// enough (the smallest such), else a new one.
pub fn take(len: usize) -> Vec<u8> {
    let mut pool = POOL.lock();
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, b)| b.capacity() >= len)
        .min_by_key(|(_, b)| b.capacity())
        .map(|(i, _)| i);
    match best {
        Some(i) => pool.swap_remove(i),
        None => {
            drop(pool);
            Vec::with_capacity(len)
        }
    }
}

/// The bytes `body` holds, as [`Bytes`]; the buffer goes back to the pool
/// once the last view of it is dropped (if it is at most 4 MiB, and the
/// pool, of at most 8 buffers, has room or holds a smaller one).
pub fn into_bytes(body: Vec<u8>) -> Bytes {
    Bytes::from_owner(Kept(body))
}

struct Kept(Vec<u8>);

impl AsRef<[u8]> for Kept {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        if buf.capacity() > KEEP_EACH {
            return;
        }
        buf.clear();
        let mut pool = POOL.lock();
        if pool.len() < KEEP {
            pool.push(buf);
        } else if let Some(smallest) = pool.iter_mut().min_by_key(|b| b.capacity()) {
            // Keep the larger of the two: it serves more frames.
            if smallest.capacity() < buf.capacity() {
                *smallest = buf;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Whether the buffer at `ptr` is kept (taking it out if so).
    pub(crate) fn kept(ptr: *const u8) -> bool {
        let mut pool = POOL.lock();
        match pool.iter().position(|b| b.as_ptr() == ptr) {
            Some(i) => {
                pool.swap_remove(i);
                true
            }
            None => false,
        }
    }

    #[test]
    fn a_body_comes_back_when_its_last_view_goes_and_is_reused() {
        let mut body = take(100_000);
        body.resize(100_000, 5);
        let ptr = body.as_ptr();
        let frame = into_bytes(body);
        let view = frame.slice(10..20);
        drop(frame);
        assert!(!kept(ptr), "kept while a view is alive");
        drop(view);
        assert!(kept(ptr), "back in the pool once the last view went");
    }

    #[test]
    fn take_reuses_the_smallest_buffer_that_fits() {
        let (mut a, mut b) = (Vec::with_capacity(300_001), Vec::with_capacity(200_001));
        a.push(1);
        b.push(1);
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        drop(into_bytes(a));
        drop(into_bytes(b));
        let got = take(150_001);
        assert!(got.is_empty());
        assert_eq!(got.as_ptr(), pb, "the 200 001-byte one, not the larger");
        assert!(kept(pa));
    }

    #[test]
    fn oversized_bodies_are_freed_not_kept() {
        let mut body = take(KEEP_EACH + 1);
        body.resize(KEEP_EACH + 1, 0);
        let ptr = body.as_ptr();
        drop(into_bytes(body));
        assert!(!kept(ptr));
    }
}
