//! The transport adapter: everything zrpc needs from `zeromq` 0.7, with its
//! gaps closed in one place.
//!
//! A [`Link`] is one ZeroMQ socket (ROUTER, DEALER, PUSH, PULL, PUB or
//! SUB), bound or connected, driven by its own task, which connects,
//! reconnects, watches the socket and writes what the owner queues (so
//! sending never makes the owner wait). Received messages reach the owner
//! through its [`Inbound`], which reads every link's socket itself: no task
//! and no channel between the socket and the owner, and a flood backs up
//! into TCP rather than into memory.
//!
//! What `zeromq` 0.7 does not do, and this module does:
//! - a connected socket never reconnects, and its `recv` hangs forever after
//!   the peer closes: the link watches the socket monitor for the disconnect,
//!   drops the socket and connects a fresh one with capped backoff;
//! - `connect` waits until the peer is reachable: it runs inside the link
//!   task, so connecting returns at once and messages wait in the owner;
//! - `tcp://*:port` is not understood: it is rewritten to `0.0.0.0`;
//! - a ROUTER send to a peer that stopped reading waited for it, stalling
//!   every other peer: with the vendored patch such messages are dropped
//!   (per-peer send queue, [`DEFAULT_SEND_QUEUE`]) and the peer is logged.
//!
//! The rest of what `zeromq` 0.7 lacks is patched in `vendor/zeromq` (see
//! its `ZRPC-PATCH.md`): a maximum message size, ZMTP heartbeats answered,
//! no allocation from a frame header, no per-peer identity leak.

use crate::error::Error;
use crate::logging::hex;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::{
    DealerSocket, PubSocket, PullSocket, PushSocket, RouterSocket, Socket, SocketEvent,
    SocketOptions, SocketRecv, SocketSend, SubSocket, ZmqMessage,
};

/// Index of a link within its owner.
pub(crate) type LinkId = usize;

/// What a link reports to its owner.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// Connected (or reconnected) to its peer.
    Up(LinkId),
    /// Its peer went away; it is reconnecting.
    Down(LinkId),
    /// A message arrived (for a ROUTER, frame 0 is the peer identity).
    Message(LinkId, ZmqMessage),
    /// A peer of a bound socket disconnected (its identity).
    PeerGone(LinkId, Bytes),
}

/// What a link's task tells its owner's [`Inbound`].
enum Report {
    Event(LinkEvent),
    /// The socket to read from now (`None`: the connection is gone).
    Reader(LinkId, Option<Reader>),
}

/// A socket's receive half as a stream of messages.
type Reader = std::pin::Pin<Box<dyn futures::Stream<Item = ZmqMessage> + Send>>;

/// Everything an owner receives from its links. The owner polls the
/// sockets itself through this (saving a task and a channel hop per
/// message, the largest per-message cost after the kernel's); link tasks
/// only report state changes (`Up`, `Down`, `PeerGone`) and hand over each
/// new connection's socket.
pub(crate) struct Inbound {
    reports: mpsc::Receiver<Report>,
    reports_open: bool,
    readers: Vec<Option<Reader>>,
    /// The link read first next time (so one busy link cannot starve others).
    next: usize,
}

