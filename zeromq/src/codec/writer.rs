//! zrpc patch (FORK.md item 19): the writing half of a connection, a sink
//! of [`Message`]s.
//!
//! Upstream used `asynchronous_codec::FramedWrite`, which copies every
//! frame into one buffer before writing it. Here small frames (and frame
//! headers) are still gathered in a buffer, so a burst of small messages
//! leaves in one write, but a frame of [`SHARE_AT`] bytes or more is
//! written from its own memory with a vectored write, never copied: a
//! 1 MiB reply costs no second megabyte and no memcpy.

use super::error::CodecError;
use super::zmq_codec::{frame_header, ZmqCodec};
use super::Message;

/// What a connection's writer writes to (a `dyn` of several bounds).
pub trait FrameableWrite: AsyncWrite + Unpin + Send + Sync {}
impl<T> FrameableWrite for T where T: AsyncWrite + Unpin + Send + Sync {}

use asynchronous_codec::Encoder;
use bytes::{Buf, Bytes, BytesMut};
use futures::{ready, AsyncWrite, Sink};

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Frames at least this long are written from their own memory.
pub(crate) const SHARE_AT: usize = 16 * 1024;

/// While this much is waiting, `poll_ready` writes before taking more (as
/// `FramedWrite`'s default high-water mark did).
const HIGH_WATER: usize = 128 * 1024;

/// Slices handed to one vectored write.
const MAX_SLICES: usize = 16;

pub struct ZmqFramedWrite {
    io: Box<dyn FrameableWrite>,
    codec: ZmqCodec,
    /// What is waiting to be written, in order: `shared` first, then `buf`.
    /// A shared frame closes the buffered part before it into a piece of
    /// its own.
    shared: VecDeque<Bytes>,
    buf: BytesMut,
    /// Bytes in `shared`.
    shared_len: usize,
}

impl ZmqFramedWrite {
    pub(crate) fn new(io: Box<dyn FrameableWrite>, codec: ZmqCodec) -> Self {
        ZmqFramedWrite {
            io,
            codec,
            shared: VecDeque::new(),
            buf: BytesMut::new(),
            shared_len: 0,
        }
    }

    /// The codec (to switch it to CURVE after the handshake).
    pub(crate) fn encoder_mut(&mut self) -> &mut ZmqCodec {
        &mut self.codec
    }

    /// The connection itself (tests write raw bytes after a handshake).
    #[cfg(test)]
    pub(crate) fn into_inner(self) -> Box<dyn FrameableWrite> {
        self.io
    }

    /// Bytes waiting to be written.
    fn waiting(&self) -> usize {
        self.shared_len + self.buf.len()
    }

    fn push_shared(&mut self, piece: Bytes) {
        self.shared_len += piece.len();
        self.shared.push_back(piece);
    }

    /// Queue `message`: plain message frames by reference when large,
    /// everything else encoded into the buffer.
    fn encode(&mut self, message: Message) -> Result<(), CodecError> {
        let message = match message {
            Message::Message(m) if !self.codec.seals() => m,
            other => return self.codec.encode(other, &mut self.buf),
        };
        let last = message.len() - 1;
        for (i, frame) in message.into_vecdeque().into_iter().enumerate() {
            frame_header(frame.len(), i != last, &mut self.buf);
            if frame.len() >= SHARE_AT {
                let gathered = self.buf.split().freeze();
                self.push_shared(gathered);
                self.push_shared(frame);
            } else {
                self.buf.extend_from_slice(&frame);
            }
        }
        Ok(())
    }

    /// Write until nothing waits (or the socket would block).
    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.waiting() > 0 {
            let n = if self.shared.is_empty() {
                ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf))?
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for piece in self.shared.iter().take(MAX_SLICES - 1) {
                    slices[count] = IoSlice::new(piece);
                    count += 1;
                }
                if count == self.shared.len() && !self.buf.is_empty() {
                    slices[count] = IoSlice::new(&self.buf);
                    count += 1;
                }
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write frame to transport",
                )));
            }
            self.consume(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Drop the first `n` bytes written.
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.shared.front_mut() else {
                self.buf.advance(n);
                return;
            };
            let step = n.min(front.len());
            front.advance(step);
            self.shared_len -= step;
            n -= step;
            if front.is_empty() {
                self.shared.pop_front();
            }
        }
    }
}

