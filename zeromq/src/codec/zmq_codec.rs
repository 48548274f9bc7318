//! The ZMTP 3 codec: frames to messages and back, with the size, frame-count and greeting checks.

use super::command::ZmqCommand;
use super::error::CodecError;
use super::greeting::ZmqGreeting;
use super::Message;
use crate::curve::{CurveRx, CurveTx, MAX_HANDSHAKE_COMMAND};
use crate::{SocketOptions, ZmqMessage};

use asynchronous_codec::{Decoder, Encoder};
use bytes::{Buf, Bytes, BytesMut};

use std::convert::TryFrom;

#[derive(Debug, Clone, Copy)]
struct Frame {
    command: bool,
    long: bool,
    more: bool,
}

#[derive(Debug)]
enum DecoderState {
    Greeting,
    FrameHeader,
    FrameLen(Frame),
    Frame(Frame),
}

#[derive(Debug)]
pub struct ZmqCodec {
    state: DecoderState,
    waiting_for: usize, // Number of bytes needed to decode frame
    // Needed to store incoming multipart message
    // This allows to encapsulate its processing inside codec and not expose
    // internal details to higher levels
    buffered_message: Option<ZmqMessage>,
    max_read_chunk_size: usize,
    // zrpc patch: bytes of the message being assembled (each frame charged
    // FRAME_OVERHEAD on top of its length), its frames, and the limits.
    buffered_len: usize,
    buffered_frames: usize,
    max_message_size: Option<usize>,
    max_frames: Option<usize>,
    /// zrpc patch: during a CURVE handshake, command frames are passed on
    /// as they are (`Message::Raw`), and none longer than a handshake needs.
    pub(crate) raw_commands: bool,
    /// zrpc patch: after a CURVE handshake, frames are opened (reading) or
    /// sealed (writing) as MESSAGE commands.
    pub(crate) curve_rx: Option<CurveRx>,
    pub(crate) curve_tx: Option<CurveTx>,
    /// zrpc patch: the reader takes large frame bodies itself (FORK.md item
    /// 26): the decoder then waits for them without reserving room.
    pub(crate) large_bodies_by_reader: bool,
}

/// zrpc patch: where the greeting's major version is (after the 10-byte
/// signature `ff 00*8 7f`).
const GREETING_VERSION_AT: usize = 10;

/// zrpc patch: frame bodies from this size on are read by the reader into
/// buffers of their own (see [`ZmqCodec::large_body`]).
pub(crate) const LARGE_BODY: usize = 64 * 1024;

/// zrpc patch: never reserve more than this beyond the bytes received, so a
/// frame header claiming a huge length cannot allocate it up front.
const MAX_RESERVE_AHEAD: usize = 1 << 20;

impl ZmqCodec {
    pub fn new() -> Self {
        Self::with_options(&SocketOptions::default())
    }

    pub(crate) fn with_options(options: &SocketOptions) -> Self {
        Self {
            state: DecoderState::Greeting,
            // zrpc patch: the signature and major version first (11 bytes),
            // so a peer of an older ZMTP is refused instead of waited for:
            // it sends fewer than 64 bytes and then waits for us.
            waiting_for: GREETING_VERSION_AT + 1,
            buffered_message: None,
            max_read_chunk_size: options.read_buffer_max_size,
            buffered_len: 0,
            buffered_frames: 0,
            max_message_size: options.max_message_size,
            max_frames: options.max_frames_per_message,
            raw_commands: false,
            curve_rx: None,
            curve_tx: None,
            large_bodies_by_reader: false,
        }
    }

    /// Returns the minimum additional bytes needed before decode can progress.
    pub(crate) fn bytes_needed(&self, buffered_len: usize) -> usize {
        self.waiting_for.saturating_sub(buffered_len)
    }
}

