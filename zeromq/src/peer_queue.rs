//! zrpc patch: the queue between a socket's senders and one peer's writer
//! task (FORK.md item 23).
//!
//! Upstream used a futures `mpsc` channel here: a heap node allocated and
//! freed for every message, and an atomic linked-list pop per message on
//! the writer's side. This queue is a `VecDeque` under a lock. A sender
//! pushes; the writer takes everything queued in one swap and then pops
//! from its own deque without locking. Neither side allocates per message
//! once the deques have grown to the traffic.
//!
//! Bounds: at most `capacity` messages are queued or held by the writer
//! (what it took is counted until it has popped all of it), so the bound is
//! the socket's `send_queue_capacity`, exactly (the futures channel let
//! each sender clone queue one more).

use crate::codec::Message;

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::Stream;
use parking_lot::Mutex;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// A deque that held more than this many messages is shrunk once emptied,
/// so one burst does not keep its memory for the peer's lifetime.
const KEEP: usize = 1024;

struct State {
    queue: VecDeque<Message>,
    /// Messages the writer took and has not popped yet.
    in_hand: usize,
    capacity: usize,
    senders: usize,
    /// The receiver is gone: sends fail.
    closed: bool,
    /// The writer, waiting for a message.
    receiver: Option<Waker>,
    /// Senders waiting for room.
    waiting: Vec<Waker>,
}

struct Shared {
    state: Mutex<State>,
}

/// zrpc patch: messages and bytes waiting in a peer's send queue, added
/// before a message is queued and subtracted once its batch is written.
#[derive(Default, Debug)]
pub(crate) struct QueueLoad {
    pub(crate) messages: AtomicUsize,
    pub(crate) bytes: AtomicUsize,
}

impl QueueLoad {
    pub(crate) fn add(&self, bytes: usize) {
        self.messages.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    pub(crate) fn sub(&self, messages: usize, bytes: usize) {
        self.messages.fetch_sub(messages, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// zrpc patch: the bytes a message holds, as counted against
/// `SocketOptions::send_queue_bytes` (commands count nothing).
pub(crate) fn message_bytes(message: &Message) -> usize {
    match message {
        Message::Message(m) => m.iter().map(|f| f.len() + crate::FRAME_OVERHEAD).sum(),
        _ => 0,
    }
}

/// A bounded queue of messages for one peer: any number of senders, one
/// receiver (the peer's writer task).
pub(crate) fn channel(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            in_hand: 0,
            capacity: capacity.max(1),
            senders: 1,
            closed: false,
            receiver: None,
            waiting: Vec::new(),
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver {
            shared,
            local: VecDeque::new(),
        },
    )
}

/// The sending side; clones share the queue.
pub(crate) struct Sender {
    shared: Arc<Shared>,
}

/// Why [`Sender::try_send`] refused a message (which comes back).
#[derive(Debug)]
pub(crate) struct TrySendError {
    message: Message,
    full: bool,
}

impl TrySendError {
    /// The queue was full (rather than its receiver gone).
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    pub(crate) fn into_inner(self) -> Message {
        self.message
    }

    pub(crate) fn into_send_error(self) -> SendError {
        SendError
    }
}

/// The receiver is gone: nothing sent now will be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendError;

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the peer's writer is gone")
    }
}

impl std::error::Error for SendError {}

impl Sender {
    /// Queue `message` if there is room now; otherwise give it back.
    pub(crate) fn try_send(&self, message: Message) -> Result<(), TrySendError> {
        let mut state = self.shared.state.lock();
        if state.closed {
            return Err(TrySendError {
                message,
                full: false,
            });
        }
        if state.queue.len() + state.in_hand >= state.capacity {
            return Err(TrySendError {
                message,
                full: true,
            });
        }
        state.queue.push_back(message);
        let receiver = state.receiver.take();
        drop(state);
        if let Some(waker) = receiver {
            waker.wake();
        }
        Ok(())
    }

    /// Queue `message`, waiting for room.
    pub(crate) fn send(&self, message: Message) -> Send<'_> {
        Send {
            sender: self,
            message: Some(message),
        }
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.senders -= 1;
        let receiver = if state.senders == 0 {
            state.receiver.take()
        } else {
            None
        };
        drop(state);
        if let Some(waker) = receiver {
            waker.wake();
        }
    }
}

