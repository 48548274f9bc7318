//! The server: ROUTER sockets in, handlers run, replies out.
//!
//! One core task owns all channel state (no locks). It reads every link's
//! socket itself, decodes each event, and either feeds it to an open
//! channel (heartbeats, stream credit, cancel) or admits a new request. A
//! handler that finishes without waiting is answered inline; any other runs
//! in its own tokio task (`request.rs`) and hands its encoded reply back to
//! the core, which forwards it only while the channel is open — so a reply
//! to a client that has gone is simply dropped. The core also sends
//! heartbeats on one shared tick, cancels the task of any client that goes
//! silent or disconnects, and drains on stop.
//!
//! A request's way: the core's `on_message` → `on_request` (`core.rs`:
//! checks, pool, inline first poll) → `request::spawn` when it waits →
//! the reply through `reply.rs` → the link (`crate::transport`).
//!
//! | file | concept |
//! |---|---|
//! | `mod.rs` | [`ServerBuilder`] and the [`Server`] handle |
//! | `core` | the core task (`Core`, all its methods): its loop, link events, requests, channel events (a caller's stream of items among them), ticks, draining |
//! | `channel` | an open channel (`Chan`), its key, what it keeps of a caller's items (`Input`), and the table of them |
//! | `request` | running a handler: the inline first poll, its own task, its stream under credit |
//! | `deadlines` | when requests' callers stop waiting, behind one timer |
//! | `pool` | `pool_size`: who runs next, round-robin between clients |
//! | `dispatch` | the handler table, directly or through tower layers |
//! | `reply` | how replies are encoded |

mod channel;
mod core;
mod deadlines;
mod dispatch;
mod pool;
pub(crate) mod reply;
mod request;

pub use pool::{DEFAULT_POOL_QUEUE, DEFAULT_POOL_QUEUE_BYTES};

use crate::error::Error;
use crate::middleware::{BoxError, Handlers, Request, Response, Stack};
use crate::service::Service;
use crate::shutdown::{self, Stop};
use crate::transport::{Endpoints, Kind};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// `host-pid`: the host's name (as the kernel has it), and this process.
fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}-{}", std::process::id())
}

/// Default heartbeat period, as in zerorpc.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Configures and starts a [`Server`].
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct ServerBuilder {
    service: Service,
    name: Option<String>,
    /// Tower layers, first added outermost.
    layers: Vec<Box<dyn FnOnce(Stack) -> Stack + Send>>,
    endpoints: Endpoints,
    heartbeat: Option<Duration>,
    pool_size: Option<usize>,
    pool_per_client: Option<usize>,
    pool_queue: usize,
    pool_queue_bytes: usize,
    max_decoded: usize,
}

impl ServerBuilder {
    /// The server's name (default: the host's name and the process id,
    /// `host-1234`): a client connected to several servers sends a call to
    /// this one with [`CallOptions::to`](crate::CallOptions::to), as
    /// oslo.messaging's `Target(server=...)`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Serve `service` too, beside the one given to [`Server::builder`]
    /// (the default): its methods answer as `namespace.method` (the
    /// namespace is [`Service::namespace`], its name unless set), so a
    /// zerorpc-python or zerorpc-node client calls `control.stop` by name.
    /// Each keeps its own [version](Service::version). Repeatable.
    ///
    /// ```
    /// use zerorpc::{Server, Service, ServiceError, Version};
    /// let control = Service::new("control")
    ///     .version(Version::new(2, 0))
    ///     .method("stop", |(): ()| async { Ok::<_, ServiceError>(true) });
    /// let builder = Server::builder(Service::new("test"))
    ///     .service(control)
    ///     .bind("tcp://127.0.0.1:0");
    /// # let _ = builder;
    /// ```
    pub fn service(mut self, service: Service) -> Self {
        self.service = self.service.mount(service);
        self
    }

    /// Secure every connection with CURVE (encryption, and on the CURVE
    /// server side the allow-list of client keys; see [`crate::security`]).
    pub fn curve(mut self, curve: crate::security::Curve) -> Self {
        self.endpoints.curve = Some(curve);
        self
    }

