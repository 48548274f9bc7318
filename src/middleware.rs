//! Middleware: code that runs around every request a server dispatches,
//! and around every call a client makes.
//!
//! **Servers take [tower] layers.** The handler table is a
//! `tower::Service<Request>` ([`Handlers`]), and
//! [`ServerBuilder::layer`](crate::ServerBuilder::layer) wraps it, so any
//! tower middleware applies as it is (`ConcurrencyLimitLayer`,
//! `TimeoutLayer`, `RateLimitLayer` behind a `BufferLayer`, a `Filter`
//! that checks a token in the request header) and so does your own.
//! Layers added first are outermost: they see a request first and its
//! reply last. A layer that returns an error answers the caller with an
//! `ERR`: return a [`ServiceError`] to choose its name and message (any
//! other error becomes `ERR MiddlewareError "<its message>"`). Nothing is
//! wrapped, and nothing is spent, when no layer is added.
//!
//! **Clients take hooks** ([`CallHook`], [`ClientBuilder::hook`](crate::ClientBuilder::hook)):
//! `before` each call is sent (add header keys, or refuse it) and `after`
//! it ends (its outcome and duration). Not tower here: a client call is a
//! request, a wait shared with every other call of the client, and then
//! one value *or a stream*; a `Service::call` future per call would put a
//! boxed future and a poll of every layer on the path that costs about as
//! much as the loopback round trip itself, for middleware that, on the
//! client side, is nearly always "add a header, count the result". Hooks
//! run in the order added before a call, and in reverse order after it.

use crate::context::Context;
use crate::error::{Error, ServiceError};
use crate::protocol::HeaderExtra;
use crate::service::{Args, Reply, Service};
use futures::future::BoxFuture;
use rmpv::Value;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// The error type of server middleware (what tower layers return).
pub type BoxError = tower::BoxError;

/// A request on its way to its handler.
pub struct Request {
    ctx: Context,
    args: Args,
}

impl Request {
    pub(crate) fn new(ctx: Context, args: Args) -> Request {
        Request { ctx, args }
    }

    /// Its context: method, peer, deadline, header keys.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The method called.
    pub fn method(&self) -> &str {
        self.ctx.method()
    }

    /// Its arguments (still encoded: [`Args::decode`] reads them).
    pub fn args(&self) -> &Args {
        &self.args
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("args", &self.args.len())
            .finish()
    }
}

/// A handler's reply on its way to the caller, already encoded: one value,
/// or a stream that is produced as the caller reads it.
pub struct Response(pub(crate) Reply);

impl Response {
    /// The handler streams its reply.
    pub fn is_stream(&self) -> bool {
        matches!(self.0, Reply::Stream(_))
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_stream() {
            "Response(stream)"
        } else {
            "Response(value)"
        })
    }
}

/// The innermost service of a server's stack: its [`Service`] table.
#[derive(Clone)]
pub struct Handlers(Arc<Service>);

impl Handlers {
    pub(crate) fn new(service: Arc<Service>) -> Handlers {
        Handlers(service)
    }
}

impl tower::Service<Request> for Handlers {
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let call = self.0.dispatch(req.ctx.method(), req.args);
        Box::pin(async move {
            match crate::service::guarded(call).await {
                Ok(reply) => Ok(Response(reply)),
                Err(e) => Err(Box::new(e) as BoxError),
            }
        })
    }
}

/// A type-erased, layered handler stack.
pub(crate) type Stack = tower::util::BoxCloneService<Request, Response, BoxError>;

/// Run `req` through `stack`: wait until it is ready, call it, and turn a
/// middleware's error into the `ERR` the caller gets.
pub(crate) fn call_stack(
    stack: &Stack,
    req: Request,
) -> BoxFuture<'static, Result<Reply, ServiceError>> {
    use tower::ServiceExt;
    let svc = stack.clone();
    Box::pin(async move {
        match svc.oneshot(req).await {
            Ok(Response(reply)) => Ok(reply),
            Err(e) => Err(service_error(e)),
        }
    })
}

/// What a caller is told about a middleware's error.
fn service_error(e: BoxError) -> ServiceError {
    match e.downcast::<ServiceError>() {
        Ok(e) => *e,
        Err(e) => ServiceError::new("MiddlewareError", e.to_string()),
    }
}

/// A call about to be sent, as a [`CallHook`] sees it.
pub struct Outgoing<'a> {
    pub(crate) method: &'a str,
    pub(crate) headers: &'a mut Vec<(String, Value)>,
    pub(crate) timeout: Option<Duration>,
}

impl Outgoing<'_> {
    /// The method called.
    pub fn method(&self) -> &str {
        self.method
    }

    /// The call's timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Add (or replace) a request header key.
    pub fn set_header(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.headers.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.headers.push((key, value)),
        }
    }

    /// The header keys the call will carry so far.
    pub fn headers(&self) -> &[(String, Value)] {
        self.headers
    }
}

/// Code around every call of a client (see the [module docs](self)).
pub trait CallHook: Send + Sync + 'static {
    /// Before the call is sent. An error fails the call with it, unsent.
    fn before(&self, call: &mut Outgoing<'_>) -> Result<(), Error> {
        let _ = call;
        Ok(())
    }

    /// After the call ended: its method, how (the error, if any), and how
    /// long it took (for a stream: until its first item).
    fn after(&self, method: &str, result: Result<(), &Error>, elapsed: Duration) {
        let _ = (method, result, elapsed);
    }
}

/// Header keys a caller may not set: the protocol's own.
pub(crate) fn reserved(key: &str) -> bool {
    matches!(key, "message_id" | "v" | "response_to" | "timeout_ms")
}

/// Encode call headers (the client's, then the call's) for the wire.
pub(crate) fn encode_headers(extra: &mut HeaderExtra, headers: &[(String, Value)]) {
    for (k, v) in headers {
        extra.push(k, v);
    }
}
