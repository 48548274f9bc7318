//! A caller's stream of items, as the handler of a client-stream or
//! bidirectional method reads it ([`Items`]): fed by the server's core,
//! granting the caller credit as the handler reads (PROTOCOL.md §9.1),
//! and failing the request when an item does not decode.

use crate::error::ServiceError;
use crate::protocol::budget;
use bytes::Bytes;
use futures::channel::oneshot;
use futures::Stream;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Items a reader grants before it has seen one (their size is unknown).
const FIRST_WINDOW: usize = 8;

/// The most items a reader has granted and not yet read.
const WINDOW: usize = 100;

/// How many bytes of items a reader aims to have in flight at most: its
/// window is as many of the largest item seen as fit, from 1 to
/// [`WINDOW`].
const WINDOW_BYTES: usize = 8 << 20;

/// What the server's core hands a handler for the items of one call: the
/// queue it fills (no more than the credit granted), and how grants reach
/// the caller.
pub(crate) struct Incoming {
    pub(crate) rx: mpsc::UnboundedReceiver<Bytes>,
    /// Sends `_zpc_more [n]` to the caller (through the core).
    pub(crate) grant: Box<dyn Fn(usize) + Send + Sync>,
    /// Bytes queued in `rx` (the core refuses a caller that gets too far
    /// ahead).
    pub(crate) ahead: Arc<AtomicUsize>,
    pub(crate) max_decoded: usize,
}

/// Where [`Args`](super::Args) keep a call's [`Incoming`] until its
/// handler takes it (shared by clones of the arguments; taken once).
#[derive(Clone, Default)]
pub(crate) struct IncomingSlot(Option<Arc<Mutex<Option<Incoming>>>>);

impl IncomingSlot {
    pub(crate) fn new(incoming: Incoming) -> Self {
        IncomingSlot(Some(Arc::new(Mutex::new(Some(incoming)))))
    }

    pub(crate) fn take(&self) -> Option<Incoming> {
        let slot = self.0.as_ref()?;
        slot.lock().ok()?.take()
    }

    pub(crate) fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

impl std::fmt::Debug for IncomingSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_some() { "items" } else { "no items" })
    }
}

/// How an item is decoded (typed, or dynamic with msgpack types kept).
type Decode<T> = fn(&Bytes, usize) -> Result<T, ServiceError>;

/// The items a caller streams to a client-stream or bidirectional method,
/// in order, as a [`Stream`]. The stream ends when the caller ends it; a
/// caller that fails or abandons its stream cancels the request instead
/// (the handler is dropped), so a handler never mistakes a cut-off stream
/// for a whole one. An item that does not decode as `T` fails the request
/// with a `TypeError` to the caller.
///
/// The caller sends only as many items as the handler has room for: credit
/// is granted as items are read, so a handler that reads slowly slows the
/// caller down instead of queueing its items.
pub struct Items<T> {
    incoming: Option<Incoming>,
    /// Items the caller may still send (granted, not yet arrived).
    reserved: usize,
    /// The largest item seen, in bytes (it sizes the window).
    largest: usize,
    decode: Decode<T>,
    /// Told the first item that does not decode.
    failed: Option<oneshot::Sender<ServiceError>>,
    /// How many items were read (names the bad one).
    read: u64,
}

impl<T> Unpin for Items<T> {}

impl<T> Items<T> {
    fn new(incoming: Option<Incoming>, decode: Decode<T>) -> (Self, Failed) {
        let (tx, rx) = oneshot::channel();
        let items = Items {
            incoming,
            reserved: 0,
            largest: 0,
            decode,
            failed: Some(tx),
            read: 0,
        };
        (items, Failed(Some(rx)))
    }

    fn window(&self) -> usize {
        match self.largest {
            0 => FIRST_WINDOW,
            n => (WINDOW_BYTES / n).clamp(1, WINDOW),
        }
    }
}

