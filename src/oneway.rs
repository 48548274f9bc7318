//! One-way events: fire-and-forget to one of many workers, or to everyone.
//!
//! | zrpc | zerorpc-python | OpenStack RPC | ZeroMQ |
//! |---|---|---|---|
//! | [`Pusher::push`] → [`Puller`] | `Pusher` → `Puller` | `cast` (one worker takes it) | PUSH → PULL |
//! | [`Publisher::publish`] → [`Subscriber`] | `Publisher` → `Subscriber` | `fanout_cast` (every listener) | PUB → SUB |
//!
//! An event is one frame, `[{message_id, v: 3}, method, [args...]]`, with no
//! `response_to`, no reply, no heartbeat and no flow control. The receiving
//! side dispatches it into an ordinary [`Service`]; a failing or unknown
//! method is logged there and never reaches the sender.
//!
//! Delivery is at most once:
//! - a [`Pusher`] holds events while no puller is connected (up to
//!   [`MAX_WAITING`]) and hands each to one connected puller, round-robin;
//!   [`Pusher::close`] waits for held events and says how many were lost;
//! - a [`Publisher`] drops events while nobody is subscribed, and a new
//!   subscriber only receives events sent after its subscription reached the
//!   publisher (ZeroMQ's "slow joiner"): publish after
//!   [`Publisher::wait_for_subscriber`], or design for loss.

use crate::client::encode_args;
use crate::error::Error;
use crate::event::{self, Event};
use crate::logging::{hex, RateLimit};
use crate::service::{Args, Reply, Service};
use crate::transport::{self, Kind, Limits, Link, LinkEvent};
use crate::Value;
use futures::StreamExt;
use serde::Serialize;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use zeromq::ZmqMessage;

/// Events a [`Pusher`] holds while no puller is connected; beyond this,
/// `push` fails instead of growing without bound.
pub const MAX_WAITING: usize = 100_000;

/// How long a closing sender gives the socket to write what it was handed:
/// `zeromq` 0.7 has no linger option and no way to see the flush finish.
const LINGER: Duration = Duration::from_millis(100);

/// Default number of events a receiver handles at once.
pub const DEFAULT_RECEIVER_POOL: usize = 1024;

// ---------------------------------------------------------------- senders

/// Endpoints for a [`Pusher`] or [`Publisher`]; finish with `build`.
pub struct SenderBuilder<T> {
    connects: Vec<String>,
    binds: Vec<String>,
    _kind: PhantomData<fn() -> T>,
}

/// A sending socket type ([`Pusher`] or [`Publisher`]).
pub trait OneWaySender: Sized {
    #[doc(hidden)]
    const KIND: SenderKind;
    #[doc(hidden)]
    fn from_sender(inner: Sender) -> Self;
}

#[doc(hidden)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SenderKind {
    Push,
    Pub,
}

impl<T: OneWaySender> SenderBuilder<T> {
    fn new() -> Self {
        SenderBuilder {
            connects: Vec::new(),
            binds: Vec::new(),
            _kind: PhantomData,
        }
    }

    /// Connect to a bound receiver (repeatable; reconnects on its own).
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.connects.push(endpoint.into());
        self
    }

    /// Bind an endpoint for receivers to connect to (repeatable).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.binds.push(endpoint.into());
        self
    }

    /// Open the sockets. Connecting happens in the background.
    pub async fn build(self) -> Result<T, Error> {
        if self.connects.is_empty() && self.binds.is_empty() {
            return Err(Error::Transport(
                "a sender needs at least one endpoint to connect or bind".into(),
            ));
        }
        let kind = match T::KIND {
            SenderKind::Push => Kind::Push,
            SenderKind::Pub => Kind::Pub,
        };
        let (links, endpoints, events_rx) =
            transport::open(kind, &self.binds, &self.connects, Limits::default()).await?;
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let core = SenderCore {
            up: vec![false; links.len()],
            links,
            next: 0,
            held: VecDeque::new(),
            fanout: T::KIND == SenderKind::Pub,
            waiting: waiting.clone(),
            watchers: Vec::new(),
            dropped: 0,
        };
        let task = tokio::spawn(core.run(cmd_rx, events_rx));
        Ok(T::from_sender(Sender {
            cmd,
            endpoints,
            waiting,
            task,
        }))
    }
}

