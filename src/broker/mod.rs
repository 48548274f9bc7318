//! A call-aware broker: clients connect to its frontend, workers (zrpc or
//! zerorpc servers that connect) to its backend, and every event of a call
//! — heartbeats, stream items and credit, cancellation — stays on the
//! worker that took the call, where a plain ZeroMQ proxy spreads them over
//! every worker and breaks zerorpc.
//!
//! ```no_run
//! # async fn demo() -> Result<(), zerorpc::Error> {
//! use zerorpc::Broker;
//! let broker = Broker::builder()
//!     .frontend("tcp://127.0.0.1:4242") // clients connect here
//!     .backend("tcp://127.0.0.1:4243")  // workers: Server::builder(..).connect(..)
//!     .start()
//!     .await?;
//! # broker.close(std::time::Duration::from_secs(1)).await }
//! ```
//!
//! Events are forwarded as they came, payloads untouched: the broker reads
//! only each event's header. A new call goes to the live worker with the
//! fewest calls in flight; with none, it waits (heartbeated, so its caller
//! does not give up) in a bounded queue up to its deadline. A worker that
//! disconnects fails its calls at once with `ERR LostRemote`; one that goes
//! silent gets no new calls; one that says it is stopping (`_zpc_drain`)
//! gets none either, and a call it hands back unrun goes to another.
//!
//! | file | concept |
//! |---|---|
//! | `mod.rs` | [`BrokerBuilder`], the [`Broker`] handle, [`WorkerInfo`] |
//! | `core` | the broker's task: routing each event, the queue, workers' liveness, draining |

mod core;

use crate::error::Error;
use crate::shutdown::{self, Stop};
use crate::transport::{Endpoints, Kind};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Default bound of the queue of calls waiting for a worker; beyond it, new
/// calls are answered `ERR ServerBusy`.
pub const DEFAULT_BROKER_QUEUE: usize = 1000;

/// Default longest wait for a worker of a call that carries no deadline,
/// before it is answered `ERR ServerBusy`.
pub const DEFAULT_BROKER_WAIT: Duration = Duration::from_secs(30);

/// Configures and starts a [`Broker`].
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct BrokerBuilder {
    frontend: Endpoints,
    backend: Endpoints,
    heartbeat: Option<Duration>,
    queue: usize,
    max_wait: Duration,
}

/// A running broker. Dropping it stops it at once; [`Broker::close`] drains
/// first.
pub struct Broker {
    frontend: Vec<String>,
    backend: Vec<String>,
    ctl: mpsc::UnboundedSender<core::Ctl>,
    task: tokio::task::AbortHandle,
}

/// A worker as the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Its backend endpoint and routing identity (`tcp://…#1a2b…`).
    pub endpoint: String,
    /// Calls it is running for the broker's clients.
    pub in_flight: usize,
    /// Calls it was given since it connected.
    pub calls: u64,
    /// It said it is stopping: it gets no new calls.
    pub draining: bool,
    /// It has been silent for two heartbeat periods: it gets no new calls
    /// until it is heard again.
    pub silent: bool,
}