impl Inbound {
    /// The next event; `None` once every link is gone.
    pub(crate) async fn recv(&mut self) -> Option<LinkEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<LinkEvent>> {
        // State changes first: a new connection's reader is installed
        // before its messages are read, after the `Up` that announced it.
        while self.reports_open {
            match self.reports.poll_recv(cx) {
                Poll::Ready(Some(Report::Event(ev))) => return Poll::Ready(Some(ev)),
                Poll::Ready(Some(Report::Reader(id, reader))) => {
                    if self.readers.len() <= id {
                        self.readers.resize_with(id + 1, || None);
                    }
                    self.readers[id] = reader;
                }
                Poll::Ready(None) => self.reports_open = false,
                Poll::Pending => break,
            }
        }
        let n = self.readers.len();
        for i in 0..n {
            let id = (self.next + i) % n;
            let Some(reader) = self.readers[id].as_mut() else {
                continue;
            };
            match reader.poll_next_unpin(cx) {
                Poll::Ready(Some(msg)) => {
                    self.next = id + 1;
                    return Poll::Ready(Some(LinkEvent::Message(id, msg)));
                }
                Poll::Ready(None) => self.readers[id] = None,
                Poll::Pending => {}
            }
        }
        if !self.reports_open && self.readers.iter().all(Option::is_none) {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// The ZeroMQ socket type of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Router,
    Dealer,
    Push,
    Pull,
    Pub,
    /// Subscribed to everything (zerorpc has no topics).
    Sub,
}

/// Default largest message a peer may send: zerorpc's 100 MiB. A peer that
/// announces more is disconnected before anything is allocated for it (the
/// vendored `zeromq` patch; upstream 0.7 would allocate whatever a frame
/// header claims, and abort on a huge claim).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 100 << 20;

/// Default number of messages that may wait to be written to one peer (a
/// send high-water mark). A ROUTER drops what goes beyond it, so a client
/// that stops reading its replies costs at most this much memory and never
/// delays replies to others. Large enough that a burst of 10 000 replies to a
/// client that is reading never hits it.
pub const DEFAULT_SEND_QUEUE: usize = 10_000;

/// The lowest maximum message size a socket is given, whatever is asked.
pub const MIN_MESSAGE_LIMIT: usize = 1024;

/// Per-socket limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_message_size: usize,
    pub(crate) send_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            send_queue: DEFAULT_SEND_QUEUE,
        }
    }
}

impl Limits {
    fn socket_options(&self, kind: Kind) -> SocketOptions {
        let mut opts = SocketOptions::default();
        // The limit applies to handshake commands too (READY with a long
        // identity is a few hundred bytes): below that, no peer could connect.
        opts.max_message_size(Some(self.max_message_size.max(MIN_MESSAGE_LIMIT)));
        opts.send_queue_capacity(self.send_queue);
        // Only a ROUTER addresses one peer among many: the others wait, which
        // is the backpressure a PUSH or a DEALER's owner wants.
        opts.router_drop_when_full(kind == Kind::Router);
        opts
    }
}

/// How long one connection attempt may take before backing off.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(1);
/// Reconnect backoff: first retry, and the cap ("back within about a second").
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
/// How long a closing PUB socket stays open for its fanout to finish.
const PUB_LINGER: Duration = Duration::from_millis(100);
/// Queued state changes per owner (messages are not queued: the owner
/// reads them from the sockets).
const REPORT_QUEUE: usize = 1024;

/// A running link. Dropping it closes the socket.
pub(crate) struct Link {
    /// Outgoing messages, written by the link's task.
    out: mpsc::UnboundedSender<ZmqMessage>,
    /// What the owner may send through without the task.
    outbox: Arc<Outbox>,
    /// The endpoint: resolved (real port) for binds, as given for connects.
    pub(crate) endpoint: String,
    /// Connected (one peer, `Down` means it is gone) rather than bound
    /// (`Down` only means no peer is connected at the moment).
    pub(crate) connected: bool,
    task: Option<JoinHandle<()>>,
}

impl Link {
    /// Send a message; never waits. It goes straight to zeromq's queue for
    /// the peer when that can be done at once, in order (the common case:
    /// one peer with room, nothing queued before it), and through the
    /// link's task otherwise (no peer yet, several peers, a full queue).
    pub(crate) fn send(&self, msg: ZmqMessage) {
        let Err(msg) = self.outbox.try_send_now(msg) else {
            return;
        };
        self.outbox.queued.fetch_add(1, Ordering::AcqRel);
        let _ = self.out.send(msg);
    }

