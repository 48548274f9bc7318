//! The client: a DEALER proxy that multiplexes any number of concurrent
//! calls, heartbeats them, and survives server restarts.
//!
//! All call state sits behind one lock. A caller encodes its request,
//! registers the call and sends it in its own task (no hop through another
//! task: on loopback that hop was a large share of a call), then waits for
//! the reply and decodes it. On a `current_thread` runtime the waiting
//! caller also reads the sockets for every caller if none does yet, taking
//! its own reply directly and routing the others (see `relay.rs`: waking a
//! separate reader task cost about 5% of a sequential call). One core task
//! reads when no caller does (always on a multi-thread runtime, where it
//! reads in parallel with the callers; stream items; a leading caller that
//! stopped being polled) and keeps time: heartbeats, and every call's
//! deadline in one heap with one timer (a timer per call cost about 4% of
//! pipelined throughput). A call that times out, or whose caller dropped the
//! future (noticed on the next tick), is forgotten, which stops its
//! heartbeats: that is how zerorpc cancels a call.
//!
//! Each endpoint is its own link, and every event of a call goes through the
//! link that carried its request, so heartbeats always reach the server that
//! runs the call even when a client is connected to several servers.
//!
//! A streamed reply (the first event is `STREAM`) becomes a [`ReplyStream`].
//! It grants the server credit as the application reads, exactly as
//! zerorpc-python does (nothing until the first item has arrived, then
//! `_zpc_more [100 - reserved]` whenever fewer than 50 are reserved), so at
//! most about 100 items are ever in flight or queued.

use crate::error::{Error, RemoteError};
use crate::event::{self, Event, MessageId};
use crate::heartbeat::Beat;
use crate::relay::{self, Relay, Slot};
use crate::transport::{self, Kind, Limits, Link, LinkEvent, LinkId};
use bytes::Bytes;
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeromq::ZmqMessage;

/// Default call timeout, as in zerorpc.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Configures a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    connects: Vec<String>,
    binds: Vec<String>,
    timeout: Option<Duration>,
    heartbeat: Option<Duration>,
    passive: bool,
    limits: Limits,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            connects: Vec::new(),
            binds: Vec::new(),
            timeout: Some(DEFAULT_TIMEOUT),
            heartbeat: Some(crate::server::DEFAULT_HEARTBEAT),
            passive: false,
            limits: Limits::default(),
        }
    }
}

impl ClientBuilder {
    /// Connect to a server endpoint (repeatable; calls are spread over the
    /// connected servers).
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.connects.push(endpoint.into());
        self
    }

    /// Bind an endpoint for servers to connect to (workers layout).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.binds.push(endpoint.into());
        self
    }

    /// Default timeout of every call (30 s); `None` waits forever.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Heartbeat period (5 s); `None` disables heartbeats and lost-remote
    /// detection (calls are then bounded by their timeout only).
    pub fn heartbeat(mut self, period: Option<Duration>) -> Self {
        self.heartbeat = period.filter(|p| !p.is_zero());
        self
    }

    /// Largest reply accepted, in bytes (default 100 MiB; at least 1 KiB).
    /// A server that
    /// sends more is disconnected (its calls fail with `LostRemote`).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_size = bytes;
        self
    }

    /// Passive heartbeat: only start heartbeating a call once the server
    /// has (what the `zerorpc` command line does by default).
    pub fn passive_heartbeat(mut self, passive: bool) -> Self {
        self.passive = passive;
        self
    }

    /// Start the client. Connecting happens in the background: this returns
    /// at once, and calls made before a server is reachable wait for it
    /// (bounded by their timeout). Binding errors are reported here.
    pub async fn build(self) -> Result<Client, Error> {
        if self.connects.is_empty() && self.binds.is_empty() {
            return Err(Error::Transport(
                "a client needs at least one endpoint to connect or bind".into(),
            ));
        }
        let (links, endpoints, events_rx) =
            transport::open(Kind::Dealer, &self.binds, &self.connects, self.limits).await?;
        let relay = Arc::new(Relay::default());
        let core = Arc::new(Shared {
            core: Mutex::new(Core {
                inbound: Some(events_rx),
                up: vec![false; links.len()],
                links,
                next: 0,
                pending: VecDeque::new(),
                calls: HashMap::default(),
                heartbeat: self.heartbeat,
                passive: self.passive,
                closed: false,
                deadlines: BinaryHeap::new(),
                armed: None,
                unwatched: false,
            }),
            rearm: tokio::sync::Notify::new(),
            socket_waker: Waker::from(relay.clone()),
            relay,
            callers_read: tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::CurrentThread,
        });
        let task = tokio::spawn(Shared::run(core.clone()));
        Ok(Client {
            inner: Arc::new(Inner {
                core,
                timeout: self.timeout,
                endpoints,
                task,
            }),
        })
    }
}

