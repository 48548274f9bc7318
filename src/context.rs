//! The context of a request, as its handler sees it: which method, which
//! peer, which call, the caller's deadline, and the request header's extra
//! keys (a zerorpc-python client's task context, a zrpc client's metadata,
//! a W3C `traceparent`).
//!
//! A handler reads it with [`Context::current`], whatever kind of handler it
//! is (async, blocking, streaming, an [`RpcService`](crate::RpcService)
//! object, a catch-all). It is a task-local rather than an argument so that
//! every flavour of handler gets it without a second registration method
//! each, and so that a [`Client`](crate::Client) call made while handling a
//! request inherits what it must without being handed anything: the
//! remaining deadline, and the trace.
//!
//! Most handlers finish in their first poll, which the server runs inline
//! and which never asks for the context: for that poll the request's parts
//! are only lent ([`Lent`]), and a `Context` is made if the handler asks or
//! the request runs on in a task of its own.

use crate::logging::hex;
use crate::protocol::{self, budget, msgpack};

/// The most a request header's keys may take decoded (metadata is small;
/// a header that would take more reads as empty).
const HEADER_MAX_DECODED: usize = 1 << 20;
use bytes::Bytes;
use rmpv::Value;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

tokio::task_local! {
    static CURRENT: Context;
}

thread_local! {
    /// The request whose handler the server is polling for the first time,
    /// inline in its core (a [`Lent`], see [`Lent::scope`]): its parts are
    /// lent, and made into a [`Context`] only if the handler asks, because
    /// most handlers finish in that poll and never do.
    static INLINE: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
}

/// Puts back the lent context that was current before (on return or
/// unwind).
struct Restore(*const ());

impl Drop for Restore {
    fn drop(&mut self) {
        INLINE.with(|c| c.set(self.0));
    }
}

pin_project_lite::pin_project! {
    /// [`Context::scope`]'s future: each poll hides a lent context, so that
    /// this scope is the one seen.
    struct Scoped<F: Future> {
        #[pin]
        inner: tokio::task::futures::TaskLocalFuture<Context, F>,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let inner = self.project().inner;
        shadowing_inline(|| inner.poll(cx))
    }
}

/// A request's context before anyone needs it: the parts of the received
/// message it is made of, borrowed. A handler's first poll runs inside
/// [`Lent::scope`]; [`Context::current`] makes the owned context then, and
/// the server makes it for requests that run on.
pub(crate) struct Lent<'a> {
    pub(crate) payload: &'a Bytes,
    pub(crate) method: &'a str,
    pub(crate) id: &'a [u8],
    pub(crate) header: &'a [u8],
    pub(crate) peer: &'a Bytes,
    pub(crate) deadline: Option<Instant>,
    pub(crate) client_key: Option<[u8; 32]>,
}

