//! The sending side of one-way events: [`Pusher`] (PUSH) and
//! [`Publisher`] (PUB), both driven by one core task that holds events
//! while no peer is connected.

use super::super::client::encode_args;
use crate::error::Error;
use crate::protocol::{self, msgpack};
use crate::shutdown::{self, Stop};
use crate::transport::{Endpoints, Inbound, Kind, Link, LinkEvent};
use crate::Value;
use bytes::Bytes;
use serde::Serialize;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use zerorpc_zeromq::ZmqMessage;

/// Events a [`Pusher`] holds while no puller is connected; beyond this,
/// `push` fails instead of growing without bound.
pub const MAX_WAITING: usize = 100_000;

/// How long a closing sender gives the socket to write what it was handed:
/// the transport has no linger option and no way to see the flush finish.
const LINGER: Duration = Duration::from_millis(100);

/// Endpoints for a [`Pusher`] or [`Publisher`]; finish with `start`.
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct SenderBuilder<T> {
    endpoints: Endpoints,
    _to: PhantomData<fn() -> T>,
}

impl<T> SenderBuilder<T> {
    fn new() -> Self {
        SenderBuilder {
            endpoints: Endpoints::default(),
            _to: PhantomData,
        }
    }

    /// Connect to a bound receiver (repeatable; reconnects on its own).
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

    /// Bind an endpoint for receivers to connect to (repeatable).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.binds.push(endpoint.into());
        self
    }

    /// Open the sockets of `kind` and start the core task.
    async fn open(self, kind: Kind, owner: &str) -> Result<Sender, Error> {
        let (links, endpoints, inbound) = self.endpoints.open(kind, owner).await?;
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let core = SenderCore {
            up: vec![false; links.len()],
            links,
            next: 0,
            held: VecDeque::new(),
            fanout: kind == Kind::Pub,
            waiting: waiting.clone(),
            watchers: Vec::new(),
            dropped: 0,
        };
        let task = tokio::spawn(core.run(cmd_rx, inbound));
        Ok(Sender {
            cmd,
            endpoints,
            waiting,
            task: task.abort_handle(),
        })
    }
}

impl SenderBuilder<Pusher> {
    /// Open the sockets. Connecting happens in the background.
    pub async fn start(self) -> Result<Pusher, Error> {
        let inner = self.open(Kind::Push, "pusher").await?;
        Ok(Pusher { inner })
    }
}

impl SenderBuilder<Publisher> {
    /// Open the sockets. Connecting happens in the background.
    pub async fn start(self) -> Result<Publisher, Error> {
        let inner = self.open(Kind::Pub, "publisher").await?;
        Ok(Publisher { inner })
    }
}

