//! Configuring a [`Client`].

use super::core::Core;
use super::driver::Shared;
use super::{Client, Inner, DEFAULT_TIMEOUT};
use crate::error::Error;
use crate::transport::{Endpoints, Kind};
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
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoints: Endpoints::default(),
            timeout: Some(DEFAULT_TIMEOUT),
            heartbeat: Some(crate::server::DEFAULT_HEARTBEAT),
            passive: false,
        }
    }
}

impl ClientBuilder {
    /// Connect to a server endpoint (repeatable; calls are spread over the
    /// connected servers).
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.connects.push(endpoint.into());
        self
    }

    /// Bind an endpoint for servers to connect to (workers layout;
    /// repeatable).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.binds.push(endpoint.into());
        self
    }

    /// Default timeout of every call (30 s); `None` waits forever.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Heartbeat period (5 s); `None` disables heartbeats and lost-remote
    /// detection (calls are then bounded by their timeout only).
    pub fn heartbeat(mut self, period: Option<Duration>) -> Self {
        self.heartbeat = period.filter(|p| !p.is_zero());
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

    /// Start the client. Connecting happens in the background: this returns
    /// at once, and calls made before a server is reachable wait for it
    /// (bounded by their timeout). Binding errors are reported here.
    pub async fn start(self) -> Result<Client, Error> {
        let (links, endpoints, inbound) = self.endpoints.open(Kind::Dealer, "client").await?;
        let core = Core::new(inbound, links, self.heartbeat, self.passive);
        let shared = Arc::new(Shared::new(core));
        let task = tokio::spawn(Shared::run(shared.clone()));
        Ok(Client {
            inner: Arc::new(Inner {
                core: shared,
                timeout: self.timeout,
                endpoints,
                task,
            }),
        })
    }
}
