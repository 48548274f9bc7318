//! The client: a DEALER proxy that multiplexes any number of concurrent
//! calls, heartbeats them, and survives server restarts.
//!
//! A call's way out, one file per step: [`Client::call`] (`mod.rs`) →
//! `Pending::send` (`call.rs`: the request encoded with its header, the
//! call registered) → `Table::start` (`calls.rs`: the call table, under
//! one lock, picks a server) → `Servers::send` (`servers.rs`: that
//! server's link) → `Link::send` (`crate::transport`: straight to the
//! socket's queue when nothing waits, no task in between). Its way back:
//! whoever reads the sockets (`reader.rs`: the waiting caller itself, or
//! the client's core task) hands each event to the table, which routes it
//! to its call: the first event into the call's slot, where its `Pending`
//! future takes it; a stream's later events to its [`ReplyStream`].
//!
//! A call that times out, or whose caller dropped the future, is
//! forgotten and its server told (`_zpc_cancel`). Each server is its own
//! link, and every event of a call goes through the link that carried its
//! request. A call goes to the healthy server with the fewest calls in
//! flight (`servers.rs`); a call lost with its server fails with
//! `LostRemote` unless its caller allowed a [`Retry`]; servers given by
//! name are found and followed by `discovery`.
//!
//! | file | concept |
//! |---|---|
//! | `mod.rs` | the [`Client`] handle and its calls |
//! | `call` | one call from its caller's side: the request, the `Pending` future, the reply's reading |
//! | `reply` | what comes back: the first event, the slot it lands in, a stream's queue, how `OK` and `ERR` read |
//! | `calls` | the call table: every call in flight, where it goes, what each event means for it, timeouts, heartbeats |
//! | `servers` | the servers, their health and load, and where a call goes |
//! | `reader` | who reads the sockets (a waiting caller, or the core task), and the table's lock |
//! | `stream` | [`ReplyStream`] and its credit |
//! | `deadlines` | when calls time out, earliest first |
//! | `discovery` | servers found by name: [`Resolver`] and the built-in ones |
//! | `retry` | what a caller may allow to be sent twice: [`Retry`] |
//! | `upload` | a call whose caller streams items: its request, and the task sending the items under the server's credit |
//! | `kwargs` | keyword arguments placed at positions by the server's own introspection |
//! | `prepared` | [`Prepared`]: the client with its target overridden (oslo's `prepare`) |
//! | `builder` | [`ClientBuilder`] |
//! | `test_waker` | (tests) a waker that counts its wake-ups |

mod builder;
mod call;
mod calls;
mod deadlines;
mod discovery;
mod kwargs;
mod prepared;
mod reader;
mod reply;
mod retry;
mod servers;
mod stream;
#[cfg(test)]
mod test_waker;
mod upload;

pub use builder::ClientBuilder;
pub(crate) use call::encode_args;
#[cfg(feature = "dns")]
pub use discovery::DnsResolver;
pub use discovery::{Resolver, SystemResolver, DEFAULT_RESOLVE_EVERY};
pub use prepared::Prepared;
pub use retry::Retry;
pub use stream::ReplyStream;

use crate::error::Error;
use crate::protocol::{self, budget, MessageId};
use bytes::Bytes;
use call::{request_dynamic, request_serde, Pending};
use reader::Reader;
use reply::{decode_serde, decode_value, single_value, Decode, Reply};
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Default call timeout, as in zerorpc.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-call options.
///
/// ```
/// use std::time::Duration;
/// use zerorpc::CallOptions;
/// let opts = CallOptions::timeout(Duration::from_secs(2)).header("tenant", "acme");
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Overrides the client's timeout for this call (`Some(None)` = forever).
    pub timeout: Option<Option<Duration>>,
    /// Header keys sent with this call, after (and over) the client's own
    /// ([`ClientBuilder::header`]).
    pub headers: Vec<(String, Value)>,
    /// Send the call again if its server is lost before answering (see
    /// [`Retry`]); overrides [`ClientBuilder::retry`].
    pub retry: Option<Retry>,
    /// Send the call to the server with this name only ([`CallOptions::to`]).
    pub to: Option<String>,
}