    /// Bind a ROUTER endpoint (`tcp://127.0.0.1:4242`, `tcp://*:4242`,
    /// `tcp://127.0.0.1:0` for any free port, `ipc:///tmp/x.sock`).
    /// Repeatable.
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.binds.push(endpoint.into());
        self
    }

    /// Connect to a bound client (the "workers connect to the client"
    /// layout); reconnects if that client restarts. Repeatable.
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.connects.push(endpoint.into());
        self
    }

    /// Heartbeat period (default 5 s, at least 1 ms); `None` (or zero)
    /// disables heartbeats and lost-client detection.
    pub fn heartbeat(mut self, period: Option<Duration>) -> Self {
        self.heartbeat = crate::protocol::heartbeat::period(period);
        self
    }

    /// At most `n` requests run at once (default: no limit); the rest wait
    /// their turn, round-robin between clients. One client runs at most
    /// [`pool_per_client`](Self::pool_per_client) of them at once (by
    /// default `n - 1`, so a slot is always left for another client).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = Some(n.max(1));
        self
    }

    /// With a pool: the most requests one client runs at once (default
    /// `pool_size - 1`, at least 1).
    pub fn pool_per_client(mut self, n: usize) -> Self {
        self.pool_per_client = Some(n.max(1));
        self
    }

    /// With a pool: how many requests, and how many bytes of their
    /// arguments, may wait for a slot, all clients together (default
    /// [`DEFAULT_POOL_QUEUE`] and [`DEFAULT_POOL_QUEUE_BYTES`]). Beyond
    /// that, a client that already has its share of the line (the bound
    /// divided by the clients waiting) gets `ERR ServerBusy`; a client with
    /// less is still queued.
    pub fn pool_queue(mut self, requests: usize, bytes: usize) -> Self {
        self.pool_queue = requests.max(1);
        self.pool_queue_bytes = bytes.max(1);
        self
    }

    /// How many bytes of replies may wait to be written to one client
    /// (default [`DEFAULT_SEND_QUEUE_BYTES`](crate::DEFAULT_SEND_QUEUE_BYTES);
    /// one reply is always taken, whatever its size). Like
    /// [`send_queue`](Self::send_queue), in bytes: a client that asks for
    /// large replies and does not read them costs at most this much.
    pub fn send_queue_bytes(mut self, bytes: usize) -> Self {
        self.endpoints.limits.send_queue_bytes = bytes.max(1);
        self
    }

    /// How long a new connection has to complete the ZeroMQ handshake
    /// (default 30 s, as libzmq); `None` waits forever. A connection that
    /// stays silent is closed after it, and logged.
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.endpoints.limits.handshake_timeout = timeout;
        self
    }

    /// Largest request accepted, in bytes (default 100 MiB, as zerorpc; at
    /// least 1 KiB, so handshakes fit). A client that sends more is
    /// disconnected before anything is allocated for it; other clients are
    /// unaffected.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.endpoints.limits.max_message_size = bytes;
        self
    }

    /// The most memory decoding one request's arguments may take (default
    /// 64 MiB, and never more than 64 bytes per byte of the arguments; see
    /// [`protocol::budget`](crate::protocol::budget)). A request that would
    /// take more is answered `ERR MemoryError` naming the limit, without
    /// the memory ever being taken.
    pub fn max_decoded_size(mut self, bytes: usize) -> Self {
        self.max_decoded = bytes;
        self
    }

    /// How many replies may wait to be written to one client (default
    /// 10 000). Beyond that the client is not reading: further replies to it
    /// are dropped (its calls time out) with one warning naming it, and
    /// replies to every other client go on unaffected.
    pub fn send_queue(mut self, messages: usize) -> Self {
        self.endpoints.limits.send_queue = messages.max(1);
        self
    }

    /// Wrap every request's dispatch in a [tower] layer (see
    /// [`crate::middleware`]): any `tower::Layer` whose service takes a
    /// [`Request`] and answers a [`Response`]. Layers added first are
    /// outermost. A layer's error answers the caller with an `ERR` (a
    /// [`ServiceError`](crate::ServiceError) chooses its name).
    ///
    /// ```
    /// use std::time::Duration;
    /// use zerorpc::{Server, Service, ServiceError};
    /// # async fn demo() -> Result<(), zerorpc::Error> {
    /// let service = Service::new("s")
    ///     .method("add", |(a, b): (i64, i64)| async move { Ok::<_, ServiceError>(a + b) });
    /// let server = Server::builder(service)
    ///     .bind("tcp://127.0.0.1:0")
    ///     // At most 100 requests run at once; none runs longer than 10 s.
    ///     .layer(tower::limit::ConcurrencyLimitLayer::new(100))
    ///     .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(10)))
    ///     .start()
    ///     .await?;
    /// # let _ = server; Ok(()) }
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<Stack> + Send + 'static,
        L::Service: tower::Service<Request, Response = Response> + Clone + Send + 'static,
        <L::Service as tower::Service<Request>>::Error: Into<BoxError>,
        <L::Service as tower::Service<Request>>::Future: Send + 'static,
    {
        use tower::ServiceExt;
        self.layers.push(Box::new(move |inner: Stack| {
            Stack::new(layer.layer(inner).map_err(Into::into))
        }));
        self
    }

    /// Bind and connect everything, then serve in the background. Binding
    /// errors are reported here; connects happen in the background.
    pub async fn start(self) -> Result<Server, Error> {
        let (links, endpoints, inbound) = self.endpoints.open(Kind::Router, "server").await?;
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let pool = self.pool_size.map(|n| {
            pool::Pool::new(
                n,
                self.pool_per_client,
                self.pool_queue,
                self.pool_queue_bytes,
            )
        });
        let mut service = self.service;
        let name = self.name.unwrap_or_else(default_name);
        service.server_name = Some(name.clone());
        let service = Arc::new(service);
        let dispatch = if self.layers.is_empty() {
            dispatch::Dispatch::Direct(service)
        } else {
            let inner = Stack::new(Handlers::new(service.clone()));
            let stack = self.layers.into_iter().rev().fold(inner, |s, wrap| wrap(s));
            dispatch::Dispatch::Layered(service, stack)
        };
        let mut core = core::Core::new(dispatch, links, self.heartbeat, pool);
        core.max_decoded = self.max_decoded;
        core.curve_server = self
            .endpoints
            .curve
            .as_ref()
            .is_some_and(crate::security::Curve::is_server);
        let task = tokio::spawn(core.run(inbound, ctl_rx));
        Ok(Server {
            endpoints,
            name,
            ctl: ctl_tx,
            task: task.abort_handle(),
        })
    }
}

