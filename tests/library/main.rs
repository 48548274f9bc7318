//! The library in one test binary: zrpc peers in-process, and the real
//! zerorpc-python and zerorpc-node peers as child processes. (One binary
//! links once; a file per theme.)
//!
//! | file | theme |
//! |---|---|
//! | `rpc.rs` | calls, errors, concurrency, heartbeats, timeouts, reconnects, draining |
//! | `streaming.rs` | streamed replies: order, errors, flow control, cancellation |
//! | `client_streams.rs` | streams from the caller: client-stream and bidirectional calls, credit both ways, failures, deadlines |
//! | `oneway.rs` | push/pull and pub/sub between zrpc peers |
//! | `context.rs` | request context, middleware, deadlines, cancellation |
//! | `context_interop.rs` | context and `_zpc_cancel` against the real peers |
//! | `interop_streams.rs` | streams and one-way events against zerorpc-python |
//! | `kwargs.rs` | keyword arguments placed by a zrpc or zerorpc-python server's introspection |
//! | `named.rs` | calls to one named server among several |
//! | `namespaces.rs` | several services per server: namespaces, versions, the real peers calling them |
//! | `notifications.rs` | notifications: priorities, filters at the publisher, a plain Python subscriber |
//! | `curve.rs` | CurveZMQ between zrpc peers |
//! | `typed.rs` | `#[zerorpc::service]` end to end |
//! | `wire.rs` | zrpc's bytes on the wire, read by a bare socket |
//! | `protocol_doc.rs` | PROTOCOL.md's vectors and the README's protocol quick start |
//!
//! Tests with process-wide state have binaries of their own: `spans.rs`
//! (tracing's call-site cache), `metrics.rs` (the global recorder),
//! `fuzz_decoder.rs` (a counting allocator); so do those that measure time
//! (`scale.rs`, `soak.rs`, `cluster.rs`, `hostile.rs`: `.config/nextest.toml`
//! runs them alone).

#[path = "../common/mod.rs"]
mod common;

mod client_streams;
mod context;
mod context_interop;
mod curve;
mod interop_streams;
mod kwargs;
mod named;
mod namespaces;
mod notifications;
mod oneway;
mod protocol_doc;
mod rpc;
mod streaming;
mod typed;
mod wire;