/// Per-call options.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Overrides the client's timeout for this call (`Some(None)` = forever).
    pub timeout: Option<Option<Duration>>,
}

impl CallOptions {
    /// A call with this timeout.
    pub fn timeout(t: Duration) -> Self {
        CallOptions {
            timeout: Some(Some(t)),
        }
    }
}

/// A connection to one or more zerorpc servers. Cheap to clone; all clones
/// share one socket per endpoint. The socket closes when the last clone is
/// dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Shared>,
    timeout: Option<Duration>,
    endpoints: Vec<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The first data event of a call: its name, raw args, and for a stream
/// the queue where the rest of it arrives.
struct First {
    name: Name,
    args: Bytes,
    rest: Option<mpsc::UnboundedReceiver<StreamEvent>>,
}

impl First {
    fn is_stream(&self) -> bool {
        self.rest.is_some() || self.name == event::STREAM_DONE
    }
}

type Answer = Result<First, Error>;

/// A later event of a stream (`STREAM`, `STREAM_DONE` or `ERR`), or why the
/// stream broke.
type StreamEvent = Result<(Name, Bytes), Error>;

/// An event name as decoded: reserved names (all a reply normally carries)
/// borrow their constant.
type Name = std::borrow::Cow<'static, str>;

/// How many items a stream reader may have in flight (zerorpc's default
/// `inqueue_size`); credit is topped up when fewer than half remain.
const STREAM_WINDOW: usize = 100;

/// What a call produced when the caller does not know in advance whether
/// the method streams (the command line, proxies).
pub enum Response {
    /// The method returned one value (`OK`).
    Value(Value),
    /// The method streams (`STREAM` ...).
    Stream(ReplyStream<Value>),
}

impl Client {
    /// Connect to one endpoint with default settings.
    pub async fn connect(endpoint: &str) -> Result<Client, Error> {
        Client::builder().connect(endpoint).build().await
    }

    /// Start configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The endpoints (bound ones resolved).
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Call `method` with `args` (a tuple such as `(1, 2)`, `()` for none, or
    /// a `Vec`) and decode the result into `R`.
    pub async fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
    ) -> Result<R, Error> {
        self.call_with(method, args, CallOptions::default()).await
    }

