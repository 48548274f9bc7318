//! A new request: the checks that may reject it with an `ERR`, the inline
//! first poll of its handler, and the task that runs it otherwise (its
//! reply, or its stream under the caller's credit).

use super::channel::{Chan, ChanKey, Out, Run};
use super::core::Core;
use super::dispatch::Dispatch;
use super::pool::Admission;
use super::reply::{encode_error, encode_ok};
use crate::context::{self, Context, Lent};
use crate::error::{clip, ServiceError, QUOTE_LIMIT};
use crate::logging::hex;
use crate::protocol::heartbeat::Beat;
use crate::protocol::{self, framing, msgpack, DecodeError, Event};
use crate::service::{self, Args, Encoded, ItemStream, Reply};
use crate::telemetry::{Outcome, Rejected};
use crate::transport::{LinkId, PeerRoom};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::AbortHandle;
use tracing::{Instrument, Span};

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
    ) {
        let Some(id) = ev.message_id.map(|id| payload.slice_ref(id)) else {
            self.warned.warn(
                || tracing::warn!(peer = %hex(&identity), "dropped a request without message_id"),
            );
            self.metrics.rejected(Rejected::Malformed);
            return;
        };
        let key = ChanKey { link, identity, id };
        if self.chans.contains(&key) {
            self.warned.warn(|| tracing::warn!(peer = %hex(&key.identity), "dropped a request reusing the message_id of a running one"));
            self.metrics.rejected(Rejected::Duplicate);
            return;
        }
        let legacy = ev.version.unwrap_or(1) < 2;
        let name = match ev.name {
            Ok(name) => name,
            Err(why) => {
                self.metrics.rejected(Rejected::Malformed);
                return self.reject(&key, frames, legacy, ServiceError::new("NameError", why));
            }
        };
        // (A stopping server still answers what it reads: see core.rs.)
        self.requests_read = true;
        // When it arrived (this wake-up of the core: one clock reading for
        // the whole batch).
        let now = self.now;
        // The caller's deadline: past it, nobody reads a reply.
        let deadline = match ev.timeout_ms {
            Some(0) => {
                self.metrics.rejected(Rejected::Expired);
                return tracing::debug!(peer = %hex(&key.identity), method = %name, "dropped a request whose deadline had passed");
            }
            Some(ms) => now.checked_add(Duration::from_millis(ms)),
            None => None,
        };
        let bytes = ev.args.len();
        let args = match Args::try_from_raw(ev.args) {
            Ok(args) => args.with_max_decoded(self.max_decoded),
            Err(raw) => return self.not_an_array(&key, frames, legacy, name, &raw),
        };
        let client_key = match self.curve_server {
            true => self.links[key.link].peer_key(&key.identity),
            false => None,
        };
        let lent = Lent {
            payload,
            method: name,
            id: &key.id,
            header: ev.header,
            peer: &key.identity,
            deadline,
            client_key,
        };
        let span = request_span(&lent);
        // Most handlers finish without waiting: poll once here (a panic
        // caught) and reply at once, saving a task and two hops through
        // this core. A handler that is not ready moves to its own task,
        // which polls it again (with a real waker) before anything else.
        // Under a pool limit every request waits for its slot in a task.
        // Introspection (the liveness probe among it) is answered at once,
        // outside any pool: a client pings a server whose calls are
        // overdue, and a busy server must still answer.
        let pool = self
            .pool
            .as_mut()
            .filter(|_| !crate::service::INTROSPECTION.contains(&name));
        let pooled = pool.is_some();
        let (call, ctx, admitted) = match pool {
            None if bytes >= DECODE_ON_CORE_MAX => (
                deferred(&self.dispatch, name, args),
                lent.to_context(),
                Admission::Run,
            ),
            None => match poll_once(&self.dispatch, name, args, &lent, &span) {
                Polled::Running(call) => (call, lent.to_context(), Admission::Run),
                Polled::Done(result) => {
                    let outcome = if result.is_ok() {
                        Outcome::Ok
                    } else {
                        Outcome::Error
                    };
                    // (The one clock reading of an inline request, it began
                    // when this wake-up of the core did; and none when
                    // nobody records it.)
                    let timed = self.metrics.enabled || !span.is_disabled();
                    let elapsed = if timed { now.elapsed() } else { Duration::ZERO };
                    if self.metrics.enabled {
                        self.metrics.method(name).ended(outcome, elapsed);
                    }
                    if !span.is_disabled() {
                        span.record("outcome", outcome.as_str());
                        span.record("duration_ms", elapsed.as_secs_f64() * 1e3);
                    }
                    let reply = match result {
                        Ok(v) => encode_ok(&key.id, v),
                        Err(e) => {
                            tracing::debug!(parent: &span, error = %e, "request failed");
                            encode_error(&key.id, legacy, &e)
                        }
                    };
                    return self.reply(key.link, frames, reply);
                }
            },
            Some(pool) => match pool.admit(&key, bytes) {
                Admission::Busy => {
                    self.busy.warn(|| tracing::warn!(peer = %hex(&key.identity), "pool queue full: refused a request with ServerBusy"));
                    self.metrics.rejected(Rejected::Busy);
                    let e = ServiceError::new(
                        "ServerBusy",
                        "too many requests waiting; try again later",
                    );
                    return self.reject(&key, frames, legacy, e);
                }
                admitted => {
                    let call = match bytes >= DECODE_ON_CORE_MAX {
                        true => deferred(&self.dispatch, name, args),
                        false => lent.scope(|| self.dispatch.call(name, args)),
                    };
                    (call, lent.to_context(), admitted)
                }
            },
        };
        let credit = Arc::new(Semaphore::new(1));
        let run = match admitted {
            Admission::Wait => Run::Waiting(call, ctx),
            _ => Run::Running(spawn(
                call,
                self.out_tx.clone(),
                credit.clone(),
                key.clone(),
                legacy,
                self.links[key.link].room(),
                ctx,
                span.clone(),
            )),
        };
        let deadline = deadline.map(|at| self.add_deadline(at, key.clone()));
        let chan = Chan {
            started: now,
            metrics: self.metrics.method(name).clone(),
            span,
            deadline,
            route: framing::route(&frames),
            run,
            // v1 callers are heartbeated and judged lost like v3 ones: a
            // passive channel was never judged lost, so abandoned v1 calls
            // ran forever.
            beat: Beat::new(now, true),
            credit,
            legacy,
            pooled,
        };
        self.metrics.in_flight.increment(1.0);
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
                self.metrics.rejected(Rejected::Malformed);
                let err = ServiceError::new("ProtocolError", format!("malformed request: {e}"));
                self.reject(&key, frames, version.unwrap_or(1) < 2, err);
            }
        }
    }

    /// Answer a request whose arguments are not an array with Python's
    /// `TypeError`.
    fn not_an_array(
        &mut self,
        key: &ChanKey,
        frames: VecDeque<Bytes>,
        legacy: bool,
        name: &str,
        raw: &[u8],
    ) {
        self.metrics
            .method(name)
            .ended(Outcome::Error, Duration::ZERO);
        let got = msgpack::type_name(raw);
        let name = clip(name, QUOTE_LIMIT);
        let e = ServiceError::type_error(format!(
            "{name}() arguments must be a msgpack array, got {got}"
        ));
        self.reject(key, frames, legacy, e);
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

/// Start a request and poll it once (inside its span, its context
/// current), catching a panic.
/// Arguments from this size on are decoded by the request's own task, not
/// by the core: decoding a large request would hold up every other one.
pub(super) const DECODE_ON_CORE_MAX: usize = 64 * 1024;

/// The handler's future for a request whose arguments are checked and
/// decoded when it is first polled (in its own task, with its context
/// current), not now. That first poll is long CPU work: on a multi-thread
/// runtime it is run as blocking work, so that the worker's other tasks
/// (the core among them) move to another thread instead of waiting for it.
fn deferred(
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

fn poll_once(dispatch: &Dispatch, name: &str, args: Args, lent: &Lent<'_>, span: &Span) -> Polled {
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
fn request_span(lent: &Lent<'_>) -> Span {
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
