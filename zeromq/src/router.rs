//! The ROUTER socket: messages in with their sender's identity, out to the peer named.

use crate::backend::GenericSocketBackend;
use crate::codec::*;
use crate::endpoint::Endpoint;
use crate::error::{ZmqError, ZmqResult};
use crate::fair_queue::FairQueue;
use crate::message::*;
use crate::transport::AcceptStopHandle;
use crate::util::PeerIdentity;
use crate::{MultiPeerBackend, SocketEvent, SocketOptions, SocketRecv, SocketSend, SocketType};
use crate::{Socket, SocketBackend};

use async_trait::async_trait;
use futures::channel::mpsc;
use futures::StreamExt;

use std::collections::HashMap;
use std::convert::TryInto;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

pub struct RouterSocket {
    backend: Arc<GenericSocketBackend>,
    binds: HashMap<Endpoint, AcceptStopHandle>,
    fair_queue: FairQueue<ZmqFramedRead, PeerIdentity>,
}

impl Drop for RouterSocket {
    fn drop(&mut self) {
        self.backend.shutdown();
    }
}

#[async_trait]
impl Socket for RouterSocket {
    fn with_options(options: SocketOptions) -> Self {
        let mut fair_queue = FairQueue::new(true);
        let backend = Arc::new(GenericSocketBackend::with_options(
            Some(fair_queue.inner()),
            SocketType::ROUTER,
            options,
        ));

        let backend_weak = Arc::downgrade(&backend);
        fair_queue.set_on_disconnect(move |peer_id: PeerIdentity| {
            if let Some(backend) = backend_weak.upgrade() {
                backend.peer_disconnected(&peer_id);
            }
        });

        Self {
            backend,
            binds: HashMap::new(),
            fair_queue,
        }
    }

    fn backend(&self) -> Arc<dyn MultiPeerBackend> {
        self.backend.clone()
    }

    fn binds(&mut self) -> &mut HashMap<Endpoint, AcceptStopHandle> {
        &mut self.binds
    }

    fn monitor(&mut self) -> mpsc::Receiver<SocketEvent> {
        let (sender, receiver) = mpsc::channel(1024);
        self.backend.socket_monitor.lock().replace(sender);
        receiver
    }
}

#[async_trait]
impl SocketRecv for RouterSocket {
    async fn recv(&mut self) -> ZmqResult<ZmqMessage> {
        loop {
            match self.fair_queue.next().await {
                Some((peer_id, Ok(Message::Message(mut message)))) => {
                    message.push_front(peer_id.into());
                    return Ok(message);
                }
                Some((_peer_id, Ok(_msg))) => {
                    // todo: Log or handle other message types if needed
                    // We could take an approach of using `tracing` and have that be an optional feature
                    // tracing::warn!("Received unimplemented message type: {:?}", msg);
                }
                Some((peer_id, Err(_e))) => {
                    self.backend.peer_disconnected(&peer_id);
                    // We could take an approach of using `tracing` and have that be an optional feature
                    // tracing::error!("Error receiving message from peer {}: {:?}", peer_id, e);
                }
                None => {
                    // The fair queue is empty, which shouldn't happen in normal operation
                    return Err(ZmqError::NoMessage);
                }
            };
        }
    }
}

#[async_trait]
impl SocketSend for RouterSocket {
    async fn send(&mut self, mut message: ZmqMessage) -> ZmqResult<()> {
        if message.len() <= 1 {
            return Err(ZmqError::Socket(
                "ROUTER send requires at least 2 frames: identity frame + message",
            ));
        }
        let peer_id: PeerIdentity = message.pop_front().unwrap().try_into()?;
        self.backend
            .send_to_peer(&peer_id, Message::Message(message))
            .await
    }
}

impl RouterSocket {
    /// zrpc patch: the CURVE public key `peer` authenticated with (`None`
    /// without CURVE, or for no such peer).
    pub fn peer_public_key(&self, peer: &PeerIdentity) -> Option<[u8; 32]> {
        self.backend.peer_key(peer)
    }

    /// Splits the socket into separate send and recv halves, allowing concurrent
    /// sending and receiving from independent async tasks.
    ///
    /// The underlying socket stays alive until both halves are dropped.
    pub fn split(mut self) -> (RouterSendHalf, RouterRecvHalf) {
        let backend = std::mem::replace(
            &mut self.backend,
            Arc::new(GenericSocketBackend::with_options(
                None,
                SocketType::ROUTER,
                SocketOptions::default(),
            )),
        );
        let fair_queue = std::mem::replace(&mut self.fair_queue, FairQueue::new(true));
        let binds = std::mem::take(&mut self.binds);

        let inner = Arc::new(RouterSocketInner {
            backend,
            _binds: binds,
        });

        (
            RouterSendHalf {
                inner: inner.clone(),
            },
            RouterRecvHalf { inner, fair_queue },
        )
    }
}

