//! A link: one ZeroMQ socket, bound or connected, driven by its own task,
//! which connects, reconnects with backoff, watches the socket monitor for
//! peers coming and going, and writes what its owner queued.

use super::inbound::{io_failure, polled_reader, reader, Reader, Report};
use super::outbox::{Direct, Installed, Outbox, Queue};
use super::{endpoint, Kind, Limits, LinkEvent, LinkId};
use crate::error::Error;
use crate::logging::{hex, RateLimit};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zerorpc_zeromq::{
    DealerSocket, PubSocket, PullSocket, PushSocket, RouterSocket, Socket, SocketEvent, SocketRecv,
    SubSocket, ZmqMessage,
};

/// How long one connection attempt may take before backing off.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(1);
/// Reconnect backoff: first retry, and the cap ("back within about a second").
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
/// How long a closing PUB socket stays open for its fanout to finish.
const PUB_LINGER: Duration = Duration::from_millis(100);

/// Whether a ROUTER's peer can take more messages: its send queue is under
/// half its bounds. A producer that may send a lot to one peer (a stream)
/// waits while this is false, instead of having its messages dropped when
/// the queue fills: a client that stops reading costs a bounded queue, not
/// a producer at full speed.
#[derive(Clone)]
pub(crate) struct PeerRoom(Arc<Outbox>);

impl PeerRoom {
    pub(crate) fn has_room(&self, identity: &Bytes) -> bool {
        self.0.has_room(identity)
    }
}

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
    /// A handle that tells whether a peer of this (ROUTER) link has room in
    /// its send queue.
    pub(crate) fn room(&self) -> PeerRoom {
        PeerRoom(self.outbox.clone())
    }

    /// The CURVE public key a peer of this (ROUTER) link authenticated with.
    pub(crate) fn peer_key(&self, identity: &Bytes) -> Option<[u8; 32]> {
        self.outbox.peer_key(identity)
    }

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

    /// Drop a connected link's connection and connect afresh (its peer went
    /// silent). A bound link ignores this.
    pub(crate) fn reconnect(&self) {
        if self.connected {
            self.outbox.reconnect.notify_one();
        }
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

/// Bind a new socket of `kind` to `endpoint` and start its task.
pub(super) async fn bind(
    kind: Kind,
    id: LinkId,
    endpoint: &str,
    events: mpsc::Sender<Report>,
    limits: Limits,
) -> Result<Link, Error> {
    let ep = endpoint::normalize(endpoint)?;
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
pub(super) fn connect(
    kind: Kind,
    id: LinkId,
    endpoint: &str,
    events: mpsc::Sender<Report>,
    limits: Limits,
) -> Result<Link, Error> {
    let ep = endpoint::normalize(endpoint)?;
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
    type Tx: SendHalf;
    type Rx: SocketRecv + Send + 'static;
    /// Send and receive halves (a one-way socket type lacks one).
    fn halves(self) -> (Option<Self::Tx>, Option<Self::Rx>);
    /// A clone of the send half for [`Outbox`] (DEALER and ROUTER).
    fn direct(_tx: &Self::Tx) -> Option<Box<dyn Direct>> {
        None
    }
    /// A ROUTER's send half, for asking about its peers' queues.
    fn router(_tx: &Self::Tx) -> Option<zerorpc_zeromq::RouterSendHalf> {
        None
    }
    /// The receive half as a [`Reader`].
    fn reader(rx: Self::Rx) -> Reader {
        reader(rx)
    }
    /// Set the socket up before it binds or connects.
    fn prepare(&mut self, _limits: &Limits) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }
}

/// A send half as the link task sends with it: zeromq's `send_unboxed`, the
/// trait's `send` without its boxed future (an allocation per message, 904
/// bytes for a ROUTER; every reply of a server with several clients, and
/// every cast and fanout message, is sent here).
trait SendHalf: Send + 'static {
    fn send(
        &mut self,
        msg: ZmqMessage,
    ) -> impl std::future::Future<Output = zerorpc_zeromq::ZmqResult<()>> + Send + '_;
}

macro_rules! send_half {
    ($($tx:ty),*) => {$(
        impl SendHalf for $tx {
            fn send(
                &mut self,
                msg: ZmqMessage,
            ) -> impl std::future::Future<Output = zerorpc_zeromq::ZmqResult<()>> + Send + '_ {
                self.send_unboxed(msg)
            }
        }
    )*};
}

send_half!(
    zerorpc_zeromq::RouterSendHalf,
    zerorpc_zeromq::DealerSendHalf,
    PushSocket,
    PubSocket
);

/// ROUTER and DEALER split into halves that send without waiting (the
/// [`Outbox`]'s direct path) and receive by polling in place.
macro_rules! split_socket {
    ($socket:ty, $kind:expr, $tx:ty, $rx:ty, $router:expr) => {
        impl Halves for $socket {
            const KIND: Kind = $kind;
            type Tx = $tx;
            type Rx = $rx;
            fn direct(tx: &Self::Tx) -> Option<Box<dyn Direct>> {
                Some(Box::new(tx.clone()))
            }
            fn router(tx: &Self::Tx) -> Option<zerorpc_zeromq::RouterSendHalf> {
                $router(tx)
            }
            fn reader(rx: Self::Rx) -> Reader {
                polled_reader(rx)
            }
            fn halves(self) -> (Option<Self::Tx>, Option<Self::Rx>) {
                let (t, r) = self.split();
                (Some(t), Some(r))
            }
        }
    };
}

