//! # zerorpc — brokerless RPC on ZeroMQ and MessagePack
//!
//! A Rust implementation of the [zerorpc](https://github.com/0rpc) protocol
//! (v3), byte-compatible with zerorpc-python and zerorpc-node: a Rust client
//! can call a Python server and a Python client can call a Rust server.
//!
//! ```no_run
//! use zerorpc::{Client, Server, Service, ServiceError};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), zerorpc::Error> {
//! let service = Service::new("calc")
//!     .method("add", |(a, b): (i64, i64)| async move { Ok::<_, ServiceError>(a + b) })
//!     .doc("Add two integers.")
//!     .args(["a", "b"]);
//! let server = Server::builder(service).bind("tcp://127.0.0.1:4242").start().await?;
//!
//! let client = Client::connect("tcp://127.0.0.1:4242").await?;
//! let sum: i64 = client.call("add", (2, 3)).await?;
//! assert_eq!(sum, 5);
//! client.close(Duration::from_secs(1)).await?;
//! server.close(Duration::from_secs(1)).await?;
//! # Ok(()) }
//! ```
//!
//! Every builder ends with `.start().await`, and everything that runs
//! (server, client, pusher, publisher, receiver) stops with
//! `.close(grace).await`.
//!
//! ## Layout
//!
//! A request travels socket → transport → protocol → server → service →
//! handler, and back the same way; each step has its folder.
//!
//! | module | concept |
//! |---|---|
//! | [`protocol`] | the wire: event codec (`event`), message ids, framing of ZeroMQ messages, msgpack primitives, heartbeat rules, recycled large buffers (`buffers`) |
//! | `transport` | the adapter over our ZeroMQ package: links (one socket each, reconnecting), sending (`outbox`), receiving (`inbound`), endpoints |
//! | [`service`](mod@service) | the name → handler table: argument decoding (`args`), handlers and their guards (`handler`), a caller's stream of [`Items`] (`items`), introspection, namespaces and API versions (`version`), [`RpcService`] objects |
//! | [`server`] | ROUTER server: the core task (`core`: every request and channel event), running handlers (`request`), channels, deadlines, the pool, replies |
//! | [`client`] | the client: one call from the caller's side (`call`), the call table (`calls`), where a call goes (`servers`), who reads the sockets (`reader`), [`ReplyStream`], the items a caller streams (`upload`), when calls time out (`deadlines`), servers found by name (`discovery`, [`Resolver`]), what may be sent twice (`retry`, [`Retry`]) |
//! | [`broker`] | [`Broker`]: clients on its frontend, workers on its backend, every event of a call kept on the worker that took it |
//! | [`oneway`] | fire-and-forget events: [`Pusher`] → [`Puller`] (cast), [`Publisher`] → [`Subscriber`] (fanout) |
//! | `blob` | [`Blob`]: binary data shared with the message it came in, not copied out |
//! | `context` | [`Context`]: what a handler knows of its request (method, peer, deadline, header keys, [`TraceParent`]) |
//! | [`middleware`] | tower layers around a server's dispatch, [`CallHook`](middleware::CallHook)s around a client's calls |
//! | `telemetry` | metrics through the `metrics` facade (and no spans without a subscriber) |
//! | [`macro@service`] (`macros/`) | `#[zerorpc::service]`: a trait becomes a service and a typed client (its runtime side: `__private`) |
//! | [`security`] | CurveZMQ: [`Curve`](security::Curve) roles, keys, allow-lists (the handshake itself is in the transport package) |
//! | `names` | method names: tables keyed by them, the short copy a call keeps |
//! | [`error`] | [`Error`] (what callers see) and [`ServiceError`] (what handlers raise) |
//! | `logging` | how faults are logged (rate limits, peer ids) |
//! | `shutdown` | the one shape of `close(grace)` |
//! | [`conformance`] | the conformance kit: checks of a server or of clients against PROTOCOL.md (feature `conformance`) |
//!
//! The transport itself is the `zerorpc-zeromq` package of this workspace
//! (`zeromq/` in the repository; our fork of zmq.rs), imported by its own
//! name, `zerorpc_zeromq`. The wire protocol is specified in `PROTOCOL.md`.
//! The `zrpc` and `zrpc-bench` commands are binaries beside the library
//! (`src/bin/zrpc/`, `src/bin/zrpc-bench/`) that use only its public API.
//!
//! ## Features
//!
//! - `cli` (off by default): the `zrpc` and `zrpc-bench` binaries
//!   (`src/bin/`), with their command-line parser, logging setup and
//!   built-in services. A library user compiles none of that.
//! - `conformance` (off by default; `cli` turns it on): [`conformance`].
//! - `dns` (off by default; `cli` turns it on): [`DnsResolver`], DNS with
//!   SRV records and a chosen name server.
//!
//! ## Logging, tracing, metrics
//!
//! zrpc logs through [`tracing`]; install any subscriber to see it, e.g.
//! `tracing_subscriber::fmt().with_env_filter("zerorpc=info").init()`.
//! Each request has a `zrpc.request` span and each call a `zrpc.call` span
//! (debug level). Metrics go through the `metrics` facade: install a
//! recorder before starting servers and clients (the guide's "context and
//! middleware" chapter lists them).

