//! The client: a DEALER proxy that multiplexes any number of concurrent
//! calls, heartbeats them, and survives server restarts.
//!
//! All call state sits behind one lock (`core.rs`). A caller encodes its
//! request, registers the call and hands the request to the link itself (no
//! hop through another task: on loopback that hop was a large share of a
//! call), then waits for its first event (`driver.rs` explains who reads the
//! sockets meanwhile). A call that times out, or whose caller dropped the
//! future (noticed on the next tick), is forgotten, which stops its
//! heartbeats: that is how zerorpc cancels a call.
//!
//! Each server is its own link, and every event of a call goes through the
//! link that carried its request, so heartbeats always reach the server that
//! runs the call even when a client is connected to several servers. A call
//! goes to the healthy server with the fewest calls in flight (`balance`);
//! a call lost with its server fails with `LostRemote` unless its caller
//! allowed a [`Retry`]; servers given by name are found and followed by
//! `discovery`.
//!
//! A streamed reply (the first event is `STREAM`) becomes a [`ReplyStream`].
//! It grants the server credit as the application reads, exactly as
//! zerorpc-python does (nothing until the first item has arrived, then
//! `_zpc_more [100 - reserved]` whenever fewer than 50 are reserved), so at
//! most about 100 items are ever in flight or queued.
//!
//! | file | concept |
//! |---|---|
//! | `mod.rs` | the [`Client`] handle and its calls |
//! | `balance` | the servers, their health and load, and where a call goes |
//! | `builder` | [`ClientBuilder`] |
//! | `call` | what a call sends and how its answer reads |
//! | `core` | the call table: timeouts, heartbeats, routing of events |
//! | `deadlines` | when calls time out, earliest first |
//! | `discovery` | servers found by name: [`Resolver`] and the built-in ones |
//! | `driver` | who reads the sockets: a waiting caller, or the core task |
//! | `relay` | the hand-off of socket wake-ups between them |
//! | `retry` | what a caller may allow to be sent twice: [`Retry`] |
//! | `stream` | [`ReplyStream`] and its credit |

mod balance;
mod builder;
mod call;
mod core;
mod deadlines;
mod discovery;
mod driver;
mod relay;
mod retry;
mod stream;

pub use builder::ClientBuilder;
pub(crate) use call::encode_args;
#[cfg(feature = "dns")]
pub use discovery::DnsResolver;
pub use discovery::{Resolver, SystemResolver, DEFAULT_RESOLVE_EVERY};
pub use retry::Retry;
pub use stream::ReplyStream;

use self::core::First;
use crate::context;
use crate::error::Error;
use crate::middleware::{self, Outgoing};
use crate::protocol::{self, budget, HeaderExtra, MessageId};
use crate::telemetry::{CallMetrics, CallOutcome};
use bytes::Bytes;
use call::{decode_serde, decode_value, request_dynamic, request_serde, single_value, Decode};
use driver::{FirstEvent, Shared};
use relay::Slot;
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Default call timeout, as in zerorpc.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-call options.
///
/// ```
/// use std::time::Duration;
/// use zerorpc::CallOptions;
/// let opts = CallOptions::timeout(Duration::from_secs(2)).header("tenant", "acme");
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Overrides the client's timeout for this call (`Some(None)` = forever).
    pub timeout: Option<Option<Duration>>,
    /// Header keys sent with this call, after (and over) the client's own
    /// ([`ClientBuilder::header`]).
    pub headers: Vec<(String, Value)>,
    /// Send the call again if its server is lost before answering (see
    /// [`Retry`]); overrides [`ClientBuilder::retry`].
    pub retry: Option<Retry>,
}

impl CallOptions {
    /// A call with this timeout.
    pub fn timeout(t: Duration) -> Self {
        CallOptions {
            timeout: Some(Some(t)),
            ..CallOptions::default()
        }
    }

    /// Add a header key to this call (metadata the server's handler reads
    /// with [`Context::header`](crate::Context::header)).
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Allow this call to be sent again, to another server, if its server
    /// is lost before answering: only for a call that is safe to run twice.
    pub fn retry(mut self, policy: Retry) -> Self {
        self.retry = Some(policy);
        self
    }
}

