//! A service: the name → handler table a server dispatches into, plus the
//! six zerorpc introspection methods derived from it.
//!
//! Handlers come in three flavours that all end up as the same boxed
//! function over raw msgpack arguments:
//! - typed: `async fn(A) -> Result<R, E>` where `A` is a tuple of serde
//!   types (arity is checked and reported like Python's `TypeError`);
//! - blocking: the same shape but a plain `fn`, run on tokio's blocking pool
//!   so CPU-heavy work never delays other calls or heartbeats;
//! - dynamic: `Vec<rmpv::Value>` in, `rmpv::Value` out, with msgpack types
//!   preserved exactly (bin stays bin, u64 stays u64).
//!
//! A whole object can also implement [`RpcService`] and be served as is.

use crate::error::ServiceError;
use crate::event;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

/// The arguments of one call: a msgpack array, decoded on demand.
#[derive(Clone, Debug)]
pub struct Args {
    raw: Bytes,
    len: usize,
}

impl Args {
    /// Wrap a raw msgpack array. Returns `None` if `raw` is not an array.
    pub fn from_raw(raw: Bytes) -> Option<Args> {
        let len = event::array_len(&raw)? as usize;
        Some(Args { raw, len })
    }

    /// Build from values (for tests and in-process calls).
    pub fn from_values(values: &[Value]) -> Args {
        let mut buf = Vec::new();
        let _ = rmpv::encode::write_value(&mut buf, &Value::Array(values.to_vec()));
        Args {
            raw: buf.into(),
            len: values.len(),
        }
    }

    /// Number of positional arguments.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw msgpack array.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Deserialize the whole argument array into `T` (a tuple, a `Vec`, …).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ServiceError> {
        rmp_serde::from_slice(&self.raw).map_err(|e| ServiceError::type_error(e.to_string()))
    }

    /// The arguments as dynamic values, msgpack types preserved.
    pub fn values(&self) -> Result<Vec<Value>, ServiceError> {
        let mut rd = &self.raw[..];
        match rmpv::decode::read_value_with_max_depth(&mut rd, event::MAX_DEPTH + 1) {
            Ok(Value::Array(v)) => Ok(v),
            Ok(_) => Err(ServiceError::type_error("arguments are not an array")),
            Err(e) => Err(ServiceError::type_error(format!(
                "cannot decode arguments: {e}"
            ))),
        }
    }
}

/// What a handler produced, already encoded as msgpack.
pub(crate) enum Reply {
    /// A single value (sent as `OK [value]`).
    Value(Encoded),
    /// Items sent one by one as `STREAM item`, then `STREAM_DONE`; an error
    /// ends the stream with `ERR`.
    Stream(ItemStream),
}

/// Encoded stream items.
pub(crate) type ItemStream = BoxStream<'static, Result<Vec<u8>, ServiceError>>;

type CatchAll = Arc<
    dyn Fn(String, Vec<Value>) -> BoxFuture<'static, Result<Value, ServiceError>> + Send + Sync,
>;

pub(crate) type Handler =
    Arc<dyn Fn(Args) -> BoxFuture<'static, Result<Reply, ServiceError>> + Send + Sync>;

/// Await a handler's future, turning a panic inside it into a `Panic`
/// error, so one bad handler never takes its task's peers down with it.
pub(crate) async fn guarded<T>(
    fut: impl Future<Output = Result<T, ServiceError>>,
) -> Result<T, ServiceError> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => Err(panicked(&*panic)),
    }
}

/// The error a caller gets for a handler that panicked.
pub(crate) fn panicked(p: &(dyn std::any::Any + Send)) -> ServiceError {
    let message = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "handler panicked".into());
    ServiceError::new("Panic", message)
}

/// Description of one argument, for introspection.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgInfo {
    /// Argument name.
    pub name: String,
    /// Default value, if the method has one.
    pub default: Option<Value>,
}

/// Description of one method, for introspection.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodInfo {
    /// Method name.
    pub name: String,
    /// Documentation (first line is the summary shown by listings).
    pub doc: Option<String>,
    /// Arguments, if known.
    pub args: Option<Vec<ArgInfo>>,
}

impl MethodInfo {
    /// A method with no documentation and unknown arguments.
    pub fn new(name: impl Into<String>) -> Self {
        MethodInfo {
            name: name.into(),
            doc: None,
            args: None,
        }
    }

