//! A new request: the checks that may reject it with an `ERR`, the inline
//! first poll of its handler, and the task that runs it otherwise (its
//! reply, or its stream under the caller's credit).

use super::channel::{Chan, ChanKey, Out};
use super::core::Core;
use super::reply::{encode_error, encode_ok};
use crate::error::ServiceError;
use crate::logging::hex;
use crate::protocol::heartbeat::Beat;
use crate::protocol::{self, framing, msgpack, DecodeError, Event};
use crate::service::{self, Args, Encoded, ItemStream, Reply, Service};
use crate::transport::LinkId;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

impl Core {
    /// A request (an event with no `response_to`): rejected with an `ERR`
    /// when it cannot run, answered inline when its handler finishes at
    /// once, and otherwise given a channel and a task.
    pub(super) fn on_request(
        &mut self,
        link: LinkId,
        identity: Bytes,
        frames: VecDeque<Bytes>,
        payload: &Bytes,
        ev: Event<'_>,
        draining: bool,
    ) {
        let Some(id) = ev.message_id.map(|id| payload.slice_ref(id)) else {
            self.warned.warn(
                || tracing::warn!(peer = %hex(&identity), "dropped a request without message_id"),
            );
            return;
        };
        let key = ChanKey { link, identity, id };
        if self.chans.contains(&key) {
            self.warned.warn(|| tracing::warn!(peer = %hex(&key.identity), "dropped a request reusing the message_id of a running one"));
            return;
        }
        let legacy = ev.version.unwrap_or(1) < 2;
        let name = match ev.name {
            Ok(name) => name,
            Err(why) => {
                return self.reject(&key, frames, legacy, ServiceError::new("NameError", why))
            }
        };
        if draining {
            let e = ServiceError::new("ServerStopping", "the server is shutting down");
            return self.reject(&key, frames, legacy, e);
        }
        let got = msgpack::type_name(&ev.args);
        let Some(args) = Args::from_raw(ev.args) else {
            let e = ServiceError::type_error(format!(
                "{name}() arguments must be a msgpack array, got {got}"
            ));
            return self.reject(&key, frames, legacy, e);
        };
        tracing::debug!(method = %name, "request");
        // Most handlers finish without waiting: poll once here (a panic
        // caught) and reply at once, saving a task and two hops through
        // this core. A handler that is not ready moves to its own task,
        // which polls it again (with a real waker) before anything else.
        // Under a pool limit every request waits for its slot in a task.
        let call = if self.pool.is_none() {
            match poll_once(&self.service, name, args) {
                Polled::Running(call) => call,
                Polled::Done(Ok(v)) => return self.reply(key.link, frames, encode_ok(&key.id, v)),
                Polled::Done(Err(e)) => {
                    tracing::debug!(peer = %hex(&key.identity), error = %e, "request failed");
                    let err = encode_error(&key.id, legacy, &e);
                    return self.reply(key.link, frames, err);
                }
            }
        } else {
            self.service.dispatch(name, args)
        };
        let credit = Arc::new(Semaphore::new(1));
        let task = tokio::spawn(run_request(
            call,
            self.pool.clone(),
            self.out_tx.clone(),
            credit.clone(),
            key.clone(),
            legacy,
        ));
        let chan = Chan {
            route: framing::route(&frames),
            task: task.abort_handle(),
            beat: Beat::new(Instant::now(), !legacy),
            credit,
        };
        self.chans.insert(key, chan);
    }

    /// A message that is not a well-formed event: answered with a
    /// `ProtocolError` when its request id can be read, so the caller learns
    /// what was wrong instead of waiting for a timeout.
    pub(super) fn on_undecodable(
        &mut self,
        link: LinkId,
        identity: Bytes,
        frames: VecDeque<Bytes>,
        payload: &Bytes,
        e: DecodeError,
    ) {
        if let Some((id, version)) = protocol::request_id(payload) {
            let key = ChanKey { link, identity, id };
            if !self.chans.contains(&key) {
                let err = ServiceError::new("ProtocolError", format!("malformed request: {e}"));
                self.reject(&key, frames, version.unwrap_or(1) < 2, err);
            }
        }
    }

    /// Answer a request (its `frames`) with an error.
    fn reject(&mut self, key: &ChanKey, frames: VecDeque<Bytes>, legacy: bool, e: ServiceError) {
        tracing::debug!(peer = %hex(&key.identity), error = %e, "request rejected");
        self.reply(key.link, frames, encode_error(&key.id, legacy, &e));
    }
}

/// A request after its first poll.
enum Polled {
    /// Not finished, or a stream (streams always run in a task).
    Running(BoxFuture<'static, Result<Reply, ServiceError>>),
    /// Answered (or panicked) at once.
    Done(Result<Encoded, ServiceError>),
}

/// Start a request and poll it once, catching a panic.
fn poll_once(service: &Service, name: &str, args: Args) -> Polled {
    use std::task::Poll;
    let first = std::panic::AssertUnwindSafe(|| {
        let mut call = service.dispatch(name, args);
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        let polled = call.as_mut().poll(&mut cx);
        (call, polled)
    });
    match std::panic::catch_unwind(first) {
        Ok((call, Poll::Pending)) => Polled::Running(call),
        Ok((_, Poll::Ready(Ok(Reply::Stream(items))))) => {
            Polled::Running(futures::future::ready(Ok(Reply::Stream(items))).boxed())
        }
        Ok((_, Poll::Ready(Ok(Reply::Value(v))))) => Polled::Done(Ok(v)),
        Ok((_, Poll::Ready(Err(e)))) => Polled::Done(Err(e)),
        Err(panic) => Polled::Done(Err(service::panicked(&*panic))),
    }
}

/// Run one request: wait for a pool slot, run the (panic-guarded) handler,
/// and send its reply (or its stream, one credit per event) through the core.
async fn run_request(
    call: BoxFuture<'static, Result<Reply, ServiceError>>,
    pool: Option<Arc<Semaphore>>,
    out: mpsc::UnboundedSender<Out>,
    credit: Arc<Semaphore>,
    key: ChanKey,
    legacy: bool,
) {
    let _permit = match pool {
        Some(p) => p.acquire_owned().await.ok(),
        None => None,
    };
    let result = service::guarded(call).await;
    let send = |payload, last| {
        out.send(Out {
            key: key.clone(),
            payload,
            last,
        })
        .is_ok()
    };
    match result {
        // The first reply always has the caller's initial credit.
        Ok(Reply::Value(v)) => {
            send(encode_ok(&key.id, v), true);
        }
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            send(encode_error(&key.id, legacy, &e), true);
        }
        Ok(Reply::Stream(items)) => stream_items(items, &credit, &key.id, legacy, send).await,
    }
}

/// Send a handler's stream, taking one credit per event (STREAM_DONE and
/// ERR included: a zerorpc reader's queue holds exactly what it granted).
async fn stream_items(
    mut items: ItemStream,
    credit: &Semaphore,
    id: &[u8],
    legacy: bool,
    send: impl Fn(Bytes, bool) -> bool,
) {
    loop {
        match credit.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return,
        }
        let (payload, last) = match service::guarded(items.next().map(Ok)).await {
            Ok(Some(Ok(item))) => (
                protocol::encode_reply(id, protocol::STREAM, &item).into(),
                false,
            ),
            Ok(None) => (
                protocol::encode_reply(id, protocol::STREAM_DONE, &[0xc0]).into(),
                true,
            ),
            Ok(Some(Err(e))) | Err(e) => (encode_error(id, legacy, &e), true),
        };
        if !send(payload, last) || last {
            return;
        }
    }
}
