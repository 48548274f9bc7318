//! A service: the name → handler table a server (or a one-way receiver)
//! dispatches into, plus the zerorpc introspection methods derived from it.
//!
//! Handlers come in several flavours that all end up as the same boxed
//! function over raw msgpack arguments (`handler.rs`):
//! - typed: `async fn(A) -> Result<R, E>` where `A` is a tuple of serde
//!   types (arity is checked and reported like Python's `TypeError`);
//! - blocking: the same shape but a plain `fn`, run on tokio's blocking pool
//!   so CPU-heavy work never delays other calls or heartbeats;
//! - dynamic: `Vec<rmpv::Value>` in, `rmpv::Value` out, with msgpack types
//!   preserved exactly (bin stays bin, u64 stays u64);
//! - streams of either kind (zerorpc's `@zerorpc.stream`);
//! - client streams and bidirectional streams, which take the caller's
//!   [`Items`] (zrpc's extension: `items.rs`).
//!
//! A whole object can also implement [`RpcService`] and be served as is.

mod args;
pub(crate) mod handler;
mod introspect;
mod items;
mod object;
mod version;

#[doc(hidden)]
pub use args::ArgReader;
pub use args::Args;
pub(crate) use handler::{guarded, panicked, Encoded, ItemStream, Reply};
pub use introspect::{ArgInfo, MethodInfo};
pub(crate) use introspect::{INTROSPECTION, SERVER_NAME};
#[doc(hidden)]
pub use items::Failed;
pub(crate) use items::Incoming;
pub use items::Items;
pub use object::RpcService;
pub use version::{ParseVersionError, Version};

use crate::error::{clip, ServiceError, QUOTE_LIMIT};
use crate::names::NameMap;
use crate::protocol::msgpack;
use futures::future::BoxFuture;
use futures::stream::{Stream, StreamExt};
use handler::{encode_result, encode_typed, Handler};
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

type CatchAll = Arc<
    dyn Fn(String, Vec<Value>) -> BoxFuture<'static, Result<Value, ServiceError>> + Send + Sync,
>;

/// it to [`crate::Server::builder`].
///
/// `doc` and `args` describe the method registered just before them:
///
/// ```
/// use zerorpc::{Service, ServiceError};
/// let calc = Service::new("calc")
///     .method("add", |(a, b): (i64, i64)| async move { Ok::<_, ServiceError>(a + b) })
///     .doc("Add two integers.")
///     .args(["a", "b"]);
/// assert_eq!(calc.method_names(), vec!["add"]);
/// ```
pub struct Service {
    name: String,
    /// Where a server puts it beside its default service (its methods
    /// then answer as `namespace.method`); its name unless set.
    namespace: Option<String>,
    /// The version it serves; [`Version::DEFAULT`] unless set.
    version: Option<Version>,
    /// What introspection says of each method, sorted by name.
    infos: BTreeMap<String, MethodInfo>,
    handlers: NameMap<Handler>,
    /// The methods that take a stream of items from their caller.
    takes_items: std::collections::HashSet<String>,
    last: Option<String>,
    catch_all: Option<CatchAll>,
    /// The services added beside this one ([`Service::mount`]).
    mounted: Vec<Mounted>,
    /// The name of the server it is served by (what `_zrpc_server_name`
    /// answers), set when the server starts.
    pub(crate) server_name: Option<String>,
}

/// A service added beside another: what is left of it once its methods
/// are in the table under `prefix`.
struct Mounted {
    /// `namespace.`
    prefix: String,
    version: Version,
    catch_all: Option<CatchAll>,
}