#![warn(missing_docs)]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod blob;
pub mod broker;
pub mod client;
#[cfg(feature = "conformance")]
pub mod conformance;
mod context;
pub mod error;
mod logging;
pub mod middleware;
mod names;
pub mod oneway;
pub mod protocol;
pub mod security;
pub mod server;
pub mod service;
mod shutdown;
mod telemetry;
mod transport;

pub use blob::Blob;
pub use broker::{Broker, BrokerBuilder};
#[cfg(feature = "dns")]
pub use client::DnsResolver;
pub use client::{
    CallOptions, Client, ClientBuilder, Prepared, ReplyStream, Resolver, Response, Retry,
    ServerInfo, SystemResolver, DEFAULT_RESOLVE_EVERY,
};
pub use context::{Context, TraceParent};
pub use error::{Error, RemoteError, ServiceError};
pub use oneway::{Publisher, Puller, Pusher, Receiver, Subscriber};
pub use server::{Server, ServerBuilder};
pub use service::{
    ArgInfo, Args, Items, MethodInfo, ParseVersionError, RpcService, Service, Version,
};

/// A dynamic msgpack value (what `call_dynamic` and `Service::dynamic`
/// handlers exchange), from the `rmpv` crate.
pub use rmpv::Value;

/// The attribute that [`RpcService`] implementations use.
pub use async_trait::async_trait;

