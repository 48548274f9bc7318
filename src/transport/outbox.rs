//! The sending side of a link: how an owner's message reaches zeromq's
//! queue for a peer, straight from the owner's task when that needs no
//! waiting, through the link's task otherwise, and always in order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use zerorpc_zeromq::ZmqMessage;

/// Messages waiting for a link's task beyond which producers that can wait
/// (streams) do: see [`Outbox::has_room`].
const LINK_BACKLOG: usize = 256;

/// The owner's way past the link's task: a clone of the live socket's send
/// half, installed by the task while the socket is connected. Saves a task
/// hop per message (measured: a large share of a call's cost on loopback).
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) direct: Mutex<Option<Box<dyn Direct>>>,
    /// Messages given to the task and not yet handed to zeromq. While there
    /// are any, later messages queue behind them: order is kept.
    pub(super) queued: AtomicUsize,
    /// A ROUTER's send half, for asking whether a peer's queue has room
    /// (installed while the socket lives; unlike `direct`, never parked).
    pub(super) room: Mutex<Option<zerorpc_zeromq::RouterSendHalf>>,
    /// The owner wants a connected link's connection dropped and made
    /// anew (its peer went silent: a stalled connection recovers only
    /// when the kernel retransmits).
    pub(super) reconnect: tokio::sync::Notify,
}

impl Outbox {
    pub(super) fn try_send_now(&self, msg: ZmqMessage) -> Result<(), ZmqMessage> {
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

    /// Whether the peer `identity` of a ROUTER can take more messages (see
    /// [`PeerRoom`](super::PeerRoom)).
    pub(super) fn has_room(&self, identity: &bytes::Bytes) -> bool {
        // Messages waiting for the link task wait for every peer: a
        // producer that outruns the task delays everyone's replies.
        if self.queued.load(Ordering::Acquire) >= LINK_BACKLOG {
            return false;
        }
        let router = match self.room.lock() {
            Ok(room) => room.clone(),
            Err(_) => None,
        };
        let peer = zerorpc_zeromq::util::PeerIdentity::try_from(identity.clone()).ok();
        match (router, peer) {
            (Some(router), Some(peer)) => router.peer_has_room(&peer).unwrap_or(true),
            _ => true,
        }
    }

    /// The CURVE public key the ROUTER peer `identity` authenticated with.
    pub(super) fn peer_key(&self, identity: &bytes::Bytes) -> Option<[u8; 32]> {
        let router = self.room.lock().ok()?.clone()?;
        let peer = zerorpc_zeromq::util::PeerIdentity::try_from(identity.clone()).ok()?;
        router.peer_public_key(&peer)
    }

    /// The task handed a queued message to zeromq (or dropped it).
    pub(super) fn done(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A send half that can take a message without waiting (the transport's
/// `try_send_now`), or give it back.
pub(super) trait Direct: Send {
    fn try_send_now(&mut self, msg: ZmqMessage) -> Result<(), ZmqMessage>;
}

impl Direct for zerorpc_zeromq::DealerSendHalf {
    fn try_send_now(&mut self, msg: ZmqMessage) -> Result<(), ZmqMessage> {
        zerorpc_zeromq::DealerSendHalf::try_send_now(self, msg)
    }
}

impl Direct for zerorpc_zeromq::RouterSendHalf {
    fn try_send_now(&mut self, msg: ZmqMessage) -> Result<(), ZmqMessage> {
        zerorpc_zeromq::RouterSendHalf::try_send_now(self, msg)
    }
}

/// The task's hold on its [`Outbox`]: installs the socket's direct half,
/// takes it away while a peer's queue is full (so those drops go through
/// the task, which logs them), and removes it for good when dropped (the
/// socket must not outlive its connection).
pub(super) struct Installed<'a> {
    outbox: &'a Outbox,
    parked: Option<Box<dyn Direct>>,
    open: bool,
}

impl<'a> Installed<'a> {
    pub(super) fn new(
        outbox: &'a Outbox,
        direct: Option<Box<dyn Direct>>,
        room: Option<zerorpc_zeromq::RouterSendHalf>,
    ) -> Self {
        if let Ok(mut slot) = outbox.room.lock() {
            *slot = room;
        }
        let mut me = Installed {
            outbox,
            parked: direct,
            open: false,
        };
        me.open(true);
        me
    }

    pub(super) fn open(&mut self, open: bool) {
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
        if let Ok(mut slot) = self.outbox.room.lock() {
            *slot = None;
        }
    }
}

/// A link task's end of the outgoing queue.
pub(super) struct Queue {
    pub(super) rx: mpsc::UnboundedReceiver<ZmqMessage>,
    pub(super) outbox: Arc<Outbox>,
}

impl Queue {
    /// Drop everything queued.
    pub(super) fn discard(&mut self) {
        while self.rx.try_recv().is_ok() {
            self.outbox.done();
        }
    }
}