split_socket!(
    RouterSocket,
    Kind::Router,
    zerorpc_zeromq::RouterSendHalf,
    zerorpc_zeromq::RouterRecvHalf,
    |tx: &zerorpc_zeromq::RouterSendHalf| Some(tx.clone())
);
split_socket!(
    DealerSocket,
    Kind::Dealer,
    zerorpc_zeromq::DealerSendHalf,
    zerorpc_zeromq::DealerRecvHalf,
    |_| None
);

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
    async fn prepare(&mut self, limits: &Limits) {
        // Remembered by the socket and sent to every peer as it connects;
        // the publisher sends only what matches one of them.
        let everything = [String::new()];
        let topics = match limits.topics.is_empty() {
            true => &everything[..],
            false => &limits.topics[..],
        };
        for topic in topics {
            if let Err(e) = self.subscribe(topic).await {
                tracing::warn!(error = %e, "cannot subscribe");
            }
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
    sock.prepare(&limits).await;
    let monitor = sock.monitor();
    let resolved = sock
        .bind(ep)
        .await
        .map_err(|e| Error::transport(format!("cannot bind {ep}"), e))?;
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
    // A security failure is the user's to fix: said once (per reason), not
    // at every retry.
    let mut refused: Option<String> = None;
    loop {
        let mut opts = limits.socket_options(S::KIND);
        opts.connect_timeout(CONNECT_ATTEMPT);
        let mut sock = S::with_options(opts);
        sock.prepare(&limits).await;
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
                let security = matches!(
                    e,
                    zerorpc_zeromq::ZmqError::Curve(_)
                        | zerorpc_zeromq::ZmqError::MechanismMismatch(_)
                );
                let reason = e.to_string();
                let report = Report::Event(LinkEvent::Refused(id, format!("{ep}: {reason}")));
                if events.send(report).await.is_err() {
                    return;
                }
                if security && refused.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(endpoint = %ep, error = %reason, "cannot connect");
                    refused = Some(reason);
                } else {
                    tracing::debug!(endpoint = %ep, error = %e, "connect attempt failed");
                }
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
    // Clients connected to a server's bound endpoints.
    let connected_peers = (S::KIND == Kind::Router && !connected)
        .then(|| metrics::gauge!("zrpc_server_connected_peers"));
    let mut full = FullPeers::default();
    let mut refused = RateLimit::default();
    let room = tx.as_ref().and_then(S::router);
    let mut direct = Installed::new(&out_rx.outbox, tx.as_ref().and_then(S::direct), room);
    let outbox = out_rx.outbox.clone();
    // (A request made while it was not connected is for the connection
    // that is gone.)
    let _ = futures::FutureExt::now_or_never(outbox.reconnect.notified());
    loop {
        tokio::select! {
            () = outbox.reconnect.notified(), if connected => {
                tracing::debug!("dropping a silent connection to connect afresh");
                return true;
            }
            msg = out_rx.rx.recv() => match (msg, tx.as_mut()) {
                (Some(msg), Some(tx)) => {
                    // A ROUTER message starts with the peer identity.
                    let peer = (S::KIND == Kind::Router).then(|| msg.get(0).cloned()).flatten();
                    match SendHalf::send(tx, msg).await {
                        Ok(()) => full.sent(peer),
                        Err(zerorpc_zeromq::ZmqError::BufferFull(_)) => {
                            if S::KIND == Kind::Router {
                                metrics::counter!("zrpc_server_dropped_replies_total").increment(1);
                            }
                            full.dropped(peer)
                        }
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
                    if let Some(g) = &connected_peers {
                        g.decrement(1.0);
                    }
                    full.gone(&peer);
                    direct.open(full.0.is_empty());
                    let _ = events.send(Report::Event(LinkEvent::PeerGone(id, peer))).await;
                    peers = peers.saturating_sub(1);
                    if peers == 0 {
                        let _ = events.send(Report::Event(LinkEvent::Down(id))).await;
                    }
                }
                Some(SocketEvent::Accepted(_, peer)) if !connected => {
                    if let Some(g) = &connected_peers {
                        g.increment(1.0);
                    }
                    peers += 1;
                    if peers == 1 {
                        let _ = events.send(Report::Event(LinkEvent::Up(id))).await;
                    }
                    let peer = LinkEvent::PeerUp(id, peer.into());
                    let _ = events.send(Report::Event(peer)).await;
                }
                // A connection that never became a peer: a handshake that
                // timed out or failed, another security mechanism, a routing
                // identity already in use. That connection alone is closed.
                // (A connection that merely closed early is no fault: a TCP
                // health check, a port scan.)
                Some(SocketEvent::AcceptFailed(e)) if io_failure(&e) => {
                    tracing::debug!(error = %e, "an incoming connection closed during its handshake")
                }
                Some(SocketEvent::AcceptFailed(e)) => refused.warn(
                    || tracing::warn!(error = %e, "refused an incoming connection"),
                ),
                Some(_) => {}
                // The socket is gone: treat as a disconnect.
                None => return connected,
            },
        }
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
