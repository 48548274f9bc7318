//! What comes back for a call: its first event ([`Reply`], or why there is
//! none), the [`Slot`] where it lands for its caller, the queue of a
//! stream's later events, and how `OK`, `ERR` and items read.

use crate::error::{Error, Source};
use crate::protocol::{self, budget, msgpack};
use bytes::Bytes;
use rmpv::Value;
use serde::de::DeserializeOwned;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::mpsc;

/// The value of a one-event reply: `OK [value]`, or the error of `ERR`.
pub(super) fn single_value(method: &str, first: Reply) -> Result<Bytes, Error> {
    match &*first.name {
        protocol::OK => msgpack::first_item(&first.args)
            .ok_or_else(|| Error::Protocol(format!("OK reply to {method} has no value"))),
        protocol::ERR => Err(remote_error(method, &first.args)),
        other => Err(Error::Protocol(format!(
            "unexpected {other} reply to {method}"
        ))),
    }
}

/// The error an `ERR` reply to `method` carries. A `LostRemote` is the
/// error a direct call would have got: a broker reports so when the worker
/// running the call is lost (a server reports so when a call it made in
/// turn was).
pub(super) fn remote_error(method: &str, args: &[u8]) -> Error {
    let e = parse_err(args);
    if e.name == "LostRemote" {
        return Error::LostRemote {
            method: method.to_string(),
            reason: e.message,
        };
    }
    Error::Remote(e)
}

/// How a reply value becomes the caller's type, within the decoding
/// budget of its second argument (the client's `max_decoded_size`).
pub(super) type Decode<T> = fn(&[u8], usize) -> Result<T, Source>;

/// Into any serde type.
pub(super) fn decode_serde<R: DeserializeOwned>(raw: &[u8], max: usize) -> Result<R, Source> {
    budget::from_slice(raw, max).map_err(|e| Arc::new(e) as Source)
}

/// Into a dynamic value, msgpack types kept.
pub(super) fn decode_value(raw: &[u8], max: usize) -> Result<Value, Source> {
    budget::read_value(raw, max).map_err(|e| Arc::new(e) as Source)
}

pub(super) use crate::error::parse_err;

/// A call's first event: its answer (`OK`, `ERR`), or the first of a stream
/// (`STREAM`, or `STREAM_DONE` for an empty one) with the queue where the
/// rest of it arrives.
pub(super) struct Reply {
    pub(super) name: Name,
    pub(super) args: Bytes,
    pub(super) rest: Option<StreamRx>,
}

impl Reply {
    pub(super) fn is_stream(&self) -> bool {
        self.rest.is_some() || self.name == protocol::STREAM_DONE
    }
}

/// A call's reply, or why there is none.
pub(super) type Answered = Result<Reply, Error>;

/// An event name as decoded: reserved names (all a reply normally carries)
/// borrow their constant.
pub(super) type Name = std::borrow::Cow<'static, str>;

/// Nothing holding a slot's lock waits or can panic, so a poisoned lock
/// (impossible in practice) is used as it is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a caller's answer lands, put there by whoever read it.
pub(super) struct Slot<T>(Mutex<SlotState<T>>);

struct SlotState<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The caller is gone: nobody will take a value.
    gone: bool,
}

impl<T> Slot<T> {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Slot(Mutex::new(SlotState {
            value: None,
            waker: None,
            gone: false,
        })))
    }

    /// Hand the caller its value; false (and the value dropped) when the
    /// caller is gone.
    pub(super) fn fill(&self, value: T) -> bool {
        let mut state = lock(&self.0);
        if state.gone {
            return false;
        }
        state.value = Some(value);
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// The value if it is there; otherwise wake `cx` when it comes.
    pub(super) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = lock(&self.0);
        if let Some(v) = state.value.take() {
            return Poll::Ready(v);
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The caller will take nothing more.
    pub(super) fn leave(&self) {
        let mut state = lock(&self.0);
        state.gone = true;
        state.value = None;
        state.waker = None;
    }

    pub(super) fn is_gone(&self) -> bool {
        lock(&self.0).gone
    }
}

/// A later event of a stream (`STREAM`, `STREAM_DONE` or `ERR`), or why the
/// stream broke.
pub(super) type StreamEvent = Result<(Name, Bytes), Error>;

/// The reading end of a stream's queue: its events, and how many bytes of
/// items wait in it unread (the table adds, the reader subtracts).
pub(super) struct StreamRx {
    pub(super) rx: mpsc::UnboundedReceiver<StreamEvent>,
    pub(super) ahead: Arc<AtomicUsize>,
}

/// The table's end of a stream's queue.
pub(super) struct StreamTx {
    pub(super) tx: mpsc::UnboundedSender<StreamEvent>,
    pub(super) ahead: Arc<AtomicUsize>,
}

/// A stream's queue, from the table to the reader.
pub(super) fn stream_queue() -> (StreamTx, StreamRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let ahead = Arc::new(AtomicUsize::new(0));
    let rx = StreamRx {
        rx,
        ahead: ahead.clone(),
    };
    (StreamTx { tx, ahead }, rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_waker::{counter, woken};

    #[test]
    fn err_parsing() {
        let raw = msgpack::encode_value(&Value::Array(vec![
            "NameError".into(),
            "x".into(),
            "tb".into(),
        ]));
        let e = parse_err(&Bytes::from(raw));
        assert_eq!(
            (e.name.as_str(), e.message.as_str(), e.traceback.as_str()),
            ("NameError", "x", "tb")
        );
        let raw = msgpack::encode_value(&Value::Array(vec!["ValueError('x')".into()]));
        assert_eq!(parse_err(&Bytes::from(raw)).message, "ValueError('x')");
    }

    #[test]
    fn slots_hold_a_value_until_taken_and_refuse_after_the_caller_left() {
        let slot = Slot::new();
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(slot.poll_take(&mut cx).is_pending());
        assert!(slot.fill(7));
        assert_eq!(woken(&count), 1);
        assert_eq!(slot.poll_take(&mut cx), Poll::Ready(7));
        assert!(slot.poll_take(&mut cx).is_pending());
        assert!(!slot.is_gone());
        slot.leave();
        assert!(slot.is_gone());
        assert!(!slot.fill(8));
        assert!(slot.poll_take(&mut cx).is_pending());
        assert_eq!(woken(&count), 1, "nothing was filled");
    }
}