impl Service {
    /// An empty service called `name` (what `_zerorpc_name` returns).
    pub fn new(name: impl Into<String>) -> Self {
        Service {
            name: name.into(),
            namespace: None,
            version: None,
            infos: BTreeMap::new(),
            handlers: NameMap::default(),
            takes_items: Default::default(),
            last: None,
            catch_all: None,
            mounted: Vec::new(),
            server_name: None,
        }
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where a server puts this service when it is not the default one
    /// ([`ServerBuilder::service`](crate::server::ServerBuilder::service)):
    /// its methods answer as `namespace.method`. Defaults to the name.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The namespace this service goes under beside another (its name
    /// unless [`Service::namespace`] set one).
    pub fn namespace_name(&self) -> &str {
        self.namespace.as_deref().unwrap_or(&self.name)
    }

    /// The API version this service serves (default
    /// [`Version::DEFAULT`], 1.0). A call that requires a version (the
    /// `api_version` header, [`CallOptions::api_version`](crate::CallOptions::api_version))
    /// is answered only when this one [serves](Version::serves) it, and
    /// gets `ERR UnsupportedVersion` naming both versions otherwise; a call
    /// that requires none (every zerorpc-python and zerorpc-node call) is
    /// served whatever the version.
    pub fn version(mut self, version: Version) -> Self {
        self.version = Some(version);
        self
    }

    /// The API version served.
    pub fn served_version(&self) -> Version {
        self.version.unwrap_or(Version::DEFAULT)
    }

    /// Add `other`'s methods beside this service's, under `other`'s
    /// namespace: its `stop` answers as `control.stop`, with its docs and
    /// argument names in introspection, its version checked on calls that
    /// require one, and its catch-all (if any) answering unknown
    /// `control.*` names. This service stays the default: its methods
    /// answer without a prefix, and `_zerorpc_name` gives its name.
    ///
    /// A method of this service whose name is already `namespace.method`
    /// is replaced by `other`'s.
    pub fn mount(mut self, other: Service) -> Self {
        let namespace = other.namespace_name().to_string();
        let prefix = format!("{namespace}.");
        for (name, mut info) in other.infos {
            let full = format!("{prefix}{name}");
            info.name = full.clone();
            self.infos.insert(full, info);
        }
        for (name, handler) in other.handlers {
            let full = format!("{prefix}{name}");
            self.takes_items.remove(&full);
            self.handlers.insert(full, handler);
        }
        for name in other.takes_items {
            self.takes_items.insert(format!("{prefix}{name}"));
        }
        // Nested services keep their full path.
        for inner in other.mounted {
            self.mounted.push(Mounted {
                prefix: format!("{prefix}{}", inner.prefix),
                ..inner
            });
        }
        self.mounted.retain(|m| m.prefix != prefix);
        self.mounted.push(Mounted {
            prefix,
            version: other.version.unwrap_or(Version::DEFAULT),
            catch_all: other.catch_all,
        });
        // Longest prefix first: the most specific namespace answers.
        self.mounted
            .sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        self.last = None;
        self
    }

    /// The namespaces beside the default one, with the version each serves.
    pub fn namespaces(&self) -> Vec<(&str, Version)> {
        self.mounted
            .iter()
            .map(|m| (m.prefix.trim_end_matches('.'), m.version))
            .collect()
    }

    /// The mounted service `name` belongs to, if any.
    fn mounted_for(&self, name: &str) -> Option<&Mounted> {
        self.mounted.iter().find(|m| name.starts_with(&m.prefix))
    }

    /// `ERR UnsupportedVersion` for a call to `name` that requires the
    /// version in `wanted` (raw msgpack of the `api_version` header key),
    /// when its namespace does not serve it. Introspection answers any
    /// version.
    pub(crate) fn refuse_version(&self, name: &str, wanted: &[u8]) -> Option<ServiceError> {
        if INTROSPECTION.contains(&name) {
            return None;
        }
        let served = match self.mounted_for(name) {
            Some(m) => m.version,
            None => self.served_version(),
        };
        version::refuse(name, served, wanted)
    }

    /// Registered method names, sorted.
    pub fn method_names(&self) -> Vec<&str> {
        self.infos.keys().map(String::as_str).collect()
    }

    /// Whether a call to `name` reaches a handler (its own, or a
    /// catch-all's).
    pub(crate) fn answers(&self, name: &str) -> bool {
        self.handlers.contains_key(name) || self.catch_all_for(name).is_some()
    }

    /// Whether method `name` takes a stream of items from its caller (a
    /// client-stream or bidirectional method).
    pub fn takes_items(&self, name: &str) -> bool {
        !self.takes_items.is_empty() && self.takes_items.contains(name)
    }

    /// Introspection data of every method, sorted by name.
    pub fn methods(&self) -> Vec<&MethodInfo> {
        self.infos.values().collect()
    }

    /// Register `handler` as method `name` (no argument names yet).
    pub(crate) fn insert_handler(self, name: &str, handler: Handler) -> Self {
        self.insert(name, None, handler)
    }

    /// [`Service::insert_handler`] for a method that takes a stream of
    /// items.
    pub(crate) fn insert_handler_taking_items(self, name: &str, handler: Handler) -> Self {
        self.insert_taking_items(name, None, handler)
    }

    fn insert(mut self, name: &str, args: Option<Vec<ArgInfo>>, handler: Handler) -> Self {
        let info = MethodInfo {
            name: name.to_string(),
            doc: None,
            args,
        };
        self.infos.insert(name.to_string(), info);
        self.handlers.insert(name.to_string(), handler);
        self.takes_items.remove(name);
        self.last = Some(name.to_string());
        self
    }

    /// [`Service::insert`] for a method that takes a stream of items.
    fn insert_taking_items(
        mut self,
        name: &str,
        args: Option<Vec<ArgInfo>>,
        handler: Handler,
    ) -> Self {
        self = self.insert(name, args, handler);
        self.takes_items.insert(name.to_string());
        self
    }

    fn last_info(&mut self) -> Option<&mut MethodInfo> {
        let last = self.last.as_ref()?;
        self.infos.get_mut(last)
    }

    /// Document the method registered last.
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        if let Some(info) = self.last_info() {
            info.doc = Some(doc.into());
        }
        self
    }