/// A running server. Dropping it stops it at once; [`Server::close`]
/// drains first.
pub struct Server {
    endpoints: Vec<String>,
    name: String,
    ctl: mpsc::UnboundedSender<Stop>,
    task: tokio::task::AbortHandle,
}

impl Server {
    /// Start configuring a server for `service`.
    pub fn builder(service: Service) -> ServerBuilder {
        ServerBuilder {
            service,
            name: None,
            layers: Vec::new(),
            endpoints: Endpoints::default(),
            heartbeat: Some(DEFAULT_HEARTBEAT),
            pool_size: None,
            pool_per_client: None,
            pool_queue: DEFAULT_POOL_QUEUE,
            pool_queue_bytes: DEFAULT_POOL_QUEUE_BYTES,
            max_decoded: crate::protocol::budget::DEFAULT_MAX_DECODED_SIZE,
        }
    }

    /// The server's name ([`ServerBuilder::name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoints, bound ones resolved (a `:0` port shows the real port).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Stop taking requests (new ones get `ERR ServerStopping`), let running
    /// ones finish for up to `grace`, cancel the rest, and close every
    /// socket. Fails with [`Error::Unfinished`] when requests had to be
    /// cancelled. Closing a closed server does nothing.
    pub async fn close(&self, grace: Duration) -> Result<(), Error> {
        shutdown::close(grace, "requests cancelled", |stop| {
            self.ctl.send(stop).is_ok()
        })
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
