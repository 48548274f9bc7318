//! Message buffers: large ones recycled, small ones exact.
//!
//! A request or reply of [`LARGE`] bytes or more is encoded into a buffer
//! from the transport's pool (`zerorpc_zeromq::buffers`, shared with the reader's
//! large frame bodies) and goes back there once the frame has been written,
//! instead of back to the allocator. With glibc's allocator, a megabyte
//! freed and allocated again for every call is often returned to the system
//! and faulted back in page by page (measured: 1 MiB echo at 650-790 MB/s
//! that way, against 920 and more with the buffers kept). The pool is
//! bounded (at most 8 buffers of at most 4 MiB).
//!
//! A small frame is written into a per-thread scratch buffer and copied
//! once into an allocation of its exact size (see [`exact`]).

use bytes::Bytes;

/// Buffers at least this large are recycled.
pub(crate) const LARGE: usize = 64 * 1024;

/// Make room for `more` bytes in `buf`; a buffer that grows large comes
/// from the pool (its contents copied over), at least doubling as `Vec`
/// does so that a value written piece by piece is not copied each time.
#[cold]
pub(crate) fn reserve(buf: &mut Vec<u8>, more: usize) {
    let need = buf.len().saturating_add(more);
    if need <= buf.capacity() {
        return;
    }
    if need >= LARGE {
        let mut kept = zerorpc_zeromq::buffers::take(need.max(2 * buf.capacity()));
        kept.extend_from_slice(buf);
        *buf = kept;
        return;
    }
    buf.reserve(more);
}

/// The frame `buf` holds, as [`Bytes`]; a large buffer returns to the pool
/// when the last view of it is dropped (after the frame was written).
pub(crate) fn into_bytes(buf: Vec<u8>) -> Bytes {
    if buf.capacity() >= LARGE {
        zerorpc_zeromq::buffers::into_bytes(buf)
    } else {
        Bytes::from(buf)
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
    fn large_buffers_come_back_and_are_reused() {
        // Small frames are plain Bytes and never kept.
        let small = into_bytes(b"abc".to_vec());
        assert_eq!(&small[..], b"abc");

        // A large frame's buffer returns once its last view is dropped, and
        // the next large value is written into it, what was there copied
        // over. (An odd size, so no other test's buffer fits better.)
        let size = LARGE + 12_345;
        let mut buf = Vec::new();
        Writer(&mut buf).write_all(&vec![7u8; size]).unwrap();
        let ptr = buf.as_ptr();
        let frame = into_bytes(buf);
        let view = frame.slice(5..);
        drop(frame);
        drop(view);
        let mut next = b"head".to_vec();
        Writer(&mut next).write_all(&vec![1u8; size - 4]).unwrap();
        assert_eq!(next.as_ptr(), ptr, "the kept buffer is reused");
        assert_eq!(&next[..4], b"head");
        assert_eq!(next.len(), size);
    }

    #[test]
    fn a_value_written_piece_by_piece_grows_by_doubling() {
        let mut buf = Vec::new();
        let mut grew = 0;
        let mut cap = 0;
        for _ in 0..64 {
            Writer(&mut buf).write_all(&[3u8; 16 * 1024]).unwrap();
            if buf.capacity() != cap {
                grew += 1;
                cap = buf.capacity();
            }
        }
        assert_eq!(buf.len(), 1 << 20);
        assert!(grew <= 12, "grew {grew} times for 64 writes");
    }
}
