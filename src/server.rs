//! The server: ROUTER sockets in, one task per request, replies out.
//!
//! One core task owns all channel state. It reads events from every link,
//! starts a tokio task per request, sends heartbeats on one shared tick and
//! cancels the task of any client that goes silent or disconnects. Handler
//! tasks encode their own reply (off the core) and hand it back; the core
//! forwards it only if the channel is still open, so a reply to a client that
//! has gone is simply dropped.
//!
//! Streamed replies follow zerorpc's flow control: each channel has a credit
//! semaphore that starts with one permit (the first reply) and grows by `n`
//! for every `_zpc_more [n]` the caller sends. The request task takes a
//! permit *before* pulling the next item from the handler's stream, so a
//! slow reader pauses the producer instead of filling a queue.

use crate::error::{Error, ServiceError};
use crate::event::{self, Event, Header, MessageId};
use crate::heartbeat::Beat;
use crate::logging::{hex, RateLimit};
use crate::service::{Args, Encoded, ItemStream, Reply, Service};
use crate::transport::{self, Kind, Limits, Link, LinkEvent, LinkId};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use zeromq::ZmqMessage;

/// Default heartbeat period, as in zerorpc.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Configures and starts a [`Server`].
pub struct ServerBuilder {
    service: Service,
    binds: Vec<String>,
    connects: Vec<String>,
    heartbeat: Option<Duration>,
    pool_size: Option<usize>,
    limits: Limits,
}

impl ServerBuilder {
    /// Largest request accepted, in bytes (default 100 MiB, as zerorpc; at
    /// least 1 KiB, so handshakes fit). A
    /// client that sends more is disconnected before anything is allocated
    /// for it; other clients are unaffected.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_size = bytes;
        self
    }

    /// How many replies may wait to be written to one client (default
    /// 10 000). Beyond that the client is not reading: further replies to it
    /// are dropped (its calls time out) with one warning naming it, and
    /// replies to every other client go on unaffected.
    pub fn send_queue(mut self, messages: usize) -> Self {
        self.limits.send_queue = messages.max(1);
        self
    }

    /// Bind a ROUTER endpoint (`tcp://127.0.0.1:4242`, `tcp://*:4242`,
    /// `tcp://127.0.0.1:0` for any free port, `ipc:///tmp/x.sock`).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.binds.push(endpoint.into());
        self
    }

    /// Connect to a bound client (the "workers connect to the client"
    /// layout); reconnects if that client restarts.
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.connects.push(endpoint.into());
        self
    }

    /// Heartbeat period (default 5 s); `None` disables heartbeats and
    /// lost-client detection.
    pub fn heartbeat(mut self, period: Option<Duration>) -> Self {
        self.heartbeat = period.filter(|p| !p.is_zero());
        self
    }

    /// At most `n` requests run at once; the rest wait their turn.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = Some(n.max(1));
        self
    }

    /// Bind and connect everything, then serve in the background.
    pub async fn start(self) -> Result<Server, Error> {
        if self.binds.is_empty() && self.connects.is_empty() {
            return Err(Error::Transport(
                "a server needs at least one --bind or --connect endpoint".into(),
            ));
        }
        let (links, endpoints, events_rx) =
            transport::open(Kind::Router, &self.binds, &self.connects, self.limits).await?;
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let core = Core {
            service: Arc::new(self.service),
            links,
            chans: HashMap::new(),
            heartbeat: self.heartbeat,
            pool: self.pool_size.map(|n| Arc::new(Semaphore::new(n))),
            out_tx,
            warned: RateLimit::default(),
        };
        let task = tokio::spawn(core.run(events_rx, out_rx, ctl_rx));
        Ok(Server {
            endpoints,
            ctl: ctl_tx,
            task: Some(task),
        })
    }
}

/// A running server. Dropping it stops it at once; [`Server::stop`] drains.
pub struct Server {
    endpoints: Vec<String>,
    ctl: mpsc::UnboundedSender<Ctl>,
    task: Option<tokio::task::JoinHandle<()>>,
}

