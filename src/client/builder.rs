//! Configuring a [`Client`].

use super::calls::Table;
use super::discovery::{self, Resolver, DEFAULT_RESOLVE_EVERY};
use super::reader::Reader;
use super::retry::Retry;
use super::{Client, Inner, DEFAULT_TIMEOUT};
use crate::error::Error;
use crate::middleware::CallHook;
use crate::transport::{Endpoints, Kind};
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;

/// Configures a [`Client`]; finish with [`ClientBuilder::start`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct ClientBuilder {
    endpoints: Endpoints,
    timeout: Option<Duration>,
    heartbeat: Option<Duration>,
    passive: bool,
    headers: Vec<(String, Value)>,
    hooks: Hooks,
    retry: Option<Retry>,
    resolver: Option<SharedResolver>,
    resolve_every: Duration,
    max_decoded: usize,
}

/// A [`Resolver`] shared by the clones of a builder.
#[derive(Clone)]
struct SharedResolver(Arc<dyn Resolver>);

impl std::fmt::Debug for SharedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a resolver")
    }
}

/// The client's [`CallHook`]s, in order.
#[derive(Clone, Default)]
pub(super) struct Hooks(pub(super) Vec<Arc<dyn CallHook>>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} hooks", self.0.len())
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoints: Endpoints::default(),
            timeout: Some(DEFAULT_TIMEOUT),
            heartbeat: Some(crate::server::DEFAULT_HEARTBEAT),
            passive: false,
            headers: Vec::new(),
            hooks: Hooks::default(),
            retry: None,
            resolver: None,
            resolve_every: DEFAULT_RESOLVE_EVERY,
            max_decoded: crate::protocol::budget::DEFAULT_MAX_DECODED_SIZE,
        }
    }
}