    /// [`Client::call`] with per-call options.
    pub async fn call_with<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
        opts: CallOptions,
    ) -> Result<R, Error> {
        let request = request_serde(method, &args)?;
        let result = self.call_raw(method, request, opts).await?;
        rmp_serde::from_slice(&result)
            .map_err(|e| Error::Decode(format!("result of {method}: {e}")))
    }

    /// Call with dynamic values; the result keeps its msgpack types.
    pub async fn call_dynamic(&self, method: &str, args: Vec<Value>) -> Result<Value, Error> {
        self.call_dynamic_with(method, args, CallOptions::default())
            .await
    }

    /// [`Client::call_dynamic`] with per-call options.
    pub async fn call_dynamic_with(
        &self,
        method: &str,
        args: Vec<Value>,
        opts: CallOptions,
    ) -> Result<Value, Error> {
        let result = self
            .call_raw(method, request_dynamic(method, args), opts)
            .await?;
        rmpv::decode::read_value_with_max_depth(&mut &result[..], event::MAX_DEPTH + 1)
            .map_err(|e| Error::Decode(format!("result of {method}: {e}")))
    }

    /// Call a streaming method and read its items as they arrive. The call's
    /// timeout covers the first item; later ones are bounded by heartbeats
    /// only (a stream may legitimately be slow). A method that returns a
    /// single value yields it as a one-item stream. Dropping the stream
    /// abandons the call: heartbeats stop and the server stops producing.
    ///
    /// ```no_run
    /// # async fn demo(client: zerorpc::Client) -> Result<(), zerorpc::Error> {
    /// use futures::StreamExt;
    /// let mut items = client.stream::<_, u64>("count", (3,)).await?;
    /// while let Some(item) = items.next().await {
    ///     println!("{}", item?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
    ) -> Result<ReplyStream<R>, Error> {
        self.stream_with(method, args, CallOptions::default()).await
    }

    /// [`Client::stream`] with per-call options.
    pub async fn stream_with<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
        opts: CallOptions,
    ) -> Result<ReplyStream<R>, Error> {
        let request = request_serde(method, &args)?;
        let (id, first) = self.first_event(method, request, opts).await?;
        self.make_stream(method, id, first, decode_serde::<R>)
    }

    /// Call with dynamic values and take whatever comes back: one value, or
    /// a stream of values.
    pub async fn request_dynamic(
        &self,
        method: &str,
        args: Vec<Value>,
        opts: CallOptions,
    ) -> Result<Response, Error> {
        let request = request_dynamic(method, args);
        let (id, first) = self.first_event(method, request, opts).await?;
        if first.is_stream() {
            return self
                .make_stream(method, id, first, decode_value)
                .map(Response::Stream);
        }
        let value = single_value(method, first)?;
        decode_value(&value)
            .map(Response::Value)
            .map_err(|e| Error::Decode(format!("result of {method}: {e}")))
    }

    fn make_stream<R>(
        &self,
        method: &str,
        id: MessageId,
        first: First,
        decode: fn(&[u8]) -> Result<R, String>,
    ) -> Result<ReplyStream<R>, Error> {
        let rest = first.rest;
        let first = match &*first.name {
            event::STREAM => Some(first.args),
            // An empty stream.
            event::STREAM_DONE => None,
            _ => Some(single_value(
                method,
                First {
                    rest: None,
                    ..first
                },
            )?),
        };
        Ok(ReplyStream {
            method: method.to_string(),
            id,
            first,
            reserved: 1,
            asked: false,
            rx: rest,
            client: self.inner.clone(),
            decode,
        })
    }

    /// Send an encoded request; returns the raw result.
    async fn call_raw(
        &self,
        method: &str,
        request: (MessageId, Vec<u8>),
        opts: CallOptions,
    ) -> Result<Bytes, Error> {
        let (_, first) = self.first_event(method, request, opts).await?;
        if first.is_stream() {
            return Err(Error::Protocol(format!(
                "{method} streams its reply: read it with Client::stream"
            )));
        }
        single_value(method, first)
    }

    /// Send a request and wait (bounded by the timeout) for its first event.
    async fn first_event(
        &self,
        method: &str,
        (id, frame): (MessageId, Vec<u8>),
        opts: CallOptions,
    ) -> Result<(MessageId, First), Error> {
        let slot = Slot::new();
        let timeout = opts.timeout.unwrap_or(self.inner.timeout);
        let shared = &self.inner.core;
        shared.start(id, frame, method.to_string(), timeout, slot.clone())?;
        let waiting = FirstEvent {
            shared,
            id,
            slot,
            token: relay::token(),
            led: false,
            done: false,
        };
        Ok((id, waiting.await?))
    }

    /// Fail every pending call with [`Error::Closed`] and close the sockets.
    pub async fn close(&self) {
        let (links, inbound) = {
            let mut core = self.inner.core.lock();
            core.closed = true;
            core.fail_where(|_| true, |_| Error::Closed);
            (std::mem::take(&mut core.links), core.inbound.take())
        };
        for link in links {
            link.close(Duration::from_millis(200)).await;
        }
        // Dropping the sockets' receive halves closes them.
        drop(inbound);
        self.inner.task.abort();
    }
}

/// Encode call arguments as a msgpack array: `()` becomes `[]`, a tuple or
/// sequence is the array itself, and any other value becomes a single
/// argument.
pub(crate) fn encode_args<A: Serialize>(args: &A) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    encode_args_into(&mut out, args)?;
    Ok(out)
}

/// [`encode_args`], appended to `out`.
fn encode_args_into<A: Serialize>(out: &mut Vec<u8>, args: &A) -> Result<(), Error> {
    let start = out.len();
    rmp_serde::encode::write_named(out, args)
        .map_err(|e| Error::Decode(format!("arguments: {e}")))?;
    match out.get(start) {
        Some(0xc0) => out[start] = 0x90,
        Some(0x90..=0x9f | 0xdc | 0xdd) => {}
        _ => out.insert(start, 0x91),
    }
    Ok(())
}