/// One server of a [`Client`], as [`Client::servers`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// Its endpoint (for a discovered server, the address found).
    pub endpoint: String,
    /// Connected now.
    pub connected: bool,
    /// Skipped by new calls: it let a call's heartbeats lapse and has not
    /// answered since, or it left its name's addresses.
    pub skipped: bool,
    /// Calls of this client in flight on it.
    pub in_flight: usize,
    /// Calls it answered.
    pub answered: u64,
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
    retry: Option<Retry>,
    endpoints: Vec<String>,
    /// Header keys of every call.
    headers: Vec<(String, Value)>,
    hooks: builder::Hooks,
    /// The core task (see `driver.rs`).
    task: tokio::task::JoinHandle<()>,
    /// Resolves the names among the endpoints (see `discovery.rs`).
    discovery: Option<tokio::task::JoinHandle<()>>,
    /// The most memory decoding one reply or item may take.
    max_decoded: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(d) = &self.discovery {
            d.abort();
        }
    }
}

/// What a call produced when the caller does not know in advance whether
/// the method streams (the command line, proxies).
pub enum Response {
    /// The method returned one value (`OK`).
    Value(Value),
    /// The method streams (`STREAM` ...).
    Stream(ReplyStream<Value>),
}

/// A call waiting for its first event (counted in `zrpc_client_in_flight`);
/// dropped unfinished, its caller gave up on it (counted as cancelled).
struct Waiting {
    slot: Arc<Slot<self::core::Answer>>,
    in_flight: metrics::Gauge,
    /// `None` when no recorder is installed.
    handles: Option<Arc<CallMetrics>>,
    started: Instant,
    finished: bool,
}

/// The single value of a call's first event, raw.
fn only_value(method: &str, first: First) -> Result<Bytes, Error> {
    if first.is_stream() {
        return Err(Error::Protocol(format!(
            "{method} streams its reply: read it with Client::stream"
        )));
    }
    single_value(method, first)
}

/// A sent call waiting for its first event (a plain future rather than
/// an `async fn`: each call's future is moved a few times, and an async
/// one kept copies of what sending needed).
struct Answer<'a> {
    client: &'a Client,
    method: &'a str,
    sent: Sent,
    first: FirstEvent<'a>,
}

impl std::future::Future for Answer<'_> {
    type Output = Result<(MessageId, First), Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        // (The span is not entered while waiting: nothing of the call runs
        // then; it lives from the request to the answer.)
        let answer = std::task::ready!(std::pin::Pin::new(&mut this.first).poll(cx));
        let sent = &mut this.sent;
        sent.waiting.finished = true;
        let err;
        let result = match &answer {
            Ok(first) if first.name == protocol::ERR => {
                err = Error::Remote(call::parse_err(&first.args));
                Err(&err)
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        // (No clock reading when nobody wants the duration.)
        let hooks = &this.client.inner.hooks.0;
        let timed = sent.waiting.handles.is_some() || !sent.span.is_disabled() || !hooks.is_empty();
        let elapsed = if timed {
            sent.started.elapsed()
        } else {
            Duration::ZERO
        };
        let metrics = sent.waiting.handles.as_deref();
        this.client
            .ended(this.method, metrics, &sent.span, elapsed, result);
        std::task::Poll::Ready(answer.map(|first| (sent.id, first)))
    }
}

/// A call that was sent: what waiting for its answer needs.
struct Sent {
    id: MessageId,
    waiting: Waiting,
    span: tracing::Span,
    started: Instant,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
        if let (false, Some(handles)) = (self.finished, &self.handles) {
            handles.ended(CallOutcome::Cancelled, self.started.elapsed());
        }
    }
}

