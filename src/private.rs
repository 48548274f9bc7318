//! What code written by `#[zerorpc::service]` calls. Not a public API:
//! it may change in any release.

use crate::context::Context;
use crate::error::{Error, ServiceError};
use crate::service::handler::{encode_result, encode_typed, Handler, Reply};
use crate::service::{Args, Service};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

pub use crate::service::ArgReader;
pub use futures::stream::Stream;
pub use rmpv::Value;

/// What a handler returns.
pub type Handled = BoxFuture<'static, Result<Reply, ServiceError>>;

/// Register a method: its wire name, argument names (`"b=null"` for an
/// optional one), doc, and handler.
pub fn register(
    service: Service,
    name: &str,
    args: &[&str],
    doc: Option<&str>,
    handler: impl Fn(Args) -> Handled + Send + Sync + 'static,
) -> Service {
    let handler: Handler = Arc::new(handler);
    let service = service.insert_handler(name, handler).args(args);
    match doc {
        Some(d) => service.doc(d),
        None => service,
    }
}

/// [`register`] for a method that takes its caller's stream of items.
pub fn register_taking_items(
    service: Service,
    name: &str,
    args: &[&str],
    doc: Option<&str>,
    handler: impl Fn(Args) -> Handled + Send + Sync + 'static,
) -> Service {
    let handler: Handler = Arc::new(handler);
    let service = service
        .insert_handler_taking_items(name, handler)
        .args(args);
    match doc {
        Some(d) => service.doc(d),
        None => service,
    }
}

/// The caller's items of a call, and what fails the call when one does
/// not decode.
pub fn items<T: serde::de::DeserializeOwned>(args: &Args) -> (crate::Items<T>, Failed) {
    crate::Items::typed(args)
}

pub use crate::service::Failed;

/// `fut`'s output, unless one of the caller's items fails first.
pub async fn unless_failed<O>(
    failed: Failed,
    fut: impl Future<Output = O>,
) -> Result<O, ServiceError> {
    failed.guard(async { Ok(fut.await) }).await
}

/// A stream reply, ended by the error of one of the caller's items that
/// fails.
pub fn guard_reply(failed: Failed, reply: Reply) -> Reply {
    match reply {
        Reply::Stream(items) => Reply::Stream(failed.guard_stream(items).boxed()),
        value => value,
    }
}

/// A handler that failed before it ran (its arguments).
pub fn failed(e: ServiceError) -> Handled {
    Box::pin(std::future::ready(Err(e)))
}

/// A plain result.
pub fn value<T: Serialize>(v: T) -> Result<Reply, ServiceError> {
    encode_result(v)
}

/// A `Result` whose error becomes an `ERR`.
pub fn fallible_value<T: Serialize, E: Into<ServiceError>>(
    r: Result<T, E>,
) -> Result<Reply, ServiceError> {
    encode_result(r.map_err(Into::into)?)
}

/// A stream of plain items.
pub fn plain_stream<T, S>(items: S) -> Reply
where
    T: Serialize,
    S: Stream<Item = T> + Send + 'static,
{
    Reply::Stream(items.map(|item| encode_typed(&item)).boxed())
}

/// A stream whose items may be errors (the first ends it with `ERR`).
pub fn fallible_stream<T, E, S>(items: S) -> Reply
where
    T: Serialize,
    E: Into<ServiceError>,
    S: Stream<Item = Result<T, E>> + Send + 'static,
{
    Reply::Stream(
        items
            .map(|item| encode_typed(&item.map_err(Into::into)?))
            .boxed(),
    )
}

/// Run `f` on the blocking pool, with the request's context.
pub async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ServiceError> {
    let ctx = Context::current();
    let run = move || match ctx {
        Some(ctx) => ctx.sync_scope(f),
        None => f(),
    };
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| ServiceError::new("Panic", e.to_string()))
}

/// The request's context (an empty one outside a request).
pub fn context() -> Context {
    Context::current().unwrap_or_else(Context::empty)
}

/// One argument of a typed call: given, or optional.
pub enum Arg {
    Given(Value),
    Optional(Option<Value>),
}

/// The arguments to send: up to the last one given (a left-out optional
/// argument before it is sent as nil).
pub fn trailing(args: Vec<Arg>) -> Vec<Value> {
    let last = args
        .iter()
        .rposition(|a| !matches!(a, Arg::Optional(None)))
        .map_or(0, |i| i + 1);
    args.into_iter()
        .take(last)
        .map(|a| match a {
            Arg::Given(v) | Arg::Optional(Some(v)) => v,
            Arg::Optional(None) => Value::Nil,
        })
        .collect()
}

/// A typed argument as a value.
pub fn to_value<T: Serialize>(v: &T) -> Result<Value, Error> {
    rmpv::ext::to_value(v).map_err(|e| Error::encode("the arguments", e))
}

/// An optional typed argument as a value.
pub fn to_value_opt<T: Serialize>(v: &Option<T>) -> Result<Option<Value>, Error> {
    v.as_ref().map(to_value).transpose()
}

/// A client argument must serialize (checked where its type is written).
pub fn sendable<T: Serialize>() {}

/// A client result must deserialize (checked where its type is written).
pub fn receivable<T: serde::de::DeserializeOwned>() {}