/// Define a service once, as a trait: the macro adds `into_service()` (the
/// handler table, with each method's docs and argument names for
/// introspection) and writes a typed client, `<Trait>Client`.
///
/// ```
/// use futures::StreamExt;
/// use zerorpc::{Client, Context, Server, ServiceError};
///
/// /// A calculator.
/// #[zerorpc::service(name = "calc")] // the service name (default: the trait's)
/// pub trait Calc {
///     /// Add two integers.               <- `_zerorpc_help`, `zrpc -?`
///     async fn add(&self, a: i64, b: i64) -> i64;
///
///     /// Divide; an `Err` is an `ERR` (any `E: Into<ServiceError>`).
///     async fn divide(&self, a: f64, b: f64) -> Result<f64, ServiceError>;
///
///     /// A trailing `Option` may be left out by callers (a Python default).
///     #[zerorpc(name = "sayHello")] // the wire name, if not the Rust one
///     async fn say_hello(&self, name: String, title: Option<String>) -> String;
///
///     /// A stream: a plain `fn` returning `impl Stream<Item = T>`.
///     fn count(&self, n: u64) -> impl Stream<Item = u64>;
///
///     /// CPU-heavy work runs on the blocking pool.
///     #[zerorpc(blocking)]
///     fn fib(&self, n: u32) -> u64;
///
///     /// A `Context` parameter is the request's context, not an argument.
///     async fn deadline_ms(&self, ctx: Context) -> Option<u128>;
/// }
///
/// struct Calculator;
///
/// impl Calc for Calculator {
///     async fn add(&self, a: i64, b: i64) -> i64 {
///         a + b
///     }
///     async fn divide(&self, a: f64, b: f64) -> Result<f64, ServiceError> {
///         if b == 0.0 {
///             return Err(ServiceError::new("ZeroDivisionError", "division by zero"));
///         }
///         Ok(a / b)
///     }
///     async fn say_hello(&self, name: String, title: Option<String>) -> String {
///         format!("Hello, {}{name}!", title.map(|t| t + " ").unwrap_or_default())
///     }
///     fn count(&self, n: u64) -> impl futures::Stream<Item = u64> + Send + 'static {
///         futures::stream::iter(0..n)
///     }
///     fn fib(&self, n: u32) -> u64 {
///         (0..n).fold((0, 1), |(a, b), _| (b, a + b)).0
///     }
///     async fn deadline_ms(&self, ctx: Context) -> Option<u128> {
///         ctx.remaining().map(|d| d.as_millis())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), zerorpc::Error> {
/// // Serve it (dynamic methods may be added to the service too)...
/// let server = Server::builder(Calculator.into_service())
///     .bind("tcp://127.0.0.1:0")
///     .start()
///     .await?;
/// // ...and call it: argument and result types are checked by the compiler.
/// let calc = CalcClient::new(Client::connect(&server.endpoints()[0]).await?);
/// assert_eq!(calc.add(2, 3).await?, 5);
/// assert_eq!(calc.say_hello("Ada".into(), None).await?, "Hello, Ada!");
/// let items: Vec<u64> = calc.count(3).await?.map(|i| i.unwrap()).collect().await;
/// assert_eq!(items, [0, 1, 2]);
/// # Ok(()) }
/// ```
///
/// `namespace = "control"` and `version = "2.0"` (oslo.messaging's
/// target) declare where a server puts the service beside its default one
/// ([`ServerBuilder::service`]: methods answer as `control.stop`) and the
/// version it serves; the typed client then calls `control.*` and requires
/// that version (the guide: `docs/oslo.md`).
///
/// Each method is `&self` first. Arguments arrive positionally, named by
/// their Rust names in introspection; a caller giving too few or too many
/// gets Python's `TypeError` (`add() missing 1 required positional
/// argument: 'b'`). Results are a plain `T: Serialize` or a `Result<T, E>`;
/// argument and result types must be serde types (`Value` for "anything").
/// The trait's async methods must return `Send` futures (the server runs
/// them on any thread); streams must be `Send + 'static`. The client's
/// `with_options` sets per-call options (timeout, header keys).
#[doc(inline)]
pub use zerorpc_macros::service;

/// The README's Rust examples, compiled as doctests so they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The guide's Rust examples (`docs/`), compiled as doctests as well.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../docs/services.md")]
    pub struct Services;
    #[doc = include_str!("../docs/clients.md")]
    pub struct Clients;
    #[doc = include_str!("../docs/streams.md")]
    pub struct Streams;
    #[doc = include_str!("../docs/oneway.md")]
    pub struct Oneway;
    #[doc = include_str!("../docs/context-and-middleware.md")]
    pub struct ContextAndMiddleware;
    #[doc = include_str!("../docs/security.md")]
    pub struct Security;
    #[doc = include_str!("../docs/many-servers.md")]
    pub struct ManyServers;
    #[doc = include_str!("../docs/oslo.md")]
    pub struct Oslo;
}

pub use transport::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SEND_QUEUE,
    DEFAULT_SEND_QUEUE_BYTES,
};