impl<T: serde::de::DeserializeOwned> Items<T> {
    /// The items of the call whose arguments these are (none when the call
    /// streams nothing: an in-process call of the handler, say), and what
    /// fails the request when one does not decode.
    pub(crate) fn typed(args: &super::Args) -> (Self, Failed) {
        Items::new(args.take_incoming(), |raw, max| {
            crate::blob::from_msgpack(raw, raw, max).map_err(|e| match e {
                budget::TypedError::Exceeded(e) => {
                    ServiceError::new("MemoryError", format!("a streamed item: {e}"))
                }
                e => ServiceError::type_error(format!(
                    "a streamed item is not a {}: {e}",
                    std::any::type_name::<T>()
                )),
            })
        })
    }
}

impl Items<rmpv::Value> {
    /// [`Items::typed`] for dynamic values, msgpack types kept.
    pub(crate) fn dynamic(args: &super::Args) -> (Self, Failed) {
        Items::new(args.take_incoming(), |raw, max| {
            budget::read_value(raw, max).map_err(|e| match e {
                budget::ValueError::Exceeded(e) => {
                    ServiceError::new("MemoryError", format!("a streamed item: {e}"))
                }
                e => ServiceError::type_error(format!("a streamed item does not decode: {e}")),
            })
        })
    }
}

impl<T> Stream for Items<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        if this.failed.is_none() {
            // (The request is being failed; nothing more is read.)
            return Poll::Pending;
        }
        let window = this.window();
        let Some(incoming) = this.incoming.as_mut() else {
            return Poll::Ready(None);
        };
        if this.reserved * 2 < window {
            let n = window - this.reserved;
            this.reserved += n;
            (incoming.grant)(n);
        }
        let raw = match incoming.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                this.incoming = None;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(raw)) => raw,
        };
        incoming.ahead.fetch_sub(raw.len(), Ordering::AcqRel);
        this.reserved = this.reserved.saturating_sub(1);
        this.largest = this.largest.max(raw.len());
        this.read += 1;
        match (this.decode)(&raw, incoming.max_decoded) {
            Ok(item) => Poll::Ready(Some(item)),
            Err(e) => {
                let e = ServiceError::new(e.name, format!("item {}: {}", this.read, e.message));
                if let Some(tx) = this.failed.take() {
                    let _ = tx.send(e);
                }
                this.incoming = None;
                Poll::Pending
            }
        }
    }
}

/// Resolves with the error of the first item that did not decode; never,
/// if none fails.
#[doc(hidden)]
pub struct Failed(Option<oneshot::Receiver<ServiceError>>);

impl Failed {
    fn poll_failed(&mut self, cx: &mut Context<'_>) -> Poll<ServiceError> {
        let Some(rx) = self.0.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(e)) => Poll::Ready(e),
            Poll::Ready(Err(_)) => {
                // The items were dropped without failing.
                self.0 = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// `fut`'s result, unless an item fails first.
    pub(crate) async fn guard<R>(
        mut self,
        fut: impl std::future::Future<Output = Result<R, ServiceError>>,
    ) -> Result<R, ServiceError> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(e) = self.poll_failed(cx) {
                return Poll::Ready(Err(e));
            }
            fut.as_mut().poll(cx)
        })
        .await
    }

    /// `items`, ended by the error of an input item that fails.
    pub(crate) fn guard_stream<S, R>(
        self,
        items: S,
    ) -> impl Stream<Item = Result<R, ServiceError>> + Send + 'static
    where
        S: Stream<Item = Result<R, ServiceError>> + Send + 'static,
    {
        let mut failed = Some(self);
        let mut items = Some(Box::pin(items));
        futures::stream::poll_fn(move |cx| {
            if let Some(f) = failed.as_mut() {
                if let Poll::Ready(e) = f.poll_failed(cx) {
                    failed = None;
                    items = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match items.as_mut() {
                Some(items) => items.as_mut().poll_next(cx),
                None => Poll::Ready(None),
            }
        })
    }
}
