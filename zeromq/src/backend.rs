//! The peers of a ROUTER, DEALER, PUSH or PULL socket: their send queues, and sending to one (by identity, round-robin, or the only one).

use crate::async_rt;
use crate::codec::{FramedIo, Message, ZmqFramedRead};
use crate::fair_queue::QueueInner;
use crate::peer_queue::{self, message_bytes, QueueLoad};
use crate::util::PeerIdentity;
use crate::write_queue::write_message_queue;
use crate::{
    MultiPeerBackend, SocketBackend, SocketEvent, SocketOptions, SocketType, ZmqError, ZmqMessage,
    ZmqResult,
};

use async_trait::async_trait;
use crossbeam_queue::SegQueue;
use futures::channel::mpsc;
use parking_lot::Mutex;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Sender for notifying reconnection tasks when a peer disconnects.
pub(crate) type DisconnectNotifier = mpsc::Sender<PeerIdentity>;

pub(crate) struct Peer {
    pub(crate) send_queue: peer_queue::Sender,
    /// zrpc patch: what waits in `send_queue` (and its writer's unflushed
    /// batch).
    pub(crate) queued: Arc<QueueLoad>,
}

/// zrpc patch: a socket's peers, under one lock that is held only for a
/// lookup or an update, never across an await (FORK.md item 28). Senders
/// take a peer's `Arc` out and wait on its queue without the lock.
#[derive(Default)]
pub(crate) struct PeerTable {
    peers: HashMap<PeerIdentity, Arc<Peer>>,
    /// The only peer, when there is exactly one (the send fast path).
    single: Option<(PeerIdentity, Arc<Peer>)>,
}