impl Lent<'_> {
    /// The owned context.
    pub(crate) fn to_context(&self) -> Context {
        let ctx = Context::new(
            self.payload,
            self.method,
            self.id,
            self.header,
            self.peer.clone(),
            self.deadline,
        );
        match self.client_key {
            Some(key) => ctx.with_client_key(key),
            None => ctx,
        }
    }

    /// Run `f` with this request as [`Context::current`].
    pub(crate) fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _restore = Restore(INLINE.with(|c| c.replace((self as *const Lent<'_>).cast())));
        f()
    }
}

/// Run `f` with no lent context, so that a context scope opened inside an
/// inline poll is the one seen.
fn shadowing_inline<R>(f: impl FnOnce() -> R) -> R {
    let _restore = Restore(INLINE.with(|c| c.replace(std::ptr::null())));
    f()
}

/// What a handler knows about the request it is handling. Cheap to clone
/// (two reference counts: it points into the received message).
///
/// ```
/// use zerorpc::{Context, Service, ServiceError};
/// let svc = Service::new("whoami").method("whoami", |(): ()| async {
///     let ctx = Context::current().expect("inside a handler");
///     let user = ctx.header("user").and_then(|v| v.as_str().map(String::from));
///     Ok::<_, ServiceError>(format!("{} called by {user:?}", ctx.method()))
/// });
/// # let _ = svc;
/// ```
#[derive(Clone, Debug)]
pub struct Context {
    /// The received payload: the method name, id and header are ranges of it.
    payload: Bytes,
    method: (u32, u32),
    id: (u32, u32),
    header: (u32, u32),
    peer: Bytes,
    deadline: Option<Instant>,
    client_key: Option<[u8; 32]>,
}

impl Context {
    /// The context of the request being handled, or `None` outside a
    /// handler (or inside a task the handler spawned: pass it along
    /// explicitly with [`Context::scope`]).
    pub fn current() -> Option<Context> {
        let lent = INLINE.with(Cell::get);
        if !lent.is_null() {
            // SAFETY: INLINE is non-null only inside `Lent::scope`, where it
            // points to that scope's `Lent`, borrowed for the whole call on
            // this thread; the previous value is restored when the call
            // returns or unwinds. The reference does not outlive this line.
            let lent = unsafe { &*lent.cast::<Lent<'_>>() };
            return Some(lent.to_context());
        }
        CURRENT.try_with(Context::clone).ok()
    }

    /// `method`, `id` (raw msgpack of the request's `message_id`) and
    /// `header` (raw msgpack map) are slices of `payload`; `peer` is the
    /// routing identity.
    pub(crate) fn new(
        payload: &Bytes,
        method: &str,
        id: &[u8],
        header: &[u8],
        peer: Bytes,
        deadline: Option<Instant>,
    ) -> Context {
        let range = |part: &[u8]| {
            let start = (part.as_ptr() as usize).wrapping_sub(payload.as_ptr() as usize);
            let end = start.wrapping_add(part.len());
            match (u32::try_from(start), u32::try_from(end)) {
                (Ok(s), Ok(e)) if start <= end && end <= payload.len() => (s, e),
                _ => (0, 0),
            }
        };
        Context {
            method: range(method.as_bytes()),
            id: range(id),
            header: range(header),
            payload: payload.clone(),
            peer,
            deadline,
            client_key: None,
        }
    }

    /// The same request, from a client that authenticated with this CURVE
    /// key.
    pub(crate) fn with_client_key(mut self, key: [u8; 32]) -> Context {
        self.client_key = Some(key);
        self
    }

    /// The CURVE public key the caller authenticated with (on a server
    /// secured with [`Curve`](crate::security::Curve); `None` otherwise):
    /// who is calling, for handlers that decide per client.
    pub fn client_key(&self) -> Option<[u8; 32]> {
        self.client_key
    }

    /// A context of no request (what the service macro's code gets outside
    /// one).
    pub(crate) fn empty() -> Context {
        Context::new(&Bytes::new(), "", &[], &[], Bytes::new(), None)
    }

    /// The same request, without a deadline (a stream's items after its
    /// first: heartbeats bound them, as they do for the caller).
    pub(crate) fn without_deadline(mut self) -> Context {
        self.deadline = None;
        self
    }

    /// The method called.
    pub fn method(&self) -> &str {
        // Checked when the event was decoded (its name is a str).
        std::str::from_utf8(&self.payload[self.method.0 as usize..self.method.1 as usize])
            .unwrap_or("")
    }

    /// The caller's ZeroMQ routing identity (random bytes unless the caller
    /// chose one), the same for every call on one connection.
    pub fn peer(&self) -> &[u8] {
        &self.peer
    }

    /// The request's `message_id`, as raw msgpack (a zrpc or Python caller
    /// sends bin, a node caller str).
    pub fn request_id(&self) -> &[u8] {
        &self.payload[self.id.0 as usize..self.id.1 as usize]
    }

    /// When the caller stops waiting, if it said (`timeout_ms` in the
    /// request header; zrpc clients send it, other peers do not). The
    /// server cancels the handler then, without replying. Like the
    /// caller's timeout it covers the reply, or a stream's first item: once
    /// that is sent it is `None` (heartbeats bound the rest).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before [`Context::deadline`] (zero once it passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// One key of the request header, other than the protocol's own
    /// (`message_id`, `v`, `response_to`, and `timeout_ms`, which is
    /// [`Context::deadline`]). A zerorpc-python client's task
    /// context arrives here, as does a zrpc client's metadata.
    pub fn header(&self, key: &str) -> Option<Value> {
        self.headers()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Every key of the request header other than the protocol's own, in
    /// the order sent. (Decoded on each call: the server does not decode
    /// what no handler asks for.)
    pub fn headers(&self) -> Vec<(String, Value)> {
        let header = &self.payload[self.header.0 as usize..self.header.1 as usize];
        let Ok(Value::Map(entries)) = budget::read_value(header, HEADER_MAX_DECODED) else {
            return Vec::new();
        };
        entries
            .into_iter()
            .filter_map(|(k, v)| match k {
                Value::String(s) => s.into_str().map(|k| (k, v)),
                _ => None,
            })
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "message_id" | "v" | "response_to" | protocol::TIMEOUT_KEY
                )
            })
            .collect()
    }

    /// The W3C trace context of the request (`traceparent`), if the caller
    /// sent a well-formed one.
    pub fn traceparent(&self) -> Option<TraceParent> {
        match self.header(protocol::TRACEPARENT)? {
            Value::String(s) => TraceParent::parse(s.as_str()?),
            _ => None,
        }
    }

    /// Run `fut` with this context as [`Context::current`] (for work a
    /// handler hands to another task).
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        Scoped {
            inner: CURRENT.scope(self, fut),
        }
    }

    /// Run `f` with this context as [`Context::current`].
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        shadowing_inline(|| CURRENT.sync_scope(self, f))
    }
}

