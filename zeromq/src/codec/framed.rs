//! A connection's reading half: bytes in, messages out (large frame bodies into buffers of their own), and the pair of halves.

use crate::codec::ZmqCodec;
use crate::SocketOptions;

use super::error::{CodecError, CodecResult};
use super::Message;

use asynchronous_codec::Decoder;
use bytes::{Bytes, BytesMut};
use futures::{ready, AsyncRead, Stream};

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

// Enables us to have multiple bounds on the dyn trait in `InnerFramed`
pub trait FrameableRead: AsyncRead + Unpin + Send + Sync {}
impl<T> FrameableRead for T where T: AsyncRead + Unpin + Send + Sync {}

use super::writer::{FrameableWrite, ZmqFramedWrite};

/// zrpc patch: a tokio reader, read into spare capacity without zeroing it.
pub trait TokioRead: tokio::io::AsyncRead + Unpin + Send + Sync {}
impl<T> TokioRead for T where T: tokio::io::AsyncRead + Unpin + Send + Sync {}

/// Where a [`ZmqFramedRead`] reads from.
enum Source {
    Futures(Box<dyn FrameableRead>),
    Tokio(Box<dyn TokioRead>),
}

/// ZMTP framed reader with an adaptive read chunk.
///
/// Starts with a small read chunk and grows only when the transport keeps
/// filling the requested space. This avoids a large default allocation while
/// still reducing read/poll loops for large receive bursts. Short-read
/// recovery reduces initialization and allocation traffic after a burst ends.
pub struct ZmqFramedRead {
    inner: Source,
    codec: ZmqCodec,
    buffer: BytesMut,
    read_chunk_size: usize,
    // Configuration is shared; adaptation state belongs to this connection.
    options: Arc<SocketOptions>,
    short_reads: usize,
    // zrpc patch: where to queue the PONG answering a peer's PING.
    pong: Option<crate::peer_queue::Sender>,
    // zrpc patch: a large frame body being read into a buffer of its own
    // (FORK.md item 26).
    body: Option<Vec<u8>>,
}

impl ZmqFramedRead {
    pub(crate) fn new(inner: Box<dyn FrameableRead>, options: Arc<SocketOptions>) -> Self {
        Self::from_source(Source::Futures(inner), options)
    }

    /// zrpc patch: a reader over a tokio stream (read without zeroing).
    pub(crate) fn tokio(inner: Box<dyn TokioRead>, options: Arc<SocketOptions>) -> Self {
        let mut me = Self::from_source(Source::Tokio(inner), options);
        me.codec.large_bodies_by_reader = true;
        me
    }

    fn from_source(inner: Source, options: Arc<SocketOptions>) -> Self {
        Self {
            inner,
            codec: ZmqCodec::with_options(&options),
            buffer: BytesMut::with_capacity(options.read_buffer_initial_size),
            read_chunk_size: options.read_buffer_initial_size,
            options,
            short_reads: 0,
            pong: None,
            body: None,
        }
    }

    /// zrpc patch: the codec (to switch it to CURVE after the handshake).
    pub(crate) fn codec_mut(&mut self) -> &mut ZmqCodec {
        &mut self.codec
    }

    /// zrpc patch: answer PING commands by queueing a PONG on `queue` (the
    /// peer's send queue); the PINGs are then not passed on.
    pub(crate) fn answer_pings(&mut self, queue: crate::peer_queue::Sender) {
        self.pong = Some(queue);
    }

    /// zrpc patch: true if `item` was a PING, now answered.
    fn answered_ping(&mut self, item: &Message) -> bool {
        use super::command::{ZmqCommand, ZmqCommandName, HEARTBEAT_CONTEXT};
        let (Some(queue), Message::Command(cmd)) = (self.pong.as_mut(), item) else {
            return false;
        };
        if !matches!(cmd.name, ZmqCommandName::PING) {
            return false;
        }
        let ctx = cmd
            .properties
            .get(HEARTBEAT_CONTEXT)
            .cloned()
            .unwrap_or_default();
        // A full queue means the peer is not reading; skipping one PONG is fine.
        let _ = queue.try_send(Message::Command(ZmqCommand::pong(ctx)));
        true
    }

