//! The server: ROUTER sockets in, handlers run, replies out.
//!
//! One core task owns all channel state (no locks). It reads every link's
//! socket itself, decodes each event, and either feeds it to an open
//! channel (`channel.rs`: heartbeats, stream credit) or starts a request
//! (`request.rs`). A handler that finishes without waiting is answered
//! inline; any other runs in its own tokio task and hands its encoded reply
//! back to the core, which forwards it only while the channel is open — so a
//! reply to a client that has gone is simply dropped. The core also sends
//! heartbeats on one shared tick and cancels the task of any client that
//! goes silent or disconnects.
//!
//! | file | concept |
//! |---|---|
//! | `mod.rs` | [`ServerBuilder`] and the [`Server`] handle |
//! | `core` | the core task: its loop, link events, ticks, draining |
//! | `channel` | an open channel and the events that arrive on it |
//! | `request` | a new request: checks, the inline first poll, the task, streams |
//! | `reply` | how replies are framed and encoded |

mod channel;
mod core;
mod reply;
mod request;

use crate::error::Error;
use crate::service::Service;
use crate::shutdown::{self, Stop};
use crate::transport::{Endpoints, Kind};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Default heartbeat period, as in zerorpc.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Configures and starts a [`Server`].
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct ServerBuilder {
    service: Service,
    endpoints: Endpoints,
    heartbeat: Option<Duration>,
    pool_size: Option<usize>,
}

impl ServerBuilder {
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

    /// Heartbeat period (default 5 s); `None` disables heartbeats and
    /// lost-client detection.
    pub fn heartbeat(mut self, period: Option<Duration>) -> Self {
        self.heartbeat = period.filter(|p| !p.is_zero());
        self
    }

    /// At most `n` requests run at once; the rest wait their turn.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = Some(n.max(1));
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

    /// How many replies may wait to be written to one client (default
    /// 10 000). Beyond that the client is not reading: further replies to it
    /// are dropped (its calls time out) with one warning naming it, and
    /// replies to every other client go on unaffected.
    pub fn send_queue(mut self, messages: usize) -> Self {
        self.endpoints.limits.send_queue = messages.max(1);
        self
    }

    /// Bind and connect everything, then serve in the background. Binding
    /// errors are reported here; connects happen in the background.
    pub async fn start(self) -> Result<Server, Error> {
        let (links, endpoints, inbound) = self.endpoints.open(Kind::Router, "server").await?;
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let core = core::Core::new(
            Arc::new(self.service),
            links,
            self.heartbeat,
            self.pool_size.map(|n| Arc::new(Semaphore::new(n))),
        );
        let task = tokio::spawn(core.run(inbound, ctl_rx));
        Ok(Server {
            endpoints,
            ctl: ctl_tx,
            task: task.abort_handle(),
        })
    }
}

/// A running server. Dropping it stops it at once; [`Server::close`]
/// drains first.
pub struct Server {
    endpoints: Vec<String>,
    ctl: mpsc::UnboundedSender<Stop>,
    task: tokio::task::AbortHandle,
}

impl Server {
    /// Start configuring a server for `service`.
    pub fn builder(service: Service) -> ServerBuilder {
        ServerBuilder {
            service,
            endpoints: Endpoints::default(),
            heartbeat: Some(DEFAULT_HEARTBEAT),
            pool_size: None,
        }
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
