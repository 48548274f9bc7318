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
//! Each endpoint is its own link, and every event of a call goes through the
//! link that carried its request, so heartbeats always reach the server that
//! runs the call even when a client is connected to several servers.
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
//! | `builder` | [`ClientBuilder`] |
//! | `call` | what a call sends and how its answer reads |
//! | `core` | the call table: deadlines, heartbeats, routing of events |
//! | `driver` | who reads the sockets: a waiting caller, or the core task |
//! | `relay` | the hand-off of socket wake-ups between them |
//! | `stream` | [`ReplyStream`] and its credit |

mod builder;
mod call;
mod core;
mod driver;
mod relay;
mod stream;

pub use builder::ClientBuilder;
pub(crate) use call::encode_args;
pub use stream::ReplyStream;

use self::core::First;
use crate::error::Error;
use crate::protocol::{self, msgpack, MessageId};
use bytes::Bytes;
use call::{decode_serde, decode_value, request_dynamic, request_serde, single_value, Decode};
use driver::{FirstEvent, Shared};
use relay::Slot;
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Default call timeout, as in zerorpc.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The core task (see `driver.rs`).
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
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

impl Client {
    /// Connect to one endpoint with default settings.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Client, Error> {
        Client::builder().connect(endpoint).start().await
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
        let result = self
            .call_raw(method, request_dynamic(method, args), opts)
            .await?;
        msgpack::read_value(&result)
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
        msgpack::read_value(&value)
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
        Ok((id, FirstEvent::new(shared, id, slot).await?))
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
            (failed, std::mem::take(&mut core.links), core.inbound.take())
        };
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