impl PeerTable {
    pub(crate) fn get(&self, peer_id: &PeerIdentity) -> Option<&Arc<Peer>> {
        self.peers.get(peer_id)
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Add a peer; a ROUTER (`replace` false) never replaces one (gives the
    /// newcomer back instead).
    fn insert(&mut self, peer_id: PeerIdentity, peer: Peer, replace: bool) -> Result<(), Peer> {
        use std::collections::hash_map::Entry;
        match self.peers.entry(peer_id) {
            Entry::Occupied(_) if !replace => return Err(peer),
            Entry::Occupied(mut e) => {
                e.insert(Arc::new(peer));
            }
            Entry::Vacant(e) => {
                e.insert(Arc::new(peer));
            }
        }
        self.refresh_single();
        Ok(())
    }

    fn remove(&mut self, peer_id: &PeerIdentity) -> Option<Arc<Peer>> {
        let removed = self.peers.remove(peer_id);
        self.refresh_single();
        removed
    }

    fn clear(&mut self) {
        self.peers.clear();
        self.single = None;
    }

    fn refresh_single(&mut self) {
        self.single = match self.peers.len() {
            1 => self
                .peers
                .iter()
                .next()
                .map(|(id, peer)| (id.clone(), peer.clone())),
            _ => None,
        };
    }
}

/// zrpc patch: whether a queue holding `queued` bytes takes `len` more
/// under `limit` (an empty queue takes any one message).
fn admits(queued: &QueueLoad, len: usize, limit: Option<usize>) -> bool {
    let queued = queued.bytes.load(Ordering::Acquire);
    limit.is_none_or(|limit| queued == 0 || queued.saturating_add(len) <= limit)
}

enum CachedSend {
    Sent,
    Full {
        peer_id: PeerIdentity,
        peer: Arc<Peer>,
        message: Message,
    },
    Disconnected {
        peer_id: PeerIdentity,
        error: peer_queue::SendError,
    },
    Miss(Message),
}

enum SendResolution {
    Sent,
    Miss(Message),
}

pub(crate) struct GenericSocketBackend {
    pub(crate) peers: Mutex<PeerTable>,
    fair_queue_inner: Option<Arc<Mutex<QueueInner<ZmqFramedRead, PeerIdentity>>>>,
    pub(crate) round_robin: SegQueue<PeerIdentity>,
    socket_type: SocketType,
    socket_options: Arc<SocketOptions>,
    pub(crate) socket_monitor: Mutex<Option<mpsc::Sender<SocketEvent>>>,
    /// How many peers the table holds (read without its lock).
    peer_count: AtomicUsize,
    /// Notifiers for reconnection tasks - keyed by `peer_id`
    disconnect_notifiers: Mutex<HashMap<PeerIdentity, DisconnectNotifier>>,
    /// zrpc patch: the CURVE public key of each peer that authenticated.
    peer_keys: Mutex<HashMap<PeerIdentity, [u8; 32]>>,
}

impl GenericSocketBackend {
    pub(crate) fn with_options(
        fair_queue_inner: Option<Arc<Mutex<QueueInner<ZmqFramedRead, PeerIdentity>>>>,
        socket_type: SocketType,
        options: SocketOptions,
    ) -> Self {
        Self {
            peers: Mutex::new(PeerTable::default()),
            fair_queue_inner,
            round_robin: SegQueue::new(),
            socket_type,
            socket_options: Arc::new(options),
            socket_monitor: Mutex::new(None),
            peer_count: AtomicUsize::new(0),
            disconnect_notifiers: Mutex::new(HashMap::new()),
            peer_keys: Mutex::new(HashMap::new()),
        }
    }

    /// zrpc patch: the CURVE public key peer `peer_id` authenticated with.
    pub(crate) fn peer_key(&self, peer_id: &PeerIdentity) -> Option<[u8; 32]> {
        self.peer_keys.lock().get(peer_id).copied()
    }

    /// Register a notifier to be called when a peer disconnects.
    ///
    /// Used by reconnection tasks to be notified when they should attempt reconnection.
    #[allow(dead_code)] // Will be used when reconnection is added to more socket types
    pub(crate) fn register_disconnect_notifier(
        &self,
        peer_id: PeerIdentity,
        notifier: DisconnectNotifier,
    ) {
        self.disconnect_notifiers.lock().insert(peer_id, notifier);
    }

    /// Unregister a disconnect notifier for a peer.
    #[allow(dead_code)] // Will be used when reconnection is added to more socket types
    pub(crate) fn unregister_disconnect_notifier(&self, peer_id: &PeerIdentity) {
        self.disconnect_notifiers.lock().remove(peer_id);
    }

    /// The peer called `peer_id`, taken out of the table (whose lock is
    /// released before anyone waits on the peer's queue).
    fn peer(&self, peer_id: &PeerIdentity) -> Option<Arc<Peer>> {
        self.peers.lock().get(peer_id).cloned()
    }

    /// The only peer, if there is exactly one (and it is `expected`, if
    /// given).
    fn single_peer(&self, expected: Option<&PeerIdentity>) -> Option<(PeerIdentity, Arc<Peer>)> {
        if self.peer_count.load(Ordering::Acquire) != 1 {
            return None;
        }
        let table = self.peers.lock();
        let (peer_id, peer) = table.single.as_ref()?;
        if expected.is_some_and(|e| e != peer_id) {
            return None;
        }
        Some((peer_id.clone(), peer.clone()))
    }

    pub(crate) async fn send_round_robin(&self, message: Message) -> ZmqResult<()> {
        let message = match self
            .finish_cached_send(self.try_send_cached_single_peer(message, None, None))
            .await?
        {
            SendResolution::Sent => return Ok(()),
            SendResolution::Miss(message) => message,
        };

        // In normal scenario this will always be only 1 iteration
        // There can be special case when peer has disconnected and his id is still in
        // RR queue This happens because SegQueue don't have an api to delete
        // items from queue. So in such case we'll just pop item and skip it if
        // we don't have a matching peer in peers map
        loop {
            let next_peer_id = match self.round_robin.pop() {
                Some(peer) => peer,
                None => match message {
                    Message::Greeting(_) => {
                        return Err(ZmqError::Socket("Sending greeting is not supported"))
                    }
                    Message::Command(_) | Message::Raw(_) => {
                        return Err(ZmqError::Socket("Sending commands is not supported"))
                    }
                    Message::Message(m) => {
                        return Err(ZmqError::ReturnToSender {
                            reason: "Not connected to peers. Unable to send messages",
                            message: m,
                        })
                    }
                },
            };
            let Some(peer) = self.peer(&next_peer_id) else {
                continue;
            };
            return match send_to_peer_queue(&peer.send_queue, &peer.queued, message).await {
                Ok(()) => {
                    self.round_robin.push(next_peer_id);
                    Ok(())
                }
                Err(e) => {
                    self.peer_disconnected(&next_peer_id);
                    Err(e.into())
                }
            };
        }
    }

    pub(crate) async fn send_to_peer(
        &self,
        peer_id: &PeerIdentity,
        message: Message,
    ) -> ZmqResult<()> {
        // zrpc patch: optionally never wait on one peer's full queue.
        let drop_when_full = self.socket_options.router_drop_when_full;
        let byte_limit = self
            .socket_options
            .send_queue_bytes
            .filter(|_| drop_when_full);
        let cached = self.try_send_cached_single_peer(message, Some(peer_id), byte_limit);
        if drop_when_full {
            if let CachedSend::Full { .. } = cached {
                return Err(ZmqError::BufferFull("peer's send queue is full"));
            }
        }
        let message = match self.finish_cached_send(cached).await? {
            SendResolution::Sent => return Ok(()),
            SendResolution::Miss(message) => message,
        };

        let Some(peer) = self.peer(peer_id) else {
            return Err(ZmqError::Other("Destination client not found by identity"));
        };
        let send_result = if drop_when_full {
            let len = message_bytes(&message);
            if !admits(&peer.queued, len, byte_limit) {
                return Err(ZmqError::BufferFull("peer's send queue is full"));
            }
            match counted(&peer.queued, len, || peer.send_queue.try_send(message)) {
                Ok(()) => Ok(()),
                Err(error) if error.is_full() => {
                    return Err(ZmqError::BufferFull("peer's send queue is full"))
                }
                Err(error) => Err(error.into_send_error()),
            }
        } else {
            send_to_peer_queue(&peer.send_queue, &peer.queued, message).await
        };
        match send_result {
            Ok(()) => Ok(()),
            Err(e) => {
                self.peer_disconnected(peer_id);
                Err(e.into())
            }
        }
    }

    fn try_send_cached_single_peer(
        &self,
        message: Message,
        expected_peer_id: Option<&PeerIdentity>,
        byte_limit: Option<usize>,
    ) -> CachedSend {
        let Some((peer_id, peer)) = self.single_peer(expected_peer_id) else {
            return CachedSend::Miss(message);
        };
        let len = message_bytes(&message);
        if !admits(&peer.queued, len, byte_limit) {
            return CachedSend::Full {
                peer_id,
                peer,
                message,
            };
        }
        match counted(&peer.queued, len, || peer.send_queue.try_send(message)) {
            Ok(()) => CachedSend::Sent,
            Err(error) if error.is_full() => CachedSend::Full {
                peer_id,
                peer,
                message: error.into_inner(),
            },
            Err(error) => CachedSend::Disconnected {
                peer_id,
                error: error.into_send_error(),
            },
        }
    }

    /// zrpc patch: hand `message` to the socket's only peer (the one named,
    /// if any) without waiting. Gives it back when that is not possible at
    /// once (no peer, several, another one named, a full or closed queue):
    /// the caller then uses the async path, which handles each of those.
    /// Nothing else changes, so a refusal has no side effect.
    pub(crate) fn try_send_now(
        &self,
        message: ZmqMessage,
        expected_peer_id: Option<&PeerIdentity>,
    ) -> Result<(), ZmqMessage> {
        let Some((_, peer)) = self.single_peer(expected_peer_id) else {
            return Err(message);
        };
        let limit = self.socket_options.send_queue_bytes;
        offer(&peer.send_queue, &peer.queued, limit, message)
    }

    /// zrpc patch: whether `peer_id`'s send queue is under half its bounds
    /// (messages, and bytes if bounded), so a producer can pause before its
    /// messages would be dropped or waited for. `None`: no such peer.
    pub(crate) fn peer_has_room(&self, peer_id: &PeerIdentity) -> Option<bool> {
        let options = &self.socket_options;
        let load = self.peer(peer_id)?.queued.clone();
        Some(
            load.messages.load(Ordering::Acquire) < options.send_queue_capacity / 2
                && options
                    .send_queue_bytes
                    .is_none_or(|limit| load.bytes.load(Ordering::Acquire) < limit / 2),
        )
    }

    async fn finish_cached_send(&self, cached_send: CachedSend) -> ZmqResult<SendResolution> {
        match cached_send {
            CachedSend::Sent => Ok(SendResolution::Sent),
            CachedSend::Full {
                peer_id,
                peer,
                message,
            } => match send_to_peer_queue(&peer.send_queue, &peer.queued, message).await {
                Ok(()) => Ok(SendResolution::Sent),
                Err(e) => {
                    self.peer_disconnected(&peer_id);
                    Err(e.into())
                }
            },
            CachedSend::Disconnected { peer_id, error } => {
                self.peer_disconnected(&peer_id);
                Err(error.into())
            }
            CachedSend::Miss(message) => Ok(SendResolution::Miss(message)),
        }
    }

    /// Change the peer table (and the lock-free count beside it).
    fn update_peers<T>(&self, change: impl FnOnce(&mut PeerTable) -> T) -> T {
        let mut table = self.peers.lock();
        let out = change(&mut table);
        self.peer_count.store(table.len(), Ordering::Release);
        out
    }
}

async fn send_to_peer_queue(
    send_queue: &peer_queue::Sender,
    queued: &QueueLoad,
    message: Message,
) -> Result<(), peer_queue::SendError> {
    let len = message_bytes(&message);
    // Counted before it is queued, so the writer never subtracts it first.
    queued.add(len);
    let sent = match send_queue.try_send(message) {
        Ok(()) => Ok(()),
        Err(error) if error.is_full() => send_queue.send(error.into_inner()).await,
        Err(error) => Err(error.into_send_error()),
    };
    if sent.is_err() {
        queued.sub(1, len);
    }
    sent
}

/// zrpc patch: put `message` on a peer's queue if it fits now (in messages
/// and, with `limit`, in bytes), or give it back untouched.
fn offer(
    send_queue: &peer_queue::Sender,
    queued: &QueueLoad,
    limit: Option<usize>,
    message: ZmqMessage,
) -> Result<(), ZmqMessage> {
    let message = Message::Message(message);
    let len = message_bytes(&message);
    let refused = |message| match message {
        Message::Message(m) => Err(m),
        // Only the message wrapped above can come back.
        _ => unreachable!("a queue gave back another message"),
    };
    if !admits(queued, len, limit) {
        return refused(message);
    }
    match counted(queued, len, || send_queue.try_send(message)) {
        Ok(()) => Ok(()),
        Err(e) => refused(e.into_inner()),
    }
}

/// zrpc patch: `try_send` with its bytes counted in `queued` first (so the
/// writer, which subtracts them once written, never sees them before they
/// were added), and taken back if the queue refused.
fn counted<E>(
    queued: &QueueLoad,
    len: usize,
    send: impl FnOnce() -> Result<(), E>,
) -> Result<(), E> {
    queued.add(len);
    let sent = send();
    if sent.is_err() {
        queued.sub(1, len);
    }
    sent
}

impl SocketBackend for GenericSocketBackend {
    fn socket_type(&self) -> SocketType {
        self.socket_type
    }

    fn socket_options(&self) -> &Arc<SocketOptions> {
        &self.socket_options
    }

    fn shutdown(&self) {
        self.update_peers(PeerTable::clear);
        // Clear fair_queue streams to ensure TCP connections are closed
        // even when reconnect tasks still hold Arc references to the backend
        if let Some(inner) = &self.fair_queue_inner {
            inner.lock().clear();
        }
    }

    fn monitor(&self) -> &Mutex<Option<mpsc::Sender<SocketEvent>>> {
        &self.socket_monitor
    }
}

#[async_trait]
impl MultiPeerBackend for GenericSocketBackend {
    async fn peer_connected(self: Arc<Self>, peer_id: &PeerIdentity, io: FramedIo) {
        let (mut recv_queue, send_queue) = io.into_parts();
        // zrpc patch: the capacity is a socket option (upstream's constant
        // is its default).
        let (queue_sender, queue_receiver) =
            peer_queue::channel(self.socket_options.send_queue_capacity);
        // zrpc patch: answer ZMTP heartbeats (libzmq's ZMQ_HEARTBEAT_IVL).
        recv_queue.answer_pings(queue_sender.clone());
        let queued = Arc::new(QueueLoad::default());
        let peer = Peer {
            send_queue: queue_sender,
            queued: queued.clone(),
        };
        // zrpc patch: a ROUTER never replaces a peer (another connection
        // with the same identity that raced past `identity_in_use`): the
        // newcomer's connection is dropped here, closing it.
        let replace = self.socket_type != SocketType::ROUTER;
        if self
            .update_peers(|t| t.insert(peer_id.clone(), peer, replace))
            .is_err()
        {
            log::warn!("refused a second connection with routing identity {peer_id:?}");
            return;
        }
        let writer_backend = self.clone();
        let writer_peer_id = peer_id.clone();
        async_rt::task::spawn(async move {
            if let Err(error) = write_message_queue(queue_receiver, send_queue, Some(queued)).await
            {
                log::debug!(
                    "Error sending message to peer {:?}: {:?}",
                    writer_peer_id,
                    error
                );
                writer_backend.peer_disconnected(&writer_peer_id);
            }
        });
        // zrpc patch: a ROUTER never sends round-robin, so nothing ever pops
        // this queue: every peer that connected stayed in it for good.
        if self.socket_type != SocketType::ROUTER {
            self.round_robin.push(peer_id.clone());
        }
        match &self.fair_queue_inner {
            None => {}
            Some(inner) => {
                inner.lock().insert(peer_id.clone(), recv_queue);
            }
        };
    }

    async fn identity_in_use(&self, peer_id: &PeerIdentity) -> bool {
        self.socket_type == SocketType::ROUTER && self.peer(peer_id).is_some()
    }

    fn set_peer_key(&self, peer_id: &PeerIdentity, key: [u8; 32]) {
        if self.socket_type == SocketType::ROUTER {
            self.peer_keys.lock().insert(peer_id.clone(), key);
        }
    }

    fn peer_disconnected(&self, peer_id: &PeerIdentity) {
        self.peer_keys.lock().remove(peer_id);
        let peer_removed = self.update_peers(|t| t.remove(peer_id)).is_some();
        match &self.fair_queue_inner {
            None => {}
            Some(inner) => {
                inner.lock().remove(peer_id);
            }
        };

        if peer_removed {
            if let Some(monitor) = self.monitor().lock().as_mut() {
                let _ = monitor.try_send(SocketEvent::Disconnected(peer_id.clone()));
            }
        }

        // Notify reconnection task if registered
        if let Some(mut notifier) = self.disconnect_notifiers.lock().remove(peer_id) {
            // Use try_send to avoid blocking - if channel is full, the reconnect task
            // will eventually notice the peer is gone
            let _ = notifier.try_send(peer_id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ZmqMessage;

    use bytes::Bytes;
    use futures::StreamExt;

    fn message_with_frame(frame: &'static [u8]) -> Message {
        Message::Message(ZmqMessage::from(Bytes::from_static(frame)))
    }

    fn first_frame(message: Message) -> Bytes {
        let Message::Message(message) = message else {
            panic!("unexpected queued message type");
        };
        message.get(0).expect("message frame").clone()
    }

    fn add_peer(
        backend: &GenericSocketBackend,
        peer_id: &PeerIdentity,
        send_queue: peer_queue::Sender,
    ) {
        let peer = Peer {
            send_queue,
            queued: Default::default(),
        };
        let added = backend.update_peers(|t| t.insert(peer_id.clone(), peer, true));
        assert!(added.is_ok());
    }

    async fn insert_peer(
        backend: &GenericSocketBackend,
        peer_id: PeerIdentity,
    ) -> (PeerIdentity, peer_queue::Receiver) {
        let (send_queue, recv_queue) = peer_queue::channel(8);
        add_peer(backend, &peer_id, send_queue);
        backend.round_robin.push(peer_id.clone());
        (peer_id, recv_queue)
    }

    #[crate::async_rt::test]
    async fn test_send_round_robin_uses_single_peer_cache() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::PUSH, SocketOptions::default());
        let (_peer_id, mut recv_queue) =
            insert_peer(&backend, "peer-a".parse().expect("peer id")).await;

        assert_eq!(1, backend.peer_count.load(Ordering::Acquire));
        assert!(backend.peers.lock().single.is_some());

        backend
            .send_round_robin(message_with_frame(b"payload"))
            .await
            .expect("send through single peer cache");

        let queued = recv_queue.next().await.expect("queued message");
        assert_eq!(Bytes::from_static(b"payload"), first_frame(queued));
    }

    #[crate::async_rt::test]
    async fn test_send_to_peer_uses_single_peer_cache_for_matching_identity() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::ROUTER, SocketOptions::default());
        let (peer_id, mut recv_queue) =
            insert_peer(&backend, "router-peer".parse().expect("peer id")).await;

        assert_eq!(
            Some(peer_id.clone()),
            backend
                .peers
                .lock()
                .single
                .as_ref()
                .map(|(id, _)| id.clone())
        );

        backend
            .send_to_peer(&peer_id, message_with_frame(b"routed"))
            .await
            .expect("send to cached peer");

        let queued = recv_queue.next().await.expect("queued message");
        assert_eq!(Bytes::from_static(b"routed"), first_frame(queued));
    }

    #[crate::async_rt::test]
    async fn test_send_to_peer_routes_by_identity_with_multiple_peers() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::ROUTER, SocketOptions::default());
        let (_first_peer_id, mut first_recv_queue) =
            insert_peer(&backend, "router-peer-a".parse().expect("peer id")).await;
        let (second_peer_id, mut second_recv_queue) =
            insert_peer(&backend, "router-peer-b".parse().expect("peer id")).await;