    fn poll_read_into_buffer(
        &mut self,
        cx: &mut Context<'_>,
        min_read_size: usize,
    ) -> Poll<io::Result<usize>> {
        let read_size = self
            .read_chunk_size
            .max(min_read_size)
            .min(self.options.read_buffer_max_size);
        let bytes_read = ready!(self.poll_read_some(cx, read_size))?;
        if bytes_read >= read_size && self.read_chunk_size < self.options.read_buffer_max_size {
            self.read_chunk_size =
                (self.read_chunk_size * 2).min(self.options.read_buffer_max_size);
        }
        if bytes_read > 0 && bytes_read < self.read_chunk_size / 2 {
            self.short_reads += 1;
            if self.short_reads == self.options.read_buffer_short_reads {
                // Confirm short reads before shrinking: an isolated burst tail
                // otherwise makes the next batch repeatedly grow and shrink.
                // Leave room above the observation without increasing the chunk.
                self.read_chunk_size = (bytes_read.next_power_of_two() * 2)
                    .max(self.options.read_buffer_initial_size * 2)
                    .min(self.read_chunk_size);
                self.short_reads = 0;
            }
        } else if bytes_read > 0 {
            self.short_reads = 0;
        }
        Poll::Ready(Ok(bytes_read))
    }

    /// zrpc patch: read the large frame body of `len` bytes the decoder
    /// waits for into a buffer of its own (what is buffered already first),
    /// reading no further than its end.
    fn poll_large_body(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<CodecResult<Bytes>> {
        use bytes::{Buf, BufMut};
        let Source::Tokio(reader) = &mut self.inner else {
            unreachable!("large bodies are read by tokio readers only")
        };
        // Room is made as bytes arrive, never more than AHEAD (or as much
        // as arrived) beyond them: a header claiming a huge frame cannot
        // allocate it up front.
        const AHEAD: usize = 1 << 20;
        let body = self.body.get_or_insert_with(|| {
            let have = self.buffer.len().min(len);
            let mut body = crate::buffers::take(len.min(have + AHEAD));
            body.extend_from_slice(&self.buffer[..have]);
            self.buffer.advance(have);
            body
        });
        while body.len() < len {
            if body.len() == body.capacity() {
                body.reserve_exact((len - body.len()).min(body.len().max(AHEAD)));
            }
            let left = (len - body.len()).min(body.capacity() - body.len());
            let mut room = (&mut *body).limit(left);
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut *reader),
                cx,
                &mut room
            )) {
                Ok(0) => {
                    self.body = None;
                    return Poll::Ready(Err(CodecError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a frame",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    self.body = None;
                    return Poll::Ready(Err(CodecError::Io(e)));
                }
            }
        }
        let body = self.body.take().unwrap_or_default();
        Poll::Ready(Ok(crate::buffers::into_bytes(body)))
    }

    /// Read up to `read_size` bytes onto the end of the buffer.
    fn poll_read_some(
        &mut self,
        cx: &mut Context<'_>,
        read_size: usize,
    ) -> Poll<io::Result<usize>> {
        let start = self.buffer.len();
        match &mut self.inner {
            // zrpc patch: tokio reads into the buffer's spare capacity as it
            // is, without zeroing it first (FORK.md item 21).
            Source::Tokio(reader) => {
                use bytes::BufMut;
                self.buffer.reserve(read_size);
                let mut room = (&mut self.buffer).limit(read_size);
                tokio_util::io::poll_read_buf(Pin::new(reader), cx, &mut room)
            }
            Source::Futures(reader) => {
                // futures::AsyncRead requires an initialized &mut [u8]. Grow
                // BytesMut first, then trim back to the actual read length so
                // the read path does not need a scratch buffer and a second
                // data copy. The decoder checks frame length + maximum chunk
                // size at the wire boundary, so preparing this slice cannot
                // overflow its length.
                self.buffer.resize(start + read_size, 0);
                let polled = Pin::new(reader).poll_read(cx, &mut self.buffer[start..]);
                let kept = match &polled {
                    Poll::Ready(Ok(n)) => start + n,
                    _ => start,
                };
                self.buffer.truncate(kept);
                polled
            }
        }
    }
}

