//! The receiving side of one-way events: a [`Receiver`] (a puller or a
//! subscriber) dispatching every event into an ordinary [`Service`].

use crate::context::Context;
use crate::error::Error;
use crate::logging::{hex, RateLimit};
use crate::protocol::{framing, msgpack, Event};
use crate::service::{self, Args, Reply, Service};
use crate::shutdown::{self, Stop};
use crate::transport::{Endpoints, Inbound, Kind, LinkEvent};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Default number of events a receiver handles at once.
pub const DEFAULT_RECEIVER_POOL: usize = 1024;

/// Receives pushed events, each handled by exactly one puller of those
/// connected to the pusher. Build with [`Puller::builder`].
pub struct Puller;

impl Puller {
    /// Dispatch pushed events into `service`.
    pub fn builder(service: Service) -> ReceiverBuilder {
        ReceiverBuilder::new(Kind::Pull, service)
    }
}

/// Receives every published event (it subscribes to everything, as
/// zerorpc does). Build with [`Subscriber::builder`].
pub struct Subscriber;

impl Subscriber {
    /// Dispatch published events into `service`.
    pub fn builder(service: Service) -> ReceiverBuilder {
        ReceiverBuilder::new(Kind::Sub, service)
    }
}

/// Configures a [`Receiver`] (a puller or a subscriber).
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct ReceiverBuilder {
    kind: Kind,
    service: Service,
    endpoints: Endpoints,
    pool_size: usize,
    filter: Option<Filter>,
}

/// Which events a receiver hands to its service (by name and arguments);
/// the others are dropped unread.
pub(crate) type Filter = Arc<dyn Fn(&str, &Args) -> bool + Send + Sync>;

impl ReceiverBuilder {
    fn new(kind: Kind, service: Service) -> Self {
        ReceiverBuilder {
            kind,
            service,
            endpoints: Endpoints::default(),
            pool_size: DEFAULT_RECEIVER_POOL,
            filter: None,
        }
    }

    /// Secure every connection with CURVE (encryption, and on the CURVE
    /// server side the allow-list of client keys; see [`crate::security`]).
    pub fn curve(mut self, curve: crate::security::Curve) -> Self {
        self.endpoints.curve = Some(curve);
        self
    }

    /// Bind an endpoint for senders to connect to (repeatable).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.binds.push(endpoint.into());
        self
    }

    /// Connect to a bound sender (repeatable; reconnects on its own).
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.connects.push(endpoint.into());
        self
    }

    /// Handle at most `n` events at once (default 1024). When all are busy,
    /// reading pauses, so a flood backs up to the sender instead of into
    /// memory.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// Largest event accepted, in bytes (default 100 MiB). A sender that
    /// sends more is disconnected before anything is allocated for it.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.endpoints.limits.max_message_size = bytes;
        self
    }

    /// Subscribe to these topics only (a subscriber; prefixes of the
    /// topic frame a notification carries): the publisher sends nothing
    /// else.
    pub(crate) fn topics(mut self, topics: Vec<String>) -> Self {
        self.endpoints.limits.topics = topics;
        self
    }

    /// Hand only the events `filter` accepts to the service.
    pub(crate) fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Open the sockets and start dispatching in the background.
    pub async fn start(self) -> Result<Receiver, Error> {
        let owner = match self.kind {
            Kind::Pull => "puller",
            _ => "subscriber",
        };
        let (links, endpoints, inbound) = self.endpoints.open(self.kind, owner).await?;
        let (stop_tx, stop_rx) = mpsc::unbounded_channel();
        let core = ReceiverCore {
            service: Arc::new(self.service),
            pool: Arc::new(Semaphore::new(self.pool_size)),
            tasks: JoinSet::new(),
            warned: Arc::new(Mutex::new(RateLimit::default())),
            filter: self.filter,
        };
        // The links live as long as the core task reads them.
        let task = tokio::spawn(async move {
            let _links = links;
            core.run(inbound, stop_rx).await
        });
        Ok(Receiver {
            endpoints,
            stop: stop_tx,
            task: task.abort_handle(),
        })
    }
}

/// A running puller or subscriber. Dropping it stops it at once;
/// [`Receiver::close`] lets running handlers finish.
pub struct Receiver {
    endpoints: Vec<String>,
    stop: mpsc::UnboundedSender<Stop>,
    task: tokio::task::AbortHandle,
}