enum Ctl {
    Stop {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
}

impl Server {
    /// Start configuring a server for `service`.
    pub fn builder(service: Service) -> ServerBuilder {
        ServerBuilder {
            service,
            binds: Vec::new(),
            connects: Vec::new(),
            heartbeat: Some(DEFAULT_HEARTBEAT),
            pool_size: None,
            limits: Limits::default(),
        }
    }

    /// The endpoints, bound ones resolved (a `:0` port shows the real port).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Stop taking requests (new ones get `ERR`), let running ones finish
    /// for up to `grace`, cancel the rest, and close every socket.
    pub async fn stop(mut self, grace: Duration) {
        let (done, wait) = oneshot::channel();
        if self.ctl.send(Ctl::Stop { grace, done }).is_ok() {
            let _ = wait.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct ChanKey {
    link: LinkId,
    identity: Bytes,
    id: Bytes,
}

struct Chan {
    /// Frames to put before the payload when replying (identity, envelope,
    /// empty delimiter).
    route: Vec<Bytes>,
    task: AbortHandle,
    beat: Beat,
    /// How many more data events the caller has room for.
    credit: Arc<Semaphore>,
}

/// An event a request task wants sent on its channel.
struct Out {
    key: ChanKey,
    payload: Bytes,
    /// OK, ERR or STREAM_DONE: the channel closes after it.
    last: bool,
}

/// A [`Server::stop`] in progress.
struct Draining {
    /// When the requests still running are cancelled.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Told when the server has stopped.
    done: oneshot::Sender<()>,
}

/// Most events the core handles in one wake-up before letting other tasks
/// run (it then wakes itself to carry on).
const BATCH: usize = 256;

/// Never hold more credit than this per channel, whatever a peer grants
/// (tokio's semaphore has a hard maximum, and no reader needs more).
const MAX_CREDIT: usize = 1 << 20;

struct Core {
    service: Arc<Service>,
    links: Vec<Link>,
    chans: HashMap<ChanKey, Chan>,
    heartbeat: Option<Duration>,
    pool: Option<Arc<Semaphore>>,
    out_tx: mpsc::UnboundedSender<Out>,
    warned: RateLimit,
}

impl Core {
    async fn run(
        mut self,
        mut events: transport::Inbound,
        mut out_rx: mpsc::UnboundedReceiver<Out>,
        mut ctl: mpsc::UnboundedReceiver<Ctl>,
    ) {
        let period = self.heartbeat.unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval(period / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut draining: Option<Draining> = None;
        let mut inbound_open = true;
        // One hand-written poll instead of `select!`: every source is polled
        // once per wake-up, in a fixed order, with the task's own waker (a
        // select loop polls each twice and re-registers wakers in between).
        std::future::poll_fn(|cx| {
            let mut budget = BATCH;
            // Replies of handlers that ran in their own task.
            while let Poll::Ready(Some(out)) = out_rx.poll_recv(cx) {
                self.on_out(out);
            }
            while inbound_open {
                match events.poll_recv(cx) {
                    Poll::Ready(Some(ev)) => self.on_link_event(ev, draining.is_some()),
                    Poll::Ready(None) => inbound_open = false,
                    Poll::Pending => break,
                }
                budget -= 1;
                if budget == 0 {
                    // Let other tasks run; carry on right after them.
                    cx.waker().wake_by_ref();
                    break;
                }
            }
            // (Only while requests run: nothing to beat otherwise.)
            if self.heartbeat.is_some() && !self.chans.is_empty() {
                while tick.poll_tick(cx).is_ready() {
                    self.on_tick(period);
                }
            }
            if draining.is_none() {
                if let Poll::Ready(Some(Ctl::Stop { grace, done })) = ctl.poll_recv(cx) {
                    tracing::info!(
                        in_flight = self.chans.len(),
                        "stopping: draining in-flight requests"
                    );
                    draining = Some(Draining {
                        deadline: Box::pin(tokio::time::sleep(grace)),
                        done,
                    });
                }
            }
            let Some(d) = draining.as_mut() else {
                return Poll::Pending;
            };
            if self.chans.is_empty() {
                return Poll::Ready(());
            }
            if d.deadline.as_mut().poll(cx).is_ready() {
                tracing::warn!(
                    cancelled = self.chans.len(),
                    "stop deadline reached: cancelling requests"
                );
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
        for chan in self.chans.values() {
            chan.task.abort();
        }
        // Let each link flush what is queued (final replies) before closing.
        for link in std::mem::take(&mut self.links) {
            link.close(Duration::from_millis(500)).await;
        }
        if let Some(d) = draining {
            let _ = d.done.send(());
        }
    }

    fn on_link_event(&mut self, ev: LinkEvent, draining: bool) {
        match ev {
            LinkEvent::Message(link, msg) => self.on_message(link, msg, draining),
            LinkEvent::PeerGone(link, identity) => {
                let before = self.chans.len();
                self.chans.retain(|k, c| {
                    let gone = k.link == link && k.identity == identity;
                    if gone {
                        c.task.abort();
                    }
                    !gone
                });
                let n = before - self.chans.len();
                if n > 0 {
                    tracing::info!(peer = %hex(&identity), cancelled = n, "client disconnected; its requests were cancelled");
                }
            }
            // A connected link lost its one peer (the bound client): its
            // requests are orphaned. (A bound link is `Down` whenever it has
            // no peer for a moment; each peer's own `PeerGone` covers that,
            // and must: that `Down` can arrive after a new peer's request.)
            LinkEvent::Down(link) if self.links.get(link).is_some_and(|l| l.connected) => {
                self.chans.retain(|k, c| {
                    if k.link == link {
                        c.task.abort();
                    }
                    k.link != link
                });
            }
            LinkEvent::Up(_) | LinkEvent::Down(_) => {}
        }
    }

    fn on_message(&mut self, link: LinkId, msg: ZmqMessage, draining: bool) {
        let mut frames = msg.into_vecdeque();
        let (identity, payload) = match (frames.front(), frames.back()) {
            (Some(i), Some(p)) if frames.len() >= 2 => (i.clone(), p.clone()),
            _ => return,
        };
        let ev = match Event::decode(&payload) {
            Ok(ev) => ev,
            Err(e) => {
                self.warned.warn(|| tracing::warn!(peer = %hex(&identity), error = %e, "rejected an undecodable message"));
                // Answer it if its request id is readable: the caller learns
                // what was wrong instead of waiting for a timeout.
                if let Some((id, version)) = event::request_id(&payload) {
                    let key = ChanKey { link, identity, id };
                    if !self.chans.contains_key(&key) {
                        let err =
                            ServiceError::new("ProtocolError", format!("malformed request: {e}"));
                        self.reject(&key, frames, version.unwrap_or(1) < 2, err);
                    }
                }
                return;
            }
        };
        if let Some(rt) = ev.response_to.map(|rt| payload.slice_ref(rt)) {
            let key = ChanKey {
                link,
                identity,
                id: rt,
            };
            match self.chans.get_mut(&key) {
                Some(chan) => {
                    let now = Instant::now();
                    match ev.name.as_deref() {
                        Ok(event::HEARTBEAT) => chan.beat.heard_heartbeat(now),
                        Ok(event::MORE) => {
                            chan.beat.heard(now);
                            match more_credit(&ev.args) {
                                Some(n) => {
                                    let room = MAX_CREDIT.saturating_sub(chan.credit.available_permits());
                                    chan.credit.add_permits(n.min(room));
                                }
                                None => self.warned.warn(|| tracing::warn!(peer = %hex(&key.identity), args = event::type_name(&ev.args), "ignored _zpc_more without a positive count")),
                            }
                        }
                        _ => chan.beat.heard(now),
                    }
                }
                None => tracing::debug!(name = ?ev.name, "unable to route event (channel closed)"),
            }
            return;
        }
        let Some(id) = ev.message_id.map(|id| payload.slice_ref(id)) else {
            self.warned.warn(
                || tracing::warn!(peer = %hex(&identity), "dropped a request without message_id"),
            );
            return;
        };
        let key = ChanKey { link, identity, id };
        // (Most requests find no request running: skip hashing then.)
        if !self.chans.is_empty() && self.chans.contains_key(&key) {
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
            return self.reject(
                &key,
                frames,
                legacy,
                ServiceError::new("ServerStopping", "the server is shutting down"),
            );
        }
        let got = event::type_name(&ev.args);
        let Some(args) = Args::from_raw(ev.args) else {
            return self.reject(
                &key,
                frames,
                legacy,
                ServiceError::type_error(format!(
                    "{name}() arguments must be a msgpack array, got {got}"
                )),
            );
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
                    let err = encode_error(&key.id, legacy, &e).into();
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
        let beat = Beat::new(Instant::now(), !legacy);
        self.chans.insert(
            key,
            Chan {
                route: route_of(&mut frames),
                task: task.abort_handle(),
                beat,
                credit,
            },
        );
    }

    /// Forward what a request task produced, if its channel is still open.
    fn on_out(&mut self, out: Out) {
        let chan = if out.last {
            self.chans.remove(&out.key)
        } else {
            None
        };
        let route = match (&chan, self.chans.get(&out.key)) {
            (Some(c), _) | (None, Some(c)) => &c.route,
            (None, None) => return,
        };
        self.send(out.key.link, route, out.payload);
    }

    /// Answer a request (its `frames`) with an error.
    fn reject(&mut self, key: &ChanKey, frames: VecDeque<Bytes>, legacy: bool, e: ServiceError) {
        tracing::debug!(peer = %hex(&key.identity), error = %e, "request rejected");
        self.reply(key.link, frames, encode_error(&key.id, legacy, &e).into());
    }

    /// Answer a request with one event, reusing its frames: the route as it
    /// came (plus an empty delimiter if it had none), `payload` in place of
    /// the request's. Saves building a new message per call.
    fn reply(&self, link: LinkId, mut frames: VecDeque<Bytes>, payload: Bytes) {
        delimit(&mut frames);
        if let Some(last) = frames.back_mut() {
            *last = payload;
        }
        if let (Some(l), Ok(msg)) = (self.links.get(link), ZmqMessage::try_from(frames)) {
            l.send(msg);
        }
    }

    fn on_tick(&mut self, period: Duration) {
        let now = Instant::now();
        let mut lost = Vec::new();
        for (key, chan) in self.chans.iter_mut() {
            if chan.beat.lost(now, period) {
                lost.push(key.clone());
            } else if chan.beat.due(now, period) {
                let hb = event::encode_reply(&key.id, event::HEARTBEAT, event::HEARTBEAT_ARGS);
                if let Some(l) = self.links.get(key.link) {
                    l.send(frames(&chan.route, hb.into()));
                }
            }
        }
        for key in lost {
            if let Some(chan) = self.chans.remove(&key) {
                chan.task.abort();
                tracing::info!(peer = %hex(&key.identity), "lost remote after {}s without heartbeat: request cancelled", 2.0 * period.as_secs_f64());
            }
        }
    }

    fn send(&self, link: LinkId, route: &[Bytes], payload: Bytes) {
        if let Some(l) = self.links.get(link) {
            l.send(frames(route, payload));
        }
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
        Err(panic) => Polled::Done(Err(crate::service::panicked(&*panic))),
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
    let result = crate::service::guarded(call).await;
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
            send(encode_error(&key.id, legacy, &e).into(), true);
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
        let (payload, last) = match crate::service::guarded(items.next().map(Ok)).await {
            Ok(Some(Ok(item))) => (event::encode_reply(id, event::STREAM, &item), false),
            Ok(None) => (event::encode_reply(id, event::STREAM_DONE, &[0xc0]), true),
            Ok(Some(Err(e))) | Err(e) => (encode_error(id, legacy, &e), true),
        };
        if !send(payload.into(), last) || last {
            return;
        }
    }
}

/// The count of a `_zpc_more [n]` event, if it is a positive integer.
fn more_credit(args: &Bytes) -> Option<usize> {
    let n = event::read_int(&event::first_item(args)?)?;
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// The frames to put before a reply's payload: the identity and any
/// envelope, then the empty delimiter (see [`delimit`]).
fn route_of(frames: &mut VecDeque<Bytes>) -> Vec<Bytes> {
    delimit(frames);
    frames
        .range(..frames.len().saturating_sub(1))
        .cloned()
        .collect()
}

/// Make a request's frames `[identity, envelope..., empty, payload]`: a
/// reply carries the empty delimiter even when the request had none.
fn delimit(frames: &mut VecDeque<Bytes>) {
    let n = frames.len();
    if n >= 2 && (n < 3 || !frames[n - 2].is_empty()) {
        frames.insert(n - 1, Bytes::new());
    }
}

fn frames(route: &[Bytes], payload: Bytes) -> ZmqMessage {
    let mut v = Vec::with_capacity(route.len() + 1);
    v.extend_from_slice(route);
    v.push(payload);
    // Never empty, so this cannot fail.
    ZmqMessage::try_from(v).unwrap_or_else(|_| ZmqMessage::from(Bytes::new()))
}

/// `OK [value]`, written around the value (see [`Encoded`]).
fn encode_ok(response_to: &[u8], value: Encoded) -> Bytes {
    let id = MessageId::new();
    let mut header = Vec::with_capacity(80 + response_to.len());
    event::encode_with(
        &mut header,
        Header {
            message_id: &id,
            response_to: Some(response_to),
        },
        event::OK,
        |o| o.push(0x91),
    );
    value.with_header(&header)
}

fn encode_error(response_to: &[u8], legacy: bool, e: &ServiceError) -> Vec<u8> {
    if legacy {
        // v1 peers expect a one-element ERR carrying the exception's repr.
        let id = MessageId::new();
        let mut out = Vec::new();
        event::encode_with(
            &mut out,
            Header {
                message_id: &id,
                response_to: Some(response_to),
            },
            event::ERR,
            |o| {
                o.push(0x91);
                event::write_str(o, &format!("{}({:?})", e.name, e.message));
            },
        );
        return out;
    }
    // Python's RemoteError prints the traceback when there is one, so always
    // send at least the exception line.
    let tb = if e.traceback.is_empty() {
        format!("{}: {}\n", e.name, e.message)
    } else {
        e.traceback.clone()
    };
    event::encode_err(response_to, &e.name, &e.message, &tb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deque(frames: &[&'static [u8]]) -> VecDeque<Bytes> {
        frames.iter().map(|f| Bytes::from_static(f)).collect()
    }

    /// Replies always carry the empty delimiter before the payload, whether
    /// or not the request had one, and keep any envelope frames.
    #[test]
    fn replies_are_delimited_and_keep_the_envelope() {
        for (request, delimited) in [
            (&[&b"id"[..], b"req"][..], &[&b"id"[..], b"", b"req"][..]),
            (&[b"id", b"", b"req"], &[b"id", b"", b"req"]),
            (&[b"id", b"env", b"req"], &[b"id", b"env", b"", b"req"]),
            (&[b"id", b"env", b"", b"req"], &[b"id", b"env", b"", b"req"]),
        ] {
            let mut frames = deque(request);
            delimit(&mut frames);
            assert_eq!(frames, deque(delimited));
            let mut frames = deque(request);
            let route = route_of(&mut frames);
            assert_eq!(
                route,
                delimited[..delimited.len() - 1]
                    .iter()
                    .map(|f| Bytes::from_static(f))
                    .collect::<Vec<_>>()
            );
        }
    }
}
