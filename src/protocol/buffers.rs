//! Large message buffers, recycled.
//!
//! A request or reply of [`LARGE`] bytes or more is encoded into a buffer
//! that, once the frame has been written, goes back to a small pool for the
//! next large message instead of back to the allocator. With glibc's
//! allocator, a megabyte freed and allocated again for every call is often
//! returned to the system and faulted back in page by page (measured: 1 MiB
//! echo at 650-790 MB/s that way, against 920 and more with the buffers
//! kept); the pool keeps at most [`KEEP`] buffers of at most [`KEEP_EACH`]
//! bytes, so a burst of large messages leaves a bounded amount behind.

use bytes::Bytes;
use std::sync::Mutex;

/// Buffers at least this large are recycled.
pub(crate) const LARGE: usize = 64 * 1024;
/// Buffers kept.
const KEEP: usize = 4;
/// Larger buffers are freed, not kept.
const KEEP_EACH: usize = 4 << 20;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Make room for `more` bytes in `buf`; a buffer that grows large takes a
/// kept one (its contents copied over) rather than a new allocation.
#[cold]
pub(crate) fn reserve(buf: &mut Vec<u8>, more: usize) {
    let need = buf.len().saturating_add(more);
    if need <= buf.capacity() {
        return;
    }
    if need >= LARGE {
        if let Some(mut kept) = take(need) {
            kept.extend_from_slice(buf);
            *buf = kept;
            return;
        }
    }
    buf.reserve(more);
}

/// A kept buffer of at least `need` bytes, if there is one.
fn take(need: usize) -> Option<Vec<u8>> {
    let mut pool = POOL.lock().ok()?;
    let i = pool.iter().position(|b| b.capacity() >= need)?;
    Some(pool.swap_remove(i))
}

/// Keep `buf` for a later large message, if there is room.
fn give(mut buf: Vec<u8>) {
    if buf.capacity() > KEEP_EACH {
        return;
    }
    buf.clear();
    if let Ok(mut pool) = POOL.lock() {
        if pool.len() < KEEP {
            pool.push(buf);
        }
    }
}

/// The frame `buf` holds, as [`Bytes`]; a large buffer returns to the pool
/// when the last view of it is dropped (after the frame was written).
pub(crate) fn into_bytes(buf: Vec<u8>) -> Bytes {
    if buf.capacity() >= LARGE {
        Bytes::from_owner(Recycled(buf))
    } else {
        Bytes::from(buf)
    }
}

struct Recycled(Vec<u8>);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

/// Frames up to this size are built in a per-thread scratch buffer and
/// then copied into one allocation of their exact size (see [`exact`]).
pub(crate) const SCRATCH: usize = 4096;

thread_local! {
    static SCRATCH_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The frame `encode` writes, as [`Bytes`], in as few allocations as can
/// be: a small frame is written into a per-thread scratch buffer and copied
/// into one allocation of its exact size (`Bytes` needs no header of its
/// own for that: a `Vec` with spare room costs a second allocation when it
/// becomes `Bytes`, and its own for the room); a large one keeps the buffer
/// it was written in (see [`into_bytes`]).
pub(crate) fn exact(encode: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    // (Taken out, not borrowed: an `encode` that builds a frame of its own
    // finds the slot empty rather than borrowed.)
    let mut buf = SCRATCH_BUF.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.capacity() == 0 {
        buf.reserve(256);
    }
    encode(&mut buf);
    if buf.len() > SCRATCH {
        return into_bytes(buf);
    }
    let frame = Bytes::copy_from_slice(&buf);
    buf.clear();
    SCRATCH_BUF.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.capacity() == 0 && buf.capacity() <= 2 * SCRATCH {
            *slot = buf;
        }
    });
    frame
}

/// `std::io::Write` into a buffer through [`reserve`] (what serializers
/// write large values with).
pub(crate) struct Writer<'a>(pub(crate) &'a mut Vec<u8>);

impl std::io::Write for Writer<'_> {
    #[inline]
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.write_all(data).map(|()| data.len())
    }

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        // (Serializers write a marker byte at a time: the common case,
        // room to spare, stays a plain copy.)
        if self.0.capacity() - self.0.len() < data.len() {
            reserve(self.0, data.len());
        }
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Whether the buffer at `ptr` is kept, taking it out if so.
    fn take_at(ptr: *const u8) -> Option<Vec<u8>> {
        let mut pool = POOL.lock().unwrap();
        let i = pool.iter().position(|b| b.as_ptr() == ptr)?;
        Some(pool.swap_remove(i))
    }

    #[test]
    fn small_frames_are_exact_and_large_ones_keep_their_buffer() {
        let small = exact(|o| o.extend_from_slice(b"hello"));
        assert_eq!(&small[..], b"hello");
        // The scratch buffer is reused, not handed out.
        let again = exact(|o| {
            assert!(o.is_empty() && o.capacity() >= 256);
            o.extend_from_slice(b"again");
        });
        assert_eq!(&again[..], b"again");
        assert_ne!(small.as_ptr(), again.as_ptr());
        // Nested: the inner frame gets a buffer of its own.
        let outer = exact(|o| {
            o.extend_from_slice(b"out");
            let inner = exact(|i| i.extend_from_slice(b"in"));
            o.extend_from_slice(&inner);
        });
        assert_eq!(&outer[..], b"outin");
        let big = exact(|o| o.resize(SCRATCH + 1, 9));
        assert_eq!(big.len(), SCRATCH + 1);
        assert!(big.iter().all(|&b| b == 9));
    }

    #[test]
    fn large_buffers_come_back_and_are_reused_within_bounds() {
        // Small frames are plain Bytes and never kept.
        let small = into_bytes(b"abc".to_vec());
        assert_eq!(&small[..], b"abc");

        // A large frame's buffer returns once its last view is dropped.
        let mut buf = Vec::new();
        Writer(&mut buf).write_all(&vec![7u8; LARGE + 10]).unwrap();
        let ptr = buf.as_ptr();
        let frame = into_bytes(buf);
        let view = frame.slice(5..);
        drop(frame);
        assert!(take_at(ptr).is_none(), "kept while a view is alive");
        drop(view);
        let kept = take_at(ptr).expect("kept after the last view");
        assert!(kept.is_empty());

        // The next large value is written into a kept buffer, what was
        // there copied over.
        POOL.lock().unwrap().clear();
        give(kept);
        let mut next = b"head".to_vec();
        Writer(&mut next).write_all(&vec![1u8; LARGE]).unwrap();
        assert_eq!(next.as_ptr(), ptr);
        assert_eq!(&next[..4], b"head");
        assert_eq!(next.len(), 4 + LARGE);

        // Bounded: at most KEEP buffers, none over KEEP_EACH.
        for _ in 0..KEEP + 3 {
            drop(into_bytes(Vec::with_capacity(LARGE)));
        }
        drop(into_bytes(Vec::with_capacity(KEEP_EACH + 1)));
        let pool = POOL.lock().unwrap();
        assert!(pool.len() <= KEEP);
        assert!(pool.iter().all(|b| b.capacity() <= KEEP_EACH));
    }
}