    /// Set the documentation.
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = Some(doc.into());
        self
    }

    /// Set argument names (no defaults).
    pub fn args<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = Some(
            names
                .into_iter()
                .map(|n| ArgInfo {
                    name: n.into(),
                    default: None,
                })
                .collect(),
        );
        self
    }
}

struct Method {
    info: MethodInfo,
    handler: Handler,
}

/// A named table of methods. Build it with the chaining methods, then hand
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
    methods: BTreeMap<String, Method>,
    last: Option<String>,
    catch_all: Option<CatchAll>,
}

impl Service {
    /// An empty service called `name` (what `_zerorpc_name` returns).
    pub fn new(name: impl Into<String>) -> Self {
        Service {
            name: name.into(),
            methods: BTreeMap::new(),
            last: None,
            catch_all: None,
        }
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Registered method names, sorted.
    pub fn method_names(&self) -> Vec<&str> {
        self.methods.keys().map(String::as_str).collect()
    }

    /// Introspection data of every method, sorted by name.
    pub fn methods(&self) -> Vec<&MethodInfo> {
        self.methods.values().map(|m| &m.info).collect()
    }

    fn insert(mut self, name: &str, args: Option<Vec<ArgInfo>>, handler: Handler) -> Self {
        let info = MethodInfo {
            name: name.to_string(),
            doc: None,
            args,
        };
        self.methods
            .insert(name.to_string(), Method { info, handler });
        self.last = Some(name.to_string());
        self
    }

    fn last_info(&mut self) -> Option<&mut MethodInfo> {
        let last = self.last.as_ref()?;
        self.methods.get_mut(last).map(|m| &mut m.info)
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
        let args = names.into_iter().map(|n| parse_arg(n.as_ref())).collect();
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
        let arity = crate::args::arity::<A>();
        let method = name.to_string();
        let handler: Handler = Arc::new(move |args: Args| {
            match crate::args::decode_typed::<A>(&method, arity, &args) {
                Ok(a) => {
                    let fut = f(a);
                    Box::pin(async move { encode_result(fut.await.map_err(Into::into)?) })
                }
                Err(e) => Box::pin(std::future::ready(Err(e))),
            }
        });
        self.insert(name, crate::args::placeholder_names(arity), handler)
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
        let arity = crate::args::arity::<A>();
        let method = name.to_string();
        let handler: Handler = Arc::new(move |args: Args| {
            let f = f.clone();
            match crate::args::decode_typed::<A>(&method, arity, &args) {
                Ok(a) => Box::pin(async move {
                    match tokio::task::spawn_blocking(move || f(a)).await {
                        Ok(r) => encode_result(r.map_err(Into::into)?),
                        Err(e) => Err(ServiceError::new("Panic", e.to_string())),
                    }
                }),
                Err(e) => Box::pin(std::future::ready(Err(e))),
            }
        });
        self.insert(name, crate::args::placeholder_names(arity), handler)
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
        let arity = crate::args::arity::<A>();
        let method = name.to_string();
        let handler: Handler = Arc::new(move |args: Args| {
            let reply = crate::args::decode_typed::<A>(&method, arity, &args).map(|a| {
                let items = f(a).map(|item| encode_typed(&item.map_err(Into::into)?));
                Reply::Stream(items.boxed())
            });
            Box::pin(std::future::ready(reply))
        });
        self.insert(name, crate::args::placeholder_names(arity), handler)
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
                let items = f(values).map(|item| Ok(encode_value(&item.map_err(Into::into)?)));
                Reply::Stream(items.boxed())
            });
            Box::pin(std::future::ready(reply))
        });
        self.insert(name, None, handler)
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

    /// Serve an object implementing [`RpcService`].
    pub fn from_object<S: RpcService>(object: S) -> Self {
        let object = Arc::new(object);
        let mut service = Service::new(object.name());
        for info in object.methods() {
            let obj = object.clone();
            let method = info.name.clone();
            let handler: Handler = Arc::new(move |args: Args| {
                let obj = obj.clone();
                let method = method.clone();
                Box::pin(async move {
                    let values = args.values()?;
                    Ok(Reply::Value(Encoded::value(
                        &obj.call(&method, values).await?,
                    )))
                })
            });
            let name = info.name.clone();
            service = service.insert(&name, info.args.clone(), handler);
            if let Some(m) = service.methods.get_mut(&name) {
                m.info = info;
            }
        }
        service
    }

    /// Find the handler for `name`, answering the introspection methods
    /// itself. Unknown names give `NameError`, as in Python.
    pub(crate) fn dispatch(
        &self,
        name: &str,
        args: Args,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>> {
        if let Some(m) = self.methods.get(name) {
            return (m.handler)(args);
        }
        let reply = match name {
            "_zerorpc_list" => Ok(Value::Array(
                self.methods
                    .keys()
                    .map(|k| Value::from(k.as_str()))
                    .collect(),
            )),
            "_zerorpc_name" => Ok(Value::from(self.name.as_str())),
            "_zerorpc_ping" => Ok(Value::Array(vec!["pong".into(), self.name.as_str().into()])),
            "_zerorpc_inspect" => Ok(self.inspect()),
            "_zerorpc_help" => self
                .lookup_arg(&args)
                .map(|m| m.doc.as_deref().map_or(Value::Nil, Value::from)),
            "_zerorpc_args" => self.lookup_arg(&args).map(argspec),
            _ => match (&self.catch_all, args.values()) {
                (Some(f), Ok(values)) => {
                    let fut = f(name.to_string(), values);
                    return Box::pin(async move { Ok(Reply::Value(Encoded::value(&fut.await?))) });
                }
                (Some(_), Err(e)) => Err(e),
                (None, _) => Err(ServiceError::new("NameError", name)),
            },
        };
        Box::pin(std::future::ready(
            reply.map(|v| Reply::Value(Encoded::value(&v))),
        ))
    }

    fn lookup_arg(&self, args: &Args) -> Result<&MethodInfo, ServiceError> {
        let (name,): (String,) = crate::args::decode_typed("_zerorpc_help", Some(1), args)?;
        self.methods
            .get(&name)
            .map(|m| &m.info)
            .ok_or_else(|| ServiceError::new("KeyError", name))
    }

    fn inspect(&self) -> Value {
        let methods = self
            .methods
            .values()
            .map(|m| {
                let args = m.info.args.as_ref().map_or(Value::Nil, |args| {
                    Value::Array(
                        args.iter()
                            .map(|a| {
                                let mut entry = vec![("name".into(), a.name.as_str().into())];
                                if let Some(d) = &a.default {
                                    entry.push(("default".into(), d.clone()));
                                }
                                Value::Map(entry)
                            })
                            .collect(),
                    )
                });
                let doc = m.info.doc.as_deref().map_or(Value::Nil, Value::from);
                (
                    Value::from(m.info.name.as_str()),
                    Value::Map(vec![("args".into(), args), ("doc".into(), doc)]),
                )
            })
            .collect();
        Value::Map(vec![
            ("name".into(), self.name.as_str().into()),
            ("methods".into(), Value::Map(methods)),
        ])
    }
}

