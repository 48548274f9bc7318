//! The zerorpc wire protocol (v3): the event codec, message ids and the
//! heartbeat rules. `PROTOCOL.md` at the repository root specifies it for
//! implementers of other peers.
//!
//! This module is public for peer implementers and tools that look at the
//! wire (a proxy, a test harness): [`Event::decode`] reads any peer's event
//! without trusting its length prefixes, and the `encode_*` functions write
//! events exactly as zerorpc-python does. Applications never need it: the
//! [`Client`](crate::Client) and [`Server`](crate::Server) speak it for them.
//!
//! ```
//! use zerorpc::protocol::{self, Event};
//! let (id, frame) = protocol::encode_request("add", &[0x92, 0x02, 0x03]); // add(2, 3)
//! let frame = bytes::Bytes::from(frame);
//! let ev = Event::decode(&frame)?;
//! assert_eq!(ev.name, Ok("add"));
//! assert_eq!(ev.message_id, Some(&id.to_raw()[..]));
//! assert_eq!(&ev.args[..], &[0x92, 0x02, 0x03]);
//! # Ok::<(), protocol::DecodeError>(())
//! ```

pub mod budget;
pub(crate) mod buffers;
mod event;
pub(crate) mod framing;
pub(crate) mod heartbeat;
mod message_id;
pub(crate) mod msgpack;

pub use event::{
    encode, encode_err, encode_reply, encode_request, encode_request_with_header, request_id,
    DecodeError, Event, Header, HeaderExtra, API_VERSION_KEY, TIMEOUT_KEY,
};
pub(crate) use event::{
    encode_request_extra, encode_request_into, encode_with, owned_name, reply_to, HEARTBEAT_ARGS,
};
pub use message_id::MessageId;
pub use msgpack::validate;

/// Protocol version written in every header (`v: 3`).
pub const PROTOCOL_VERSION: u8 = 3;
/// Successful reply: args `[result]`.
pub const OK: &str = "OK";
/// Error reply: args `[name, message, traceback]`.
pub const ERR: &str = "ERR";
/// One streamed item: args is the bare item.
pub const STREAM: &str = "STREAM";
/// End of a stream: args nil.
pub const STREAM_DONE: &str = "STREAM_DONE";
/// Heartbeat on a channel: args `[0]`.
pub const HEARTBEAT: &str = "_zpc_hb";
/// Flow-control credit on a channel: args `[n]`.
pub const MORE: &str = "_zpc_more";
/// The caller abandoned the call (zrpc; other peers ignore it): args `[]`.
pub const CANCEL: &str = "_zpc_cancel";
/// The server is stopping (zrpc; other clients ignore it): it still
/// answers what it reads, new calls should go elsewhere. No
/// `response_to`, args `[]` (PROTOCOL.md §7).
pub const DRAIN: &str = "_zpc_drain";
/// A call whose caller streams items to it (zrpc's extension, PROTOCOL.md
/// §9.1): args `[method, param...]`; the items follow as `STREAM` events
/// under the server's `_zpc_more` credit, ended by `STREAM_DONE`. Servers
/// without the extension answer it `NameError`, never run it.
pub const STREAM_CALL: &str = "_zrpc_stream_call";
/// The header key of a call sent through a broker to its worker with this
/// name (zrpc, PROTOCOL.md §12.2): the broker routes on it.
pub const SERVER_KEY: &str = "zrpc_server";
/// The error name of a request a stopping server hands back without
/// running it: safe to send to another server.
pub const SERVER_STOPPING: &str = "ServerStopping";
/// The liveness probe every zerorpc server answers (`["pong", name]`).
pub(crate) const PING: &str = "_zerorpc_ping";
/// The header key of a W3C trace context (`00-<trace id>-<span id>-<flags>`).
pub const TRACEPARENT: &str = "traceparent";

/// Maximum nesting of arrays and maps accepted from the network. Deep enough
/// for any real payload, shallow enough that recursive decoders in handlers
/// (serde, rmpv) cannot overflow a task's stack.
pub const MAX_DEPTH: usize = 256;