/// A W3C trace context (`traceparent: 00-<trace id>-<parent id>-<flags>`):
/// the trace a call belongs to, and the span that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// The caller's span: 8 bytes, never all zero.
    pub parent_id: [u8; 8],
    /// Bit 0: sampled.
    pub flags: u8,
}

impl TraceParent {
    /// Parse version 00 of the header (other versions are read as 00 when
    /// their first four fields look like it, as the spec asks).
    pub fn parse(s: &str) -> Option<TraceParent> {
        let mut parts = s.trim().split('-');
        let version = parts.next()?;
        let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id = hex_array::<16>(trace)?;
        let parent_id = hex_array::<8>(parent)?;
        let [flags] = hex_array::<1>(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// A new trace, sampled.
    pub fn new_root() -> TraceParent {
        TraceParent {
            trace_id: nonzero(rand::random()),
            parent_id: nonzero(rand::random()),
            flags: 1,
        }
    }

    /// The same trace, from a new span of this process.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            parent_id: nonzero(rand::random()),
            ..*self
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

fn nonzero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes == [0; N] {
        bytes[N - 1] = 1;
    }
    bytes
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// What a call made inside a handler inherits from it: the time left and
/// the trace (a new span of it).
pub(crate) fn inherited() -> Option<(Option<Duration>, Option<TraceParent>)> {
    let ctx = Context::current()?;
    Some((ctx.remaining(), ctx.traceparent().map(|t| t.child())))
}

/// A printable form of a raw msgpack id, for spans and logs: the text of
/// a str or bin (zrpc, Python and node ids are ASCII), hex otherwise.
pub(crate) fn id_text(raw: &[u8]) -> String {
    match msgpack::str_or_bin(raw) {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => hex(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_junk() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceParent::parse(s).unwrap();
        assert_eq!(t.to_string(), s);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = t.child();
        assert_eq!(child.trace_id, t.trace_id);
        assert_ne!(child.parent_id, t.parent_id);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        // A later version with more fields is read as version 00.
        assert!(TraceParent::parse(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        )
        .is_some());
    }

    #[test]
    fn headers_skip_the_protocol_keys() {
        let header = msgpack::encode_value(&Value::Map(vec![
            ("message_id".into(), Value::Binary(b"x".to_vec())),
            ("v".into(), 3.into()),
            ("trace".into(), "abc".into()),
            ("user".into(), 7.into()),
        ]));
        let payload = Bytes::from(header);
        let ctx = Context::new(&payload, "", &[], &payload, Bytes::new(), None);
        assert_eq!(
            ctx.headers(),
            vec![("trace".into(), "abc".into()), ("user".into(), 7.into())]
        );
        assert_eq!(ctx.header("v"), None);
        assert_eq!(ctx.header("user"), Some(7.into()));
    }
}