/// `_zerorpc_args`: the getargspec 4-array `[args, varargs, keywords, defaults]`.
fn argspec(info: &MethodInfo) -> Value {
    let args = info.args.as_deref().unwrap_or(&[]);
    let names = Value::Array(args.iter().map(|a| a.name.as_str().into()).collect());
    let defaults: Vec<Value> = args.iter().filter_map(|a| a.default.clone()).collect();
    let defaults = if defaults.is_empty() {
        Value::Nil
    } else {
        Value::Array(defaults)
    };
    Value::Array(vec![names, Value::Nil, Value::Nil, defaults])
}

fn parse_arg(spec: &str) -> ArgInfo {
    match spec.split_once('=') {
        Some((name, default)) => {
            let default = serde_json::from_str::<serde_json::Value>(default)
                .map(|j| crate::value::from_json(&j))
                .unwrap_or_else(|_| Value::from(default));
            ArgInfo {
                name: name.trim().to_string(),
                default: Some(default),
            }
        }
        None => ArgInfo {
            name: spec.trim().to_string(),
            default: None,
        },
    }
}

/// A whole service object. Implement this when one type answers many
/// methods (for example a wrapper around existing state), then serve it
/// with [`Service::from_object`].
#[async_trait::async_trait]
pub trait RpcService: Send + Sync + 'static {
    /// The service name (`_zerorpc_name`).
    fn name(&self) -> String;
    /// The methods it answers, with docs and argument names.
    fn methods(&self) -> Vec<MethodInfo>;
    /// Run one method.
    async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value, ServiceError>;
}