impl CallOptions {
    /// A call with this timeout.
    pub fn timeout(t: Duration) -> Self {
        CallOptions {
            timeout: Some(Some(t)),
            ..CallOptions::default()
        }
    }

    /// Add a header key to this call (metadata the server's handler reads
    /// with [`Context::header`](crate::Context::header)).
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Require this API version of the method's namespace (the
    /// `api_version` header; see [`Service::version`](crate::Service::version)):
    /// a server that does not serve it answers `ERR UnsupportedVersion`,
    /// naming both versions.
    pub fn api_version(self, version: crate::Version) -> Self {
        self.header(crate::protocol::API_VERSION_KEY, version.to_string())
    }

    /// Send this call to the server called `name` ([`ServerBuilder::name`](crate::ServerBuilder::name),
    /// `zrpc --server-name`), among the client's servers, as
    /// oslo.messaging's `Target(server=...)`. The client asks each server
    /// its name once per connection (`_zrpc_server_name`); when none of
    /// them has it, the call fails at once ([`Error::UnknownServer`], listing
    /// the names there are).
    pub fn to(mut self, name: impl Into<String>) -> Self {
        self.to = Some(name.into());
        self
    }

    /// Allow this call to be sent again, to another server, if its server
    /// is lost before answering: only for a call that is safe to run twice.
    pub fn retry(mut self, policy: Retry) -> Self {
        self.retry = Some(policy);
        self
    }
}

/// One server of a [`Client`], as [`Client::servers`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// Its endpoint (for a discovered server, the address found).
    pub endpoint: String,
    /// Connected now.
    pub connected: bool,
    /// Skipped by new calls: it let a call's heartbeats lapse and has not
    /// answered since, or it left its name's addresses.
    pub skipped: bool,
    /// Calls of this client in flight on it.
    pub in_flight: usize,
    /// Calls it answered.
    pub answered: u64,
    /// Its name, once a call was sent to a server by name
    /// ([`CallOptions::to`]); `None` before, or for a server that is not
    /// zrpc.
    pub name: Option<String>,
}

/// A connection to one or more zerorpc servers. Cheap to clone; all clones
/// share one socket per endpoint. The socket closes when the last clone is
/// dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// The call table and who reads the sockets (see `reader.rs`).
    reader: Arc<Reader>,
    timeout: Option<Duration>,
    retry: Option<Retry>,
    endpoints: Vec<String>,
    /// Header keys of every call.
    headers: Vec<(String, Value)>,
    hooks: builder::Hooks,
    /// The core task (see `reader.rs`).
    task: tokio::task::JoinHandle<()>,
    /// Resolves the names among the endpoints (see `discovery.rs`).
    discovery: Option<tokio::task::JoinHandle<()>>,
    /// The most memory decoding one reply or item may take.
    max_decoded: usize,
    /// Methods' parameters, for keyword arguments (see `kwargs.rs`).
    signatures: kwargs::Signatures,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(d) = &self.discovery {
            d.abort();
        }
    }
}

/// What a call produced when the caller does not know in advance whether
/// the method streams (the command line, proxies).
#[derive(Debug)]
pub enum Response {
    /// The method returned one value (`OK`).
    Value(Value),
    /// The method streams (`STREAM` ...).
    Stream(ReplyStream<Value>),
}

/// The single value of a call's first event, raw.
fn only_value(method: &str, first: Reply) -> Result<Bytes, Error> {
    if first.is_stream() {
        return Err(Error::Protocol(format!(
            "{method} streams its reply: read it with Client::stream"
        )));
    }
    single_value(method, first)
}