#[doc(hidden)]
pub struct Sender {
    cmd: mpsc::UnboundedSender<SenderCmd>,
    endpoints: Vec<String>,
    waiting: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum SenderCmd {
    Send(Vec<u8>),
    /// Answer once at least one peer is connected.
    WhenConnected(oneshot::Sender<()>),
    /// Deliver what is held (until the deadline), close, report losses.
    Close(Instant, oneshot::Sender<usize>),
}

impl Sender {
    fn send(&self, method: &str, args: &[u8]) -> Result<(), Error> {
        if self.waiting.load(Ordering::Relaxed) >= MAX_WAITING {
            return Err(Error::Transport(format!(
                "{MAX_WAITING} events are already waiting for a receiver to connect"
            )));
        }
        let (_, frame) = event::encode_request(method, args);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.cmd
            .send(SenderCmd::Send(frame))
            .map_err(|_| Error::Closed)
    }

    async fn connected(&self, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(SenderCmd::WhenConnected(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }

    async fn close(&self, within: Duration) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + within;
        if self.cmd.send(SenderCmd::Close(deadline, tx)).is_err() {
            return Err(Error::Closed);
        }
        match rx.await {
            Ok(0) => Ok(()),
            Ok(n) => Err(Error::Transport(format!(
                "{n} event(s) not delivered: no receiver connected within {}",
                crate::error::fmt_secs(within)
            ))),
            Err(_) => Err(Error::Closed),
        }
    }
}

struct SenderCore {
    links: Vec<Link>,
    up: Vec<bool>,
    next: usize,
    /// Push events waiting for a connected puller.
    held: VecDeque<Vec<u8>>,
    fanout: bool,
    waiting: Arc<AtomicUsize>,
    watchers: Vec<oneshot::Sender<()>>,
    /// Published events nobody was subscribed to (logged in batches).
    dropped: u64,
}

impl SenderCore {
    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<SenderCmd>,
        mut events: transport::Inbound,
    ) {
        let mut closing: Option<(Instant, oneshot::Sender<usize>)> = None;
        loop {
            if closing.is_some() && self.held.is_empty() {
                break;
            }
            let deadline = closing.as_ref().map(|c| c.0);
            tokio::select! {
                cmd = cmds.recv(), if closing.is_none() => match cmd {
                    Some(SenderCmd::Send(frame)) => {
                        self.held.push_back(frame);
                        self.deliver();
                    }
                    Some(SenderCmd::WhenConnected(tx)) => {
                        if self.up.iter().any(|&u| u) {
                            let _ = tx.send(());
                        } else {
                            self.watchers.push(tx);
                        }
                    }
                    Some(SenderCmd::Close(deadline, done)) => closing = Some((deadline, done)),
                    None => return,
                },
                Some(ev) = events.recv() => {
                    match ev {
                        LinkEvent::Up(l) => self.up[l] = true,
                        LinkEvent::Down(l) => self.up[l] = false,
                        LinkEvent::Message(..) | LinkEvent::PeerGone(..) => {}
                    }
                    if self.up.iter().any(|&u| u) {
                        self.watchers.drain(..).for_each(|w| { let _ = w.send(()); });
                    }
                    self.deliver();
                }
                _ = sleep_until_opt(deadline) => break,
            }
        }
        if self.dropped > 0 {
            tracing::debug!(dropped = self.dropped, "published events had no subscriber");
        }
        let lost = self.held.len();
        let any_up = self.up.iter().any(|&u| u);
        for link in std::mem::take(&mut self.links) {
            link.close(Duration::from_millis(500)).await;
        }
        if any_up {
            tokio::time::sleep(LINGER).await;
        }
        if let Some((_, done)) = closing {
            let _ = done.send(lost);
        }
    }

