//! The transport adapter: everything zrpc needs from its ZeroMQ sockets
//! (`zerorpc_zeromq`), with what they leave to their owner done in one place.
//!
//! A [`Link`] is one ZeroMQ socket (ROUTER, DEALER, PUSH, PULL, PUB or
//! SUB), bound or connected, driven by its own task, which connects,
//! reconnects, watches the socket and writes what the owner queues (so
//! sending never makes the owner wait). Received messages reach the owner
//! through its [`Inbound`], which reads every link's socket itself: no task
//! and no channel between the socket and the owner, and a flood backs up
//! into TCP rather than into memory.
//!
//! What the sockets leave to their owner, and this module does:
//! - a connected socket never reconnects, and its `recv` hangs forever after
//!   the peer closes: the link watches the socket monitor for the disconnect,
//!   drops the socket and connects a fresh one with capped backoff;
//! - `connect` waits until the peer is reachable: it runs inside the link
//!   task, so connecting returns at once and messages wait in the owner;
//! - `tcp://*:port` is not understood: it is rewritten to `0.0.0.0`;
//! - a ROUTER send to a peer that stopped reading waited for it, stalling
//!   every other peer: now such messages are dropped
//!   (per-peer send queue, [`DEFAULT_SEND_QUEUE`]) and the peer is logged.
//!
//! The rest is done in the transport package itself, `zerorpc-zeromq` (our
//! fork of zmq.rs; its `FORK.md` lists every change): a maximum message
//! size, ZMTP heartbeats answered, no allocation from a frame header, no
//! per-peer identity leak, sends that never wait.
//!
//! | file | concept |
//! |---|---|
//! | `endpoint` | endpoints as users write them |
//! | `link` | one socket and the task that keeps it connected |
//! | `outbox` | sending: straight to zeromq's queue, or through the link task |
//! | `inbound` | receiving: the owner polls every socket itself |

mod endpoint;
mod inbound;
mod link;
mod outbox;

pub(crate) use inbound::Inbound;
pub(crate) use link::{Link, PeerRoom};

use crate::error::Error;
use bytes::Bytes;
use std::time::Duration;
use tokio::sync::mpsc;
use zerorpc_zeromq::{SocketOptions, ZmqMessage};

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
    /// A peer connected to a bound socket (its identity).
    PeerUp(LinkId, Bytes),
    /// A peer of a bound socket disconnected (its identity).
    PeerGone(LinkId, Bytes),
    /// A connect attempt failed, and why (a refused connection, a CURVE
    /// handshake that failed); it tries again.
    Refused(LinkId, String),
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
/// transport checks the frame header; upstream zmq.rs allocated whatever a
/// header claimed, and aborted on a huge claim).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 100 << 20;

/// Default number of messages that may wait to be written to one peer (a
/// send high-water mark). A ROUTER drops what goes beyond it, so a client
/// that stops reading its replies costs at most this much memory and never
/// delays replies to others. Large enough that a burst of 10 000 replies to a
/// client that is reading never hits it.
pub const DEFAULT_SEND_QUEUE: usize = 10_000;

/// Default bytes that may wait to be written to one peer (beyond the
/// first message, which is always taken). Past it, as past
/// [`DEFAULT_SEND_QUEUE`] messages, a server drops replies to that peer: a
/// client that asks for large replies and never reads them costs this much.
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 64 << 20;

/// Default time a new connection has to complete the ZMTP handshake
/// (libzmq's `ZMQ_HANDSHAKE_IVL`); a peer that connects and stays silent is
/// closed after it.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most frames one received message may have. zerorpc messages have 2 to
/// 4; a proxy adds a few. (Each frame is also charged 64 bytes against the
/// maximum message size, so a flood of empty frames is bounded.)
pub const MAX_FRAMES_PER_MESSAGE: usize = 64;

/// The lowest maximum message size a socket is given, whatever is asked.
pub(crate) const MIN_MESSAGE_LIMIT: usize = 1024;

/// Per-socket limits and security.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_message_size: usize,
    pub(crate) send_queue: usize,
    pub(crate) send_queue_bytes: usize,
    pub(crate) handshake_timeout: Option<Duration>,
    /// CURVE (`None`: the NULL mechanism).
    pub(crate) curve: Option<zerorpc_zeromq::curve::CurveConfig>,
    /// A subscriber's topics, prefixes of a message's first frame (empty:
    /// everything, as zerorpc subscribes).
    pub(crate) topics: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            send_queue: DEFAULT_SEND_QUEUE,
            send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            curve: None,
            topics: Vec::new(),
        }
    }
}

