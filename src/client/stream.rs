//! A streamed reply as a [`futures::Stream`], granting the server credit
//! as the application reads, exactly as zerorpc-python does: nothing until
//! the first item has arrived, then `_zpc_more [100 - reserved]` whenever
//! fewer than 50 are reserved, so at most about 100 items are ever in flight
//! or queued.

use super::call::{parse_err, Decode};
use super::core::StreamEvent;
use super::Inner;
use crate::error::Error;
use crate::protocol::{self, MessageId};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// How many items a stream reader may have in flight (zerorpc's default
/// `inqueue_size`); credit is topped up when fewer than half remain.
const STREAM_WINDOW: usize = 100;

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
    rx: Option<mpsc::UnboundedReceiver<StreamEvent>>,
    /// Keeps the client's core alive while the stream is read.
    client: Arc<Inner>,
    decode: Decode<T>,
}

impl<T> ReplyStream<T> {
    pub(super) fn new(
        method: &str,
        id: MessageId,
        first: Option<Bytes>,
        rx: Option<mpsc::UnboundedReceiver<StreamEvent>>,
        client: Arc<Inner>,
        decode: Decode<T>,
    ) -> Self {
        ReplyStream {
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

    fn item(&self, raw: &Bytes) -> Result<T, Error> {
        let max = self.client.max_decoded;
        crate::blob::decoding(raw, || (self.decode)(raw, max)).map_err(|source| Error::Decode {
            what: format!("an item of {}", self.method),
            source,
        })
    }
}

impl<T> Unpin for ReplyStream<T> {}

impl<T> Drop for ReplyStream<T> {
    fn drop(&mut self) {
        // Dropped before its end: tell the server to stop producing.
        if self.rx.is_some() {
            self.client.core.abandon(self.id);
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
        let Some(rx) = this.rx.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.asked {
            this.asked = true;
            if this.reserved < STREAM_WINDOW / 2 {
                let n = STREAM_WINDOW - this.reserved;
                this.reserved += n;
                this.client.core.lock().grant(this.id, n);
            }
        }
        let ev = match rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(ev) => ev,
        };
        this.asked = false;
        this.reserved = this.reserved.saturating_sub(1);
        let out = match ev {
            Some(Ok((name, args))) => match &*name {
                protocol::STREAM => return Poll::Ready(Some(this.item(&args))),
                protocol::STREAM_DONE => None,
                protocol::ERR => Some(Err(Error::Remote(parse_err(&args)))),
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