    /// Name the arguments of the method registered last. `"b=10"` declares a
    /// default (parsed as JSON, else kept as a string) for introspection.
    pub fn args<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args = names
            .into_iter()
            .map(|n| introspect::parse_arg(n.as_ref()))
            .collect();
        if let Some(info) = self.last_info() {
            info.args = Some(args);
        }
        self
    }

    /// Register a typed async method. `A` is the argument tuple (`()` for
    /// none, `(T,)` for one); its arity is checked before the call.
    ///
    /// The server polls the handler's future once in its core before giving
    /// it a task of its own, so it must not block the thread: put blocking
    /// or CPU-heavy work in [`Service::method_blocking`].
    pub fn method<A, R, E, F, Fut>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<ServiceError> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let arity = args::arity::<A>();
        let method = name.to_string();
        let handler: Handler =
            Arc::new(
                move |args: Args| match args::decode_typed::<A>(&method, arity, &args) {
                    Ok(a) => {
                        let fut = f(a);
                        Box::pin(async move { encode_result(fut.await.map_err(Into::into)?) })
                    }
                    Err(e) => Box::pin(std::future::ready(Err(e))),
                },
            );
        self.insert(name, introspect::placeholder_names(arity), handler)
    }

    /// Register a typed blocking (or CPU-heavy) method; it runs on the
    /// blocking thread pool so it cannot stall other calls or heartbeats.
    pub fn method_blocking<A, R, E, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<ServiceError> + Send + 'static,
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let arity = args::arity::<A>();
        let method = name.to_string();
        let handler: Handler = Arc::new(move |args: Args| {
            let f = f.clone();
            // The blocking thread has no task: carry the context there.
            let ctx = crate::Context::current();
            match args::decode_typed::<A>(&method, arity, &args) {
                Ok(a) => Box::pin(async move {
                    let run = move || match ctx {
                        Some(ctx) => ctx.sync_scope(|| f(a)),
                        None => f(a),
                    };
                    match tokio::task::spawn_blocking(run).await {
                        Ok(r) => encode_result(r.map_err(Into::into)?),
                        Err(e) => Err(ServiceError::new("Panic", e.to_string())),
                    }
                }),
                Err(e) => Box::pin(std::future::ready(Err(e))),
            }
        });
        self.insert(name, introspect::placeholder_names(arity), handler)
    }

    /// Register a dynamic method: any number of msgpack values in, one out.
    pub fn dynamic<E, F, Fut>(self, name: &str, f: F) -> Self
    where
        E: Into<ServiceError> + Send + 'static,
        F: Fn(Vec<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |args: Args| match args.values() {
            Ok(values) => {
                let fut = f(values);
                Box::pin(async move {
                    Ok(Reply::Value(Encoded::value(
                        &fut.await.map_err(Into::into)?,
                    )))
                })
            }
            Err(e) => Box::pin(std::future::ready(Err(e))),
        });
        self.insert(name, None, handler)
    }

    /// Register a typed streaming method (zerorpc's `@zerorpc.stream`): the
    /// function returns a [`Stream`] of results, sent to the caller one by
    /// one as the caller asks for them (items are produced only when the
    /// caller has granted credit, so a slow reader never makes the server
    /// buffer). An `Err` item ends the stream with `ERR` after the items
    /// already sent.
    ///
    /// ```
    /// use futures::stream::{self, StreamExt};
    /// use zerorpc::{Service, ServiceError};
    /// let svc = Service::new("counter").stream("count", |(n,): (u64,)| {
    ///     stream::iter(0..n).map(Ok::<_, ServiceError>)
    /// });
    /// assert_eq!(svc.method_names(), vec!["count"]);
    /// ```
    pub fn stream<A, R, E, F, S>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<ServiceError> + Send + 'static,
        F: Fn(A) -> S + Send + Sync + 'static,
        S: Stream<Item = Result<R, E>> + Send + 'static,
    {
        let arity = args::arity::<A>();
        let method = name.to_string();
        let handler: Handler = Arc::new(move |args: Args| {
            let reply = args::decode_typed::<A>(&method, arity, &args).map(|a| {
                let items = f(a).map(|item| encode_typed(&item.map_err(Into::into)?));
                Reply::Stream(items.boxed())
            });
            Box::pin(std::future::ready(reply))
        });
        self.insert(name, introspect::placeholder_names(arity), handler)
    }

    /// Register a dynamic streaming method: msgpack values in, a stream of
    /// values out (types preserved exactly).
    pub fn stream_dynamic<E, F, S>(self, name: &str, f: F) -> Self
    where
        E: Into<ServiceError> + Send + 'static,
        F: Fn(Vec<Value>) -> S + Send + Sync + 'static,
        S: Stream<Item = Result<Value, E>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |args: Args| {
            let reply = args.values().map(|values| {
                let items =
                    f(values).map(|item| Ok(msgpack::encode_value(&item.map_err(Into::into)?)));
                Reply::Stream(items.boxed())
            });
            Box::pin(std::future::ready(reply))
        });
        self.insert(name, None, handler)
    }

    /// Register a typed client-stream method: it takes its parameters `A`
    /// and the [`Items`] its caller streams (zrpc's extension, PROTOCOL.md
    /// §9.1), and returns one result. The items arrive as the handler reads
    /// them (a slow handler slows its caller down); they end when the
    /// caller ends its stream, and a caller that fails or drops its stream
    /// cancels the call.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use zerorpc::{Items, Service, ServiceError};
    /// let svc = Service::new("calc").client_stream("sum", |(): (), items: Items<i64>| async move {
    ///     Ok::<_, ServiceError>(items.fold(0, |sum, n| async move { sum + n }).await)
    /// });
    /// assert!(svc.takes_items("sum"));
    /// ```
    ///
    /// A plain call to such a method (a zerorpc peer's, say) is refused
    /// with a `TypeError` rather than run with no items.
    pub fn client_stream<A, T, R, E, F, Fut>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<ServiceError> + Send + 'static,
        F: Fn(A, Items<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let arity = args::arity::<A>();
        let method = name.to_string();
        let handler: Handler =
            Arc::new(
                move |args: Args| match args::decode_typed::<A>(&method, arity, &args) {
                    Ok(a) => {
                        let (items, failed) = Items::typed(&args);
                        let fut = f(a, items);
                        Box::pin(async move {
                            let r = failed.guard(async { fut.await.map_err(Into::into) });
                            encode_result(r.await?)
                        })
                    }
                    Err(e) => Box::pin(std::future::ready(Err(e))),
                },
            );
        self.insert_taking_items(name, introspect::placeholder_names(arity), handler)
    }

    /// Register a typed bidirectional method: it takes its parameters `A`
    /// and the [`Items`] its caller streams, and returns a stream of
    /// results sent as the caller asks for them, while the caller's items
    /// still arrive (each direction has its own credit).
    ///
    /// ```
    /// use futures::StreamExt;
    /// use zerorpc::{Items, Service, ServiceError};
    /// let svc = Service::new("text").bidi_stream("upper", |(): (), words: Items<String>| {
    ///     words.map(|w| Ok::<_, ServiceError>(w.to_uppercase()))
    /// });
    /// assert!(svc.takes_items("upper"));
    /// ```
    pub fn bidi_stream<A, T, R, E, F, S>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<ServiceError> + Send + 'static,
        F: Fn(A, Items<T>) -> S + Send + Sync + 'static,
        S: Stream<Item = Result<R, E>> + Send + 'static,
    {
        let arity = args::arity::<A>();
        let method = name.to_string();
        let handler: Handler = Arc::new(move |args: Args| {
            let reply = args::decode_typed::<A>(&method, arity, &args).map(|a| {
                let (items, failed) = Items::typed(&args);
                let out = f(a, items).map(|item| item.map_err(Into::into));
                let out = failed.guard_stream(out).map(|item| encode_typed(&item?));
                Reply::Stream(out.boxed())
            });
            Box::pin(std::future::ready(reply))
        });
        self.insert_taking_items(name, introspect::placeholder_names(arity), handler)
    }

    /// [`Service::client_stream`] with dynamic values (msgpack types kept):
    /// the parameters, and the caller's items.
    pub fn client_stream_dynamic<E, F, Fut>(self, name: &str, f: F) -> Self
    where
        E: Into<ServiceError> + Send + 'static,
        F: Fn(Vec<Value>, Items<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |args: Args| match args.values() {
            Ok(values) => {
                let (items, failed) = Items::dynamic(&args);
                let fut = f(values, items);
                Box::pin(async move {
                    let v = failed.guard(async { fut.await.map_err(Into::into) });
                    Ok(Reply::Value(Encoded::value(&v.await?)))
                })
            }
            Err(e) => Box::pin(std::future::ready(Err(e))),
        });
        self.insert_taking_items(name, None, handler)
    }

    /// [`Service::bidi_stream`] with dynamic values (msgpack types kept).
    pub fn bidi_stream_dynamic<E, F, S>(self, name: &str, f: F) -> Self
    where
        E: Into<ServiceError> + Send + 'static,
        F: Fn(Vec<Value>, Items<Value>) -> S + Send + Sync + 'static,
        S: Stream<Item = Result<Value, E>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |args: Args| {
            let reply = args.values().map(|values| {
                let (items, failed) = Items::dynamic(&args);
                let out = f(values, items).map(|item| item.map_err(Into::into));
                let out = failed
                    .guard_stream(out)
                    .map(|item| Ok(msgpack::encode_value(&item?)));
                Reply::Stream(out.boxed())
            });
            Box::pin(std::future::ready(reply))
        });
        self.insert_taking_items(name, None, handler)
    }

    /// Answer every method name that is not registered (introspection still
    /// lists only registered ones): the function gets the name and the
    /// arguments. Useful for proxies, and for receivers that log whatever
    /// arrives.
    pub fn catch_all<E, F, Fut>(mut self, f: F) -> Self
    where
        E: Into<ServiceError> + Send + 'static,
        F: Fn(String, Vec<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
    {
        self.catch_all = Some(Arc::new(move |name, args| {
            let fut = f(name, args);
            Box::pin(async move { fut.await.map_err(Into::into) })
        }));
        self
    }

    /// Find the handler for `name`, answering the introspection methods
    /// itself. Unknown names give `NameError`, as in Python. (Whoever
    /// polls the future makes the request's [`crate::Context`] current.)
    pub(crate) fn dispatch(
        &self,
        name: &str,
        args: Args,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>> {
        if let Some(handler) = self.handlers.get(name) {
            return handler(args);
        }
        if name == "_zerorpc_inspect" && (self.version.is_some() || !self.mounted.is_empty()) {
            let answer = self.inspect_with_versions();
            return Box::pin(std::future::ready(Ok(Reply::Value(Encoded::value(
                &answer,
            )))));
        }
        let reply = match introspect::answer(
            &self.name,
            self.server_name.as_deref(),
            &self.infos,
            name,
            &args,
        ) {
            Some(answer) => answer,
            None => match (self.catch_all_for(name), args.values()) {
                (Some((f, name)), Ok(values)) => {
                    let fut = f(name.to_string(), values);
                    return Box::pin(async move { Ok(Reply::Value(Encoded::value(&fut.await?))) });
                }
                (Some(_), Err(e)) => Err(e),
                (None, _) => Err(ServiceError::new("NameError", clip(name, QUOTE_LIMIT))),
            },
        };
        Box::pin(std::future::ready(
            reply.map(|v| Reply::Value(Encoded::value(&v))),
        ))
    }

    /// `_zerorpc_inspect` with the version of each namespace (`""` for the
    /// default service) under `versions`, a key zerorpc's own clients
    /// ignore.
    fn inspect_with_versions(&self) -> Value {
        let mut answer = introspect::inspect(&self.name, &self.infos);
        let versions = std::iter::once(("", self.served_version()))
            .chain(self.namespaces())
            .map(|(ns, v)| (Value::from(ns), Value::from(v.to_string())))
            .collect();
        if let Value::Map(entries) = &mut answer {
            entries.push(("versions".into(), Value::Map(versions)));
        }
        answer
    }

    /// The catch-all answering `name`, and the name as it sees it: a
    /// mounted service's, without its prefix, for names in its namespace.
    fn catch_all_for<'n>(&self, name: &'n str) -> Option<(&CatchAll, &'n str)> {
        match self.mounted_for(name) {
            Some(m) => m.catch_all.as_ref().map(|f| (f, &name[m.prefix.len()..])),
            None => self.catch_all.as_ref().map(|f| (f, name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(svc: &Service, name: &str, args: &[Value]) -> Result<Value, ServiceError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            match svc.dispatch(name, Args::from_values(args)).await? {
                Reply::Value(raw) => Ok(rmpv::decode::read_value(&mut raw.bytes()).unwrap()),
                Reply::Stream(items) => {
                    let items: Vec<Result<Vec<u8>, ServiceError>> = items.collect().await;
                    let mut values = Vec::new();
                    for item in items {
                        values.push(rmpv::decode::read_value(&mut &item?[..]).unwrap());
                    }
                    Ok(Value::Array(values))
                }
            }
        })
    }

    fn calc() -> Service {
        Service::new("calc")
            .method("add", |(a, b): (i64, i64)| async move {
                Ok::<_, ServiceError>(a + b)
            })
            .doc("Add two numbers.\n\nMore.")
            .args(["a", "b=10"])
            .method("none", |(): ()| async { Ok::<_, ServiceError>(()) })
            .dynamic("echo", |v| async move {
                Ok::<_, ServiceError>(v.into_iter().next().unwrap_or(Value::Nil))
            })
    }

    #[test]
    fn reply_frame_is_written_around_the_value() {
        let big = Value::Binary(vec![7; 100_000]);
        let expect = msgpack::encode_value(&big);
        // A header that fits the headroom: no copy, same bytes.
        let enc = Encoded::value(&big);
        let value_at = enc.bytes().as_ptr();
        let frame = enc.with_header(b"HEADER");
        assert_eq!(&frame[..6], b"HEADER");
        assert_eq!(&frame[6..], &expect[..]);
        assert_eq!(frame[6..].as_ptr(), value_at, "the value was copied");
        // A header longer than the headroom is copied in front instead.
        let long = vec![b'h'; Encoded::HEADROOM + 1];
        let frame = Encoded::value(&big).with_header(&long);
        assert_eq!(&frame[..long.len()], &long[..]);
        assert_eq!(&frame[long.len()..], &expect[..]);
    }

    #[test]
    fn typed_call_and_type_errors() {
        let svc = calc();
        assert_eq!(
            run(&svc, "add", &[1.into(), 2.into()]).unwrap(),
            Value::from(3)
        );
        let e = run(&svc, "add", &[1.into()]).unwrap_err();
        assert_eq!(e.name, "TypeError");
        assert!(
            e.message
                .contains("takes 2 positional arguments but 1 was given"),
            "{}",
            e.message
        );
        let e = run(&svc, "add", &[1.into(), "x".into()]).unwrap_err();
        assert_eq!(e.name, "TypeError");
        assert!(e.message.contains("(i64, i64)"), "{}", e.message);
        assert_eq!(run(&svc, "none", &[]).unwrap(), Value::Nil);
        assert!(run(&svc, "none", &[1.into()]).is_err());
    }

    struct Unencodable;
    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom(
                "can not serialize 'Unencodable' object",
            ))
        }
    }

    #[test]
    fn unencodable_result_is_type_error() {
        let svc =
            Service::new("s").method("bad", |(): ()| async { Ok::<_, ServiceError>(Unencodable) });
        let e = run(&svc, "bad", &[]).unwrap_err();
        assert_eq!(e.name, "TypeError");
        assert!(
            e.message.contains("cannot serialize the result"),
            "{}",
            e.message
        );
    }

    #[test]
    fn streams_and_catch_all() {
        let svc = Service::new("s")
            .stream("count", |(n,): (u64,)| {
                futures::stream::iter(0..n).map(Ok::<_, ServiceError>)
            })
            .catch_all(|name, args| async move {
                Ok::<_, ServiceError>(Value::from(format!("{name}/{}", args.len())))
            });
        assert_eq!(
            run(&svc, "count", &[3.into()]).unwrap(),
            Value::Array(vec![0.into(), 1.into(), 2.into()])
        );
        assert_eq!(run(&svc, "count", &[]).unwrap_err().name, "TypeError");
        assert_eq!(
            run(&svc, "other", &[1.into()]).unwrap(),
            Value::from("other/1")
        );
        // Introspection still answers, and lists registered methods only.
        assert_eq!(
            run(&svc, "_zerorpc_list", &[]).unwrap(),
            Value::Array(vec!["count".into()])
        );
    }

    #[test]
    fn unknown_method_is_name_error() {
        let e = run(&calc(), "nosuch", &[]).unwrap_err();
        assert_eq!(
            (e.name.as_str(), e.message.as_str()),
            ("NameError", "nosuch")
        );
    }

    #[test]
    fn introspection_shapes() {
        let svc = calc();
        assert_eq!(
            run(&svc, "_zerorpc_list", &[]).unwrap(),
            Value::Array(vec!["add".into(), "echo".into(), "none".into()])
        );
        assert_eq!(
            run(&svc, "_zerorpc_name", &[]).unwrap(),
            Value::from("calc")
        );
        assert_eq!(
            run(&svc, "_zerorpc_ping", &[]).unwrap(),
            Value::Array(vec!["pong".into(), "calc".into()])
        );
        assert_eq!(
            run(&svc, "_zerorpc_help", &["add".into()]).unwrap(),
            Value::from("Add two numbers.\n\nMore.")
        );
        assert_eq!(
            run(&svc, "_zerorpc_help", &["echo".into()]).unwrap(),
            Value::Nil
        );
        assert_eq!(
            run(&svc, "_zerorpc_help", &["zz".into()]).unwrap_err().name,
            "KeyError"
        );
        assert_eq!(
            run(&svc, "_zerorpc_args", &["add".into()]).unwrap(),
            Value::Array(vec![
                Value::Array(vec!["a".into(), "b".into()]),
                Value::Nil,
                Value::Nil,
                Value::Array(vec![10.into()])
            ])
        );
        let inspect = run(&svc, "_zerorpc_inspect", &[]).unwrap();
        let get = |v: &Value, key: &str| -> Value {
            v.as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {key} in {v}"))
        };
        assert_eq!(get(&inspect, "name"), Value::from("calc"));
        let methods = get(&inspect, "methods");
        let add_args = get(&get(&methods, "add"), "args");
        assert_eq!(get(&add_args[0], "name"), Value::from("a"));
        assert_eq!(get(&add_args[1], "default"), Value::from(10));
        assert_eq!(get(&get(&methods, "echo"), "args"), Value::Nil);
        assert_eq!(get(&get(&methods, "none"), "args"), Value::Array(vec![]));
    }

    struct Obj;
    #[async_trait::async_trait]
    impl RpcService for Obj {
        fn name(&self) -> String {
            "obj".into()
        }
        fn methods(&self) -> Vec<MethodInfo> {
            vec![MethodInfo::new("twice").doc("Double it").args(["x"])]
        }
        async fn call(&self, _method: &str, args: Vec<Value>) -> Result<Value, ServiceError> {
            let x = args
                .first()
                .and_then(Value::as_i64)
                .ok_or_else(|| ServiceError::type_error("need an int"))?;
            Ok(Value::from(2 * x))
        }
    }

    #[test]
    fn objects_are_served() {
        let svc = Service::from_object(Obj);
        assert_eq!(svc.name(), "obj");
        assert_eq!(run(&svc, "twice", &[21.into()]).unwrap(), Value::from(42));
        assert_eq!(
            run(&svc, "_zerorpc_help", &["twice".into()]).unwrap(),
            Value::from("Double it")
        );
    }
}