impl Limits {
    pub(super) fn socket_options(&self, kind: Kind) -> SocketOptions {
        let mut opts = SocketOptions::default();
        // The limit applies to handshake commands too (READY with a long
        // identity is a few hundred bytes): below that, no peer could connect.
        opts.max_message_size(Some(self.max_message_size.max(MIN_MESSAGE_LIMIT)));
        opts.max_frames_per_message(Some(MAX_FRAMES_PER_MESSAGE));
        opts.send_queue_capacity(self.send_queue);
        opts.send_queue_bytes(Some(self.send_queue_bytes));
        opts.handshake_timeout(self.handshake_timeout);
        opts.curve(self.curve.clone());
        // Only a ROUTER addresses one peer among many: the others wait, which
        // is the backpressure a PUSH or a DEALER's owner wants.
        opts.router_drop_when_full(kind == Kind::Router);
        opts
    }
}

/// Queued state changes per owner (messages are not queued: the owner
/// reads them from the sockets).
const REPORT_QUEUE: usize = 1024;

/// Where an owner's sockets go, and their limits: what every builder
/// (server, client, sender, receiver) collects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Endpoints {
    pub(crate) binds: Vec<String>,
    pub(crate) connects: Vec<String>,
    pub(crate) limits: Limits,
    /// CURVE, as the builder was given it.
    pub(crate) curve: Option<crate::security::Curve>,
}

impl Endpoints {
    /// Open every link for an owner of this `kind`; `owner` names it in the
    /// error when there is no endpoint at all.
    pub(crate) async fn open(
        &self,
        kind: Kind,
        owner: &str,
    ) -> Result<(Vec<Link>, Vec<String>, Inbound), Error> {
        if self.binds.is_empty() && self.connects.is_empty() {
            return Err(Error::Config(format!(
                "a {owner} needs at least one endpoint to bind or connect"
            )));
        }
        let (links, endpoints, inbound, _) = self.open_growable(kind, kind).await?;
        Ok((links, endpoints, inbound))
    }

    /// [`Endpoints::open`], with bound sockets of `bind_kind` (a client
    /// binds a ROUTER, to address each worker that connects), also
    /// returning the [`Opener`] that connects more links later (a client's
    /// discovered servers). No endpoint at all is fine here: the links may
    /// all come later.
    pub(crate) async fn open_growable(
        &self,
        kind: Kind,
        bind_kind: Kind,
    ) -> Result<(Vec<Link>, Vec<String>, Inbound, Opener), Error> {
        let mut limits = self.limits.clone();
        limits.curve = self.curve.as_ref().map(|c| c.config()).transpose()?;
        open(kind, bind_kind, &self.binds, &self.connects, limits).await
    }
}

/// Connects further links of one owner after it started: they report to
/// the same [`Inbound`].
pub(crate) struct Opener {
    kind: Kind,
    events: mpsc::Sender<inbound::Report>,
    limits: Limits,
}

impl Opener {
    /// Start a link connecting to `endpoint` as link `id` (an id the owner
    /// never used before).
    pub(crate) fn connect(&self, id: LinkId, endpoint: &str) -> Result<Link, Error> {
        link::connect(
            self.kind,
            id,
            endpoint,
            self.events.clone(),
            self.limits.clone(),
        )
    }
}

/// The links of one owner (a server, client, sender or receiver): every
/// bind (errors reported here), then every connect (in the background),
/// all reporting on one bounded channel. Also returns the endpoints, bound
/// ones resolved.
async fn open(
    kind: Kind,
    bind_kind: Kind,
    binds: &[String],
    connects: &[String],
    limits: Limits,
) -> Result<(Vec<Link>, Vec<String>, Inbound, Opener), Error> {
    let (events_tx, events_rx) = mpsc::channel(REPORT_QUEUE);
    let mut links = Vec::with_capacity(binds.len() + connects.len());
    for ep in binds {
        let id = links.len();
        links.push(link::bind(bind_kind, id, ep, events_tx.clone(), limits.clone()).await?);
    }
    for ep in connects {
        links.push(link::connect(
            kind,
            links.len(),
            ep,
            events_tx.clone(),
            limits.clone(),
        )?);
    }
    let endpoints = links.iter().map(|l| l.endpoint.clone()).collect();
    let inbound = Inbound {
        reports: events_rx,
        reports_open: true,
        readers: Vec::new(),
        forgotten: Vec::new(),
        next: 0,
        installed: 0,
    };
    let opener = Opener {
        kind,
        events: events_tx,
        limits,
    };
    Ok((links, endpoints, inbound, opener))
}