    /// Hand held events to connected peers: each to one (push), or to all
    /// (publish; with nobody subscribed it is dropped, as in ZeroMQ).
    fn deliver(&mut self) {
        while let Some(frame) = self.held.pop_front() {
            if self.fanout {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                let mut sent = false;
                for (l, link) in self.links.iter().enumerate() {
                    if self.up[l] {
                        link.send(ZmqMessage::from(frame.clone()));
                        sent = true;
                    }
                }
                if !sent {
                    self.dropped += 1;
                }
                continue;
            }
            let n = self.links.len();
            let Some(l) = (0..n).map(|i| (self.next + i) % n).find(|&l| self.up[l]) else {
                self.held.push_front(frame);
                return;
            };
            self.next = l + 1;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.links[l].send(ZmqMessage::from(frame));
        }
    }
}

/// Sends each event to one of the connected [`Puller`]s (a work queue;
/// OpenStack's `cast`). Wire-compatible with zerorpc-python's `Puller`.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerorpc::Error> {
/// use zerorpc::oneway::Pusher;
/// let pusher = Pusher::builder().connect("tcp://127.0.0.1:4244").build().await?;
/// pusher.push("resize", ("photo.jpg", 640))?;
/// pusher.close(std::time::Duration::from_secs(5)).await?; // waits for a puller
/// # Ok(()) }
/// ```
pub struct Pusher {
    inner: Sender,
}

impl OneWaySender for Pusher {
    const KIND: SenderKind = SenderKind::Push;
    fn from_sender(inner: Sender) -> Self {
        Pusher { inner }
    }
}

impl Pusher {
    /// Start configuring a pusher.
    pub fn builder() -> SenderBuilder<Pusher> {
        SenderBuilder::new()
    }

    /// Connect a pusher to one puller endpoint.
    pub async fn connect(endpoint: &str) -> Result<Pusher, Error> {
        Pusher::builder().connect(endpoint).build().await
    }

    /// The endpoints (bound ones resolved).
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Queue `method(args...)` for one puller (`args` as for
    /// [`crate::Client::call`]). Returns at once; the event waits while no
    /// puller is connected.
    #[doc(alias = "cast")]
    pub fn push<A: Serialize>(&self, method: &str, args: A) -> Result<(), Error> {
        self.inner.send(method, &encode_args(&args)?)
    }

    /// [`Pusher::push`] with dynamic values.
    pub fn push_dynamic(&self, method: &str, args: Vec<Value>) -> Result<(), Error> {
        let raw = crate::service::encode_value(&Value::Array(args));
        self.inner.send(method, &raw)
    }

    /// Wait until at least one puller is connected (false after `within`).
    pub async fn wait_for_puller(&self, within: Duration) -> bool {
        self.inner.connected(within).await
    }

    /// Deliver waiting events (for up to `within`), then close. Fails with
    /// the number of events no puller could take in time.
    pub async fn close(&self, within: Duration) -> Result<(), Error> {
        self.inner.close(within).await
    }
}

/// Sends each event to every connected [`Subscriber`] (OpenStack's
/// `fanout_cast`). Wire-compatible with zerorpc-python's `Subscriber`.
/// Events published while nobody is subscribed are dropped (see the
/// [module docs](self) on slow joiners).
pub struct Publisher {
    inner: Sender,
}

impl OneWaySender for Publisher {
    const KIND: SenderKind = SenderKind::Pub;
    fn from_sender(inner: Sender) -> Self {
        Publisher { inner }
    }
}

impl Publisher {
    /// Start configuring a publisher.
    pub fn builder() -> SenderBuilder<Publisher> {
        SenderBuilder::new()
    }

    /// Bind a publisher on one endpoint.
    pub async fn bind(endpoint: &str) -> Result<Publisher, Error> {
        Publisher::builder().bind(endpoint).build().await
    }

    /// The endpoints (bound ones resolved).
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Send `method(args...)` to every current subscriber.
    #[doc(alias = "fanout")]
    pub fn publish<A: Serialize>(&self, method: &str, args: A) -> Result<(), Error> {
        self.inner.send(method, &encode_args(&args)?)
    }

    /// [`Publisher::publish`] with dynamic values.
    pub fn publish_dynamic(&self, method: &str, args: Vec<Value>) -> Result<(), Error> {
        let raw = crate::service::encode_value(&Value::Array(args));
        self.inner.send(method, &raw)
    }

    /// Wait until at least one subscriber is connected (false after
    /// `within`). Its subscription travels right behind the handshake; give
    /// it a few milliseconds more before publishing something it must see.
    pub async fn wait_for_subscriber(&self, within: Duration) -> bool {
        self.inner.connected(within).await
    }

