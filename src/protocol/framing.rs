//! How events sit in ZeroMQ messages on DEALER and ROUTER sockets: every
//! message is `[route..., empty delimiter, payload]`, where a DEALER's
//! route is empty and a ROUTER's starts with the peer's identity (then any
//! envelope frames the peer sent). This file is the one place that writes
//! the delimiter, in both directions; PUSH/PULL and PUB/SUB messages are the
//! payload alone.

use bytes::Bytes;
use std::collections::VecDeque;
use zerorpc_zeromq::ZmqMessage;

/// `[route..., empty, payload]`.
pub(crate) fn message(route: &[Bytes], payload: Bytes) -> ZmqMessage {
    let mut frames = Vec::with_capacity(route.len() + 2);
    frames.extend_from_slice(route);
    frames.push(Bytes::new());
    frames.push(payload);
    // Never empty, so this cannot fail.
    ZmqMessage::try_from(frames).unwrap_or_else(|_| ZmqMessage::from(Bytes::new()))
}

/// The route of a message a ROUTER received (`[identity, envelope...,
/// empty?, payload]`): the frames before the delimiter, or before the
/// payload when the peer sent none.
pub(crate) fn route(frames: &VecDeque<Bytes>) -> Vec<Bytes> {
    let n = frames.len();
    let end = if n >= 3 && frames[n - 2].is_empty() {
        n - 2
    } else {
        n.saturating_sub(1)
    };
    frames.range(..end).cloned().collect()
}

/// Reuse a received message's frames for the reply: the route as it came,
/// the delimiter (added if the peer sent none) and `payload` in place of the
/// request's. Saves building a new message per call.
pub(crate) fn reuse(mut frames: VecDeque<Bytes>, payload: Bytes) -> Option<ZmqMessage> {
    let n = frames.len();
    if n >= 2 && (n < 3 || !frames[n - 2].is_empty()) {
        frames.insert(n - 1, Bytes::new());
    }
    *frames.back_mut()? = payload;
    ZmqMessage::try_from(frames).ok()
}

/// The payload of a received message: its last frame (the empty delimiter
/// and any envelope frames before it are tolerated, present or not).
pub(crate) fn payload(msg: &ZmqMessage) -> Option<&Bytes> {
    msg.get(msg.len().checked_sub(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deque(frames: &[&'static [u8]]) -> VecDeque<Bytes> {
        frames.iter().map(|f| Bytes::from_static(f)).collect()
    }

    fn frames(msg: ZmqMessage) -> VecDeque<Bytes> {
        msg.into_vecdeque()
    }

    /// Replies always carry the empty delimiter before the payload, whether
    /// or not the request had one, and keep any envelope frames.
    #[test]
    fn replies_are_delimited_and_keep_the_envelope() {
        for (request, reply) in [
            (&[&b"id"[..], b"req"][..], &[&b"id"[..], b"", b"rep"][..]),
            (&[b"id", b"", b"req"], &[b"id", b"", b"rep"]),
            (&[b"id", b"env", b"req"], &[b"id", b"env", b"", b"rep"]),
            (&[b"id", b"env", b"", b"req"], &[b"id", b"env", b"", b"rep"]),
        ] {
            let rep = Bytes::from_static(b"rep");
            let reused = reuse(deque(request), rep.clone()).unwrap();
            assert_eq!(frames(reused), deque(reply));
            let built = message(&route(&deque(request)), rep);
            assert_eq!(frames(built), deque(reply));
        }
    }

    #[test]
    fn a_dealer_message_is_delimited_too() {
        let msg = message(&[], Bytes::from_static(b"hb"));
        assert_eq!(frames(msg), deque(&[b"", b"hb"]));
    }
}
