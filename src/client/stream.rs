//! A streamed reply as a [`futures::Stream`], granting the server credit
//! as the application reads, as zerorpc-python does: nothing until the
//! first item has arrived, then `_zpc_more [window - reserved]` whenever
//! fewer than half the window are reserved. The window is 100 items
//! (zerorpc's), fewer when items are large: as many of the largest item
//! seen so far as fit in 16 MiB, and at least one.

use super::reply::{remote_error, Decode, StreamRx};
use super::Inner;
use crate::error::Error;
use crate::protocol::{self, MessageId};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// How many items a stream reader may have in flight (zerorpc's default
/// `inqueue_size`); credit is topped up when fewer than half remain.
const STREAM_WINDOW: usize = 100;

/// How many bytes of items a stream reader aims to have in flight at most.
const STREAM_WINDOW_BYTES: usize = 16 << 20;

/// The items of a streamed reply, as a [`futures::Stream`] of results.
///
/// Ends after the server's `STREAM_DONE`; an `ERR` from the server, a lost
/// server or a closed client is yielded as the last item.
pub struct ReplyStream<T> {
    method: String,
    id: MessageId,
    /// The item that came with the reply, not yet yielded.
    first: Option<Bytes>,
    /// Data events the server may send before it needs more credit.
    reserved: usize,
    /// Credit was already checked for the item being waited for.
    asked: bool,
    /// The largest item seen, in bytes (it sizes the window).
    largest: usize,
    rx: Option<StreamRx>,
    /// Keeps the client's table alive while the stream is read.
    client: Arc<Inner>,
    decode: Decode<T>,
}

impl<T> ReplyStream<T> {
    pub(super) fn new(
        method: &str,
        id: MessageId,
        first: Option<Bytes>,
        rx: Option<StreamRx>,
        client: Arc<Inner>,
        decode: Decode<T>,
    ) -> Self {
        ReplyStream {
            largest: first.as_ref().map_or(0, Bytes::len),
            method: method.to_string(),
            id,
            first,
            // The request's own credit covers the first event.
            reserved: 1,
            asked: false,
            rx,
            client,
            decode,
        }
    }

    /// The method this stream answers.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// How many items may be in flight: fewer when they are large.
    fn window(&self) -> usize {
        (STREAM_WINDOW_BYTES / self.largest.max(1)).clamp(1, STREAM_WINDOW)
    }

    fn item(&self, raw: &Bytes) -> Result<T, Error> {
        let max = self.client.max_decoded;
        crate::blob::decoding(raw, || (self.decode)(raw, max)).map_err(|source| Error::Decode {
            what: format!("an item of {}", self.method),
            source,
        })
    }
}

impl<T> Unpin for ReplyStream<T> {}

impl<T> std::fmt::Debug for ReplyStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyStream")
            .field("method", &self.method)
            .field("open", &self.rx.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> Drop for ReplyStream<T> {
    fn drop(&mut self) {
        // Dropped before its end: tell the server to stop producing.
        if self.rx.is_some() {
            self.client.reader.abandon(self.id);
        }
    }
}

impl<T> futures::Stream for ReplyStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            this.reserved = this.reserved.saturating_sub(1);
            return Poll::Ready(Some(this.item(&first)));
        }
        if this.rx.is_none() {
            return Poll::Ready(None);
        }
        if !this.asked {
            this.asked = true;
            let window = this.window();
            if this.reserved * 2 < window {
                let n = window - this.reserved;
                this.reserved += n;
                this.client.reader.lock().grant(this.id, n);
            }
        }
        let Some(rx) = this.rx.as_mut() else {
            return Poll::Ready(None);
        };
        let ev = match rx.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(ev) => ev,
        };
        this.asked = false;
        this.reserved = this.reserved.saturating_sub(1);
        let out = match ev {
            Some(Ok((name, args))) => match &*name {
                protocol::STREAM => {
                    rx.ahead
                        .fetch_sub(args.len(), std::sync::atomic::Ordering::AcqRel);
                    this.largest = this.largest.max(args.len());
                    return Poll::Ready(Some(this.item(&args)));
                }
                protocol::STREAM_DONE => None,
                protocol::ERR => Some(Err(remote_error(&this.method, &args))),
                other => Some(Err(Error::Protocol(format!(
                    "unexpected {other} in the stream of {}",
                    this.method
                )))),
            },
            Some(Err(e)) => Some(Err(e)),
            None => None,
        };
        this.rx = None;
        Poll::Ready(out)
    }
}