    /// Hand queued events to the socket and close.
    pub async fn close(&self) {
        let _ = self.inner.close(Duration::ZERO).await;
    }
}

// -------------------------------------------------------------- receivers

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
pub struct ReceiverBuilder {
    kind: Kind,
    service: Service,
    binds: Vec<String>,
    connects: Vec<String>,
    pool_size: usize,
    limits: Limits,
}

impl ReceiverBuilder {
    fn new(kind: Kind, service: Service) -> Self {
        ReceiverBuilder {
            kind,
            service,
            binds: Vec::new(),
            connects: Vec::new(),
            pool_size: DEFAULT_RECEIVER_POOL,
            limits: Limits::default(),
        }
    }

    /// Bind an endpoint for senders to connect to (repeatable).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.binds.push(endpoint.into());
        self
    }

    /// Connect to a bound sender (repeatable; reconnects on its own).
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.connects.push(endpoint.into());
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
        self.limits.max_message_size = bytes;
        self
    }

    /// Open the sockets and start dispatching in the background.
    pub async fn start(self) -> Result<Receiver, Error> {
        if self.binds.is_empty() && self.connects.is_empty() {
            return Err(Error::Transport(
                "a receiver needs at least one --bind or --connect endpoint".into(),
            ));
        }
        let (links, endpoints, events_rx) =
            transport::open(self.kind, &self.binds, &self.connects, self.limits).await?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let core = ReceiverCore {
            service: Arc::new(self.service),
            pool: Arc::new(Semaphore::new(self.pool_size)),
            tasks: JoinSet::new(),
            warned: Arc::new(Mutex::new(RateLimit::default())),
        };
        let task = tokio::spawn(core.run(links, events_rx, stop_rx));
        Ok(Receiver {
            endpoints,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A running puller or subscriber. Dropping it stops it at once;
/// [`Receiver::stop`] lets running handlers finish.
pub struct Receiver {
    endpoints: Vec<String>,
    stop: Option<oneshot::Sender<Duration>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// The endpoints (bound ones resolved).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Stop reading events, let running handlers finish for up to `grace`,
    /// cancel the rest, and close the sockets.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

struct ReceiverCore {
    service: Arc<Service>,
    pool: Arc<Semaphore>,
    tasks: JoinSet<()>,
    warned: Arc<Mutex<RateLimit>>,
}

impl ReceiverCore {
    async fn run(
        mut self,
        links: Vec<Link>,
        mut events: transport::Inbound,
        mut stop: oneshot::Receiver<Duration>,
    ) {
        let grace = loop {
            tokio::select! {
                grace = &mut stop => break grace.unwrap_or_default(),
                ev = events.recv() => match ev {
                    Some(LinkEvent::Message(_, msg)) => self.on_message(msg).await,
                    Some(_) => {}
                    None => break Duration::ZERO,
                },
            }
            while self.tasks.try_join_next().is_some() {}
        };
        drop(links);
        let tasks = &mut self.tasks;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} });
        if drained.await.is_err() {
            tracing::warn!(
                cancelled = self.tasks.len(),
                "stop deadline reached: cancelling handlers"
            );
            self.tasks.shutdown().await;
        }
    }

    async fn on_message(&mut self, msg: ZmqMessage) {
        let Some(payload) = transport::payload(&msg) else {
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
        let got = event::type_name(&ev.args);
        let Some(args) = Args::from_raw(ev.args) else {
            return self.warn(
                || tracing::warn!(method = %name, got, "dropped an event whose args are not an array"),
            );
        };
        // Wait for a free slot before reading on: backpressure, not memory.
        let Ok(permit) = self.pool.clone().acquire_owned().await else {
            return;
        };
        let id = ev.message_id.map(hex).unwrap_or_default();
        let call = self.service.dispatch(&name, args);
        let warned = self.warned.clone();
        self.tasks.spawn(async move {
            let _permit = permit;
            let result = match crate::service::guarded(call).await {
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
        });
    }

    fn warn(&self, log: impl FnOnce()) {
        if let Ok(mut w) = self.warned.lock() {
            w.warn(log);
        }
    }
}

/// Sleep until `deadline`, or forever without one (for optional select arms).
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