impl Client {
    /// Connect to one endpoint with default settings.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Client, Error> {
        Client::builder().connect(endpoint).start().await
    }

    /// Start configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The endpoints (bound ones resolved; names as given).
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// A view of this client with its target overridden — namespace,
    /// version, server name, timeout, header keys — as oslo.messaging's
    /// `client.prepare(...)`: see [`Prepared`].
    pub fn prepare(&self) -> Prepared {
        Prepared::new(self.clone())
    }

    /// Every server this client knows now (given, bound or discovered),
    /// with its state and load.
    pub fn servers(&self) -> Vec<ServerInfo> {
        self.inner.reader.lock().servers.info()
    }

    /// Call `method` with `args` (a tuple such as `(1, 2)`, `()` for none, or
    /// a `Vec`) and decode the result into `R`.
    ///
    /// Like an `async fn`, nothing is sent until the future is first polled.
    // (Not an `async fn` itself: that would wrap `call_with`'s future in one
    // more, 48 bytes larger, moved with every call into whatever holds it.)
    pub fn call<'a, A: Serialize + 'a, R: DeserializeOwned + 'a>(
        &'a self,
        method: &'a str,
        args: A,
    ) -> impl std::future::Future<Output = Result<R, Error>> + 'a {
        self.call_with(method, args, CallOptions::default())
    }

    /// [`Client::call`] with per-call options.
    pub async fn call_with<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
        opts: CallOptions,
    ) -> Result<R, Error> {
        let encode = |extra: &_| request_serde(method, extra, &args);
        if let Some(to) = &opts.to {
            self.learn_names(opts.timeout, to).await?;
        }
        let (_, first) = Pending::send(self, method, encode, opts)?.await?;
        let result = only_value(method, first)?;
        crate::blob::from_msgpack(&result, &result, self.inner.max_decoded)
            .map_err(|e| Error::decode(format!("the result of {method}"), e))
    }

    /// Call with dynamic values; the result keeps its msgpack types.
    pub async fn call_dynamic(&self, method: &str, args: Vec<Value>) -> Result<Value, Error> {
        self.call_dynamic_with(method, args, CallOptions::default())
            .await
    }

    /// Call `method` with keyword arguments as well as positional ones,
    /// whatever the server: zerorpc only has positions, so the names are
    /// placed at their positions by the method's parameters as the server
    /// reports them (`_zerorpc_inspect`, else `_zerorpc_args`; learned once
    /// per method and client), and skipped parameters get their declared
    /// defaults. An unknown name, a name given twice or a parameter left
    /// without a value fails here ([`Error::Arguments`], naming the
    /// method's real parameters), before anything is sent.
    ///
    /// ```no_run
    /// # async fn demo(client: zerorpc::Client) -> Result<(), zerorpc::Error> {
    /// use zerorpc::Value;
    /// // A zerorpc-python `def add(self, a, b=10)`:
    /// let sum: i64 = client
    ///     .call_kwargs("add", vec![], vec![("a".into(), Value::from(5))])
    ///     .await?;
    /// assert_eq!(sum, 15);
    /// # Ok(()) }
    /// ```
    pub async fn call_kwargs<R: DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<R, Error> {
        let args = self.positional(method, args, kwargs).await?;
        self.call(method, args).await
    }

    /// The positional arguments that [`Client::call_kwargs`] would send:
    /// `args`, then each keyword at its parameter's position.
    pub async fn positional(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<Vec<Value>, Error> {
        if kwargs.is_empty() {
            return Ok(args);
        }
        let signatures = &self.inner.signatures;
        if !matches!(signatures.get(method), Some(Some(_))) {
            match self.call_dynamic("_zerorpc_inspect", vec![]).await {
                Ok(inspect) => signatures.learn_inspect(&inspect),
                Err(Error::Remote(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if !matches!(signatures.get(method), Some(Some(_))) {
            // Older servers, and Python's when its inspect fails as a whole.
            match self
                .call_dynamic("_zerorpc_args", vec![method.into()])
                .await
            {
                Ok(spec) => signatures.learn_argspec(method, &spec),
                Err(Error::Remote(e)) => {
                    return Err(Error::Arguments(format!(
                        "keyword arguments need the parameters of {method}, and the server does not report them ({}: {})",
                        e.name, e.message
                    )))
                }
                Err(e) => return Err(e),
            }
        }
        match signatures.get(method) {
            Some(Some(params)) => kwargs::place(method, &params, args, kwargs),
            _ => Err(Error::Arguments(format!(
                "keyword arguments need the parameters of {method}, and the server does not report them"
            ))),
        }
    }

    /// Ask every connected server whose name is not known yet
    /// (`_zrpc_server_name`, at once, each bounded by `timeout` or 5 s):
    /// what [`CallOptions::to`] needs. A server that is not zrpc answers
    /// `NameError` and has no name; one that does not answer is asked
    /// again next time.
    async fn learn_names(
        &self,
        timeout: Option<Option<Duration>>,
        wanted: &str,
    ) -> Result<(), Error> {
        let ask = Duration::from_secs(5).min(
            timeout
                .unwrap_or(self.inner.timeout)
                .unwrap_or(Duration::MAX),
        );
        // A client just started may still be connecting: give its servers
        // a moment (a down one costs a call by name this wait, no more).
        let connecting = tokio::time::Instant::now() + ask.min(Duration::from_secs(1));
        while tokio::time::Instant::now() < connecting
            && !self.inner.reader.lock().servers.iter().all(|(_, s)| s.up)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let unnamed = self.inner.reader.lock().servers.unnamed();
        self.ask_names(unnamed, ask).await?;
        // Brokers' workers come and go: asked again for a name not known.
        let brokers = {
            let mut table = self.inner.reader.lock();
            match table.servers.named(wanted) {
                Some(_) => Vec::new(),
                None => table.servers.forget_brokers_names(),
            }
        };
        self.ask_names(brokers, ask).await
    }

    /// Ask servers `ids` their names (`_zrpc_server_name`), each bounded by
    /// `ask`: a str is a server's name, an array of strs the names of the
    /// workers behind a broker.
    async fn ask_names(&self, ids: Vec<servers::ServerId>, ask: Duration) -> Result<(), Error> {
        let asks = ids.into_iter().map(|id| async move {
            let method = crate::service::SERVER_NAME;
            let encode = |extra: &_| Ok(request_dynamic(method, extra, vec![]));
            let opts = CallOptions::timeout(ask);
            let answer = match Pending::send_to(self, method, encode, opts, Some(id), None) {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            };
            let name = match answer {
                Ok((_, first)) => only_value(method, first)
                    .ok()
                    .and_then(|raw| budget::read_value(&raw, self.inner.max_decoded).ok())
                    .map(servers::Named::from_answer)
                    .unwrap_or(servers::Named::None),
                // Not zrpc (NameError): no name, and none to come.
                Err(Error::Remote(_)) => servers::Named::None,
                Err(Error::Closed) => return Err(Error::Closed),
                // Lost or slow: ask again next time.
                Err(_) => return Ok(()),
            };
            if let Some(server) = self.inner.reader.lock().servers.get_mut(id) {
                server.name = Some(name);
            }
            Ok(())
        });
        for asked in futures::future::join_all(asks).await {
            asked?;
        }
        Ok(())
    }

    /// [`Client::call_dynamic`] with per-call options.
    pub async fn call_dynamic_with(
        &self,
        method: &str,
        args: Vec<Value>,
        opts: CallOptions,
    ) -> Result<Value, Error> {
        let encode = |extra: &_| Ok(request_dynamic(method, extra, args));
        if let Some(to) = &opts.to {
            self.learn_names(opts.timeout, to).await?;
        }
        let (_, first) = Pending::send(self, method, encode, opts)?.await?;
        let result = only_value(method, first)?;
        budget::read_value(&result, self.inner.max_decoded)
            .map_err(|e| Error::decode(format!("the result of {method}"), e))
    }

    /// Call a streaming method and read its items as they arrive. The call's
    /// timeout covers the first item; later ones are bounded by heartbeats
    /// only (a stream may legitimately be slow). A method that returns a
    /// single value yields it as a one-item stream. Dropping the stream
    /// abandons the call: heartbeats stop and the server stops producing.
    ///
    /// ```no_run
    /// # async fn demo(client: zerorpc::Client) -> Result<(), zerorpc::Error> {
    /// use futures::StreamExt;
    /// let mut items = client.stream::<_, u64>("count", (3,)).await?;
    /// while let Some(item) = items.next().await {
    ///     println!("{}", item?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
    ) -> Result<ReplyStream<R>, Error> {
        self.stream_with(method, args, CallOptions::default()).await
    }

    /// [`Client::stream`] with per-call options.
    pub async fn stream_with<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
        opts: CallOptions,
    ) -> Result<ReplyStream<R>, Error> {
        let encode = |extra: &_| request_serde(method, extra, &args);
        if let Some(to) = &opts.to {
            self.learn_names(opts.timeout, to).await?;
        }
        let (id, first) = Pending::send(self, method, encode, opts)?.await?;
        self.make_stream(method, id, first, decode_serde::<R>)
    }

    /// Call a client-stream method (zrpc's extension, PROTOCOL.md §9.1):
    /// `args` as for [`Client::call`], then `items`, sent as the server
    /// asks for them (a slow server slows the sending down; nothing queues
    /// without bound); one result back. The call's timeout covers the whole
    /// exchange, up to the result.
    ///
    /// ```no_run
    /// # async fn demo(client: zerorpc::Client) -> Result<(), zerorpc::Error> {
    /// let total: i64 = client.client_stream("sum", (), futures::stream::iter(1..=100)).await?;
    /// assert_eq!(total, 5050);
    /// # Ok(()) }
    /// ```
    ///
    /// A server without the extension (zerorpc-python, zerorpc-node) gets
    /// no item and answers the request unrun: [`Error::NoStreams`]. An item
    /// that cannot be encoded fails the call ([`Error::ItemsFailed`]) and
    /// cancels it on the server; dropping the future cancels it too.
    pub async fn client_stream<A, T, R>(
        &self,
        method: &str,
        args: A,
        items: impl futures::Stream<Item = T> + Send + 'static,
    ) -> Result<R, Error>
    where
        A: Serialize,
        T: Serialize + Send + 'static,
        R: DeserializeOwned,
    {
        self.client_stream_with(method, args, items, CallOptions::default())
            .await
    }

    /// [`Client::client_stream`] with per-call options.
    pub async fn client_stream_with<A, T, R>(
        &self,
        method: &str,
        args: A,
        items: impl futures::Stream<Item = T> + Send + 'static,
        opts: CallOptions,
    ) -> Result<R, Error>
    where
        A: Serialize,
        T: Serialize + Send + 'static,
        R: DeserializeOwned,
    {
        let encode = |extra: &_| upload::request(method, extra, &args);
        let (_, first) = self
            .send_items(method, encode, upload::typed(items), opts)
            .await?;
        let result = only_value(method, first)?;
        crate::blob::from_msgpack(&result, &result, self.inner.max_decoded)
            .map_err(|e| Error::decode(format!("the result of {method}"), e))
    }

    /// Call a bidirectional method (zrpc's extension, PROTOCOL.md §9.1):
    /// `items` go to the server as it asks for them while its results come
    /// back as a [`ReplyStream`], each direction under its own credit.
    /// Returns once the first result (or the end) has arrived; the call's
    /// timeout covers the wait for it.
    ///
    /// ```no_run
    /// # async fn demo(client: zerorpc::Client) -> Result<(), zerorpc::Error> {
    /// use futures::StreamExt;
    /// let words = futures::stream::iter(["a", "b"]);
    /// let mut upper = client.bidi_stream::<_, _, String>("upper", (), words).await?;
    /// while let Some(word) = upper.next().await {
    ///     println!("{}", word?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn bidi_stream<A, T, R>(
        &self,
        method: &str,
        args: A,
        items: impl futures::Stream<Item = T> + Send + 'static,
    ) -> Result<ReplyStream<R>, Error>
    where
        A: Serialize,
        T: Serialize + Send + 'static,
        R: DeserializeOwned,
    {
        self.bidi_stream_with(method, args, items, CallOptions::default())
            .await
    }

    /// [`Client::bidi_stream`] with per-call options.
    pub async fn bidi_stream_with<A, T, R>(
        &self,
        method: &str,
        args: A,
        items: impl futures::Stream<Item = T> + Send + 'static,
        opts: CallOptions,
    ) -> Result<ReplyStream<R>, Error>
    where
        A: Serialize,
        T: Serialize + Send + 'static,
        R: DeserializeOwned,
    {
        let encode = |extra: &_| upload::request(method, extra, &args);
        let (id, first) = self
            .send_items(method, encode, upload::typed(items), opts)
            .await?;
        self.make_stream(method, id, first, decode_serde::<R>)
    }

    /// A stream call with dynamic values, taking whatever comes back: one
    /// value (a client-stream method) or a stream of values (a
    /// bidirectional one). An `Err` item fails the caller's stream: the
    /// server is told (`ERR`) and cancels the call, which fails here with
    /// [`Error::ItemsFailed`].
    pub async fn request_dynamic_with_items(
        &self,
        method: &str,
        args: Vec<Value>,
        items: impl futures::Stream<Item = Result<Value, crate::ServiceError>> + Send + 'static,
        opts: CallOptions,
    ) -> Result<Response, Error> {
        let encode = |extra: &_| Ok(upload::request_dynamic(method, extra, args));
        let (id, first) = self
            .send_items(method, encode, upload::dynamic(items), opts)
            .await?;
        self.response(method, id, first)
    }

    /// Send a stream call, start the task that sends its items, and wait
    /// for its first event.
    async fn send_items(
        &self,
        method: &str,
        encode: impl FnOnce(&protocol::HeaderExtra) -> Result<(MessageId, Bytes), Error>,
        items: impl futures::Stream<Item = upload::Item> + Send + 'static,
        opts: CallOptions,
    ) -> Result<(MessageId, Reply), Error> {
        if let Some(to) = &opts.to {
            self.learn_names(opts.timeout, to).await?;
        }
        let (up, ended) = upload::Upload::new();
        let pending = Pending::send_streaming(self, method, encode, opts, up.clone())?;
        let id = pending.id();
        let inner = self.inner.clone();
        tokio::spawn(upload::send_items(
            inner,
            method.into(),
            id,
            up,
            ended,
            items,
        ));
        let (id, first) = pending.await?;
        match upload::refused(method, &first) {
            Some(e) => Err(e),
            None => Ok((id, first)),
        }
    }

    /// Call with dynamic values and take whatever comes back: one value, or
    /// a stream of values.
    pub async fn request_dynamic(
        &self,
        method: &str,
        args: Vec<Value>,
        opts: CallOptions,
    ) -> Result<Response, Error> {
        let encode = |extra: &_| Ok(request_dynamic(method, extra, args));
        if let Some(to) = &opts.to {
            self.learn_names(opts.timeout, to).await?;
        }
        let (id, first) = Pending::send(self, method, encode, opts)?.await?;
        self.response(method, id, first)
    }

    /// A dynamic call's answer: one value, or a stream of values.
    fn response(&self, method: &str, id: MessageId, first: Reply) -> Result<Response, Error> {
        if first.is_stream() {
            return self
                .make_stream(method, id, first, decode_value)
                .map(Response::Stream);
        }
        let value = single_value(method, first)?;
        budget::read_value(&value, self.inner.max_decoded)
            .map(Response::Value)
            .map_err(|e| Error::decode(format!("the result of {method}"), e))
    }

    fn make_stream<R>(
        &self,
        method: &str,
        id: MessageId,
        first: Reply,
        decode: Decode<R>,
    ) -> Result<ReplyStream<R>, Error> {
        let rest = first.rest;
        let first = match &*first.name {
            protocol::STREAM => Some(first.args),
            // An empty stream.
            protocol::STREAM_DONE => None,
            _ => Some(single_value(
                method,
                Reply {
                    rest: None,
                    ..first
                },
            )?),
        };
        Ok(ReplyStream::new(
            method,
            id,
            first,
            rest,
            self.inner.clone(),
            decode,
        ))
    }

    /// Stop taking calls (new ones fail with [`Error::Closed`]), let the
    /// calls in flight finish for up to `grace`, fail the rest with
    /// [`Error::Closed`], and close the sockets. Fails with
    /// [`Error::Unfinished`] when calls had to be failed. Every clone of this
    /// client is closed; closing a closed client does nothing.
    pub async fn close(&self, grace: Duration) -> Result<(), Error> {
        let Some(failed) = self.inner.reader.close(grace).await else {
            return Ok(());
        };
        if let Some(d) = &self.inner.discovery {
            d.abort();
        }
        self.inner.task.abort();
        match failed {
            0 => Ok(()),
            count => Err(Error::Unfinished {
                count,
                what: "calls failed",
                grace,
            }),
        }
    }
}