struct RouterSocketInner {
    backend: Arc<GenericSocketBackend>,
    _binds: HashMap<Endpoint, AcceptStopHandle>,
}

impl Drop for RouterSocketInner {
    fn drop(&mut self) {
        self.backend.shutdown();
    }
}

/// The send half of a [`RouterSocket`] produced by [`RouterSocket::split`].
///
/// This half can be cloned to send from multiple async tasks concurrently.
#[derive(Clone)]
pub struct RouterSendHalf {
    inner: Arc<RouterSocketInner>,
}

/// The recv half of a [`RouterSocket`] produced by [`RouterSocket::split`].
pub struct RouterRecvHalf {
    inner: Arc<RouterSocketInner>,
    fair_queue: FairQueue<ZmqFramedRead, PeerIdentity>,
}

#[async_trait]
impl SocketSend for RouterSendHalf {
    async fn send(&mut self, message: ZmqMessage) -> ZmqResult<()> {
        self.send_unboxed(message).await
    }
}

impl RouterSendHalf {
    /// zrpc patch (FORK.md item 27): [`SocketSend::send`] as a plain future.
    /// The trait's `send` is boxed (`async_trait`): a 904-byte allocation
    /// for every message sent this way, which a sender that awaits this one
    /// in its own state does not make.
    pub async fn send_unboxed(&mut self, mut message: ZmqMessage) -> ZmqResult<()> {
        if message.len() <= 1 {
            return Err(ZmqError::Socket(
                "ROUTER send requires at least 2 frames: identity frame + message",
            ));
        }
        let peer_id: PeerIdentity = message.pop_front().unwrap().try_into()?;
        self.inner
            .backend
            .send_to_peer(&peer_id, Message::Message(message))
            .await
    }

    /// zrpc patch: the CURVE public key `peer` authenticated with (`None`
    /// without CURVE, or for no such peer).
    pub fn peer_public_key(&self, peer: &PeerIdentity) -> Option<[u8; 32]> {
        self.inner.backend.peer_key(peer)
    }

    /// zrpc patch: whether the queue of messages waiting to be written to
    /// `peer` is under half its bounds (`send_queue_capacity` and, if set,
    /// `send_queue_bytes`): a producer that checks this before each message
    /// pauses while a peer is not reading, instead of having its messages
    /// dropped. `None` if there is no such peer.
    pub fn peer_has_room(&self, peer: &PeerIdentity) -> Option<bool> {
        self.inner.backend.peer_has_room(peer)
    }

    /// zrpc patch: send without waiting and without allocating, when the
    /// socket has exactly one peer, it is the one addressed (frame 0), and
    /// its queue has room; otherwise the message comes back unchanged, to be
    /// sent with [`SocketSend::send`].
    pub fn try_send_now(&mut self, mut message: ZmqMessage) -> Result<(), ZmqMessage> {
        let Some(identity) = message.get(0).cloned().filter(|_| message.len() > 1) else {
            return Err(message);
        };
        let Ok(peer_id) = PeerIdentity::try_from(identity.clone()) else {
            return Err(message);
        };
        message.pop_front();
        self.inner
            .backend
            .try_send_now(message, Some(&peer_id))
            .map_err(|mut m| {
                m.push_front(identity);
                m
            })
    }
}

impl RouterRecvHalf {
    /// zrpc patch: [`SocketRecv::recv`] as a poll function, so an owner that
    /// polls several sources needs no boxed future per message.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<ZmqResult<ZmqMessage>> {
        loop {
            match ready!(self.fair_queue.poll_next_unpin(cx)) {
                Some((peer_id, Ok(Message::Message(mut message)))) => {
                    message.push_front(peer_id.into());
                    return Poll::Ready(Ok(message));
                }
                Some((_peer_id, Ok(_))) => {}
                // zrpc patch: say which peer broke the protocol, and how
                // (upstream dropped it silently). A failed connection is
                // not the peer's doing, and is reported as a disconnect.
                Some((peer_id, Err(e))) => {
                    self.inner.backend.peer_disconnected(&peer_id);
                    if !matches!(e, crate::codec::CodecError::Io(_)) {
                        return Poll::Ready(Err(ZmqError::PeerFailed(peer_id, e.to_string())));
                    }
                }
                None => {
                    return Poll::Ready(Err(ZmqError::NoMessage));
                }
            };
        }
    }
}

#[async_trait]
impl SocketRecv for RouterRecvHalf {
    async fn recv(&mut self) -> ZmqResult<ZmqMessage> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}