impl Default for ZmqCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for ZmqCodec {
    type Error = CodecError;
    type Item = Message;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        // A single read can contain thousands of frames; keep stack use independent of that count.
        loop {
            // zrpc patch: a ZMTP 1.0 peer greets with its identity frame,
            // whose first byte is never 0xff, and then waits for ours:
            // refused at its first byte, not after a handshake timeout.
            if matches!(self.state, DecoderState::Greeting)
                && src.first().is_some_and(|&b| b != 0xff)
            {
                return Err(CodecError::Greeting(
                    "peer speaks ZMTP 1.0; only 3.x is supported",
                ));
            }
            if src.len() < self.waiting_for {
                if self.large_body().is_some() {
                    return Ok(None);
                }
                // The final read may coalesce bytes from the following frame. Reserve
                // its headroom now rather than grow shared storage again at the frame tail.
                // Qualifying retained frames must leave a full chunk for the next read.
                // For frames near one chunk, spare shared storage makes the next
                // almost-complete frame copy its body when reserve detaches it from
                // a retained predecessor. Limit headroom to frames spanning more
                // than two chunks, where it adds less than half the body size.
                let reserve_to = if self.waiting_for > 2 * self.max_read_chunk_size {
                    // Frame lengths are validated with this headroom before entering Frame.
                    self.waiting_for + self.max_read_chunk_size
                } else {
                    self.waiting_for
                };
                let reserve_to = reserve_to.min(src.len().saturating_add(MAX_RESERVE_AHEAD));
                src.reserve(reserve_to - src.len());
                return Ok(None);
            }
            match self.state {
                DecoderState::Greeting => {
                    // zrpc patch: a ZMTP 1.0 identity longer than 254 bytes
                    // starts with 0xff too, but its 10th byte's low bit is
                    // 0; ZMTP 2.0 has major version 1.
                    if src[9] & 1 == 0 || src[GREETING_VERSION_AT] < 3 {
                        return Err(CodecError::Greeting(
                            "peer speaks ZMTP 1.0 or 2.0; only 3.x is supported",
                        ));
                    }
                    if src.len() < 64 {
                        self.waiting_for = 64;
                        continue;
                    }
                    self.state = DecoderState::FrameHeader;
                    self.waiting_for = 1;
                    return Ok(Some(Message::Greeting(ZmqGreeting::try_from(
                        src.split_to(64).freeze(),
                    )?)));
                }
                DecoderState::FrameHeader => {
                    // zrpc patch: a short message frame whose body is all
                    // here is taken in one step (FORK.md item 25).
                    if let Some((data, more)) = self.whole_short_frame(src)? {
                        if let Some(message) = self.push_frame(data, more) {
                            return Ok(Some(message));
                        }
                        continue;
                    }
                    let flags = src.get_u8();

                    let frame = Frame {
                        command: (flags & 0b0000_0100) != 0,
                        long: (flags & 0b0000_0010) != 0,
                        more: (flags & 0b0000_0001) != 0,
                    };
                    self.state = DecoderState::FrameLen(frame);
                    self.waiting_for = if frame.long { 8 } else { 1 };
                }
                DecoderState::FrameLen(frame) => {
                    let frame_len = if frame.long {
                        let len = usize::try_from(src.get_u64()).map_err(|_error| {
                            CodecError::Decode("Frame length exceeds read buffer capacity")
                        })?;
                        // The reader may prepare a full read chunk at the frame tail.
                        // Reject unrepresentable lengths here, before reserve or resize.
                        len.checked_add(self.max_read_chunk_size)
                            .filter(|&capacity| isize::try_from(capacity).is_ok())
                            .ok_or(CodecError::Decode(
                                "Frame length exceeds read buffer capacity",
                            ))?;
                        len
                    } else {
                        usize::from(src.get_u8())
                    };
                    if !frame.command {
                        self.admit_frame(frame_len)?;
                    } else if self.max_message_size.is_some_and(|max| frame_len > max) {
                        return Err(CodecError::Decode(
                            "Command exceeds the maximum message size",
                        ));
                    } else if self.raw_commands && frame_len > MAX_HANDSHAKE_COMMAND {
                        return Err(CodecError::Decode("CURVE handshake command too long"));
                    }
                    self.state = DecoderState::Frame(frame);
                    self.waiting_for = frame_len;
                }
                DecoderState::Frame(frame) => {
                    let mut data = src.split_to(self.waiting_for);
                    self.state = DecoderState::FrameHeader;
                    self.waiting_for = 1;
                    let mut more = frame.more;
                    if let Some(rx) = self.curve_rx.as_mut() {
                        // zrpc patch: every frame is a sealed MESSAGE.
                        let (flags, opened) = rx.open(data)?;
                        if flags & 0x02 != 0 {
                            return Ok(Some(Message::Command(ZmqCommand::try_from(opened)?)));
                        }
                        more = flags & 0x01 != 0;
                        if let Some(max) = self.max_message_size {
                            let charged = opened.len().saturating_add(crate::FRAME_OVERHEAD);
                            if self.buffered_len.saturating_add(charged) > max {
                                return Err(CodecError::Decode(
                                    "Message exceeds the maximum message size",
                                ));
                            }
                        }
                        data = BytesMut::from(opened);
                    } else if frame.command && self.raw_commands {
                        return Ok(Some(Message::Raw(data.freeze())));
                    } else if frame.command {
                        return Ok(Some(Message::Command(ZmqCommand::try_from(data.freeze())?)));
                    }

                    if let Some(message) = self.push_frame(data.freeze(), more) {
                        return Ok(Some(message));
                    }
                }
            }
        }
    }
}

