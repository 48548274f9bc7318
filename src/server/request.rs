//! Running a request's handler: polled once inline, its arguments decoded
//! in its own task when large, or run in a task of its own (its reply, or
//! its stream under the caller's credit). What is accepted and refused is
//! the core's (`core.rs`).

use super::channel::{ChanKey, Out};
use super::dispatch::Dispatch;
use super::reply::{encode_error, encode_ok};
use crate::context::{self, Context, Lent};
use crate::error::ServiceError;
use crate::logging::hex;
use crate::protocol::{self};
use crate::service::{self, Args, Encoded, ItemStream, Reply};
use crate::telemetry::Outcome;
use crate::transport::PeerRoom;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::AbortHandle;
use tracing::{Instrument, Span};

/// A request after its first poll.
pub(super) enum Polled {
    /// Not finished, or a stream (streams always run in a task).
    Running(BoxFuture<'static, Result<Reply, ServiceError>>),
    /// Answered (or panicked) at once.
    Done(Result<Encoded, ServiceError>),
}

/// Arguments from this size on are decoded by the request's own task, not
/// by the core: decoding a large request would hold up every other one.
pub(super) const DECODE_ON_CORE_MAX: usize = 64 * 1024;

/// The handler's future for a request whose arguments are checked and
/// decoded when it is first polled (in its own task, with its context
/// current), not now. That first poll is long CPU work: on a multi-thread
/// runtime it is run as blocking work, so that the worker's other tasks
/// (the core among them) move to another thread instead of waiting for it.
pub(super) fn deferred(
    dispatch: &Dispatch,
    name: &str,
    args: Args,
) -> BoxFuture<'static, Result<Reply, ServiceError>> {
    let dispatch = dispatch.clone();
    let name = name.to_owned();
    let mut call = Box::pin(async move { dispatch.call(&name, args.checked()?).await });
    let mut first = true;
    Box::pin(std::future::poll_fn(move |cx| {
        if std::mem::take(&mut first) && multi_thread() {
            tokio::task::block_in_place(|| call.as_mut().poll(cx))
        } else {
            call.as_mut().poll(cx)
        }
    }))
}