/// A request frame for typed args, encoded in place.
fn request_serde<A: Serialize>(method: &str, args: &A) -> Result<(MessageId, Vec<u8>), Error> {
    let mut result = Ok(());
    let request = event::encode_request_with(method, 64, |out| {
        result = encode_args_into(out, args);
    });
    result.map(|()| request)
}

/// A request frame for dynamic args, encoded in place.
fn request_dynamic(method: &str, args: Vec<Value>) -> (MessageId, Vec<u8>) {
    let args = Value::Array(args);
    let len = crate::service::len_hint(&args);
    event::encode_request_with(method, len, |out| crate::service::write_value(out, &args))
}

/// The value of a one-event reply: `OK [value]`, or the error of `ERR`.
fn single_value(method: &str, first: First) -> Result<Bytes, Error> {
    match &*first.name {
        event::OK => event::first_item(&first.args)
            .ok_or_else(|| Error::Protocol(format!("OK reply to {method} has no value"))),
        event::ERR => Err(Error::Remote(parse_err(&first.args))),
        other => Err(Error::Protocol(format!(
            "unexpected {other} reply to {method}"
        ))),
    }
}

fn decode_serde<R: DeserializeOwned>(raw: &[u8]) -> Result<R, String> {
    rmp_serde::from_slice(raw).map_err(|e| e.to_string())
}

fn decode_value(raw: &[u8]) -> Result<Value, String> {
    rmpv::decode::read_value_with_max_depth(&mut &raw[..], event::MAX_DEPTH + 1)
        .map_err(|e| e.to_string())
}

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
    decode: fn(&[u8]) -> Result<T, String>,
}

impl<T> ReplyStream<T> {
    /// The method this stream answers.
    pub fn method(&self) -> &str {
        &self.method
    }

    fn item(&self, raw: &[u8]) -> Result<T, Error> {
        (self.decode)(raw).map_err(|e| Error::Decode(format!("item of {}: {e}", self.method)))
    }
}

impl<T> Unpin for ReplyStream<T> {}

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
                event::STREAM => return Poll::Ready(Some(this.item(&args))),
                event::STREAM_DONE => None,
                event::ERR => Some(Err(Error::Remote(parse_err(&args)))),
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