impl ZmqCodec {
    /// zrpc patch: with `large_bodies_by_reader`, the length of the frame
    /// body the decoder waits for if the reader should read it into a
    /// buffer of its own: a plain message frame (not a command, not CURVE)
    /// of [`LARGE_BODY`] bytes or more.
    pub(crate) fn large_body(&self) -> Option<usize> {
        match self.state {
            DecoderState::Frame(frame)
                if self.large_bodies_by_reader
                    && !frame.command
                    && self.curve_rx.is_none()
                    && self.waiting_for >= LARGE_BODY =>
            {
                Some(self.waiting_for)
            }
            _ => None,
        }
    }

    /// zrpc patch: the body [`Self::large_body`] asked for, read: the
    /// message if it was the last frame.
    pub(crate) fn finish_large_body(&mut self, data: Bytes) -> Option<Message> {
        let DecoderState::Frame(frame) = self.state else {
            return None;
        };
        self.state = DecoderState::FrameHeader;
        self.waiting_for = 1;
        self.push_frame(data, frame.more)
    }

    /// zrpc patch: a message frame of `frame_len` bytes fits the limits on
    /// the message being assembled.
    #[inline]
    fn admit_frame(&self, frame_len: usize) -> Result<(), CodecError> {
        if let Some(max) = self.max_message_size {
            let charged = frame_len.saturating_add(crate::FRAME_OVERHEAD);
            if self.buffered_len.saturating_add(charged) > max {
                return Err(CodecError::Decode(
                    "Message exceeds the maximum message size",
                ));
            }
        }
        if self
            .max_frames
            .is_some_and(|max| self.buffered_frames >= max)
        {
            return Err(CodecError::Decode("Message has more frames than allowed"));
        }
        Ok(())
    }

    /// zrpc patch: with the decoder at a frame header, the frame if it is a
    /// short (up to 255 bytes) plain message frame already complete in
    /// `src`, taken out of it, with its MORE flag. Anything else (a
    /// command, a long frame, CURVE, a frame not all here) is left to the
    /// state machine, one step at a time. Upstream took every frame in
    /// three steps (flags, length, body), each a trip round the loop and an
    /// advance of the buffer.
    #[inline]
    fn whole_short_frame(&self, src: &mut BytesMut) -> Result<Option<(Bytes, bool)>, CodecError> {
        let (Some(&flags), Some(&len)) = (src.first(), src.get(1)) else {
            return Ok(None);
        };
        let len = usize::from(len);
        if flags & 0b0000_0110 != 0 || self.curve_rx.is_some() || src.len() < 2 + len {
            return Ok(None);
        }
        self.admit_frame(len)?;
        src.advance(2);
        let data = src.split_to(len).freeze();
        Ok(Some((data, flags & 0b0000_0001 != 0)))
    }

    /// Add a decoded message frame to the message being assembled; the
    /// message once this was its last frame.
    #[inline]
    fn push_frame(&mut self, data: Bytes, more: bool) -> Option<Message> {
        self.buffered_len += data.len() + crate::FRAME_OVERHEAD;
        self.buffered_frames += 1;
        // zrpc patch: an empty frame (the delimiter before every payload)
        // holds no reference to the read buffer. It did: a reply that
        // reuses a request's frames kept the whole buffer the request
        // arrived in (1 MiB and more) alive until the reply was written.
        let data = if data.is_empty() { Bytes::new() } else { data };
        match &mut self.buffered_message {
            Some(v) => v.push_back(data),
            // zrpc patch: room for a ROUTER's usual three frames (identity,
            // delimiter, payload) at once, instead of growing from one per
            // message.
            None if more => self.buffered_message = Some(ZmqMessage::with_first(data, 4)),
            None => self.buffered_message = Some(ZmqMessage::from(data)),
        }
        if more {
            return None;
        }
        self.buffered_len = 0;
        self.buffered_frames = 0;
        // Quoth the Raven “Nevermore.”
        self.buffered_message.take().map(Message::Message)
    }
}

