//! # zerorpc — brokerless RPC on ZeroMQ and MessagePack
//!
//! A Rust implementation of the [zerorpc](https://github.com/0rpc) protocol
//! (v3), byte-compatible with zerorpc-python and zerorpc-node: a Rust client
//! can call a Python server and a Python client can call a Rust server.
//!
//! ```no_run
//! use zerorpc::{Client, Server, Service, ServiceError};
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
//! # server.stop(std::time::Duration::from_secs(1)).await;
//! # Ok(()) }
//! ```
//!
//! ## Layout
//!
//! | module | concept |
//! |---|---|
//! | [`event`] | the wire codec: `[header, name, args]`, message ids, hostile-input-safe decoding |
//! | [`service`] | the name → handler table (typed, blocking, dynamic, [`RpcService`] objects) and introspection |
//! | `args` | typed argument decoding and arity checks |
//! | `heartbeat` | per-channel heartbeat rules, driven by one tick per side |
//! | `transport` | the adapter over `zeromq` 0.7: links, reconnects, endpoint normalisation |
//! | [`server`] | ROUTER server: dispatch, streamed replies with credit, heartbeats, lost clients, drain on stop |
//! | [`client`] | DEALER client: multiplexed calls, reply streams, timeouts, heartbeats, reconnects |
//! | `relay` | which task reads a client's sockets: a waiting caller, or the core task |
//! | [`oneway`] | fire-and-forget events: Pusher → Puller (cast), Publisher → Subscriber (fanout) |
//! | `logging` | how faults are logged (rate limits, peer ids) |
//! | [`error`] | [`Error`] (what callers see) and [`ServiceError`] (what handlers raise) |
//! | [`value`] | msgpack ↔ JSON for the command line |
//! | `cli` | the `zrpc` command (behind `src/bin/zrpc.rs`) and its built-in services; `cli::bench` is `zrpc-bench` |
//!
//! The wire protocol is specified in `PROTOCOL.md`.

#![warn(missing_docs)]

mod args;
#[doc(hidden)]
pub mod cli;
pub mod client;
pub mod error;
pub mod event;
mod heartbeat;
mod logging;
pub mod oneway;
mod relay;
pub mod server;
pub mod service;
mod transport;
pub mod value;

pub use client::{CallOptions, Client, ClientBuilder, ReplyStream, Response};
pub use error::{Error, RemoteError, ServiceError};
pub use oneway::{Publisher, Puller, Pusher, Receiver, Subscriber};
pub use server::{Server, ServerBuilder};
pub use service::{ArgInfo, Args, MethodInfo, RpcService, Service};
pub use value::Value;