impl ClientBuilder {
    /// Connect to a server endpoint (repeatable). Each call goes to the
    /// healthy server with the fewest calls in flight from this client.
    ///
    /// An endpoint that names servers instead of giving an address
    /// (`tcp://calc.internal:4242`, `srv://_zrpc._tcp.calc.internal`) is
    /// resolved to every address it stands for, one connection each, and
    /// resolved again every [`resolve_every`](Self::resolve_every), servers
    /// coming and going with the answer (see [`Resolver`]).
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.connects.push(endpoint.into());
        self
    }

    /// Secure every connection with CURVE (encryption, and on the CURVE
    /// server side the allow-list of client keys; see [`crate::security`]).
    pub fn curve(mut self, curve: crate::security::Curve) -> Self {
        self.endpoints.curve = Some(curve);
        self
    }

    /// Bind an endpoint for servers to connect to (workers layout;
    /// repeatable). Each worker that connects is one more server, balanced
    /// like the others (the bound socket is a ROUTER addressing each).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.binds.push(endpoint.into());
        self
    }

    /// Default timeout of every call (30 s); `None` waits forever.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Heartbeat period (5 s, at least 1 ms); `None` (or zero) disables
    /// heartbeats and lost-remote detection (calls are then bounded by
    /// their timeout only).
    pub fn heartbeat(mut self, period: Option<Duration>) -> Self {
        self.heartbeat = crate::protocol::heartbeat::period(period);
        self
    }

    /// Passive heartbeat: only start heartbeating a call once the server
    /// has (what the `zerorpc` command line does by default).
    pub fn passive_heartbeat(mut self, passive: bool) -> Self {
        self.passive = passive;
        self
    }

    /// Largest reply accepted, in bytes (default 100 MiB; at least 1 KiB).
    /// A server that sends more is disconnected (its calls fail with
    /// `LostRemote`).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.endpoints.limits.max_message_size = bytes;
        self
    }

    /// The most memory decoding one reply or stream item may take (default
    /// 64 MiB, and never more than 64 bytes per byte received; see
    /// [`protocol::budget`](crate::protocol::budget)). A larger one fails
    /// its call with [`Error::Decode`] instead of growing the process.
    pub fn max_decoded_size(mut self, bytes: usize) -> Self {
        self.max_decoded = bytes;
        self
    }

    /// A header key sent with every call (metadata: a token, a tenant, a
    /// zerorpc-python server's task context). A call's own
    /// [`CallOptions::header`](super::CallOptions::header) wins over it.
    /// The protocol's keys (`message_id`, `v`, `response_to`,
    /// `timeout_ms`) are refused when a call is made.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Require this API version of every call's namespace (the
    /// `api_version` header; see [`Service::version`](crate::Service::version)):
    /// a server that does not serve it answers `ERR UnsupportedVersion`.
    /// [`CallOptions::api_version`](super::CallOptions::api_version) wins
    /// over it. zerorpc-python and zerorpc-node servers ignore it.
    pub fn api_version(self, version: crate::Version) -> Self {
        self.header(crate::protocol::API_VERSION_KEY, version.to_string())
    }

    /// Retry every call lost with its server (connection closed, heartbeats
    /// lapsed) before it was answered, on another server, by this policy.
    /// Only for services whose methods are safe to run twice: see
    /// [`Retry`]. A call's [`CallOptions::retry`](super::CallOptions::retry)
    /// wins over it.
    pub fn retry(mut self, policy: Retry) -> Self {
        self.retry = Some(policy);
        self
    }

    /// How names given to [`connect`](Self::connect) are resolved (default:
    /// `DnsResolver::system` with the `dns` feature, else
    /// [`SystemResolver`](crate::SystemResolver)).
    pub fn resolver(mut self, resolver: impl Resolver) -> Self {
        self.resolver = Some(SharedResolver(Arc::new(resolver)));
        self
    }

    /// Time between two resolutions of a name (10 s; at least 100 ms).
    pub fn resolve_every(mut self, every: Duration) -> Self {
        self.resolve_every = every.max(Duration::from_millis(100));
        self
    }

    /// Run `hook` around every call (see [`crate::middleware`]): hooks run
    /// in the order added before a call, in reverse after it.
    pub fn hook(mut self, hook: impl CallHook) -> Self {
        self.hooks.0.push(Arc::new(hook));
        self
    }

    /// Start the client. Connecting happens in the background: this returns
    /// at once, and calls made before a server is reachable wait for it
    /// (bounded by their timeout). Binding errors are reported here.
    pub async fn start(self) -> Result<Client, Error> {
        let mut endpoints = self.endpoints;
        let (names, addresses) = std::mem::take(&mut endpoints.connects)
            .into_iter()
            .partition::<Vec<_>, _>(|ep| discovery::is_name(ep));
        endpoints.connects = addresses;
        if endpoints.binds.is_empty() && endpoints.connects.is_empty() && names.is_empty() {
            return Err(Error::Config(
                "a client needs at least one endpoint to bind or connect".into(),
            ));
        }
        let resolver = match (names.is_empty(), self.resolver) {
            (true, _) => None,
            (false, Some(r)) => Some(r.0),
            (false, None) => Some(discovery::default_resolver()?),
        };
        if let Some(r) = &resolver {
            for name in &names {
                r.check(name)?;
            }
        }
        let (links, mut shown, inbound, opener) =
            endpoints.open_growable(Kind::Dealer, Kind::Router).await?;
        let table = Table::new(inbound, links, Some(opener), self.heartbeat, self.passive);
        let reader = Arc::new(Reader::new(table));
        let task = tokio::spawn(Reader::run(reader.clone()));
        let discovery = resolver.map(|r| {
            tokio::spawn(discovery::run(
                Arc::downgrade(&reader),
                r,
                names.clone(),
                self.resolve_every,
            ))
        });
        shown.extend(names);
        Ok(Client {
            inner: Arc::new(Inner {
                reader,
                timeout: self.timeout,
                retry: self.retry,
                endpoints: shown,
                headers: self.headers,
                hooks: self.hooks,
                task,
                discovery,
                max_decoded: self.max_decoded,
                signatures: Default::default(),
            }),
        })
    }
}