#[inline(always)]
fn encode_frame(frame: &Bytes, dst: &mut BytesMut, more: bool) {
    dst.reserve(frame.len() + 9);
    frame_header(frame.len(), more, dst);
    dst.extend_from_slice(frame.as_ref());
}

/// zrpc patch: a message frame's header (flags and length) for `len` bytes
/// of body (the writer shares large bodies instead of copying them,
/// `writer.rs`).
#[inline(always)]
pub(crate) fn frame_header(len: usize, more: bool, dst: &mut BytesMut) {
    let flags = u8::from(more);
    if len > 255 {
        let mut header = [0u8; 9];
        header[0] = flags | 0b0000_0010;
        header[1..].copy_from_slice(&(len as u64).to_be_bytes());
        dst.extend_from_slice(&header);
    } else {
        dst.extend_from_slice(&[flags, len as u8]);
    }
}

/// zrpc patch: a command frame around `body` (name and data).
fn encode_command(body: &Bytes, dst: &mut BytesMut) {
    let len = body.len();
    if len > 255 {
        dst.reserve(len + 9);
        dst.extend_from_slice(&[0b110]);
        dst.extend_from_slice(&(len as u64).to_be_bytes());
    } else {
        dst.reserve(len + 2);
        dst.extend_from_slice(&[0b100, len as u8]);
    }
    dst.extend_from_slice(body);
}

impl ZmqCodec {
    /// zrpc patch: whether frames are sealed (CURVE) when written.
    pub(crate) fn seals(&self) -> bool {
        self.curve_tx.is_some()
    }
}

impl Encoder for ZmqCodec {
    type Error = CodecError;
    type Item<'a> = Message;