/// The future of [`Sender::send`].
pub(crate) struct Send<'a> {
    sender: &'a Sender,
    message: Option<Message>,
}

impl Future for Send<'_> {
    type Output = Result<(), SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(message) = this.message.take() else {
            return Poll::Ready(Ok(()));
        };
        match this.sender.try_send(message) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) if !e.full => Poll::Ready(Err(SendError)),
            Err(e) => {
                let mut state = this.sender.shared.state.lock();
                // Room may have come between the two locks: try again
                // rather than wait for a wake that already happened.
                if state.queue.len() + state.in_hand < state.capacity || state.closed {
                    drop(state);
                    cx.waker().wake_by_ref();
                } else if !state.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    state.waiting.push(cx.waker().clone());
                }
                this.message = Some(e.message);
                Poll::Pending
            }
        }
    }
}

/// The receiving side: the peer's writer.
pub(crate) struct Receiver {
    shared: Arc<Shared>,
    /// What was taken from the queue and not popped yet.
    local: VecDeque<Message>,
}

/// Nothing is queued now ([`Receiver::try_recv`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Empty;

impl Receiver {
    /// The next message if one is queued now.
    pub(crate) fn try_recv(&mut self) -> Result<Message, Empty> {
        if let Some(message) = self.local.pop_front() {
            return Ok(message);
        }
        self.refill(None).0.ok_or(Empty)
    }

    /// Hand back what was popped, take everything queued, and wake the
    /// senders waiting for room. With nothing queued, registers `waker`
    /// (if any). Returns the first message taken, and whether the queue
    /// has ended (empty, and every sender gone).
    fn refill(&mut self, waker: Option<&Waker>) -> (Option<Message>, bool) {
        if self.local.capacity() > KEEP {
            self.local = VecDeque::new();
        }
        let mut state = self.shared.state.lock();
        state.in_hand = 0;
        let ended = state.queue.is_empty() && state.senders == 0;
        if state.queue.is_empty() {
            if let Some(waker) = waker {
                if !state.receiver.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    state.receiver = Some(waker.clone());
                }
            }
        } else {
            std::mem::swap(&mut state.queue, &mut self.local);
            state.in_hand = self.local.len();
        }
        let waiting = std::mem::take(&mut state.waiting);
        drop(state);
        for waker in waiting {
            waker.wake();
        }
        (self.local.pop_front(), ended)
    }
}

impl Stream for Receiver {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = self.get_mut();
        if let Some(message) = this.local.pop_front() {
            return Poll::Ready(Some(message));
        }
        match this.refill(Some(cx.waker())) {
            (Some(message), _) => Poll::Ready(Some(message)),
            (None, true) => Poll::Ready(None),
            (None, false) => Poll::Pending,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.closed = true;
        let queued = std::mem::take(&mut state.queue);
        let waiting = std::mem::take(&mut state.waiting);
        drop(state);
        // Dropped outside the lock: messages may hold large buffers.
        drop(queued);
        for waker in waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ZmqMessage;
    use bytes::Bytes;
    use futures::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    fn msg(n: u32) -> Message {
        Message::Message(ZmqMessage::from(Bytes::copy_from_slice(&n.to_le_bytes())))
    }

    fn num(m: Message) -> u32 {
        let Message::Message(m) = m else {
            panic!("not a message")
        };
        u32::from_le_bytes(m.get(0).unwrap()[..4].try_into().unwrap())
    }

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn messages_come_out_in_order_across_takes() {
        let (tx, mut rx) = channel(1000);
        for i in 0..10 {
            tx.try_send(msg(i)).unwrap();
        }
        assert_eq!(num(rx.try_recv().unwrap()), 0);
        for i in 10..20 {
            tx.try_send(msg(i)).unwrap();
        }
        let got: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).map(num).collect();
        assert_eq!(got, (1..20).collect::<Vec<_>>());
        assert_eq!(rx.try_recv().unwrap_err(), Empty);
    }