/// What [`Pusher`] and [`Publisher`] share: the command queue of their core
/// task.
struct Sender {
    cmd: mpsc::UnboundedSender<SenderCmd>,
    endpoints: Vec<String>,
    waiting: Arc<AtomicUsize>,
    task: tokio::task::AbortHandle,
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An event to send, and the topic frame before it, if any (a
/// notification's: the subscribers' filters match it).
type Outgoing = (Option<Bytes>, Vec<u8>);

enum SenderCmd {
    Send(Outgoing),
    /// Answer once at least one peer is connected.
    WhenConnected(oneshot::Sender<()>),
    /// Deliver what is held (until the deadline), close, report losses.
    Close(Instant, Stop),
}

impl Sender {
    fn send(&self, method: &str, args: &[u8]) -> Result<(), Error> {
        self.send_topic(None, method, args)
    }

    fn send_topic(&self, topic: Option<Bytes>, method: &str, args: &[u8]) -> Result<(), Error> {
        if self.waiting.load(Ordering::Relaxed) >= MAX_WAITING {
            return Err(Error::Transport {
                context: format!(
                    "{MAX_WAITING} events are already waiting for a receiver to connect"
                ),
                source: None,
            });
        }
        let (_, frame) = protocol::encode_request(method, args);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.cmd
            .send(SenderCmd::Send((topic, frame)))
            .map_err(|_| Error::Closed)
    }

    async fn connected(&self, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(SenderCmd::WhenConnected(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }

    async fn close(&self, grace: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + grace;
        let what = "events not delivered: no receiver took them";
        shutdown::close(grace, what, |stop| {
            self.cmd.send(SenderCmd::Close(deadline, stop)).is_ok()
        })
        .await
    }
}

struct SenderCore {
    links: Vec<Link>,
    up: Vec<bool>,
    next: usize,
    /// Push events waiting for a connected puller.
    held: VecDeque<Outgoing>,
    fanout: bool,
    waiting: Arc<AtomicUsize>,
    watchers: Vec<oneshot::Sender<()>>,
    /// Published events nobody was subscribed to (logged in batches).
    dropped: u64,
}

impl SenderCore {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<SenderCmd>, mut events: Inbound) {
        let mut closing: Option<(Instant, Stop)> = None;
        loop {
            if closing.is_some() && self.held.is_empty() {
                break;
            }
            let deadline = closing.as_ref().map(|c| c.0);
            tokio::select! {
                cmd = cmds.recv(), if closing.is_none() => match cmd {
                    Some(SenderCmd::Send(event)) => {
                        self.held.push_back(event);
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
                        LinkEvent::Message(..)
                        | LinkEvent::PeerGone(..)
                        | LinkEvent::PeerUp(..)
                        | LinkEvent::Refused(..) => {}
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
        if let Some((_, stop)) = closing {
            stop.finish(lost);
        }
    }

    /// Hand held events to connected peers: each to one (push), or to all
    /// (publish; with nobody subscribed it is dropped, as in ZeroMQ).
    fn deliver(&mut self) {
        while let Some((topic, frame)) = self.held.pop_front() {
            if self.fanout {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                let mut sent = false;
                let message = match topic {
                    Some(topic) => {
                        let mut m = ZmqMessage::from(topic);
                        m.push_back(Bytes::from(frame));
                        m
                    }
                    None => ZmqMessage::from(frame),
                };
                for (l, link) in self.links.iter().enumerate() {
                    if self.up[l] {
                        link.send(message.clone());
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
                self.held.push_front((topic, frame));
                return;
            };
            self.next = l + 1;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.links[l].send(ZmqMessage::from(frame));
        }
    }
}

/// Sends each event to one of the connected [`Puller`](super::Puller)s (a work queue;
/// OpenStack's `cast`). Wire-compatible with zerorpc-python's `Puller`.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerorpc::Error> {
/// use zerorpc::oneway::Pusher;
/// let pusher = Pusher::builder().connect("tcp://127.0.0.1:4244").start().await?;
/// pusher.push("resize", ("photo.jpg", 640))?;
/// pusher.close(std::time::Duration::from_secs(5)).await?; // waits for a puller
/// # Ok(()) }
/// ```
pub struct Pusher {
    inner: Sender,
}

impl Pusher {
    /// Start configuring a pusher.
    pub fn builder() -> SenderBuilder<Pusher> {
        SenderBuilder::new()
    }

    /// Connect a pusher to one puller endpoint.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Pusher, Error> {
        Pusher::builder().connect(endpoint).start().await
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
        let raw = msgpack::encode_value(&Value::Array(args));
        self.inner.send(method, &raw)
    }

    /// Wait until at least one puller is connected (false after `within`).
    pub async fn wait_for_puller(&self, within: Duration) -> bool {
        self.inner.connected(within).await
    }

    /// Deliver waiting events (for up to `grace`), then close. Fails with
    /// [`Error::Unfinished`] (how many events no puller took in time).
    pub async fn close(&self, grace: Duration) -> Result<(), Error> {
        self.inner.close(grace).await
    }
}

/// Sends each event to every connected [`Subscriber`](super::Subscriber) (OpenStack's
/// `fanout_cast`). Wire-compatible with zerorpc-python's `Subscriber`.
/// Events published while nobody is subscribed are dropped (see the
/// [module docs](super) on slow joiners).
pub struct Publisher {
    inner: Sender,
}

impl Publisher {
    /// Start configuring a publisher.
    pub fn builder() -> SenderBuilder<Publisher> {
        SenderBuilder::new()
    }

    /// Bind a publisher on one endpoint.
    pub async fn bind(endpoint: impl Into<String>) -> Result<Publisher, Error> {
        Publisher::builder().bind(endpoint).start().await
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
        let raw = msgpack::encode_value(&Value::Array(args));
        self.inner.send(method, &raw)
    }

    /// Publish raw msgpack `args` behind a `topic` frame, which
    /// subscribers' filters match (notifications).
    pub(crate) fn publish_topic(
        &self,
        topic: &str,
        method: &str,
        args: &[u8],
    ) -> Result<(), Error> {
        let topic = Bytes::copy_from_slice(topic.as_bytes());
        self.inner.send_topic(Some(topic), method, args)
    }

    /// Wait until at least one subscriber is connected (false after
    /// `within`). Its subscription travels right behind the handshake; give
    /// it a few milliseconds more before publishing something it must see.
    pub async fn wait_for_subscriber(&self, within: Duration) -> bool {
        self.inner.connected(within).await
    }

    /// Hand queued events to the socket (for up to `grace`) and close.
    /// Events published while nobody was subscribed are not counted as
    /// undelivered: a publisher never holds them.
    pub async fn close(&self, grace: Duration) -> Result<(), Error> {
        self.inner.close(grace).await
    }
}

/// Sleep until `deadline`, or forever without one (for optional select arms).
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