/// Encode a dynamic value exactly as it was received: unlike
/// `rmpv::encode::write_value`, a str holding invalid UTF-8 stays a str.
pub(crate) fn encode_value(v: &Value) -> Vec<u8> {
    let mut buf = Vec::with_capacity(len_hint(v));
    write_value(&mut buf, v);
    buf
}

/// About how many bytes `v` encodes to (exact for flat values), to size
/// buffers once instead of growing them by copying.
pub(crate) fn len_hint(v: &Value) -> usize {
    match v {
        Value::String(s) => 5 + s.as_bytes().len(),
        Value::Binary(b) => 5 + b.len(),
        Value::Array(items) => 5 + items.iter().map(len_hint).sum::<usize>(),
        Value::Map(entries) => {
            5 + entries
                .iter()
                .map(|(k, v)| len_hint(k) + len_hint(v))
                .sum::<usize>()
        }
        Value::Ext(_, data) => 6 + data.len(),
        _ => 9,
    }
}

pub(crate) fn write_value(buf: &mut Vec<u8>, v: &Value) {
    // Writing to a Vec cannot fail.
    match v {
        Value::String(s) if s.as_str().is_none() => {
            let _ = rmp::encode::write_str_len(buf, s.as_bytes().len() as u32);
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            let _ = rmp::encode::write_array_len(buf, items.len() as u32);
            items.iter().for_each(|i| write_value(buf, i));
        }
        Value::Map(entries) => {
            let _ = rmp::encode::write_map_len(buf, entries.len() as u32);
            for (k, v) in entries {
                write_value(buf, k);
                write_value(buf, v);
            }
        }
        other => {
            let _ = rmpv::encode::write_value(buf, other);
        }
    }
}

/// Encode a typed result; structs become msgpack maps (what Python and Node
/// peers expect), not rmp-serde's default arrays.
pub(crate) fn encode_result<R: Serialize>(r: R) -> Result<Reply, ServiceError> {
    let mut buf = Encoded::buffer(64);
    write_typed(&mut buf, &r)?;
    Ok(Reply::Value(Encoded(buf)))
}

fn encode_typed<R: Serialize>(r: &R) -> Result<Vec<u8>, ServiceError> {
    let mut buf = Vec::new();
    write_typed(&mut buf, r)?;
    Ok(buf)
}

fn write_typed<R: Serialize>(buf: &mut Vec<u8>, r: &R) -> Result<(), ServiceError> {
    rmp_serde::encode::write_named(buf, r)
        .map_err(|e| ServiceError::type_error(format!("cannot serialize the result: {e}")))
}

/// A reply value encoded after [`Encoded::HEADROOM`] spare bytes, so the
/// server writes the `OK` event's header in front of it instead of copying
/// the value into a new frame (a 1 MiB result is never copied again).
pub(crate) struct Encoded(Vec<u8>);

impl Encoded {
    /// Room for the `OK` header: 66 bytes plus the echoed request id (34
    /// for zrpc's and zerorpc-python's ids). Longer ids are copied instead.
    pub(crate) const HEADROOM: usize = 128;

    fn buffer(value_len: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(Self::HEADROOM + value_len);
        buf.resize(Self::HEADROOM, 0);
        buf
    }

    /// Encode a dynamic value.
    pub(crate) fn value(v: &Value) -> Self {
        let mut buf = Self::buffer(len_hint(v));
        write_value(&mut buf, v);
        Encoded(buf)
    }

    /// The encoded value.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0[Self::HEADROOM..]
    }

    /// The whole frame: `header` written just before the value when it
    /// fits in the headroom (else copied), as one `Bytes`.
    pub(crate) fn with_header(mut self, header: &[u8]) -> Bytes {
        match Self::HEADROOM.checked_sub(header.len()) {
            Some(start) => {
                self.0[start..Self::HEADROOM].copy_from_slice(header);
                Bytes::from(self.0).slice(start..)
            }
            None => {
                let mut frame = Vec::with_capacity(header.len() + self.bytes().len());
                frame.extend_from_slice(header);
                frame.extend_from_slice(self.bytes());
                Bytes::from(frame)
            }
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
        let expect = encode_value(&big);
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
        let json = crate::value::to_json(&inspect);
        assert_eq!(json["name"], "calc");
        assert_eq!(json["methods"]["add"]["args"][1]["default"], 10);
        assert_eq!(json["methods"]["add"]["args"][0]["name"], "a");
        assert!(json["methods"]["echo"]["args"].is_null());
        assert_eq!(json["methods"]["none"]["args"], serde_json::json!([]));
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