    #[test]
    fn the_bound_counts_what_the_writer_holds() {
        let (tx, mut rx) = channel(4);
        for i in 0..4 {
            tx.try_send(msg(i)).unwrap();
        }
        let full = tx.try_send(msg(4)).unwrap_err();
        assert!(full.is_full());
        assert_eq!(num(full.into_inner()), 4);
        // The writer took all four and wrote one: three still count.
        assert_eq!(num(rx.try_recv().unwrap()), 0);
        assert!(tx.try_send(msg(4)).unwrap_err().is_full());
        // Once it has popped them all and comes back, there is room again.
        for _ in 1..4 {
            rx.try_recv().unwrap();
        }
        assert_eq!(rx.try_recv().unwrap_err(), Empty);
        for i in 0..4 {
            tx.try_send(msg(i)).unwrap();
        }
        assert!(tx.try_send(msg(9)).unwrap_err().is_full());
    }

    #[test]
    fn a_clone_adds_no_room() {
        let (tx, _rx) = channel(1);
        let other = tx.clone();
        tx.try_send(msg(0)).unwrap();
        assert!(other.try_send(msg(1)).unwrap_err().is_full());
    }

    #[test]
    fn the_writer_is_woken_once_per_wait() {
        let (tx, mut rx) = channel(100);
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_next_unpin(&mut cx).is_pending());
        tx.try_send(msg(1)).unwrap();
        tx.try_send(msg(2)).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            rx.poll_next_unpin(&mut cx).map(|m| m.map(num)),
            Poll::Ready(Some(1))
        );
    }

    #[test]
    fn a_waiting_sender_is_woken_when_room_comes_back() {
        let (tx, mut rx) = channel(1);
        tx.try_send(msg(0)).unwrap();
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut send = tx.send(msg(1));
        assert!(Pin::new(&mut send).poll(&mut cx).is_pending());
        assert_eq!(num(rx.try_recv().unwrap()), 0);
        // The writer comes back for more: the room is handed back.
        assert_eq!(rx.try_recv().unwrap_err(), Empty);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut send).poll(&mut cx), Poll::Ready(Ok(())));
        assert_eq!(num(rx.try_recv().unwrap()), 1);
    }

    #[test]
    fn the_stream_ends_when_the_last_sender_goes_after_delivering_all() {
        let (tx, mut rx) = channel(10);
        let other = tx.clone();
        tx.try_send(msg(7)).unwrap();
        drop(tx);
        other.try_send(msg(8)).unwrap();
        drop(other);
        let all: Vec<u32> = futures::executor::block_on(rx.by_ref().map(num).collect());
        assert_eq!(all, vec![7, 8]);
    }

    #[test]
    fn sends_fail_once_the_writer_is_gone_and_waiting_senders_wake() {
        let (tx, rx) = channel(1);
        tx.try_send(msg(0)).unwrap();
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut send = tx.send(msg(1));
        assert!(Pin::new(&mut send).poll(&mut cx).is_pending());
        drop(rx);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            Pin::new(&mut send).poll(&mut cx),
            Poll::Ready(Err(SendError))
        );
        let refused = tx.try_send(msg(2)).unwrap_err();
        assert!(!refused.is_full());
    }

    #[test]
    fn a_burst_does_not_keep_its_memory() {
        let (tx, mut rx) = channel(100_000);
        for i in 0..10_000 {
            tx.try_send(msg(i)).unwrap();
        }
        while rx.try_recv().is_ok() {}
        tx.try_send(msg(1)).unwrap();
        rx.try_recv().unwrap();
        assert!(rx.local.capacity() <= KEEP);
        assert!(rx.shared.state.lock().queue.capacity() <= KEEP);
    }

    #[test]
    fn senders_on_other_threads_lose_nothing() {
        let (tx, mut rx) = channel(64);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    futures::executor::block_on(async {
                        for i in 0..5_000u32 {
                            tx.send(msg(t * 10_000 + i)).await.unwrap();
                        }
                    })
                })
            })
            .collect();
        drop(tx);
        let got: Vec<u32> = futures::executor::block_on(rx.by_ref().map(num).collect());
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(got.len(), 20_000);
        // Each sender's own messages stay in order.
        for t in 0..4 {
            let mine: Vec<u32> = got.iter().copied().filter(|n| n / 10_000 == t).collect();
            assert_eq!(mine, (0..5_000).map(|i| t * 10_000 + i).collect::<Vec<_>>());
        }
    }
}
