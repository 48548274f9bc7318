//! A call whose caller streams items to the server (client-stream and
//! bidirectional calls, zrpc's extension: PROTOCOL.md §9.1): the request
//! that names the method in its arguments, and the task that sends the
//! caller's items as `STREAM` events, one per credit the server granted
//! (`_zpc_more`), then `STREAM_DONE`; or `ERR` when an item fails.

use super::call::encode_args;
use super::Inner;
use crate::error::{Error, ServiceError};
use crate::protocol::{self, buffers, msgpack, HeaderExtra, MessageId};
use bytes::Bytes;
use futures::channel::oneshot;
use futures::{Stream, StreamExt};
use rmpv::Value;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Never hold more credit than this per call, whatever a server grants.
const MAX_CREDIT: usize = 1000;

/// A stream call's items on their way: the server's credit, shared by the
/// call table (which adds what the server grants) and the task sending
/// the items (which takes one per item).
pub(super) struct Upload {
    credit: Semaphore,
    /// An item left: the call can no longer be sent to another server.
    sent: AtomicBool,
    /// Dropped when the call ends.
    ended: Mutex<Option<oneshot::Sender<()>>>,
}

/// Resolves when a stream call has ended (the task sending its items
/// stops, even while the caller's stream has nothing to give).
pub(super) struct Ended(oneshot::Receiver<()>);

impl Upload {
    pub(super) fn new() -> (Arc<Upload>, Ended) {
        let (tx, rx) = oneshot::channel();
        let upload = Arc::new(Upload {
            credit: Semaphore::new(0),
            sent: AtomicBool::new(false),
            ended: Mutex::new(Some(tx)),
        });
        (upload, Ended(rx))
    }

    /// The server granted `n` more items.
    pub(super) fn grant(&self, n: usize) {
        let room = MAX_CREDIT.saturating_sub(self.credit.available_permits());
        self.credit.add_permits(n.min(room));
    }

    pub(super) fn sent_any(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }
}

/// How long a stream call waits for its server to take it (any event on
/// the call: a zrpc server sends a heartbeat at once) when the client has
/// no heartbeat to judge by; with one, two periods. A zerorpc-node server
/// ignores the request: this bounds the wait, and says why.
pub(super) const TAKEN_WITHIN: Duration = Duration::from_secs(10);

/// Held by the call table while the call is in it: the call's end (its
/// answer, its failure, its caller giving up) stops the sending task.
pub(super) struct UploadHandle {
    pub(super) upload: Arc<Upload>,
    /// Until the server has taken the call: the call's own deadline, put
    /// back then (the table times the call by when it must be taken).
    pub(super) untaken: Option<Option<(Instant, Duration)>>,
}

impl Drop for UploadHandle {
    fn drop(&mut self) {
        self.upload.credit.close();
        if let Ok(mut ended) = self.upload.ended.lock() {
            ended.take();
        }
    }
}

/// A stream call's request: `_zrpc_stream_call [method, param...]`, so that
/// a server without the extension answers `NameError` instead of running
/// the method without its items.
pub(super) fn request<A: Serialize>(
    method: &str,
    extra: &HeaderExtra,
    args: &A,
) -> Result<(MessageId, Bytes), Error> {
    let params = encode_args(args)?;
    Ok(request_raw(method, extra, &params))
}

/// [`request`] for dynamic parameters.
pub(super) fn request_dynamic(
    method: &str,
    extra: &HeaderExtra,
    args: Vec<Value>,
) -> (MessageId, Bytes) {
    request_raw(method, extra, &msgpack::encode_value(&Value::Array(args)))
}

/// `params` (a msgpack array) with `method` in front.
fn request_raw(method: &str, extra: &HeaderExtra, params: &[u8]) -> (MessageId, Bytes) {
    let (n, rest) = split_array(params);
    let id = MessageId::new();
    let frame = buffers::exact(|out| {
        protocol::encode_request_into(out, &id, protocol::STREAM_CALL, Some(extra), |out| {
            let _ = rmp::encode::write_array_len(out, n + 1);
            msgpack::write_str(out, method);
            out.extend_from_slice(rest);
        })
    });
    (id, frame)
}

/// An encoded msgpack array's length and elements.
fn split_array(raw: &[u8]) -> (u32, &[u8]) {
    let mut r = raw;
    match rmp::decode::read_array_len(&mut r) {
        Ok(n) => (n, r),
        Err(_) => (0, &[]),
    }
}

/// An item encoded for the wire, or why the caller's stream failed.
pub(super) type Item = Result<Vec<u8>, ServiceError>;

/// Typed items, encoded as they are sent.
pub(super) fn typed<T: Serialize + Send + 'static>(
    items: impl Stream<Item = T> + Send + 'static,
) -> impl Stream<Item = Item> + Send + 'static {
    items.map(|item| {
        let mut out = Vec::new();
        rmp_serde::encode::write_named(&mut buffers::Writer(&mut out), &item)
            .map(|()| out)
            .map_err(|e| ServiceError::type_error(format!("an item cannot be encoded: {e}")))
    })
}

/// Dynamic items (msgpack types kept); an `Err` fails the stream.
pub(super) fn dynamic(
    items: impl Stream<Item = Result<Value, ServiceError>> + Send + 'static,
) -> impl Stream<Item = Item> + Send + 'static {
    items.map(|item| item.map(|v| msgpack::encode_value(&v)))
}

/// Send the caller's items for call `id`, each once the server has granted
/// credit for it, then `STREAM_DONE`. An item that fails is sent as `ERR`
/// (the server cancels the call) and fails the call here. Stops as soon as
/// the call ends, whatever ended it.
pub(super) async fn send_items(
    client: Arc<Inner>,
    method: String,
    id: MessageId,
    upload: Arc<Upload>,
    ended: Ended,
    items: impl Stream<Item = Item> + Send + 'static,
) {
    let mut items = std::pin::pin!(items);
    let mut ended = ended.0;
    let raw_id = id.to_raw();
    loop {
        // (One item read ahead of the credit: the end of the stream needs
        // none.)
        let item = tokio::select! {
            biased;
            _ = &mut ended => return,
            item = items.next() => item,
        };
        let last = item.is_none();
        let event = match item {
            None => protocol::encode_reply(&raw_id, protocol::STREAM_DONE, &[0xc0]),
            Some(Ok(item)) => {
                match upload.credit.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return,
                }
                upload.sent.store(true, Ordering::Release);
                protocol::encode_reply(&raw_id, protocol::STREAM, &item)
            }
            Some(Err(e)) => {
                let event = protocol::encode_err(&raw_id, &e.name, &e.message, "");
                let mut table = client.reader.lock();
                table.send_on(id, event.into());
                table.fail(
                    id,
                    Error::ItemsFailed {
                        method: method.clone(),
                        error: e,
                    },
                );
                return;
            }
        };
        if !client.reader.lock().send_on(id, event.into()) || last {
            return;
        }
    }
}

/// The answer of a server without the extension: an `ERR` naming the
/// request's own name (Python's `NameError`, node's unknown method).
pub(super) fn refused(method: &str, first: &super::reply::Reply) -> Option<Error> {
    if first.name != protocol::ERR {
        return None;
    }
    let answer = super::reply::parse_err(&first.args);
    answer
        .message
        .contains(protocol::STREAM_CALL)
        .then(|| Error::NoStreams {
            method: method.to_string(),
            answer,
        })
}
