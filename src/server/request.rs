//! A new request: the checks that may reject it with an `ERR`, the inline
//! first poll of its handler, and the task that runs it otherwise (its
//! reply, or its stream under the caller's credit).

use super::channel::{Chan, ChanKey, Out, Run};
use super::core::Core;
use super::pool::Admission;
use super::reply::{encode_error, encode_ok};
use crate::error::{clip, ServiceError, QUOTE_LIMIT};
use crate::logging::hex;
use crate::protocol::heartbeat::Beat;
use crate::protocol::{self, framing, msgpack, DecodeError, Event};
use crate::service::{self, Args, Encoded, ItemStream, Reply, Service};
use crate::transport::{LinkId, PeerRoom};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::AbortHandle;
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
        let bytes = ev.args.len();
        let Some(args) = Args::from_raw(ev.args) else {
            let name = clip(name, QUOTE_LIMIT);
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
        let (call, admitted) = match &mut self.pool {
            None => match poll_once(&self.service, name, args) {
                Polled::Running(call) => (call, Admission::Run),
                Polled::Done(Ok(v)) => return self.reply(key.link, frames, encode_ok(&key.id, v)),
                Polled::Done(Err(e)) => {
                    tracing::debug!(peer = %hex(&key.identity), error = %e, "request failed");
                    let err = encode_error(&key.id, legacy, &e);
                    return self.reply(key.link, frames, err);
                }
            },
            Some(pool) => match pool.admit(&key, bytes) {
                Admission::Busy => {
                    self.busy.warn(|| tracing::warn!(peer = %hex(&key.identity), "pool queue full: refused a request with ServerBusy"));
                    let e = ServiceError::new(
                        "ServerBusy",
                        "too many requests waiting; try again later",
                    );
                    return self.reject(&key, frames, legacy, e);
                }
                admitted => (self.service.dispatch(name, args), admitted),
            },
        };
        let credit = Arc::new(Semaphore::new(1));
        let run = match admitted {
            Admission::Wait => Run::Waiting(call),
            _ => Run::Running(spawn(
                call,
                self.out_tx.clone(),
                credit.clone(),
                key.clone(),
                legacy,
                self.links[key.link].room(),
            )),
        };
        let chan = Chan {
            route: framing::route(&frames),
            run,
            // v1 callers are heartbeated and judged lost like v3 ones: a
            // passive channel was never judged lost, so abandoned v1 calls
            // ran forever.
            beat: Beat::new(Instant::now(), true),
            credit,
            legacy,
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

/// Run a request in its own task; the handle aborts it.
pub(super) fn spawn(
    call: BoxFuture<'static, Result<Reply, ServiceError>>,
    out: mpsc::Sender<Out>,
    credit: Arc<Semaphore>,
    key: ChanKey,
    legacy: bool,
    room: PeerRoom,
) -> AbortHandle {
    let task = tokio::spawn(run_request(call, out, credit, key, legacy, room));
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
) {
    let result = service::guarded(call).await;
    let sender = Sender { out, key: &key };
    match result {
        // The first reply always has the caller's initial credit.
        Ok(Reply::Value(v)) => {
            sender.send(encode_ok(&key.id, v), true).await;
        }
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            sender.send(encode_error(&key.id, legacy, &e), true).await;
        }
        Ok(Reply::Stream(items)) => stream_items(items, &credit, &key, legacy, &room, sender).await,
    }
}

/// A request task's way to the core.
struct Sender<'a> {
    out: mpsc::Sender<Out>,
    key: &'a ChanKey,
}

impl Sender<'_> {
    /// Hand an event to the core; false once the core is gone.
    async fn send(&self, payload: Bytes, last: bool) -> bool {
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
) {
    let id = &key.id;
    loop {
        match credit.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return,
        }
        let mut wait = ROOM_WAIT;
        while !room.has_room(&key.identity).await {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(ROOM_WAIT_MAX);
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
        if !sender.send(payload, last).await || last {
            return;
        }
    }
}