fn multi_thread() -> bool {
    use tokio::runtime::{Handle, RuntimeFlavor};
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// Start a request and poll it once (inside its span, its context
/// current), catching a panic.
pub(super) fn poll_once(
    dispatch: &Dispatch,
    name: &str,
    args: Args,
    lent: &Lent<'_>,
    span: &Span,
) -> Polled {
    use std::task::Poll;
    let _entered = span.enter();
    let first = std::panic::AssertUnwindSafe(|| {
        lent.scope(|| {
            let mut call = dispatch.call(name, args);
            let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
            let polled = call.as_mut().poll(&mut cx);
            (call, polled)
        })
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

/// A request's span: `zrpc.request` at debug level, so a subscriber that
/// wants it pays for it and nobody else does. Its trace id is the caller's
/// (`traceparent`), so one trace crosses processes.
pub(super) fn request_span(lent: &Lent<'_>) -> Span {
    use tracing::field::Empty;
    if !crate::telemetry::spans_wanted() {
        return Span::none();
    }
    let span = tracing::debug_span!(
        "zrpc.request",
        method = Empty,
        peer = Empty,
        id = Empty,
        trace_id = Empty,
        outcome = Empty,
        duration_ms = Empty,
    );
    // Fields are worked out only for a subscriber that wants the span.
    if !span.is_disabled() {
        let ctx = lent.to_context();
        span.record("method", ctx.method());
        span.record("peer", hex(ctx.peer()));
        span.record("id", context::id_text(ctx.request_id()));
        if let Some(t) = ctx.traceparent() {
            span.record("trace_id", t.trace_id_hex());
        }
    }
    span
}

/// Run a request in its own task (inside its span, its context current);
/// the handle aborts it.
#[allow(clippy::too_many_arguments)]
pub(super) fn spawn(
    call: BoxFuture<'static, Result<Reply, ServiceError>>,
    out: mpsc::Sender<Out>,
    credit: Arc<Semaphore>,
    key: ChanKey,
    legacy: bool,
    room: PeerRoom,
    ctx: Context,
    span: Span,
) -> AbortHandle {
    let rest = ctx.clone().without_deadline();
    let run = ctx.scope(run_request(call, out, credit, key, legacy, room, rest));
    let task = if span.is_disabled() {
        tokio::spawn(run)
    } else {
        tokio::spawn(run.instrument(span))
    };
    task.abort_handle()
}

/// Run one request: run the (panic-guarded) handler, and send its reply
/// (or its stream, one credit per event) through the core.
async fn run_request(
    call: BoxFuture<'static, Result<Reply, ServiceError>>,
    out: mpsc::Sender<Out>,
    credit: Arc<Semaphore>,
    key: ChanKey,
    legacy: bool,
    room: PeerRoom,
    after_first: Context,
) {
    let result = service::guarded(call).await;
    let sender = Sender { out, key: &key };
    match result {
        // The first reply always has the caller's initial credit.
        Ok(Reply::Value(v)) => {
            sender.send(encode_ok(&key.id, v), Some(Outcome::Ok)).await;
        }
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            let err = encode_error(&key.id, legacy, &e);
            sender.send(err, Some(Outcome::Error)).await;
        }
        Ok(Reply::Stream(items)) => {
            stream_items(items, &credit, &key, legacy, &room, sender, after_first).await
        }
    }
}

/// A request task's way to the core.
struct Sender<'a> {
    out: mpsc::Sender<Out>,
    key: &'a ChanKey,
}

impl Sender<'_> {
    /// Hand an event to the core (the last one with the request's
    /// outcome); false once the core is gone.
    async fn send(&self, payload: Bytes, last: Option<Outcome>) -> bool {
        let key = self.key.clone();
        self.out.send(Out { key, payload, last }).await.is_ok()
    }
}

/// How long a stream waits before looking again at a full peer queue
/// (doubling up to [`ROOM_WAIT_MAX`]).
const ROOM_WAIT: Duration = Duration::from_millis(2);
const ROOM_WAIT_MAX: Duration = Duration::from_millis(100);

/// Send a handler's stream, taking one credit per event (STREAM_DONE and
/// ERR included: a zerorpc reader's queue holds exactly what it granted),
/// and producing nothing while the caller's send queue is half full (a
/// caller that grants credit but does not read would otherwise have the
/// producer run at full speed into a queue that drops).
async fn stream_items(
    mut items: ItemStream,
    credit: &Semaphore,
    key: &ChanKey,
    legacy: bool,
    room: &PeerRoom,
    sender: Sender<'_>,
    after_first: Context,
) {
    // The first item under the caller's deadline (the request's context),
    // the rest without it: like the caller's timeout, it covers the first.
    if !stream_one(&mut items, credit, key, legacy, room, &sender).await {
        return;
    }
    after_first
        .scope(async { while stream_one(&mut items, credit, key, legacy, room, &sender).await {} })
        .await
}

/// Send the stream's next event once there is credit and room for it;
/// false when the stream is over (or its channel gone).
async fn stream_one(
    items: &mut ItemStream,
    credit: &Semaphore,
    key: &ChanKey,
    legacy: bool,
    room: &PeerRoom,
    sender: &Sender<'_>,
) -> bool {
    let id = &key.id;
    match credit.acquire().await {
        Ok(permit) => permit.forget(),
        Err(_) => return false,
    }
    let mut wait = ROOM_WAIT;
    while !room.has_room(&key.identity) {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(ROOM_WAIT_MAX);
    }
    let (payload, last) = match service::guarded(items.next().map(Ok)).await {
        Ok(Some(Ok(item))) => (
            protocol::encode_reply(id, protocol::STREAM, &item).into(),
            None,
        ),
        Ok(None) => (
            protocol::encode_reply(id, protocol::STREAM_DONE, &[0xc0]).into(),
            Some(Outcome::Ok),
        ),
        Ok(Some(Err(e))) | Err(e) => (encode_error(id, legacy, &e), Some(Outcome::Error)),
    };
    sender.send(payload, last).await && last.is_none()
}