impl Receiver {
    /// The endpoints (bound ones resolved).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Stop reading events, let running handlers finish for up to `grace`,
    /// cancel the rest, and close the sockets. Fails with
    /// [`Error::Unfinished`] when handlers had to be cancelled. Closing a
    /// closed receiver does nothing.
    pub async fn close(&self, grace: Duration) -> Result<(), Error> {
        shutdown::close(grace, "event handlers cancelled", |stop| {
            self.stop.send(stop).is_ok()
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ReceiverCore {
    service: Arc<Service>,
    pool: Arc<Semaphore>,
    tasks: JoinSet<()>,
    warned: Arc<Mutex<RateLimit>>,
    filter: Option<Filter>,
}

impl ReceiverCore {
    async fn run(mut self, mut events: Inbound, mut stop: mpsc::UnboundedReceiver<Stop>) {
        let stop = loop {
            // A free slot first (no reading while every slot is busy:
            // backpressure, not memory), then the next event; a stop is
            // heard while waiting for either.
            let permit = tokio::select! {
                stop = stop.recv() => break stop,
                permit = self.pool.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break None,
                },
            };
            tokio::select! {
                stop = stop.recv() => break stop,
                ev = events.recv() => match ev {
                    Some(LinkEvent::Message(_, msg)) => self.on_message(msg, permit),
                    Some(_) => {}
                    None => break None,
                },
            }
            while self.tasks.try_join_next().is_some() {}
        };
        // No more reading: the sockets close with the task.
        drop(events);
        let grace = stop.as_ref().map_or(Duration::ZERO, |s| s.grace);
        let tasks = &mut self.tasks;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} });
        let timed_out = drained.await.is_err();
        let cancelled = self.tasks.len();
        if timed_out {
            tracing::warn!(cancelled, "stop deadline reached: cancelling handlers");
            self.tasks.shutdown().await;
        }
        if let Some(stop) = stop {
            stop.finish(cancelled);
        }
    }

    fn on_message(&mut self, msg: zerorpc_zeromq::ZmqMessage, permit: OwnedSemaphorePermit) {
        let Some(payload) = framing::payload(&msg) else {
            return;
        };
        let ev = match Event::decode(payload) {
            Ok(ev) => ev,
            Err(e) => {
                return self.warn(|| tracing::warn!(error = %e, "dropped an undecodable event"))
            }
        };
        let name = match ev.name {
            Ok(name) => name.to_owned(),
            Err(why) => return self.warn(|| tracing::warn!(why, "dropped an event")),
        };
        // A one-way event has no peer to name and no deadline; its header's
        // extra keys (a sender's task context) are there for the handler.
        let ctx = Context::new(
            payload,
            ev.name.unwrap_or_default(),
            ev.message_id.unwrap_or_default(),
            ev.header,
            Bytes::new(),
            None,
        );
        let got = msgpack::type_name(&ev.args);
        let Some(args) = Args::from_raw(ev.args) else {
            return self.warn(
                || tracing::warn!(method = %name, got, "dropped an event whose args are not an array"),
            );
        };
        if let Some(filter) = &self.filter {
            if !filter(&name, &args) {
                return;
            }
        }
        let id = ev.message_id.map(hex).unwrap_or_default();
        let call = ctx
            .clone()
            .sync_scope(|| self.service.dispatch(&name, args));
        let warned = self.warned.clone();
        self.tasks.spawn(ctx.scope(async move {
            let _permit = permit;
            let result = match service::guarded(call).await {
                Ok(Reply::Value(_)) => Ok(()),
                // Nobody reads a one-way stream: run it to the end.
                Ok(Reply::Stream(mut items)) => loop {
                    match items.next().await {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break Err(e),
                        None => break Ok(()),
                    }
                },
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                if let Ok(mut w) = warned.lock() {
                    w.warn(|| tracing::warn!(method = %name, message_id = %id, error = %e, "one-way event failed"));
                }
            } else {
                tracing::debug!(method = %name, "one-way event handled");
            }
        }));
    }

    fn warn(&self, log: impl FnOnce()) {
        if let Ok(mut w) = self.warned.lock() {
            w.warn(log);
        }
    }
}