impl Stream for ZmqFramedRead {
    type Item = CodecResult<Message>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;

        // Consume buffered data first; read from the socket only when the
        // current buffer cannot produce a full message.
        loop {
            // zrpc patch: a large frame body is read into a buffer of its
            // own (FORK.md item 26).
            if let Some(len) = this.codec.large_body() {
                let frame = ready!(this.poll_large_body(cx, len))?;
                match this.codec.finish_large_body(frame) {
                    Some(item) if !this.answered_ping(&item) => return Poll::Ready(Some(Ok(item))),
                    _ => continue,
                }
            }
            match this.codec.decode(&mut this.buffer)? {
                Some(item) if this.answered_ping(&item) => continue,
                Some(item) => return Poll::Ready(Some(Ok(item))),
                None if this.codec.large_body().is_some() => continue,
                None => {}
            }
            let min_read_size = this.codec.bytes_needed(this.buffer.len());
            let n = ready!(this.poll_read_into_buffer(cx, min_read_size))?;
            if n > 0 {
                continue;
            }
            // The stream ended: give the decoder one final chance; leftover
            // bytes mean it ended with a truncated frame.
            match this.codec.decode(&mut this.buffer)? {
                Some(item) if this.answered_ping(&item) => continue,
                Some(item) => return Poll::Ready(Some(Ok(item))),
                None => {}
            }
            if this.buffer.is_empty() {
                return Poll::Ready(None);
            }
            return match this.codec.decode_eof(&mut this.buffer)? {
                Some(item) => Poll::Ready(Some(Ok(item))),
                None if this.buffer.is_empty() => Poll::Ready(None),
                None => Poll::Ready(Some(Err(CodecError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "bytes remaining in stream",
                ))))),
            };
        }
    }
}

/// Equivalent to [`asynchronous_codec::Framed<T, ZmqCodec>`]
pub struct FramedIo {
    pub read_half: ZmqFramedRead,
    pub write_half: ZmqFramedWrite,
}

impl FramedIo {
    pub fn new(
        read_half: Box<dyn FrameableRead>,
        write_half: Box<dyn FrameableWrite>,
        options: Arc<SocketOptions>,
    ) -> Self {
        let read_half = ZmqFramedRead::new(read_half, options);
        let write_half = ZmqFramedWrite::new(write_half, ZmqCodec::new());
        Self {
            read_half,
            write_half,
        }
    }

    /// zrpc patch: over a tokio stream's halves (reads skip zeroing).
    pub(crate) fn tokio(
        read_half: Box<dyn TokioRead>,
        write_half: Box<dyn FrameableWrite>,
        options: Arc<SocketOptions>,
    ) -> Self {
        Self {
            read_half: ZmqFramedRead::tokio(read_half, options),
            write_half: ZmqFramedWrite::new(write_half, ZmqCodec::new()),
        }
    }

    pub fn into_parts(self) -> (ZmqFramedRead, ZmqFramedWrite) {
        (self.read_half, self.write_half)
    }
}

#[cfg(test)]
mod tests {
    mod read_buffer;
    mod socket_options;

    use super::*;
    use crate::async_rt;
    use crate::codec::ZmqGreeting;

    use bytes::{Bytes, BytesMut};
    use futures::StreamExt;
    use futures::{io::Cursor, AsyncRead};
    use std::io::ErrorKind;
    use std::sync::{Arc, Mutex};

    const INITIAL_READ_CHUNK_SIZE: usize = 128;
    const MAX_READ_CHUNK_SIZE: usize = 64 * 1024;

    struct RecordingReader {
        input: Vec<u8>,
        position: usize,
        requested_sizes: Arc<Mutex<Vec<usize>>>,
    }

    impl RecordingReader {
        fn new(input: Vec<u8>, requested_sizes: Arc<Mutex<Vec<usize>>>) -> Self {
            Self {
                input,
                position: 0,
                requested_sizes,
            }
        }
    }

    impl AsyncRead for RecordingReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buffer: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            self.requested_sizes.lock().unwrap().push(buffer.len());

