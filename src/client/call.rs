//! One call, from its caller's side: the request it sends (its arguments,
//! and a header with the client's and the call's keys, the hooks' say, the
//! deadline and the trace), the [`Pending`] future that waits for its
//! first event, and how that reply reads (`OK`'s value, `ERR`'s error).
//!
//! A call's life, start to end: [`Pending::send`] encodes it and registers
//! it in the client's table (`calls.rs`, a `Call` there), which sends it to
//! a server (`servers.rs`) over that server's link. Its first event, a
//! [`Reply`], lands in its [`Slot`], put there by whoever read the sockets
//! (`reader.rs`: the waiting caller itself when it leads); the caller's
//! [`Pending`] takes it. A streamed reply's later events go to its
//! [`ReplyStream`](super::ReplyStream). A `Pending` dropped before its
//! answer abandons the call (the server is told).

use super::calls::Route;
use super::reader::{self, Reader};
use super::reply::{remote_error, Answered, Reply, Slot};
use super::servers::ServerId;
use super::upload::Upload;
use super::{CallOptions, Client};
use crate::context;
use crate::error::Error;
use crate::middleware::{self, Outgoing};
use crate::protocol::{self, buffers, msgpack, HeaderExtra, MessageId};
use crate::telemetry::{CallCounters, CallOutcome};
use bytes::Bytes;
use rmpv::Value;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

// ---- the request ----------------------------------------------------------

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
    rmp_serde::encode::write_named(&mut buffers::Writer(out), args)
        .map_err(|e| Error::encode("the arguments", e))?;
    match out.get(start) {
        Some(0xc0) => out[start] = 0x90,
        Some(0x90..=0x9f | 0xdc | 0xdd) => {}
        _ => out.insert(start, 0x91),
    }
    Ok(())
}

/// A request frame for typed args, encoded in place, with `extra` header
/// entries.
pub(super) fn request_serde<A: Serialize>(
    method: &str,
    extra: &HeaderExtra,
    args: &A,
) -> Result<(MessageId, Bytes), Error> {
    let id = MessageId::new();
    let mut result = Ok(());
    let frame = buffers::exact(|out| {
        protocol::encode_request_into(out, &id, method, Some(extra), |out| {
            result = encode_args_into(out, args);
        })
    });
    result.map(|()| (id, frame))
}

/// A request frame for dynamic args, encoded in place, with `extra` header
/// entries.
pub(super) fn request_dynamic(
    method: &str,
    extra: &HeaderExtra,
    args: Vec<Value>,
) -> (MessageId, Bytes) {
    let args = Value::Array(args);
    let len = msgpack::len_hint(&args);
    if len > buffers::SCRATCH {
        // Sized once from the values, not grown from a scratch buffer.
        let (id, frame) = protocol::encode_request_extra(method, Some(extra), len, |out| {
            msgpack::write_value(out, &args)
        });
        return (id, buffers::into_bytes(frame));
    }
    let id = MessageId::new();
    let frame = buffers::exact(|out| {
        protocol::encode_request_into(out, &id, method, Some(extra), |out| {
            msgpack::write_value(out, &args)
        })
    });
    (id, frame)
}

// ---- waiting for it -----------------------------------------------------------

/// A call that was sent, waiting for its first event (a plain future
/// rather than an `async fn`: each call's future is moved a few times,
/// and an async one kept copies of what sending needed). While no other
/// caller does, it reads the sockets itself (see `reader.rs`).
pub(super) struct Pending<'a> {
    client: &'a Client,
    method: &'a str,
    id: MessageId,
    slot: Arc<Slot<Answered>>,
    /// Tells this caller apart when it leads the reading.
    token: u64,
    /// It has led (it may still be the leader).
    led: bool,
    /// It has its answer (the call is no longer waiting for it).
    done: bool,
    /// Counted in `zrpc_client_in_flight` (and per method, with a recorder).
    counters: CallCounters,
    span: tracing::Span,
    /// When it started: its deadline, heartbeat clock and duration count
    /// from it.
    started: Instant,
}