    /// Close the queue, let the task send what is already queued (for up to
    /// `within`), then close the socket.
    pub(crate) async fn close(mut self, within: Duration) {
        let task = self.task.take();
        drop(self);
        if let Some(mut task) = task {
            if tokio::time::timeout(within, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The owner's way past the link's task: a clone of the live socket's send
/// half, installed by the task while the socket is connected. Saves a task
/// hop per message (measured: a large share of a call's cost on loopback).
#[derive(Default)]
struct Outbox {
    direct: Mutex<Option<Box<dyn Direct>>>,
    /// Messages given to the task and not yet handed to zeromq. While there
    /// are any, later messages queue behind them: order is kept.
    queued: AtomicUsize,
}

impl Outbox {
    fn try_send_now(&self, msg: ZmqMessage) -> Result<(), ZmqMessage> {
        if self.queued.load(Ordering::Acquire) != 0 {
            return Err(msg);
        }
        match self.direct.lock() {
            Ok(mut direct) => match direct.as_mut() {
                Some(tx) => tx.try_send_now(msg),
                None => Err(msg),
            },
            Err(_) => Err(msg),
        }
    }

    /// The task handed a queued message to zeromq (or dropped it).
    fn done(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A send half that can take a message without waiting (from the vendored
/// `zeromq` patch), or give it back.
trait Direct: Send {
    fn try_send_now(&mut self, msg: ZmqMessage) -> Result<(), ZmqMessage>;
}

impl Direct for zeromq::DealerSendHalf {
    fn try_send_now(&mut self, msg: ZmqMessage) -> Result<(), ZmqMessage> {
        zeromq::DealerSendHalf::try_send_now(self, msg)
    }
}

impl Direct for zeromq::RouterSendHalf {
    fn try_send_now(&mut self, msg: ZmqMessage) -> Result<(), ZmqMessage> {
        zeromq::RouterSendHalf::try_send_now(self, msg)
    }
}

/// The task's hold on its [`Outbox`]: installs the socket's direct half,
/// takes it away while a peer's queue is full (so those drops go through
/// the task, which logs them), and removes it for good when dropped (the
/// socket must not outlive its connection).
struct Installed<'a> {
    outbox: &'a Outbox,
    parked: Option<Box<dyn Direct>>,
    open: bool,
}

impl<'a> Installed<'a> {
    fn new(outbox: &'a Outbox, direct: Option<Box<dyn Direct>>) -> Self {
        let mut me = Installed {
            outbox,
            parked: direct,
            open: false,
        };
        me.open(true);
        me
    }

    fn open(&mut self, open: bool) {
        if open == self.open {
            return;
        }
        self.open = open;
        if let Ok(mut slot) = self.outbox.direct.lock() {
            if open {
                *slot = self.parked.take();
            } else {
                self.parked = slot.take();
            }
        }
    }
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.outbox.direct.lock() {
            *slot = None;
        }
    }
}

/// Normalise a user endpoint and check it parses.
pub(crate) fn normalize(endpoint: &str) -> Result<String, Error> {
    let ep = match endpoint.strip_prefix("tcp://*:") {
        Some(port) => format!("tcp://0.0.0.0:{port}"),
        None => endpoint.to_string(),
    };
    ep.parse::<zeromq::Endpoint>()
        .map_err(|e| Error::Transport(format!("invalid endpoint {endpoint:?}: {e}")))?;
    Ok(ep)
}

/// The links of one owner (a server, client, sender or receiver): every
/// bind (errors reported here), then every connect (in the background),
/// all reporting on one bounded channel. Also returns the endpoints, bound
/// ones resolved.
pub(crate) async fn open(
    kind: Kind,
    binds: &[String],
    connects: &[String],
    limits: Limits,
) -> Result<(Vec<Link>, Vec<String>, Inbound), Error> {
    let (events_tx, events_rx) = mpsc::channel(REPORT_QUEUE);
    let mut links = Vec::with_capacity(binds.len() + connects.len());
    for ep in binds {
        links.push(bind(kind, links.len(), ep, events_tx.clone(), limits).await?);
    }
    for ep in connects {
        links.push(connect(kind, links.len(), ep, events_tx.clone(), limits)?);
    }
    let endpoints = links.iter().map(|l| l.endpoint.clone()).collect();
    let inbound = Inbound {
        reports: events_rx,
        reports_open: true,
        readers: Vec::new(),
        next: 0,
    };
    Ok((links, endpoints, inbound))
}

/// Bind a new socket of `kind` to `endpoint` and start its task.
async fn bind(
    kind: Kind,
    id: LinkId,
    endpoint: &str,
    events: mpsc::Sender<Report>,
    limits: Limits,
) -> Result<Link, Error> {
    let ep = normalize(endpoint)?;
    let l = limits;
    match kind {
        Kind::Router => bind_as::<RouterSocket>(id, &ep, events, l).await,
        Kind::Dealer => bind_as::<DealerSocket>(id, &ep, events, l).await,
        Kind::Push => bind_as::<PushSocket>(id, &ep, events, l).await,
        Kind::Pull => bind_as::<PullSocket>(id, &ep, events, l).await,
        Kind::Pub => bind_as::<PubSocket>(id, &ep, events, l).await,
        Kind::Sub => bind_as::<SubSocket>(id, &ep, events, l).await,
    }
}

/// Start a task that connects a socket of `kind` to `endpoint`, keeps it
/// connected, and reports `Up`/`Down`. Returns at once.
fn connect(
    kind: Kind,
    id: LinkId,
    endpoint: &str,
    events: mpsc::Sender<Report>,
    limits: Limits,
) -> Result<Link, Error> {
    let ep = normalize(endpoint)?;
    let (out, out_rx) = mpsc::unbounded_channel();
    let outbox = Arc::<Outbox>::default();
    let q = Queue {
        rx: out_rx,
        outbox: outbox.clone(),
    };
    let (e, l) = (ep.clone(), limits);
    let task = match kind {
        Kind::Router => tokio::spawn(run_connected::<RouterSocket>(id, e, q, events, l)),
        Kind::Dealer => tokio::spawn(run_connected::<DealerSocket>(id, e, q, events, l)),
        Kind::Push => tokio::spawn(run_connected::<PushSocket>(id, e, q, events, l)),
        Kind::Pull => tokio::spawn(run_connected::<PullSocket>(id, e, q, events, l)),
        Kind::Pub => tokio::spawn(run_connected::<PubSocket>(id, e, q, events, l)),
        Kind::Sub => tokio::spawn(run_connected::<SubSocket>(id, e, q, events, l)),
    };
    Ok(Link {
        out,
        outbox,
        endpoint: ep,
        connected: true,
        task: Some(task),
    })
}

/// A zeromq socket split into independently owned halves, so reading never
/// waits behind a send to a slow peer.
trait Halves: Socket + Sized + 'static {
    const KIND: Kind;
    type Tx: SocketSend + Send + 'static;
    type Rx: SocketRecv + Send + 'static;
    /// Send and receive halves (a one-way socket type lacks one).
    fn halves(self) -> (Option<Self::Tx>, Option<Self::Rx>);
    /// A clone of the send half for [`Outbox`] (DEALER and ROUTER).
    fn direct(_tx: &Self::Tx) -> Option<Box<dyn Direct>> {
        None
    }
    /// The receive half as a [`Reader`].
    fn reader(rx: Self::Rx) -> Reader {
        reader(rx)
    }
    /// Set the socket up before it binds or connects.
    fn prepare(&mut self) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }
}

impl Halves for RouterSocket {
    const KIND: Kind = Kind::Router;
    type Tx = zeromq::RouterSendHalf;
    type Rx = zeromq::RouterRecvHalf;
    fn direct(tx: &Self::Tx) -> Option<Box<dyn Direct>> {
        Some(Box::new(tx.clone()))
    }
    fn reader(rx: Self::Rx) -> Reader {
        polled_reader(rx)
    }
    fn halves(self) -> (Option<Self::Tx>, Option<Self::Rx>) {
        let (t, r) = self.split();
        (Some(t), Some(r))
    }
}

impl Halves for DealerSocket {
    const KIND: Kind = Kind::Dealer;
    type Tx = zeromq::DealerSendHalf;
    type Rx = zeromq::DealerRecvHalf;
    fn direct(tx: &Self::Tx) -> Option<Box<dyn Direct>> {
        Some(Box::new(tx.clone()))
    }
    fn reader(rx: Self::Rx) -> Reader {
        polled_reader(rx)
    }
    fn halves(self) -> (Option<Self::Tx>, Option<Self::Rx>) {
        let (t, r) = self.split();
        (Some(t), Some(r))
    }
}

impl Halves for PushSocket {
    const KIND: Kind = Kind::Push;
    type Tx = PushSocket;
    type Rx = PullSocket;
    fn halves(self) -> (Option<Self::Tx>, Option<Self::Rx>) {
        (Some(self), None)
    }
}

impl Halves for PullSocket {
    const KIND: Kind = Kind::Pull;
    type Tx = PushSocket;
    type Rx = PullSocket;
    fn halves(self) -> (Option<Self::Tx>, Option<Self::Rx>) {
        (None, Some(self))
    }
}

impl Halves for PubSocket {
    const KIND: Kind = Kind::Pub;
    type Tx = PubSocket;
    type Rx = PullSocket;
    fn halves(self) -> (Option<Self::Tx>, Option<Self::Rx>) {
        (Some(self), None)
    }
}

impl Halves for SubSocket {
    const KIND: Kind = Kind::Sub;
    type Tx = PushSocket;
    type Rx = SubSocket;
    fn halves(self) -> (Option<Self::Tx>, Option<Self::Rx>) {
        (None, Some(self))
    }
    async fn prepare(&mut self) {
        // Remembered by the socket and sent to every peer as it connects.
        if let Err(e) = self.subscribe("").await {
            tracing::warn!(error = %e, "cannot subscribe");
        }
    }
}

async fn bind_as<S: Halves>(
    id: LinkId,
    ep: &str,
    events: mpsc::Sender<Report>,
    limits: Limits,
) -> Result<Link, Error> {
    let mut sock = S::with_options(limits.socket_options(S::KIND));
    sock.prepare().await;
    let monitor = sock.monitor();
    let resolved = sock
        .bind(ep)
        .await
        .map_err(|e| Error::Transport(format!("cannot bind {ep}: {e}")))?;
    let (out, out_rx) = mpsc::unbounded_channel();
    let outbox = Arc::<Outbox>::default();
    let mut q = Queue {
        rx: out_rx,
        outbox: outbox.clone(),
    };
    let endpoint = resolved.to_string();
    let task = tokio::spawn(async move {
        serve_socket::<S>(id, sock.halves(), monitor, &mut q, &events, false).await;
    });
    Ok(Link {
        out,
        outbox,
        endpoint,
        connected: false,
        task: Some(task),
    })
}

async fn run_connected<S: Halves>(
    id: LinkId,
    ep: String,
    mut out_rx: Queue,
    events: mpsc::Sender<Report>,
    limits: Limits,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut opts = limits.socket_options(S::KIND);
        opts.connect_timeout(CONNECT_ATTEMPT);
        let mut sock = S::with_options(opts);
        sock.prepare().await;
        let monitor = sock.monitor();
        // Anything queued while down belongs to channels the owner has
        // already failed; sending it to a new peer would only confuse it.
        let connecting = async {
            let r = sock.connect(&ep).await;
            out_rx.discard();
            r
        };
        match connecting.await {
            Ok(()) => {
                tracing::debug!(endpoint = %ep, "connected");
                backoff = BACKOFF_MIN;
                if events.send(Report::Event(LinkEvent::Up(id))).await.is_err() {
                    return;
                }
                if !serve_socket::<S>(id, sock.halves(), monitor, &mut out_rx, &events, true).await
                {
                    return;
                }
                tracing::info!(endpoint = %ep, "connection lost; reconnecting");
                let _ = events.send(Report::Reader(id, None)).await;
                if events
                    .send(Report::Event(LinkEvent::Down(id)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(endpoint = %ep, error = %e, "connect attempt failed");
                if out_rx.rx.is_closed() {
                    return;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Drive one socket until its owner closes it (returns false) or, for a
/// connected socket, its peer disconnects (returns true). A bound socket is
/// `Up` while it has at least one peer: zeromq drops what a DEALER sends
/// with no peer, so the owner must hold messages until then.
async fn serve_socket<S: Halves>(
    id: LinkId,
    (mut tx, rx): (Option<S::Tx>, Option<S::Rx>),
    mut monitor: futures::channel::mpsc::Receiver<SocketEvent>,
    out_rx: &mut Queue,
    events: &mpsc::Sender<Report>,
    connected: bool,
) -> bool {
    if let Some(rx) = rx {
        if events
            .send(Report::Reader(id, Some(S::reader(rx))))
            .await
            .is_err()
        {
            return false;
        }
    }
    let mut peers = 0usize;
    let mut full = FullPeers::default();
    let mut direct = Installed::new(&out_rx.outbox, tx.as_ref().and_then(S::direct));
    loop {
        tokio::select! {
            msg = out_rx.rx.recv() => match (msg, tx.as_mut()) {
                (Some(msg), Some(tx)) => {
                    // A ROUTER message starts with the peer identity.
                    let peer = (S::KIND == Kind::Router).then(|| msg.get(0).cloned()).flatten();
                    match tx.send(msg).await {
                        Ok(()) => full.sent(peer),
                        Err(zeromq::ZmqError::BufferFull(_)) => full.dropped(peer),
                        Err(e) => tracing::debug!(error = %e, "send failed"),
                    }
                    out_rx.outbox.done();
                    direct.open(full.0.is_empty());
                }
                (Some(_), None) => out_rx.outbox.done(),
                (None, _) => {
                    // zeromq's PUB drops whatever its fanout task has not yet
                    // handed to a subscriber's queue when the socket goes:
                    // give it a moment (publish-then-close lost ~15% here).
                    if S::KIND == Kind::Pub {
                        tokio::time::sleep(PUB_LINGER).await;
                    }
                    return false;
                }
            },
            ev = monitor.next() => match ev {
                Some(SocketEvent::Disconnected(peer)) => {
                    if connected {
                        return true;
                    }
                    let peer: Bytes = peer.into();
                    full.gone(&peer);
                    direct.open(full.0.is_empty());
                    let _ = events.send(Report::Event(LinkEvent::PeerGone(id, peer))).await;
                    peers = peers.saturating_sub(1);
                    if peers == 0 {
                        let _ = events.send(Report::Event(LinkEvent::Down(id))).await;
                    }
                }
                Some(SocketEvent::Accepted(..)) if !connected => {
                    peers += 1;
                    if peers == 1 {
                        let _ = events.send(Report::Event(LinkEvent::Up(id))).await;
                    }
                }
                Some(_) => {}
                // The socket is gone: treat as a disconnect.
                None => return connected,
            },
        }
    }
}

/// A socket's receive half as a [`Reader`]: receive errors are logged and
/// skipped (one peer failing never stops the others), and the stream ends
/// when the socket is closed.
fn reader<R: SocketRecv + Send + 'static>(rx: R) -> Reader {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await.into() {
                Received::Message(msg) => return Some((msg, rx)),
                Received::End => return None,
                Received::Skip => {}
            }
        }
    }))
}

/// A receive half with a poll function (the vendored patch's `poll_recv`).
trait PollRecv: Send + 'static {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<zeromq::ZmqResult<ZmqMessage>>;
}

impl PollRecv for zeromq::DealerRecvHalf {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<zeromq::ZmqResult<ZmqMessage>> {
        zeromq::DealerRecvHalf::poll_recv(self, cx)
    }
}

impl PollRecv for zeromq::RouterRecvHalf {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<zeromq::ZmqResult<ZmqMessage>> {
        zeromq::RouterRecvHalf::poll_recv(self, cx)
    }
}

/// [`reader`], polled in place: no boxed future per message.
fn polled_reader<R: PollRecv>(mut rx: R) -> Reader {
    Box::pin(futures::stream::poll_fn(move |cx| loop {
        match std::task::ready!(rx.poll_recv(cx)).into() {
            Received::Message(msg) => return Poll::Ready(Some(msg)),
            Received::End => return Poll::Ready(None),
            Received::Skip => {}
        }
    }))
}

/// What a receive result means to a [`Reader`].
enum Received {
    Message(ZmqMessage),
    /// The socket is closed.
    End,
    /// An error, logged here; read on.
    Skip,
}

impl From<zeromq::ZmqResult<ZmqMessage>> for Received {
    fn from(r: zeromq::ZmqResult<ZmqMessage>) -> Self {
        match r {
            Ok(msg) => return Received::Message(msg),
            Err(zeromq::ZmqError::NoMessage) => return Received::End,
            // A ROUTER names the peer it dropped.
            Err(zeromq::ZmqError::PeerFailed(peer, why)) => {
                tracing::warn!(peer = %hex(&peer), error = %why, "dropped a peer that sent bad data")
            }
            // A peer's connection broke (reset, closed mid-frame): not
            // bad data; the disconnect is reported on its own.
            Err(e) if io_failure(&e) => tracing::debug!(error = %e, "a peer's connection failed"),
            // One peer broke the protocol (or went over the size limit);
            // zeromq has dropped it. The others carry on.
            Err(e) => tracing::warn!(error = %e, "dropped a peer that sent bad data"),
        }
        Received::Skip
    }
}

/// Peers of a ROUTER whose send queue is full: what is sent to them is
/// dropped. Logged once when it starts, and once when it ends (a send gets
/// through a second or more after the last drop) with the count, so a peer
/// that never reads, or reads in fits, cannot flood the log.
#[derive(Default)]
struct FullPeers(std::collections::HashMap<Bytes, Dropping>);

struct Dropping {
    count: u64,
    last: std::time::Instant,
}

/// How long sends to a peer must go through before it counts as caught up.
const CAUGHT_UP: Duration = Duration::from_secs(1);

impl FullPeers {
    fn dropped(&mut self, peer: Option<Bytes>) {
        let Some(peer) = peer else { return };
        let now = std::time::Instant::now();
        let d = self.0.entry(peer.clone()).or_insert_with(|| {
            tracing::warn!(
                peer = %hex(&peer),
                "peer is not reading: its send queue is full; dropping messages to it until it catches up"
            );
            Dropping { count: 0, last: now }
        });
        d.count += 1;
        d.last = now;
    }

    fn sent(&mut self, peer: Option<Bytes>) {
        let Some(peer) = peer.filter(|_| !self.0.is_empty()) else {
            return;
        };
        if self
            .0
            .get(&peer)
            .is_some_and(|d| d.last.elapsed() >= CAUGHT_UP)
        {
            if let Some(d) = self.0.remove(&peer) {
                tracing::warn!(peer = %hex(&peer), dropped = d.count, "peer caught up; messages to it were dropped meanwhile");
            }
        }
    }

    fn gone(&mut self, peer: &Bytes) {
        if let Some(d) = self.0.remove(peer) {
            tracing::warn!(peer = %hex(peer), dropped = d.count, "peer that was not reading disconnected; messages to it were dropped");
        }
    }
}

/// Whether a receive error is the connection failing (an I/O error
/// somewhere in its sources) rather than the peer misbehaving.
fn io_failure(e: &zeromq::ZmqError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<std::io::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// A link task's end of the outgoing queue.
struct Queue {
    rx: mpsc::UnboundedReceiver<ZmqMessage>,
    outbox: Arc<Outbox>,
}

impl Queue {
    /// Drop everything queued.
    fn discard(&mut self) {
        while self.rx.try_recv().is_ok() {
            self.outbox.done();
        }
    }
}

/// The payload of a received message: its last frame (the empty delimiter
/// and any envelope frames before it are tolerated, present or not).
pub(crate) fn payload(msg: &ZmqMessage) -> Option<&Bytes> {
    msg.get(msg.len().checked_sub(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_host_is_rewritten() {
        assert_eq!(normalize("tcp://*:4242").unwrap(), "tcp://0.0.0.0:4242");
        assert_eq!(normalize("tcp://127.0.0.1:1").unwrap(), "tcp://127.0.0.1:1");
        assert!(normalize("nonsense").is_err());
    }
}