/// Read `ERR` args: `[name, message, traceback]` (v2+) or `[repr]` (v1).
fn parse_err(args: &Bytes) -> RemoteError {
    let items: Vec<String> = match rmpv::decode::read_value_with_max_depth(&mut &args[..], 8) {
        Ok(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s.into_str().unwrap_or_default(),
                Value::Nil => String::new(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut it = items.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(name), Some(message), tb) => RemoteError {
            name,
            message,
            traceback: tb.unwrap_or_default(),
        },
        (Some(repr), None, _) => RemoteError {
            name: "RemoteError".into(),
            message: repr,
            traceback: String::new(),
        },
        _ => RemoteError {
            name: "RemoteError".into(),
            message: "malformed ERR reply".into(),
            traceback: String::new(),
        },
    }
}

struct Call {
    /// The request, until a link takes it.
    frame: Option<Vec<u8>>,
    /// Until the first event: when the call times out, and its timeout.
    deadline: Option<(Instant, Duration)>,
    link: Option<LinkId>,
    beat: Beat,
    method: String,
    waiter: Waiter,
    /// Data events the server may still send (one for the first reply).
    credit: usize,
}

/// Who receives a call's events.
enum Waiter {
    /// The caller, waiting for the first event.
    First(Arc<Slot<Answer>>),
    /// A [`ReplyStream`], for the events after the first.
    Stream(mpsc::UnboundedSender<StreamEvent>),
}

impl Waiter {
    fn fail(self, e: Error) {
        match self {
            Waiter::First(slot) => {
                slot.fill(Err(e));
            }
            Waiter::Stream(tx) => {
                let _ = tx.send(Err(e));
            }
        }
    }

    /// The caller gave up (timed out, or dropped the future or stream).
    fn abandoned(&self) -> bool {
        match self {
            Waiter::First(slot) => slot.is_gone(),
            Waiter::Stream(tx) => tx.is_closed(),
        }
    }
}

/// The client's state, shared by its callers and its core task.
struct Shared {
    core: Mutex<Core>,
    /// A call has a deadline earlier than the core's timer.
    rearm: tokio::sync::Notify,
    /// Who reads the sockets (see [`crate::relay`]).
    relay: Arc<Relay>,
    /// The relay as a waker: the only one the sockets are polled with.
    socket_waker: Waker,
    /// Waiting callers read the sockets (on a `current_thread` runtime).
    /// On a multi-thread runtime only the core task reads, in parallel with
    /// the callers: a caller reading for everyone serialised the two, which
    /// cost a third of the 64 KiB throughput there.
    callers_read: bool,
}

/// Most events read in one go before letting other tasks run.
const BATCH: usize = 256;

/// How long a reply may wait for a leading caller that is not polled
/// before the core task reads it (see [`Shared::run`]).
const WATCHDOG: Duration = Duration::from_millis(50);

struct Core {
    /// The sockets' receive side (`None` once closed).
    inbound: Option<transport::Inbound>,
    links: Vec<Link>,
    up: Vec<bool>,
    next: usize,
    /// Calls waiting for a connected link, oldest first.
    pending: VecDeque<MessageId>,
    calls: HashMap<MessageId, Call, BuildHasherDefault<IdHash>>,
    heartbeat: Option<Duration>,
    passive: bool,
    /// [`Client::close`] was called: no new calls.
    closed: bool,
    /// Call deadlines, earliest first. Entries of calls that finished stay
    /// until they expire or the heap is compacted.
    deadlines: BinaryHeap<Reverse<(Instant, MessageId)>>,
    /// When the core task's timer fires (`None`: it is not set).
    armed: Option<Instant>,
    /// The core task's watchdog is off (no call was waiting): the next call
    /// wakes the core task to start it. (Never set on a multi-thread
    /// runtime, where callers do not lead and nothing needs watching.)
    unwatched: bool,
}

impl Shared {
    /// Nothing holding the lock waits or can panic, so a poisoned lock
    /// (impossible in practice) is used as it is.
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a call and send it (or queue it until a server is up).
    fn start(
        &self,
        id: MessageId,
        frame: Vec<u8>,
        method: String,
        timeout: Option<Duration>,
        reply: Arc<Slot<Answer>>,
    ) -> Result<(), Error> {
        if self.lock().start(id, frame, method, timeout, reply)? {
            self.rearm.notify_one();
        }
        Ok(())
    }

    /// Read what the sockets have (up to [`BATCH`] events) and route it.
    /// Returns the answer of call `mine` if it was among them.
    fn pump(&self, mine: Option<MessageId>) -> Option<Answer> {
        self.pump_locked(&mut self.lock(), mine)
    }

    fn pump_locked(&self, core: &mut Core, mine: Option<MessageId>) -> Option<Answer> {
        let mut cx = Context::from_waker(&self.socket_waker);
        let mut answer = None;
        for _ in 0..BATCH {
            let Some(inbound) = core.inbound.as_mut() else {
                return answer;
            };
            match inbound.poll_recv(&mut cx) {
                Poll::Ready(Some(ev)) => {
                    if let Some(a) = core.on_link_event(ev, mine) {
                        answer = Some(a);
                    }
                }
                Poll::Ready(None) => {
                    // Every link is gone: the core task stops.
                    core.inbound = None;
                    self.relay.wake_core();
                    return answer;
                }
                Poll::Pending => return answer,
            }
        }
        // More may be waiting: whoever reads is woken to go on.
        self.socket_waker.wake_by_ref();
        answer
    }

    /// The core task: reads the sockets while no caller does, and keeps
    /// time, until the links are closed (or the last handle is dropped,
    /// which aborts it).
    async fn run(self: Arc<Self>) {
        // Without heartbeats the tick only forgets abandoned calls.
        let period = self.lock().heartbeat.unwrap_or(Duration::from_secs(2));
        let mut tick = tokio::time::interval(period / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Unarmed, the timer waits "forever" (a year).
        let never = || Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let timer = tokio::time::sleep_until(never());
        let rearm = self.rearm.notified();
        // While calls wait, the core task also reads every WATCHDOG: a
        // caller that leads but is no longer polled delays others no longer.
        // (Once idle it stops; the next call restarts it, so a busy client
        // pays one extra wake-up per WATCHDOG at most.)
        let watchdog = tokio::time::sleep(WATCHDOG);
        let mut watching = false;
        tokio::pin!(timer, rearm, watchdog);
        std::future::poll_fn(|cx| {
            self.relay.set_core(cx.waker());
            // Notifications first (each poll re-registers): a call started
            // after this is either seen below or wakes the task again.
            let mut rearmed = false;
            while rearm.as_mut().poll(cx).is_ready() {
                rearm.set(self.rearm.notified());
                rearmed = true;
            }
            if watching && watchdog.as_mut().poll(cx).is_ready() {
                watching = false;
            }
            let (start_watching, armed) = {
                let mut core = self.lock();
                self.pump_locked(&mut core, None);
                if core.inbound.is_none() {
                    return Poll::Ready(());
                }
                // (Only callers that lead need watching.)
                if !watching && self.callers_read {
                    core.unwatched = core.calls.is_empty();
                }
                (
                    !watching && self.callers_read && !core.unwatched,
                    core.armed,
                )
            };
            if start_watching {
                watching = true;
                watchdog.as_mut().reset(Instant::now() + WATCHDOG);
                let _ = watchdog.as_mut().poll(cx);
            }
            if rearmed {
                timer.as_mut().reset(armed.unwrap_or_else(never));
            }
            while tick.poll_tick(cx).is_ready() {
                self.lock().on_tick(period);
            }
            while timer.as_mut().poll(cx).is_ready() {
                let next = self.lock().expire(Instant::now());
                timer.as_mut().reset(next.unwrap_or_else(never));
            }
            Poll::Pending
        })
        .await
    }
}

/// A caller waiting for the first event of its call; it reads the sockets
/// itself while no other caller does (see [`crate::relay`]).
struct FirstEvent<'a> {
    shared: &'a Shared,
    id: MessageId,
    slot: Arc<Slot<Answer>>,
    token: u64,
    /// It has led (it may still be the leader).
    led: bool,
    /// It has its answer (the call is no longer waiting for it).
    done: bool,
}

impl FirstEvent<'_> {
    fn finish(&mut self, answer: Answer) -> Poll<Answer> {
        self.done = true;
        if self.led {
            self.shared.relay.resign(self.token);
        }
        Poll::Ready(answer)
    }
}