        assert_eq!(2, backend.peer_count.load(Ordering::Acquire));
        assert!(backend.peers.lock().single.is_none());

        backend
            .send_to_peer(&second_peer_id, message_with_frame(b"routed-b"))
            .await
            .expect("send to selected peer");

        assert!(first_recv_queue.try_recv().is_err());
        let queued = second_recv_queue.next().await.expect("queued message");
        assert_eq!(Bytes::from_static(b"routed-b"), first_frame(queued));
    }

    #[crate::async_rt::test]
    async fn test_send_round_robin_waits_when_cached_sender_is_full() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::PUSH, SocketOptions::default());
        let peer_id: PeerIdentity = "full-peer".parse().expect("peer id");
        let (send_queue, mut recv_queue) = peer_queue::channel(1);
        send_queue
            .try_send(message_with_frame(b"prefilled"))
            .expect("prefill peer queue");
        add_peer(&backend, &peer_id, send_queue);
        backend.round_robin.push(peer_id.clone());

        let send_future = backend.send_round_robin(message_with_frame(b"after-full"));
        let recv_future = async {
            let first = recv_queue.next().await.expect("prefilled message");
            let second = recv_queue
                .next()
                .await
                .expect("message sent after capacity frees");
            (first, second)
        };

        let (send_result, (first, second)) = futures::join!(send_future, recv_future);

        send_result.expect("send waits for cached sender capacity");
        assert_eq!(Bytes::from_static(b"prefilled"), first_frame(first));
        assert_eq!(Bytes::from_static(b"after-full"), first_frame(second));
    }

    #[crate::async_rt::test]
    async fn test_single_peer_cache_is_cleared_when_cached_sender_is_disconnected() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::PUSH, SocketOptions::default());
        let peer_id: PeerIdentity = "closed-peer".parse().expect("peer id");
        let (send_queue, recv_queue) = peer_queue::channel(1);
        drop(recv_queue);
        add_peer(&backend, &peer_id, send_queue);
        backend.round_robin.push(peer_id.clone());

        let error = backend
            .send_round_robin(message_with_frame(b"lost"))
            .await
            .expect_err("closed cached sender should fail");

        assert!(matches!(error, ZmqError::BufferFull(_)));
        assert_eq!(0, backend.peer_count.load(Ordering::Acquire));
        assert!(backend.peers.lock().single.is_none());
        assert!(backend.peer(&peer_id).is_none());
    }

    #[crate::async_rt::test]
    async fn test_peer_disconnected_emits_one_monitor_event() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::ROUTER, SocketOptions::default());
        let (monitor_sender, mut monitor_receiver) = mpsc::channel(8);
        backend.socket_monitor.lock().replace(monitor_sender);
        let (peer_id, _recv_queue) =
            insert_peer(&backend, "monitor-peer".parse().expect("peer id")).await;

        backend.peer_disconnected(&peer_id);

        let event = monitor_receiver.next().await.expect("disconnect event");
        assert!(matches!(
            event,
            SocketEvent::Disconnected(disconnected_peer) if disconnected_peer == peer_id
        ));

        backend.peer_disconnected(&peer_id);
        assert!(monitor_receiver.try_recv().is_err());
    }
}