impl Client {
    /// Connect to one endpoint with default settings.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Client, Error> {
        Client::builder().connect(endpoint).start().await
    }

    /// Start configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The endpoints (bound ones resolved; names as given).
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Every server this client knows now (given, bound or discovered),
    /// with its state and load.
    pub fn servers(&self) -> Vec<ServerInfo> {
        self.inner.core.lock().servers.info()
    }

    /// Call `method` with `args` (a tuple such as `(1, 2)`, `()` for none, or
    /// a `Vec`) and decode the result into `R`.
    ///
    /// Like an `async fn`, nothing is sent until the future is first polled.
    // (Not an `async fn` itself: that would wrap `call_with`'s future in one
    // more, 48 bytes larger, moved with every call into whatever holds it.)
    pub fn call<'a, A: Serialize + 'a, R: DeserializeOwned + 'a>(
        &'a self,
        method: &'a str,
        args: A,
    ) -> impl std::future::Future<Output = Result<R, Error>> + 'a {
        self.call_with(method, args, CallOptions::default())
    }

    /// [`Client::call`] with per-call options.
    pub async fn call_with<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
        opts: CallOptions,
    ) -> Result<R, Error> {
        let sent = self.begin(method, |extra| request_serde(method, extra, &args), opts)?;
        let (_, first) = self.answer(method, sent).await?;
        let result = only_value(method, first)?;
        crate::blob::from_msgpack(&result, &result, self.inner.max_decoded)
            .map_err(|e| Error::decode(format!("the result of {method}"), e))
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
        let sent = self.begin(
            method,
            |extra| Ok(request_dynamic(method, extra, args)),
            opts,
        )?;
        let (_, first) = self.answer(method, sent).await?;
        let result = only_value(method, first)?;
        budget::read_value(&result, self.inner.max_decoded)
            .map_err(|e| Error::decode(format!("the result of {method}"), e))
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
        let sent = self.begin(method, |extra| request_serde(method, extra, &args), opts)?;
        let (id, first) = self.answer(method, sent).await?;
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
        let sent = self.begin(
            method,
            |extra| Ok(request_dynamic(method, extra, args)),
            opts,
        )?;
        let (id, first) = self.answer(method, sent).await?;
        if first.is_stream() {
            return self
                .make_stream(method, id, first, decode_value)
                .map(Response::Stream);
        }
        let value = single_value(method, first)?;
        budget::read_value(&value, self.inner.max_decoded)
            .map(Response::Value)
            .map_err(|e| Error::decode(format!("the result of {method}"), e))
    }

    fn make_stream<R>(
        &self,
        method: &str,
        id: MessageId,
        first: First,
        decode: Decode<R>,
    ) -> Result<ReplyStream<R>, Error> {
        let rest = first.rest;
        let first = match &*first.name {
            protocol::STREAM => Some(first.args),
            // An empty stream.
            protocol::STREAM_DONE => None,
            _ => Some(single_value(
                method,
                First {
                    rest: None,
                    ..first
                },
            )?),
        };
        Ok(ReplyStream::new(
            method,
            id,
            first,
            rest,
            self.inner.clone(),
            decode,
        ))
    }

    /// Send a request (`encode` writes it with the header entries the call
    /// carries). Not async, so that what only sending needs (the options,
    /// the encoder) is not kept in every call's future while it waits.
    fn begin(
        &self,
        method: &str,
        encode: impl FnOnce(&HeaderExtra) -> Result<(MessageId, Bytes), Error>,
        opts: CallOptions,
    ) -> Result<Sent, Error> {
        // (The one clock reading of a call's start: its deadline, heartbeat
        // clock and duration all count from it.)
        let started = Instant::now();
        let span = if !crate::telemetry::spans_wanted() {
            tracing::Span::none()
        } else {
            tracing::debug_span!(
                "zrpc.call",
                method = tracing::field::Empty,
                id = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                outcome = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            )
        };
        if !span.is_disabled() {
            span.record("method", method);
        }
        match self.send(method, encode, opts, &span, started) {
            Ok((id, waiting)) => Ok(Sent {
                id,
                waiting,
                span,
                started,
            }),
            Err(e) => {
                self.ended(method, None, &span, started.elapsed(), Err(&e));
                Err(e)
            }
        }
    }

    /// Wait, bounded by the timeout, for a sent call's first event.
    fn answer<'a>(&'a self, method: &'a str, sent: Sent) -> Answer<'a> {
        Answer {
            first: FirstEvent::new(&self.inner.core, sent.id, sent.waiting.slot.clone()),
            client: self,
            method,
            sent,
        }
    }

    /// Everything a call does before it waits: the header it carries (the
    /// client's and the call's keys, the hooks' say, the deadline, the
    /// trace), then the request handed to the core.
    fn send(
        &self,
        method: &str,
        encode: impl FnOnce(&HeaderExtra) -> Result<(MessageId, Bytes), Error>,
        opts: CallOptions,
        span: &tracing::Span,
        at: Instant,
    ) -> Result<(MessageId, Waiting), Error> {
        let inner = &self.inner;
        let mut timeout = opts.timeout.unwrap_or(inner.timeout);
        // Inside a handler: no longer than its caller waits, same trace.
        let mut trace = None;
        if let Some((remaining, parent)) = context::inherited() {
            if let Some(left) = remaining {
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
            trace = parent;
        }
        let mut extra = HeaderExtra::default();
        if !(inner.headers.is_empty() && opts.headers.is_empty() && inner.hooks.0.is_empty()) {
            let mut headers = inner.headers.clone();
            for (k, v) in opts.headers {
                match headers.iter_mut().find(|(key, _)| *key == k) {
                    Some(entry) => entry.1 = v,
                    None => headers.push((k, v)),
                }
            }
            for hook in &inner.hooks.0 {
                hook.before(&mut Outgoing {
                    method,
                    headers: &mut headers,
                    timeout,
                })?;
            }
            if let Some((key, _)) = headers.iter().find(|(k, _)| middleware::reserved(k)) {
                return Err(Error::Config(format!(
                    "header key {key:?} is the protocol's own"
                )));
            }
            // A trace context the caller set itself wins.
            if headers.iter().any(|(k, _)| k == protocol::TRACEPARENT) {
                trace = None;
            }
            middleware::encode_headers(&mut extra, &headers);
        }
        if let Some(t) = timeout {
            let ms = t
                .as_millis()
                .clamp(u128::from(!t.is_zero()), u128::from(u64::MAX));
            extra.set_timeout_ms(ms as u64);
        }
        if let Some(t) = trace {
            if !span.is_disabled() {
                span.record("trace_id", t.trace_id_hex());
            }
            extra.push(protocol::TRACEPARENT, &Value::from(t.to_string()));
        }
        let (id, frame) = encode(&extra)?;
        if !span.is_disabled() {
            span.record("id", String::from_utf8_lossy(id.as_bytes()).as_ref());
        }
        let slot = Slot::new();
        let terms = self::core::Terms {
            timeout,
            retry: opts.retry.or(inner.retry),
        };
        let started = inner
            .core
            .start(id, frame, method, terms, slot.clone(), at)?;
        let waiting = Waiting {
            slot,
            in_flight: started.in_flight,
            handles: started.handles,
            started: at,
            finished: false,
        };
        Ok((id, waiting))
    }

    /// Count a call that ended (for a stream: that got its first event),
    /// close its span, and tell the hooks, last added first.
    fn ended(
        &self,
        method: &str,
        metrics: Option<&CallMetrics>,
        span: &tracing::Span,
        elapsed: Duration,
        result: Result<(), &Error>,
    ) {
        let outcome = CallOutcome::of(&result);
        if let Some(m) = metrics {
            m.ended(outcome, elapsed);
        }
        if !span.is_disabled() {
            span.record("outcome", outcome.as_str());
            span.record("duration_ms", elapsed.as_secs_f64() * 1e3);
        }
        for hook in self.inner.hooks.0.iter().rev() {
            hook.after(method, result, elapsed);
        }
    }

    /// Stop taking calls (new ones fail with [`Error::Closed`]), let the
    /// calls in flight finish for up to `grace`, fail the rest with
    /// [`Error::Closed`], and close the sockets. Fails with
    /// [`Error::Unfinished`] when calls had to be failed. Every clone of this
    /// client is closed; closing a closed client does nothing.
    pub async fn close(&self, grace: Duration) -> Result<(), Error> {
        let shared = &self.inner.core;
        if std::mem::replace(&mut shared.lock().closed, true) {
            return Ok(());
        }
        // Poll the call table: closing is rare, and this keeps the hot path
        // free of an "idle" notification.
        let deadline = tokio::time::Instant::now() + grace;
        while !shared.lock().calls.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (failed, links, inbound) = {
            let mut core = shared.lock();
            let failed = core.calls.len();
            core.fail_where(|_| true, |_| Error::Closed);
            (failed, core.servers.take_links(), core.inbound.take())
        };
        if let Some(d) = &self.inner.discovery {
            d.abort();
        }
        for link in links {
            link.close(Duration::from_millis(200)).await;
        }
        // Dropping the sockets' receive halves closes them.
        drop(inbound);
        self.inner.task.abort();
        match failed {
            0 => Ok(()),
            count => Err(Error::Unfinished {
                count,
                what: "calls failed",
                grace,
            }),
        }
    }
}