impl std::future::Future for FirstEvent<'_> {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = self.get_mut();
        if let Poll::Ready(answer) = this.slot.poll_take(cx) {
            return this.finish(answer);
        }
        if this.shared.callers_read && this.shared.relay.lead(this.token, cx.waker()) {
            this.led = true;
            if let Some(answer) = this.shared.pump(Some(this.id)) {
                return this.finish(answer);
            }
        }
        Poll::Pending
    }
}

impl Drop for FirstEvent<'_> {
    fn drop(&mut self) {
        if !self.done {
            if self.led {
                self.shared.relay.resign(self.token);
            }
            self.slot.leave();
        }
    }
}

impl Core {
    /// Register a call and send it (or queue it until a server is up).
    /// True when the core task's timer must be set earlier.
    fn start(
        &mut self,
        id: MessageId,
        frame: Vec<u8>,
        method: String,
        timeout: Option<Duration>,
        reply: Arc<Slot<Answer>>,
    ) -> Result<bool, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        let now = Instant::now();
        let deadline = timeout.map(|t| (now + t, t));
        let call = Call {
            frame: Some(frame),
            deadline,
            link: None,
            beat: Beat::new(now, !self.passive),
            method,
            waiter: Waiter::First(reply),
            credit: 1,
        };
        self.calls.insert(id, call);
        self.pending.push_back(id);
        self.flush_pending(now);
        let wake = std::mem::take(&mut self.unwatched);
        let Some((at, _)) = deadline else {
            return Ok(wake);
        };
        // Finished calls leave their entries behind: drop them before they
        // outnumber the calls in flight (amortised O(1) per call).
        if self.deadlines.len() >= 2 * self.calls.len() + 64 {
            let calls = &self.calls;
            self.deadlines
                .retain(|Reverse((_, id))| calls.get(id).is_some_and(|c| c.deadline.is_some()));
        }
        self.deadlines.push(Reverse((at, id)));
        let earlier = self.armed.is_none_or(|armed| at < armed);
        if earlier {
            self.armed = Some(at);
        }
        Ok(earlier || wake)
    }

    /// Fail the calls whose deadline passed; returns when to look next.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((at, id))) = self.deadlines.peek().copied() {
            if at > now {
                self.armed = Some(at);
                return self.armed;
            }
            self.deadlines.pop();
            let due = self
                .calls
                .get(&id)
                .and_then(|c| c.deadline)
                .is_some_and(|(at, _)| at <= now);
            if !due {
                continue;
            }
            if let Some(call) = self.calls.remove(&id) {
                let after = call.deadline.map_or(Duration::ZERO, |(_, t)| t);
                call.waiter.fail(Error::Timeout {
                    method: call.method,
                    after,
                });
            }
        }
        self.armed = None;
        None
    }

    /// Handle a link's event; returns the answer of call `mine` if this
    /// was it.
    fn on_link_event(&mut self, ev: LinkEvent, mine: Option<MessageId>) -> Option<Answer> {
        if self.closed {
            return None;
        }
        match ev {
            LinkEvent::Up(l) => {
                self.up[l] = true;
                self.flush_pending(Instant::now());
            }
            LinkEvent::Down(l) => {
                self.up[l] = false;
                let ep = self.links[l].endpoint.clone();
                self.fail_where(
                    |c| c.link == Some(l),
                    |method| Error::LostRemote {
                        method,
                        reason: format!("connection to {ep} closed"),
                    },
                );
            }
            LinkEvent::Message(l, msg) => return self.on_message(l, msg, mine),
            LinkEvent::PeerGone(..) => {}
        }
        None
    }

    fn on_message(
        &mut self,
        _link: LinkId,
        msg: ZmqMessage,
        mine: Option<MessageId>,
    ) -> Option<Answer> {
        let payload = transport::payload(&msg)?;
        let ev = match Event::decode(payload) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "dropped an undecodable reply");
                return None;
            }
        };
        let Some(id) = ev.response_to.and_then(MessageId::from_raw) else {
            tracing::debug!(name = ?ev.name, "unable to route event (no known response_to)");
            return None;
        };
        let name = ev.name.ok()?;
        let heartbeat = name == event::HEARTBEAT;
        if !heartbeat && name != event::MORE {
            return self.on_data(id, event::owned_name(name), ev.args, mine);
        }
        match self.calls.get_mut(&id) {
            Some(call) if heartbeat => call.beat.heard_heartbeat(Instant::now()),
            Some(call) => call.beat.heard(Instant::now()),
            None => tracing::debug!(%name, "unable to route event (call finished)"),
        }
        None
    }

    /// A reply event: hand it to the caller or to its stream; the answer of
    /// call `mine` is returned instead. (A call that ends here needs no
    /// clock read or second lookup: most calls.)
    fn on_data(
        &mut self,
        id: MessageId,
        name: Name,
        args: Bytes,
        mine: Option<MessageId>,
    ) -> Option<Answer> {
        let Some(call) = self.calls.get_mut(&id) else {
            tracing::debug!(%name, "unable to route event (call finished)");
            return None;
        };
        if call.credit == 0 {
            // zerorpc-python kills such a channel too (queue overflow).
            tracing::warn!(method = %call.method, "server sent more than the credit it was granted; stream closed");
            if let Some(call) = self.calls.remove(&id) {
                let e = Error::Protocol(format!(
                    "the server of {} ignored flow control",
                    call.method
                ));
                call.waiter.fail(e);
            }
            return None;
        }
        call.credit -= 1;
        call.deadline = None;
        let streaming = name == event::STREAM;
        if streaming {
            call.beat.heard(Instant::now());
        }
        match &call.waiter {
            Waiter::Stream(tx) => {
                let _ = tx.send(Ok((name, args)));
                if !streaming {
                    self.calls.remove(&id);
                }
            }
            Waiter::First(_) if streaming => {
                let (tx, rx) = mpsc::unbounded_channel();
                if let Waiter::First(slot) = std::mem::replace(&mut call.waiter, Waiter::Stream(tx))
                {
                    let first = First {
                        name,
                        args,
                        rest: Some(rx),
                    };
                    if mine == Some(id) {
                        return Some(Ok(first));
                    }
                    if !slot.fill(Ok(first)) {
                        self.calls.remove(&id);
                    }
                }
            }
            Waiter::First(_) => {
                if let Some(Call {
                    waiter: Waiter::First(slot),
                    ..
                }) = self.calls.remove(&id)
                {
                    let first = First {
                        name,
                        args,
                        rest: None,
                    };
                    if mine == Some(id) {
                        return Some(Ok(first));
                    }
                    slot.fill(Ok(first));
                }
            }
        }
        None
    }

    /// The reader of stream `id` has room for `n` more events.
    fn grant(&mut self, id: MessageId, n: usize) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(link) = call.link else { return };
        call.credit += n;
        let mut args = Vec::with_capacity(10);
        args.push(0x91);
        let _ = rmp::encode::write_uint(&mut args, n as u64);
        let more = event::encode_reply(&raw_id(&id), event::MORE, &args);
        if let Some(link) = self.links.get(link) {
            link.send(ZmqMessage::from(more));
        }
    }

    fn on_tick(&mut self, period: Duration) {
        let now = Instant::now();
        let mut lost = Vec::new();
        let mut abandoned = Vec::new();
        for (id, call) in self.calls.iter_mut() {
            if call.waiter.abandoned() {
                abandoned.push(*id);
                continue;
            }
            let Some(link) = call.link else { continue };
            if self.heartbeat.is_none() {
                continue;
            }
            if call.beat.lost(now, period) {
                lost.push(*id);
            } else if call.beat.due(now, period) {
                let hb = event::encode_reply(&raw_id(id), event::HEARTBEAT, event::HEARTBEAT_ARGS);
                if let Some(link) = self.links.get(link) {
                    link.send(ZmqMessage::from(hb));
                }
            }
        }
        for id in abandoned {
            self.calls.remove(&id);
        }
        self.pending.retain(|id| self.calls.contains_key(id));
        for id in lost {
            if let Some(call) = self.calls.remove(&id) {
                let reason = format!(
                    "no heartbeat for more than {}",
                    crate::error::fmt_secs(2 * period)
                );
                call.waiter.fail(Error::LostRemote {
                    method: call.method,
                    reason,
                });
            }
        }
    }

    /// Hand waiting requests to connected links, round-robin.
    fn flush_pending(&mut self, now: Instant) {
        while let Some(id) = self.pending.front().copied() {
            let Some(link) = self.pick_link() else { return };
            self.pending.pop_front();
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let Some(frame) = call.frame.take() else {
                continue;
            };
            call.link = Some(link);
            // The heartbeat clock starts when the request leaves.
            call.beat = Beat::new(now, !self.passive);
            // [empty delimiter, request], in one allocation.
            let frames = vec![Bytes::new(), Bytes::from(frame)];
            if let Ok(msg) = ZmqMessage::try_from(frames) {
                self.links[link].send(msg);
            }
        }
    }

    fn pick_link(&mut self) -> Option<LinkId> {
        let n = self.links.len();
        for i in 0..n {
            let l = (self.next + i) % n;
            if self.up[l] {
                self.next = l + 1;
                return Some(l);
            }
        }
        None
    }

    /// Fail every call matching `pred` with the error `err(method)`.
    fn fail_where(&mut self, pred: impl Fn(&Call) -> bool, err: impl Fn(String) -> Error) {
        let ids: Vec<MessageId> = self
            .calls
            .iter()
            .filter(|(_, c)| pred(c))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(call) = self.calls.remove(&id) {
                call.waiter.fail(err(call.method));
            }
        }
        self.pending.retain(|id| self.calls.contains_key(id));
    }
}