impl Sink<Message> for ZmqFramedWrite {
    type Error = CodecError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        if this.waiting() >= HIGH_WATER {
            ready!(this.poll_write_all(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.get_mut().encode(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_all(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_all(cx))?;
        ready!(Pin::new(&mut this.io).poll_close(cx))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ZmqMessage;
    use futures::SinkExt;
    use parking_lot::Mutex;
    use std::sync::Arc;

    /// Takes at most `chunk` bytes per write, records each write's slice
    /// count, and counts vectored calls.
    #[derive(Default)]
    struct Log {
        bytes: Vec<u8>,
        vectored_writes: usize,
        plain_writes: usize,
    }

    struct Stingy {
        log: Arc<Mutex<Log>>,
        chunk: usize,
    }

    impl AsyncWrite for Stingy {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk);
            let mut log = self.log.lock();
            log.plain_writes += 1;
            log.bytes.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut log = self.log.lock();
            log.vectored_writes += 1;
            let mut left = self.chunk;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                log.bytes.extend_from_slice(&b[..take]);
                left -= take;
                n += take;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A writer over a [`Stingy`] transport taking `chunk` bytes per write.
    fn recording(chunk: usize) -> (ZmqFramedWrite, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let io = Stingy {
            log: log.clone(),
            chunk,
        };
        (ZmqFramedWrite::new(Box::new(io), ZmqCodec::new()), log)
    }

    /// What upstream's FramedWrite wrote for the same messages.
    fn copied(messages: &[ZmqMessage]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let mut codec = ZmqCodec::new();
        for m in messages {
            codec.encode(Message::Message(m.clone()), &mut out).unwrap();
        }
        out.to_vec()
    }

    fn message(sizes: &[usize], fill: u8) -> ZmqMessage {
        let frames: Vec<Bytes> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Bytes::from(vec![fill.wrapping_add(i as u8); n]))
            .collect();
        ZmqMessage::try_from(frames).unwrap()
    }

    #[crate::async_rt::test]
    async fn large_frames_go_uncopied_and_the_bytes_are_the_same() {
        let messages = vec![
            message(&[5, 0, 64], 1),
            message(&[3, 0, SHARE_AT], 2),
            message(&[1 << 20], 3),
            message(&[300, SHARE_AT - 1, 2 * SHARE_AT, 7], 4),
        ];
        // Whole writes, and writes cut at awkward places.
        for chunk in [usize::MAX, 1, 7, SHARE_AT + 3, 100_000] {
            let (mut sink, log) = recording(chunk);
            for m in &messages {
                sink.feed(Message::Message(m.clone())).await.unwrap();
            }
            sink.flush().await.unwrap();
            let log = log.lock();
            assert_eq!(log.bytes, copied(&messages), "chunk {chunk}");
            assert!(log.vectored_writes > 0, "large frames are written vectored");
            assert_eq!(sink.waiting(), 0);
        }
    }

    #[crate::async_rt::test]
    async fn a_large_frame_is_not_copied() {
        let big = Bytes::from(vec![9u8; 1 << 20]);
        let (mut sink, log) = recording(usize::MAX);
        sink.encode(Message::Message(ZmqMessage::from(big.clone())))
            .unwrap();
        // Queued by reference: the same memory, and only the header copied.
        assert_eq!(sink.shared.len(), 2);
        assert_eq!(sink.shared[1].as_ptr(), big.as_ptr());
        assert!(sink.buf.capacity() < 64);
        sink.flush().await.unwrap();
        assert_eq!(log.lock().bytes.len(), 9 + (1 << 20));
    }

    #[crate::async_rt::test]
    async fn small_messages_leave_in_one_plain_write() {
        let messages: Vec<ZmqMessage> = (0..50).map(|i| message(&[0, 100], i)).collect();
        let (mut sink, log) = recording(usize::MAX);
        for m in &messages {
            sink.feed(Message::Message(m.clone())).await.unwrap();
        }
        sink.flush().await.unwrap();
        let log = log.lock();
        assert_eq!((log.plain_writes, log.vectored_writes), (1, 0));
        assert_eq!(log.bytes, copied(&messages));
    }
}