impl<'a> Pending<'a> {
    /// Send a request (`encode` writes it with the header entries the call
    /// carries) and wait for its first event. Not async, so that what only
    /// sending needs (the options, the encoder) is not kept in every call's
    /// future while it waits.
    pub(super) fn send(
        client: &'a Client,
        method: &'a str,
        encode: impl FnOnce(&HeaderExtra) -> Result<(MessageId, Bytes), Error>,
        opts: CallOptions,
    ) -> Result<Pending<'a>, Error> {
        Pending::send_to(client, method, encode, opts, None, None)
    }

    /// [`Pending::send`] for a call whose caller streams items (sent by
    /// `upload.rs` under the credit the server grants to `upload`).
    pub(super) fn send_streaming(
        client: &'a Client,
        method: &'a str,
        encode: impl FnOnce(&HeaderExtra) -> Result<(MessageId, Bytes), Error>,
        opts: CallOptions,
        upload: Arc<Upload>,
    ) -> Result<Pending<'a>, Error> {
        Pending::send_to(client, method, encode, opts, None, Some(upload))
    }

    /// [`Pending::send`] to server `only` (the client asking a server its
    /// name).
    pub(super) fn send_to(
        client: &'a Client,
        method: &'a str,
        encode: impl FnOnce(&HeaderExtra) -> Result<(MessageId, Bytes), Error>,
        opts: CallOptions,
        only: Option<ServerId>,
        upload: Option<Arc<Upload>>,
    ) -> Result<Pending<'a>, Error> {
        // (The one clock reading of a call's start.)
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
        match register(client, method, encode, opts, only, upload, &span, started) {
            Ok((id, slot, counters)) => Ok(Pending {
                client,
                method,
                id,
                slot,
                token: reader::token(),
                led: false,
                done: false,
                counters,
                span,
                started,
            }),
            Err(e) => {
                ended(client, method, None, &span, started.elapsed(), Err(&e));
                Err(e)
            }
        }
    }

    /// The call's id.
    pub(super) fn id(&self) -> MessageId {
        self.id
    }

    fn reader(&self) -> &'a Reader {
        &self.client.inner.reader
    }
}

impl Future for Pending<'_> {
    type Output = Result<(MessageId, Reply), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // (The span is not entered while waiting: nothing of the call runs
        // then; it lives from the request to the answer.)
        let answer = match this.slot.poll_take(cx) {
            Poll::Ready(answer) => answer,
            Poll::Pending => {
                let reader = this.reader();
                let read = match reader.lead(this.token, cx.waker()) {
                    true => {
                        this.led = true;
                        reader.pump(Some(this.id))
                    }
                    false => None,
                };
                match read {
                    Some(answer) => answer,
                    None => return Poll::Pending,
                }
            }
        };
        this.done = true;
        if this.led {
            this.reader().resign(this.token);
        }
        let err;
        let result = match &answer {
            Ok(first) if first.name == protocol::ERR => {
                err = remote_error(this.method, &first.args);
                Err(&err)
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        // (No clock reading when nobody wants the duration.)
        let hooks = &this.client.inner.hooks.0;
        let timed =
            this.counters.handles.is_some() || !this.span.is_disabled() || !hooks.is_empty();
        let elapsed = match timed {
            true => this.started.elapsed(),
            false => Duration::ZERO,
        };
        let metrics = this.counters.handles.as_deref();
        ended(
            this.client,
            this.method,
            metrics,
            &this.span,
            elapsed,
            result,
        );
        Poll::Ready(answer.map(|first| (this.id, first)))
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.counters.in_flight.decrement(1.0);
        if self.done {
            return;
        }
        if let Some(handles) = &self.counters.handles {
            handles.ended(CallOutcome::Cancelled, self.started.elapsed());
        }
        if self.led {
            self.reader().resign(self.token);
        }
        self.slot.leave();
        // Dropped before its answer: the caller gave up. The server is told
        // at once, so it stops working for nobody.
        self.reader().abandon(self.id);
    }
}

/// Everything a call does before it waits: the header it carries (the
/// client's and the call's keys, the hooks' say, the deadline, the trace),
/// then the request registered in the table (which sends it).
#[allow(clippy::too_many_arguments)]
fn register(
    client: &Client,
    method: &str,
    encode: impl FnOnce(&HeaderExtra) -> Result<(MessageId, Bytes), Error>,
    opts: CallOptions,
    only: Option<ServerId>,
    upload: Option<Arc<Upload>>,
    span: &tracing::Span,
    at: Instant,
) -> Result<(MessageId, Arc<Slot<Answered>>, CallCounters), Error> {
    let inner = &client.inner;
    // A call to a server by name goes there or nowhere (the caller asked
    // the servers their names first: `Client::learn_names`).
    // (A call to a worker behind a broker names it in its header.)
    let mut through_broker = None;
    let route = match (only, &opts.to) {
        (Some(s), _) => Route::Only(s),
        (None, Some(name)) => {
            let servers = &inner.reader.lock().servers;
            match servers.named(name) {
                Some((s, broker)) => {
                    if broker {
                        through_broker = Some(name.clone());
                    }
                    Route::Only(s)
                }
                None => {
                    return Err(Error::UnknownServer {
                        name: name.clone(),
                        servers: servers.names().join(", "),
                    })
                }
            }
        }
        (None, None) => Route::Any,
    };
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
    if let Some(name) = through_broker {
        extra.push(protocol::SERVER_KEY, &Value::from(name));
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
    let retry = opts.retry.or(inner.retry);
    let counters = inner.reader.start(
        id,
        frame,
        method,
        timeout,
        retry,
        slot.clone(),
        route,
        at,
        upload,
    )?;
    Ok((id, slot, counters))
}

/// Count a call that ended (for a stream: that got its first event),
/// close its span, and tell the hooks, last added first.
pub(super) fn ended(
    client: &Client,
    method: &str,
    metrics: Option<&crate::telemetry::CallMetrics>,
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
    for hook in client.inner.hooks.0.iter().rev() {
        hook.after(method, result, elapsed);
    }
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
}