            let remaining = self.input.len() - self.position;
            if remaining == 0 {
                return Poll::Ready(Ok(0));
            }

            let bytes_read = remaining.min(buffer.len());
            let end = self.position + bytes_read;
            buffer[..bytes_read].copy_from_slice(&self.input[self.position..end]);
            self.position = end;

            Poll::Ready(Ok(bytes_read))
        }
    }

    fn encoded_stream(frames: &[&[u8]]) -> Vec<u8> {
        let mut bytes = BytesMut::from(ZmqGreeting::default());
        for frame in frames {
            if frame.len() > u8::MAX as usize {
                bytes.extend_from_slice(&[0b0000_0010]);
                bytes.extend_from_slice(&(frame.len() as u64).to_be_bytes());
            } else {
                bytes.extend_from_slice(&[0, frame.len() as u8]);
            }
            bytes.extend_from_slice(frame);
        }
        bytes.to_vec()
    }

    #[async_rt::test]
    async fn test_zmq_framed_read_yields_buffered_messages_before_reading_more() {
        let input = encoded_stream(&[b"first", b"second"]);
        let mut reader = ZmqFramedRead::new(
            Box::new(Cursor::new(input)),
            Arc::new(SocketOptions::default()),
        );

        assert!(matches!(
            reader.next().await,
            Some(Ok(Message::Greeting(_)))
        ));

        let first = reader
            .next()
            .await
            .expect("first message")
            .expect("decode first");
        let Message::Message(first) = first else {
            panic!("unexpected first frame type");
        };
        assert_eq!(first.get(0), Some(&Bytes::from_static(b"first")));

        let second = reader
            .next()
            .await
            .expect("second message")
            .expect("decode second");
        let Message::Message(second) = second else {
            panic!("unexpected second frame type");
        };
        assert_eq!(second.get(0), Some(&Bytes::from_static(b"second")));

        assert!(reader.next().await.is_none());
    }

    #[async_rt::test]
    async fn test_zmq_framed_read_reports_truncated_frame_at_eof() {
        let mut input = BytesMut::from(ZmqGreeting::default()).to_vec();
        input.extend_from_slice(&[0, 5, b'a']);
        let mut reader = ZmqFramedRead::new(
            Box::new(Cursor::new(input)),
            Arc::new(SocketOptions::default()),
        );

        assert!(matches!(
            reader.next().await,
            Some(Ok(Message::Greeting(_)))
        ));

        let error = reader
            .next()
            .await
            .expect("truncated frame should produce an item")
            .expect_err("truncated frame should fail");
        match error {
            CodecError::Io(error) => assert_eq!(error.kind(), ErrorKind::UnexpectedEof),
            other => panic!("unexpected error type: {other:?}"),
        }
    }

    #[async_rt::test]
    async fn test_zmq_framed_read_uses_decoder_demand_after_full_reads() {
        let frame = vec![b'a'; 600];
        let requested_sizes = Arc::new(Mutex::new(Vec::new()));
        let input = encoded_stream(&[&frame]);
        let input_len = input.len();
        let mut reader = ZmqFramedRead::new(
            Box::new(RecordingReader::new(input, Arc::clone(&requested_sizes))),
            Arc::new(SocketOptions::default()),
        );

        assert!(matches!(
            reader.next().await,
            Some(Ok(Message::Greeting(_)))
        ));

        let message = reader
            .next()
            .await
            .expect("message")
            .expect("decode message");
        let Message::Message(message) = message else {
            panic!("unexpected message type");
        };
        assert_eq!(message.get(0), Some(&Bytes::copy_from_slice(&frame)));

        let greeting_len = BytesMut::from(ZmqGreeting::default()).len();
        let encoded_frame_len = input_len - greeting_len;
        let initial_prefetched_frame_bytes = INITIAL_READ_CHUNK_SIZE - greeting_len;
        let remaining_frame_bytes = encoded_frame_len - initial_prefetched_frame_bytes;
        assert_eq!(
            *requested_sizes.lock().unwrap(),
            vec![INITIAL_READ_CHUNK_SIZE, remaining_frame_bytes]
        );
    }
}