/// A cheap hash for call ids. The ids are ours (a random per-process base
/// and a counter), so SipHash's resistance to chosen keys buys nothing and
/// costs a few percent of a call.
#[derive(Default)]
struct IdHash(u64);

impl std::hash::Hasher for IdHash {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Our id as it appears raw in `response_to`.
fn raw_id(id: &MessageId) -> [u8; 34] {
    let mut raw = [0u8; 34];
    raw[0] = 0xc4;
    raw[1] = 32;
    raw[2..].copy_from_slice(id.as_bytes());
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_encoding_shapes() {
        assert_eq!(encode_args(&()).unwrap(), vec![0x90]);
        assert_eq!(encode_args(&(1, 2)).unwrap(), vec![0x92, 1, 2]);
        assert_eq!(encode_args(&vec![1]).unwrap(), vec![0x91, 1]);
        assert_eq!(encode_args(&"x").unwrap(), vec![0x91, 0xa1, b'x']);
    }

    #[test]
    fn err_parsing() {
        let raw = crate::service::encode_value(&Value::Array(vec![
            "NameError".into(),
            "x".into(),
            "tb".into(),
        ]));
        let e = parse_err(&Bytes::from(raw));
        assert_eq!(
            (e.name.as_str(), e.message.as_str(), e.traceback.as_str()),
            ("NameError", "x", "tb")
        );
        let raw = crate::service::encode_value(&Value::Array(vec!["ValueError('x')".into()]));
        assert_eq!(parse_err(&Bytes::from(raw)).message, "ValueError('x')");
    }
}