impl Broker {
    /// Start configuring a broker.
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder {
            frontend: Endpoints::default(),
            backend: Endpoints::default(),
            heartbeat: Some(crate::server::DEFAULT_HEARTBEAT),
            queue: DEFAULT_BROKER_QUEUE,
            max_wait: DEFAULT_BROKER_WAIT,
        }
    }

    /// The frontend's endpoints (bound ones resolved).
    pub fn frontend(&self) -> &[String] {
        &self.frontend
    }

    /// The backend's endpoints (bound ones resolved).
    pub fn backend(&self) -> &[String] {
        &self.backend
    }

    /// The workers connected now, with their load.
    pub async fn workers(&self) -> Vec<WorkerInfo> {
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(core::Ctl::Workers(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// What the broker holds now: calls in flight, calls queued, clients
    /// with a call in flight or queued.
    pub async fn load(&self) -> BrokerLoad {
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(core::Ctl::Load(tx)).is_err() {
            return BrokerLoad::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Stop taking calls (new ones are answered `ERR ServerStopping`, which
    /// a zrpc client sends to another broker), tell the clients
    /// (`_zpc_drain`), let calls in flight finish for up to `grace`, fail
    /// the rest, and close every socket.
    pub async fn close(&self, grace: Duration) -> Result<(), Error> {
        shutdown::close(grace, "calls failed", |stop: Stop| {
            self.ctl.send(core::Ctl::Stop(stop)).is_ok()
        })
        .await
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a broker holds (see [`Broker::load`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerLoad {
    /// Calls a worker is running.
    pub in_flight: usize,
    /// Calls waiting for a worker.
    pub queued: usize,
    /// Clients with a call in flight or queued.
    pub clients: usize,
    /// Workers connected.
    pub workers: usize,
}

impl BrokerBuilder {
    /// Bind an endpoint clients connect to (repeatable).
    pub fn frontend(mut self, endpoint: impl Into<String>) -> Self {
        self.frontend.binds.push(endpoint.into());
        self
    }

    /// Bind an endpoint workers connect to (repeatable): zrpc servers built
    /// with [`ServerBuilder::connect`](crate::ServerBuilder::connect), or
    /// zerorpc-python servers that `connect`.
    pub fn backend(mut self, endpoint: impl Into<String>) -> Self {
        self.backend.binds.push(endpoint.into());
        self
    }

    /// CURVE on the frontend: the broker's keys as a CURVE server, and the
    /// client keys it lets in (see [`crate::security`]).
    pub fn frontend_curve(mut self, curve: crate::security::Curve) -> Self {
        self.frontend.curve = Some(curve);
        self
    }

    /// CURVE on the backend: the broker's keys as a CURVE server, and the
    /// worker keys it lets in.
    pub fn backend_curve(mut self, curve: crate::security::Curve) -> Self {
        self.backend.curve = Some(curve);
        self
    }

    /// Heartbeat period (default 5 s, zerorpc's): calls waiting for a
    /// worker are heartbeated at it, and a worker silent for two periods
    /// gets no new calls (and, if it has some, fails them with
    /// `LostRemote`). Give it the workers' period: a worker that beats less
    /// often would be judged silent. `None` turns both off.
    pub fn heartbeat(mut self, period: Option<Duration>) -> Self {
        self.heartbeat = period.filter(|p| !p.is_zero());
        self
    }

    /// How many calls may wait for a worker (default
    /// [`DEFAULT_BROKER_QUEUE`]); beyond it, `ERR ServerBusy`.
    pub fn queue(mut self, calls: usize) -> Self {
        self.queue = calls;
        self
    }

    /// The longest a call without a deadline waits for a worker (default
    /// [`DEFAULT_BROKER_WAIT`]); then `ERR ServerBusy`. A call with a
    /// deadline waits up to it.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Largest message accepted on either side (default 100 MiB, as a
    /// server).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.frontend.limits.max_message_size = bytes;
        self.backend.limits.max_message_size = bytes;
        self
    }

    /// How many messages may wait to be written to one peer, on either side
    /// (default [`DEFAULT_SEND_QUEUE`](crate::DEFAULT_SEND_QUEUE)); beyond
    /// it, messages to that peer are dropped, as a server does.
    pub fn send_queue(mut self, messages: usize) -> Self {
        self.frontend.limits.send_queue = messages.max(1);
        self.backend.limits.send_queue = messages.max(1);
        self
    }

    /// How long a new connection on either side has to complete the ZeroMQ
    /// handshake (default 30 s); `None` waits forever.
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.frontend.limits.handshake_timeout = timeout;
        self.backend.limits.handshake_timeout = timeout;
        self
    }

    /// Bind both sides and start routing.
    pub async fn start(self) -> Result<Broker, Error> {
        if self.frontend.binds.is_empty() || self.backend.binds.is_empty() {
            return Err(Error::Config(
                "a broker needs a frontend and a backend to bind".into(),
            ));
        }
        let (front, frontend, front_in) = self.frontend.open(Kind::Router, "broker").await?;
        let (back, backend, back_in) = self.backend.open(Kind::Router, "broker").await?;
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let core = core::Core::new(front, back, self.heartbeat, self.queue, self.max_wait);
        let task = tokio::spawn(core.run(front_in, back_in, ctl_rx));
        Ok(Broker {
            frontend,
            backend,
            ctl,
            task: task.abort_handle(),
        })
    }
}