    fn encode(&mut self, message: Self::Item<'_>, dst: &mut BytesMut) -> Result<(), Self::Error> {
        match (message, self.curve_tx.as_mut()) {
            (Message::Greeting(payload), _) => dst.unsplit(payload.into()),
            (Message::Command(command), None) => dst.unsplit(command.into()),
            (Message::Message(message), None) => {
                let last_element = message.len() - 1;
                for (idx, part) in message.iter().enumerate() {
                    encode_frame(part, dst, idx != last_element);
                }
            }
            // zrpc patch: CURVE. Each frame goes sealed in a MESSAGE of its
            // own (its more and command flags inside the box), as libzmq does.
            (Message::Command(command), Some(tx)) => {
                let framed: BytesMut = command.into();
                let header = if framed[0] & 0b10 != 0 { 9 } else { 2 };
                encode_frame(&tx.seal(0x02, &framed[header..]), dst, false);
            }
            (Message::Message(message), Some(tx)) => {
                let last_element = message.len() - 1;
                for (idx, part) in message.iter().enumerate() {
                    let flags = u8::from(idx != last_element);
                    encode_frame(&tx.seal(flags, part), dst, false);
                }
            }
            (Message::Raw(command), _) => encode_command(&command, dst),
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    mod multipart;
    mod read_buffer;

    use super::*;

    #[test]
    fn an_empty_frame_holds_no_part_of_the_read_buffer() {
        let mut codec = ZmqCodec::new();
        codec.state = DecoderState::FrameHeader;
        codec.waiting_for = 1;
        // [delimiter, "abc"] and room for more.
        let mut src = BytesMut::with_capacity(4096);
        src.extend_from_slice(&[0x01, 0x00, 0x00, 0x03, b'a', b'b', b'c']);
        let buffer = src.as_ptr() as usize..src.as_ptr() as usize + 4096;
        let Some(Message::Message(m)) = codec.decode(&mut src).unwrap() else {
            panic!("one message");
        };
        let mut frames = m.into_vecdeque();
        let delimiter = frames.pop_front().unwrap();
        assert!(delimiter.is_empty());
        assert!(
            buffer.contains(&(frames[0].as_ptr() as usize)),
            "the payload is not copied"
        );
        assert!(
            !buffer.contains(&(delimiter.as_ptr() as usize)),
            "the delimiter is a view of the read buffer"
        );
    }

    /// zrpc patch (FORK.md item 30): a ZMTP 1.0 greeting (an identity
    /// frame, then silence) is refused at its first byte; a ZMTP 3 greeting
    /// arriving a byte at a time is not.
    #[test]
    fn zmtp_1_0_is_refused_at_its_first_byte() {
        for first in [&[0x01u8][..], &[0x01, 0x00], &[0x00]] {
            let mut codec = ZmqCodec::new();
            let mut src = BytesMut::from(first);
            assert!(
                matches!(codec.decode(&mut src), Err(CodecError::Greeting(_))),
                "{first:?} was not refused"
            );
        }
        let greeting: Vec<u8> = BytesMut::from(ZmqGreeting::default()).to_vec();
        let mut codec = ZmqCodec::new();
        let mut src = BytesMut::new();
        for (i, b) in greeting.iter().enumerate() {
            src.extend_from_slice(&[*b]);
            let got = codec
                .decode(&mut src)
                .expect("a ZMTP 3 greeting is accepted");
            assert_eq!(got.is_some(), i == 63, "byte {i}");
        }
    }

    /// A codec past the greeting, as a connection's reader has it.
    fn framing(options: &SocketOptions) -> ZmqCodec {
        let mut codec = ZmqCodec::with_options(options);
        codec.state = DecoderState::FrameHeader;
        codec.waiting_for = 1;
        codec
    }

    /// Frames on the wire: (flags, body), the length written short or long
    /// as the flags say.
    fn wire(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (flags, body) in frames {
            out.push(*flags);
            if flags & 0b10 != 0 {
                out.extend_from_slice(&(body.len() as u64).to_be_bytes());
            } else {
                out.push(body.len() as u8);
            }
            out.extend_from_slice(body);
        }
        out
    }

    fn decode_all(codec: &mut ZmqCodec, src: &mut BytesMut) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(m) = codec.decode(src).expect("decodes") {
            out.push(format!("{m:?}"));
        }
        out
    }

    /// zrpc patch (FORK.md item 25): short frames taken in one step decode
    /// exactly as the byte-at-a-time state machine does, whatever the read
    /// boundaries, mixed with long frames and a command.
    #[test]
    fn frames_decode_the_same_whatever_the_read_boundaries() {
        let ping = {
            let mut c = BytesMut::new();
            ZmqCodec::new()
                .encode(
                    Message::Command(crate::codec::ZmqCommand::pong(Bytes::from_static(b"x"))),
                    &mut c,
                )
                .unwrap();
            c.to_vec()
        };
        let mut stream = wire(&[
            (0x01, vec![]),
            (0x00, b"short".to_vec()),
            (0x01, vec![7; 255]),
            (0x03, vec![8; 300]),
            (0x00, vec![]),
        ]);
        stream.extend_from_slice(&ping);
        stream.extend_from_slice(&wire(&[(0x02, vec![9; 3]), (0x00, vec![1; 200])]));
        let options = SocketOptions::default();
        let whole = decode_all(&mut framing(&options), &mut BytesMut::from(&stream[..]));
        assert_eq!(whole.len(), 5, "{whole:?}");
        for step in [1, 2, 3, 7, 256] {
            let mut codec = framing(&options);
            let mut src = BytesMut::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(step) {
                src.extend_from_slice(chunk);
                got.extend(decode_all(&mut codec, &mut src));
            }
            assert_eq!(got, whole, "read {step} bytes at a time");
            assert!(src.is_empty());
        }
    }

    /// zrpc patch: the message limits hold for frames taken in one step.
    #[test]
    fn limits_hold_for_short_frames_taken_whole() {
        let mut options = SocketOptions::default();
        options.max_frames_per_message(Some(2));
        let three = wire(&[(0x01, vec![]), (0x01, b"a".to_vec()), (0x00, b"b".to_vec())]);
        let err = framing(&options)
            .decode(&mut BytesMut::from(&three[..]))
            .expect_err("a third frame is refused");
        assert!(err.to_string().contains("more frames"), "{err}");

        let mut options = SocketOptions::default();
        options.max_message_size(Some(100));
        let big = wire(&[(0x01, vec![0; 60]), (0x00, vec![0; 60])]);
        let err = framing(&options)
            .decode(&mut BytesMut::from(&big[..]))
            .expect_err("120 bytes over a 100-byte limit");
        assert!(err.to_string().contains("maximum message size"), "{err}");
    }

    #[test]
    pub fn test_message_decode_1() {
        let data = "01093c4944537c4d53473e01403239386166316563653932306635373637656132393438376261363164643436613534636334313262653032303339316139653831636535633234383039653001cb7b226d73675f6964223a2236356336396230312d636634622d343563322d616165612d323263306365326531316533222c2273657373696f6e223a2230326462356631642d386535632d346464612d383064342d303337363835343465616138222c22757365726e616d65223a223c544f444f3e222c2264617465223a22323032312d31322d32395430343a35393a33392e3539333533372b30303a3030222c226d73675f74797065223a22657865637574655f7265706c79222c2276657273696f6e223a22352e33227d01c07b226d73675f6964223a223965303336313036373262393433393961343432316539373330333330326162222c2273657373696f6e223a226231323139393364663235613432643839376135653163383362306337616665222c22757365726e616d65223a22757365726e616d65222c2264617465223a22313937302d30312d30315430303a30303a30302b30303a3030222c226d73675f74797065223a22657865637574655f72657175657374222c2276657273696f6e223a22352e32227d01027b7d00467b22737461747573223a226f6b222c22657865637574696f6e5f636f756e74223a312c227061796c6f6164223a5b5d2c22757365725f65787072657373696f6e73223a7b7d7d";
        let hex_data = hex::decode(data).unwrap();
        let mut bytes = BytesMut::from(hex_data.as_slice());
        let mut codec = ZmqCodec::new();
        codec.waiting_for = 1;
        codec.state = DecoderState::FrameHeader;

        let message = codec
            .decode(&mut bytes)
            .expect("decode success")
            .expect("single message");

        eprintln!("{:?}", message);
        match message {
            Message::Message(m) => {
                assert_eq!(6, m.into_vecdeque().len());
            }
            _ => panic!("wrong message type"),
        }
        assert_eq!(bytes.len(), 0);
    }

    #[test]
    pub fn test_message_decode_2() {
        let data = "01093c4944537c4d53473e01406139346435366530343438353335303831316561623063663730623464356366373933653431653838616330666339646263346562326238616136643635306601cb7b226d73675f6964223a2263383466623933372d333162662d346335622d386430392d386535633230633434333636222c2273657373696f6e223a2230326462356631642d386535632d346464612d383064342d303337363835343465616138222c22757365726e616d65223a223c544f444f3e222c2264617465223a22323032312d31322d32395430343a35393a34332e3037343831332b30303a3030222c226d73675f74797065223a22657865637574655f7265706c79222c2276657273696f6e223a22352e33227d01c07b226d73675f6964223a223238646635316334303933313433643339393131346664333439643530396634222c2273657373696f6e223a226231323139393364663235613432643839376135653163383362306337616665222c22757365726e616d65223a22757365726e616d65222c2264617465223a22313937302d30312d30315430303a30303a30302b30303a3030222c226d73675f74797065223a22657865637574655f72657175657374222c2276657273696f6e223a22352e32227d01027b7d00467b22737461747573223a226f6b222c22657865637574696f6e5f636f756e74223a322c227061796c6f6164223a5b5d2c22757365725f65787072657373696f6e73223a7b7d7d";
        let hex_data = hex::decode(data).unwrap();
        let mut bytes = BytesMut::from(hex_data.as_slice());
        let mut codec = ZmqCodec::new();
        codec.waiting_for = 1;
        codec.state = DecoderState::FrameHeader;

        let message = codec
            .decode(&mut bytes)
            .expect("decode success")
            .expect("single message");
        eprintln!("{:?}", message);
        assert_eq!(bytes.len(), 0);
        match message {
            Message::Message(m) => {
                assert_eq!(6, m.into_vecdeque().len());
            }
            _ => panic!("wrong message type"),
        }
    }
}
