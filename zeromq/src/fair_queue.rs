//! Reads several peers' streams as one, taking them in turn.
//!
//! zrpc patch (FORK.md item 17): each stream lives in a numbered slot, and
//! the queue of ready streams holds slot numbers. Upstream kept the streams
//! in a `HashMap` keyed by peer identity and, for every message, removed
//! and re-inserted the stream, hashed the key into a "queued" set twice,
//! pushed a binary heap and allocated a new waker; now a message costs no
//! hashing and no allocation (the key is hashed only when a peer connects
//! or leaves), and each slot's waker is made once.

use futures::task::{waker_ref, ArcWake};
use futures::Stream;
use parking_lot::Mutex;

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

pub(crate) struct QueueInner<S, K: Clone> {
    slots: Vec<Slot<S, K>>,
    /// Slots free for reuse.
    free: Vec<usize>,
    /// Each live stream's slot (consulted only when peers come and go).
    by_key: HashMap<K, usize>,
    /// Slots whose stream was woken, oldest first; a slot appears at most
    /// once while its `queued` flag is set.
    ready: VecDeque<usize>,
    waker: Option<Waker>,
    /// Callback invoked when a stream ends (peer disconnected).
    /// Wrapped in Arc so it can be cloned and called outside the lock.
    on_disconnect: Option<Arc<dyn Fn(K) + Send + Sync>>,
}

struct Slot<S, K: Clone> {
    /// The peer's key; `None` while the slot is free.
    key: Option<K>,
    /// Bumped each time the slot is freed, so a waker or a poll that
    /// outlived its stream cannot touch the slot's next tenant.
    generation: u64,
    /// `None` while the stream is being polled (outside the lock).
    stream: Option<Pin<Box<S>>>,
    /// Whether the slot is in `ready` (possibly as a stale entry).
    queued: bool,
    /// The waker handed to this stream, made on its first poll.
    waker: Option<Arc<StreamWaker<S, K>>>,
}

impl<S, K: Clone + Eq + Hash> QueueInner<S, K> {
    pub fn insert(&mut self, k: K, s: S) {
        if let Some(old) = self.by_key.remove(&k) {
            self.release(old);
        }
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                key: None,
                generation: 0,
                stream: None,
                queued: false,
                waker: None,
            });
            self.slots.len() - 1
        });
        let slot = &mut self.slots[index];
        slot.key = Some(k.clone());
        slot.stream = Some(Box::pin(s));
        self.by_key.insert(k, index);
        let generation = self.slots[index].generation;
        self.mark_ready(index, generation);
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }

    pub fn remove(&mut self, k: &K) {
        if let Some(index) = self.by_key.remove(k) {
            self.release(index);
        }
    }

    /// Clear all streams and the ready queue.
    ///
    /// Used during shutdown to ensure TCP connections are closed even when
    /// other components (like reconnect tasks) hold Arc references to the inner.
    pub fn clear(&mut self) {
        self.by_key.clear();
        // Slots are released, not dropped: a poll in progress must find its
        // slot's generation changed rather than a new slot with the same one.
        for index in 0..self.slots.len() {
            if self.slots[index].key.is_some() {
                self.release(index);
            }
            self.slots[index].queued = false;
        }
        self.ready.clear();
        // Wake the waker so any pending poll_next returns
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Free slot `index` (its key already gone from `by_key`).
    fn release(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.key = None;
        slot.stream = None;
        slot.waker = None;
        slot.generation += 1;
        // (`queued` stays: a stale entry in `ready` still names the slot,
        // and is skipped when popped.)
        self.free.push(index);
    }

    /// Queue slot `index` for polling, unless it is queued already or its
    /// stream is gone.
    fn mark_ready(&mut self, index: usize, generation: u64) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if slot.generation == generation && slot.key.is_some() && !slot.queued {
            slot.queued = true;
            self.ready.push_back(index);
        }
    }

    /// Put a polled stream back; `false` (and the stream dropped) when its
    /// slot was released meanwhile.
    fn restore(&mut self, index: usize, generation: u64, stream: Pin<Box<S>>) -> bool {
        match self.slots.get_mut(index) {
            Some(slot) if slot.generation == generation && slot.key.is_some() => {
                slot.stream = Some(stream);
                true
            }
            _ => false,
        }
    }

    /// Remember the poller's waker (cloned only when it changed).
    fn register(&mut self, waker: &Waker) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waker = Some(waker.clone());
        }
    }
}

pub struct FairQueue<S, K: Clone> {
    block_on_no_clients: bool,
    inner: Arc<Mutex<QueueInner<S, K>>>,
}

/// The waker of one slot's stream: queues the slot and wakes the poller.
/// It holds the queue weakly (the queue holds the streams that hold it).
struct StreamWaker<S, K: Clone> {
    inner: Weak<Mutex<QueueInner<S, K>>>,
    index: usize,
    generation: u64,
}

impl<S, K> ArcWake for StreamWaker<S, K>
where
    S: Send,
    K: Clone + Eq + Hash + Send + Sync,
{
    fn wake_by_ref(arc_self: &Arc<Self>) {
        let Some(inner) = arc_self.inner.upgrade() else {
            return;
        };
        let mut inner = inner.lock();
        inner.mark_ready(arc_self.index, arc_self.generation);
        if let Some(waker) = inner.waker.take() {
            waker.wake();
        }
    }
}

impl<S, T, K> Stream for FairQueue<S, K>
where
    T: Send,
    S: Stream<Item = T> + Send + 'static,
    K: Eq + Hash + Unpin + Clone + Send + Sync + 'static,
{
    type Item = (K, T);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let fair_queue = self.get_mut();
        // Only the streams ready now are polled: wakes that arrive during
        // this poll wait for the next one (so one busy peer cannot keep the
        // caller here).
        let mut remaining_ready = {
            let mut inner = fair_queue.inner.lock();
            inner.register(cx.waker());
            inner.ready.len()
        };

        while remaining_ready > 0 {
            remaining_ready -= 1;
            let (index, generation, key, mut io_stream, waker) = {
                let mut inner = fair_queue.inner.lock();
                let Some(index) = inner.ready.pop_front() else {
                    break;
                };
                let slot = &mut inner.slots[index];
                slot.queued = false;
                let (Some(key), Some(stream)) = (&slot.key, slot.stream.take()) else {
                    continue;
                };
                let key = key.clone();
                let generation = slot.generation;
                let waker = slot
                    .waker
                    .get_or_insert_with(|| {
                        Arc::new(StreamWaker {
                            inner: Arc::downgrade(&fair_queue.inner),
                            index,
                            generation,
                        })
                    })
                    .clone();
                (index, generation, key, stream, waker)
            };

            let waker_ref = waker_ref(&waker);
            let mut cx = Context::from_waker(&waker_ref);
            match io_stream.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(res)) => {
                    let mut inner = fair_queue.inner.lock();
                    // Still ready: it goes to the back of the line.
                    if inner.restore(index, generation, io_stream) {
                        inner.mark_ready(index, generation);
                    }
                    return Poll::Ready(Some((key, res)));
                }
                Poll::Ready(None) => {
                    // Peer disconnected. Don't put the stream back.
                    // Clone the callback Arc so we can call it outside the lock
                    // (to avoid deadlock if callback accesses inner)
                    let callback = {
                        let mut inner = fair_queue.inner.lock();
                        let live = inner.slots[index].generation == generation
                            && inner.slots[index].key.is_some();
                        if live {
                            if inner.by_key.get(&key) == Some(&index) {
                                inner.by_key.remove(&key);
                            }
                            inner.release(index);
                        }
                        inner.on_disconnect.clone()
                    };
                    // Call callback outside the lock
                    if let Some(callback) = callback {
                        callback(key);
                    }
                    // Continue to poll other streams instead of returning None immediately.
                    continue;
                }
                Poll::Pending => {
                    fair_queue
                        .inner
                        .lock()
                        .restore(index, generation, io_stream);
                    continue;
                }
            }
        }

        let mut inner = fair_queue.inner.lock();
        inner.register(cx.waker());
        let should_wake = !inner.ready.is_empty();
        let result = if !inner.by_key.is_empty() || fair_queue.block_on_no_clients {
            Poll::Pending
        } else {
            Poll::Ready(None)
        };
        drop(inner);

        if should_wake {
            cx.waker().wake_by_ref();
        }
        result
    }
}

impl<S, K: Clone> FairQueue<S, K> {
    pub fn new(block_on_no_clients: bool) -> Self {
        Self {
            block_on_no_clients,
            inner: Arc::new(Mutex::new(QueueInner {
                slots: Vec::new(),
                free: Vec::new(),
                by_key: HashMap::new(),
                ready: VecDeque::new(),
                waker: None,
                on_disconnect: None,
            })),
        }
    }

    /// Set a callback to be invoked when a stream ends (peer disconnected).
    ///
    /// The callback receives the key of the disconnected stream.
    pub fn set_on_disconnect<F>(&mut self, callback: F)
    where
        F: Fn(K) + Send + Sync + 'static,
    {
        self.inner.lock().on_disconnect = Some(Arc::new(callback));
    }

    pub(crate) fn inner(&self) -> Arc<Mutex<QueueInner<S, K>>> {
        self.inner.clone()
    }
}

#[cfg(test)]
impl<S, K: Clone + Eq + Hash> QueueInner<S, K> {
    fn streams_mut(&mut self) -> impl Iterator<Item = &mut Pin<Box<S>>> {
        self.slots.iter_mut().filter_map(|s| s.stream.as_mut())
    }

    fn stream_mut(&mut self, k: &K) -> Option<&mut Pin<Box<S>>> {
        let index = *self.by_key.get(k)?;
        self.slots[index].stream.as_mut()
    }

    fn queued_len(&self) -> usize {
        self.slots.iter().filter(|s| s.queued).count()
    }
}

#[cfg(test)]
mod test {
    use crate::async_rt;
    use crate::fair_queue::FairQueue;
    use futures::task::noop_waker;
    use futures::Future;
    use futures::{stream, Stream, StreamExt};
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Test stream that yields Pending for the first N polls, then emits messages FIFO
    struct TestStream {
        pending_polls: usize,
        messages: VecDeque<&'static str>,
    }

    struct CountPendingStream {
        poll_count: usize,
    }

    struct WakePendingStream {
        poll_count: usize,
    }

    struct WakeThenReadyStream {
        poll_count: usize,
        message: Option<&'static str>,
    }

    impl TestStream {
        fn new(pending_polls: usize, messages: &[&'static str]) -> Self {
            Self {
                pending_polls,
                messages: messages.iter().copied().collect(),
            }
        }

        fn ready(messages: &[&'static str]) -> Self {
            Self::new(0, messages)
        }

        fn pending_once(messages: &[&'static str]) -> Self {
            Self::new(1, messages)
        }
    }

    impl Stream for CountPendingStream {
        type Item = &'static str;

        fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.get_mut().poll_count += 1;
            Poll::Pending
        }
    }

    impl Stream for WakePendingStream {
        type Item = &'static str;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.get_mut().poll_count += 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    impl Stream for WakeThenReadyStream {
        type Item = &'static str;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = self.get_mut();
            this.poll_count += 1;
            if this.poll_count == 1 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(this.message.take())
            }
        }
    }

    impl Stream for TestStream {
        type Item = &'static str;

        fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = self.get_mut();
            if this.pending_polls > 0 {
                this.pending_polls -= 1;
                return Poll::Pending;
            }
            Poll::Ready(this.messages.pop_front())
        }
    }

    enum UnifiedStream {
        Test(TestStream),
        CountPending(CountPendingStream),
        WakePending(WakePendingStream),
    }

    impl Stream for UnifiedStream {
        type Item = &'static str;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.get_mut() {
                UnifiedStream::Test(stream) => Pin::new(stream).poll_next(cx),
                UnifiedStream::CountPending(stream) => Pin::new(stream).poll_next(cx),
                UnifiedStream::WakePending(stream) => Pin::new(stream).poll_next(cx),
            }
        }
    }

    #[async_rt::test]
    async fn test_fair_queue_ready() {
        let a = stream::iter(vec!["a1", "a2", "a3"]);
        let b = stream::iter(vec!["b1", "b2", "b3"]);
        let c = stream::iter(vec!["c1", "c2", "c3"]);

        let mut f_queue: FairQueue<_, u64> = FairQueue::new(false);
        {
            let inner = f_queue.inner();
            let mut inner_lock = inner.lock();
            inner_lock.insert(1, a);
            inner_lock.insert(2, b);
            inner_lock.insert(3, c);
        }

        let mut results = Vec::new();
        while let Some(i) = f_queue.next().await {
            results.push(i);
        }

        assert_eq!(
            results,
            vec![
                (1, "a1"),
                (2, "b1"),
                (3, "c1"),
                (1, "a2"),
                (2, "b2"),
                (3, "c2"),
                (1, "a3"),
                (2, "b3"),
                (3, "c3")
            ]
        );
    }

    #[async_rt::test]
    async fn test_fair_queue_next_future_can_be_dropped_after_pending() {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);

        let mut fair_queue: FairQueue<WakeThenReadyStream, &str> = FairQueue::new(false);
        {
            let inner = fair_queue.inner();
            let mut lock = inner.lock();
            lock.insert(
                "peer",
                WakeThenReadyStream {
                    poll_count: 0,
                    message: Some("message"),
                },
            );
        }

        {
            let mut next = fair_queue.next();
            assert!(
                matches!(Pin::new(&mut next).poll(&mut cx), Poll::Pending),
                "first poll should park the recv future"
            );
        }

        assert_eq!(fair_queue.next().await, Some(("peer", "message")));
    }

    #[async_rt::test]
    async fn test_fair_queue_different_size() {
        let a = stream::iter(vec!["a1", "a2", "a3"]);
        let b = stream::iter(vec!["b1"]);
        let c = stream::iter(vec!["c1", "c2"]);

        let mut f_queue: FairQueue<_, u64> = FairQueue::new(false);
        {
            let inner = f_queue.inner();
            let mut inner_lock = inner.lock();
            inner_lock.insert(1, a);
            inner_lock.insert(2, b);
            inner_lock.insert(3, c);
        }

        let mut results = Vec::new();
        while let Some(i) = f_queue.next().await {
            results.push(i);
        }

        // FairQueue continues polling all streams until all are exhausted
        assert_eq!(
            results,
            vec![
                (1, "a1"),
                (2, "b1"),
                (3, "c1"),
                (1, "a2"),
                (3, "c2"),
                (1, "a3")
            ]
        );
    }

    #[test]
    fn test_fair_queue_continues_on_pending() {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);

        let mut fair_queue: FairQueue<UnifiedStream, &str> = FairQueue::new(false);
        {
            let inner = fair_queue.inner();
            let mut lock = inner.lock();
            lock.insert(
                "slow",
                UnifiedStream::Test(TestStream::pending_once(&["s1"])),
            );
            lock.insert(
                "fast",
                UnifiedStream::Test(TestStream::ready(&["f1", "f2"])),
            );
        }

        // First poll should return fast stream (regression test: no starvation)
        let result = Pin::new(&mut fair_queue).poll_next(&mut cx);
        match result {
            Poll::Ready(Some((key, value))) => {
                assert_eq!(key, "fast");
                assert_eq!(value, "f1");
            }
            other => panic!("Expected fast stream first, got: {:#?}", other),
        }

        // Second poll: fast stream still ready, slow stream pending
        let result = Pin::new(&mut fair_queue).poll_next(&mut cx);
        match result {
            Poll::Ready(Some((key, value))) => {
                assert_eq!(key, "fast");
                assert_eq!(value, "f2");
            }
            other => panic!("Expected fast stream second, got: {:#?}", other),
        }

        // Third poll: With noop_waker, slow stream hasn't been re-polled
        let result = Pin::new(&mut fair_queue).poll_next(&mut cx);
        match result {
            Poll::Pending => {} // Expected with noop_waker
            other @ Poll::Ready(_) => panic!("Expected Pending, got: {:#?}", other),
        }
    }

    #[test]
    fn test_fair_queue_multiple_clients_fairness() {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);

        let mut fair_queue: FairQueue<UnifiedStream, &str> = FairQueue::new(false);
        {
            let inner = fair_queue.inner();
            let mut lock = inner.lock();
            lock.insert(
                "fast",
                UnifiedStream::Test(TestStream::ready(&["f1", "f2", "f3"])),
            );
            lock.insert("slow", UnifiedStream::Test(TestStream::new(2, &["s1"])));
            lock.insert(
                "mid",
                UnifiedStream::Test(TestStream::new(1, &["m1", "m2"])),
            );
        }

        let mut messages = Vec::new();
        const MAX_ITERATIONS: usize = 20; // Upper bound - 3 for fast, 2 for mid, 1 for slow.

        for _ in 0..MAX_ITERATIONS {
            match Pin::new(&mut fair_queue).poll_next(&mut cx) {
                Poll::Ready(Some((key, value))) => {
                    messages.push(format!("{}:{}", key, value));

                    let has_slow = messages.iter().any(|m| m.starts_with("slow:"));
                    let fast_count = messages.iter().filter(|m| m.starts_with("fast:")).count();
                    let mid_count = messages.iter().filter(|m| m.starts_with("mid:")).count();

                    if has_slow && fast_count == 3 && mid_count == 2 {
                        break;
                    }
                }
                Poll::Ready(None) => break,
                Poll::Pending => {}
            }
        }

        // Ensure fast stream isn't starved by pending streams
        let fast_messages = messages.iter().filter(|m| m.starts_with("fast:")).count();
        assert!(
            fast_messages >= 1,
            "Fast stream was starved: {:?}",
            messages
        );
    }

    #[test]
    fn test_fair_queue_polls_ready_set_before_yielding_pending() {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);

        let mut fair_queue: FairQueue<UnifiedStream, &str> = FairQueue::new(false);
        {
            let inner = fair_queue.inner();
            let mut lock = inner.lock();
            lock.insert(
                "pending-1",
                UnifiedStream::CountPending(CountPendingStream { poll_count: 0 }),
            );
            lock.insert(
                "pending-2",
                UnifiedStream::CountPending(CountPendingStream { poll_count: 0 }),
            );
            lock.insert(
                "pending-3",
                UnifiedStream::CountPending(CountPendingStream { poll_count: 0 }),
            );
        }

        let result = Pin::new(&mut fair_queue).poll_next(&mut cx);
        assert!(
            matches!(result, Poll::Pending),
            "expected FairQueue to yield Pending, got {result:?}"
        );

        let inner = fair_queue.inner();
        let mut lock = inner.lock();
        let poll_count: usize = lock
            .streams_mut()
            .map(|stream| {
                let UnifiedStream::CountPending(stream) = stream.as_mut().get_mut() else {
                    panic!("unexpected stream type");
                };
                stream.poll_count
            })
            .sum();
        assert_eq!(
            poll_count, 3,
            "FairQueue should poll all initially ready streams before yielding Pending"
        );
    }

    #[test]
    fn test_fair_queue_defers_ready_events_generated_during_poll() {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);

        let mut fair_queue: FairQueue<UnifiedStream, &str> = FairQueue::new(false);
        {
            let inner = fair_queue.inner();
            let mut lock = inner.lock();
            lock.insert(
                "pending",
                UnifiedStream::WakePending(WakePendingStream { poll_count: 0 }),
            );
        }

        let result = Pin::new(&mut fair_queue).poll_next(&mut cx);
        assert!(
            matches!(result, Poll::Pending),
            "expected FairQueue to yield Pending, got {result:?}"
        );

        let inner = fair_queue.inner();
        let mut lock = inner.lock();
        assert_eq!(
            lock.ready.len(),
            1,
            "wake generated during poll should remain queued for a later poll"
        );
        assert_eq!(
            lock.queued_len(),
            1,
            "wake generated during poll should be tracked as queued"
        );
        let stream = lock.stream_mut(&"pending").unwrap();
        let UnifiedStream::WakePending(stream) = stream.as_mut().get_mut() else {
            panic!("unexpected stream type");
        };
        assert_eq!(
            stream.poll_count, 1,
            "FairQueue should not consume same-poll wake events immediately"
        );
    }

    /// Pending forever, keeping the waker it was polled with (as a socket's
    /// read registration does), and setting a flag when dropped.
    struct KeepsWaker {
        waker: Option<std::task::Waker>,
        dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl Stream for KeepsWaker {
        type Item = &'static str;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.get_mut().waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    impl Drop for KeepsWaker {
        fn drop(&mut self) {
            self.dropped
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn dropping_the_queue_drops_streams_that_hold_its_wakers() {
        // Upstream's wakers held the queue strongly: a stream keeping its
        // waker kept the queue (and itself) alive forever.
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut fair_queue: FairQueue<KeepsWaker, &str> = FairQueue::new(true);
        fair_queue.inner().lock().insert(
            "peer",
            KeepsWaker {
                waker: None,
                dropped: dropped.clone(),
            },
        );
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut fair_queue).poll_next(&mut cx).is_pending());
        drop(fair_queue);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn a_removed_stream_is_not_polled_and_its_old_waker_cannot_wake_a_new_one() {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut fair_queue: FairQueue<UnifiedOrKeeps, &str> = FairQueue::new(true);
        let inner = fair_queue.inner();
        inner.lock().insert(
            "old",
            UnifiedOrKeeps::Keeps(KeepsWaker {
                waker: None,
                dropped: dropped.clone(),
            }),
        );
        assert!(Pin::new(&mut fair_queue).poll_next(&mut cx).is_pending());
        // Take the old stream's waker out before removing it.
        let old_waker = {
            let mut lock = inner.lock();
            let UnifiedOrKeeps::Keeps(s) = lock.stream_mut(&"old").unwrap().as_mut().get_mut()
            else {
                unreachable!()
            };
            s.waker.clone().unwrap()
        };
        inner.lock().remove(&"old");
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
        // A new peer takes the freed slot; the old waker must not queue it
        // a second time.
        inner.lock().insert(
            "new",
            UnifiedOrKeeps::Test(TestStream::pending_once(&["n1", "n2"])),
        );
        assert!(Pin::new(&mut fair_queue).poll_next(&mut cx).is_pending());
        assert_eq!(inner.lock().ready.len(), 0);
        old_waker.wake();
        assert_eq!(
            inner.lock().ready.len(),
            0,
            "a stale waker queued the new stream"
        );
        // The new stream's own waker works.
        let new_waker = inner.lock().slots[0].waker.clone().unwrap();
        futures::task::waker(new_waker).wake();
        let mut got = Vec::new();
        while let Poll::Ready(Some((k, v))) = Pin::new(&mut fair_queue).poll_next(&mut cx) {
            got.push((k, v));
        }
        assert_eq!(got, vec![("new", "n1"), ("new", "n2")]);
    }

    #[async_rt::test]
    async fn an_ended_stream_is_reported_once_and_its_slot_reused() {
        let ended = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut fair_queue: FairQueue<_, u64> = FairQueue::new(false);
        let seen = ended.clone();
        fair_queue.set_on_disconnect(move |k| seen.lock().push(k));
        let inner = fair_queue.inner();
        inner.lock().insert(1, stream::iter(vec!["a1"]));
        assert_eq!(fair_queue.next().await, Some((1, "a1")));
        inner.lock().insert(2, stream::iter(vec!["b1"]));
        assert_eq!(fair_queue.next().await, Some((2, "b1")));
        assert_eq!(fair_queue.next().await, None);
        let mut ended = ended.lock().clone();
        ended.sort();
        assert_eq!(ended, vec![1, 2]);
        // Two peers over time, never more than two slots.
        assert!(inner.lock().slots.len() <= 2);
    }

    enum UnifiedOrKeeps {
        Test(TestStream),
        Keeps(KeepsWaker),
    }

    impl Stream for UnifiedOrKeeps {
        type Item = &'static str;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.get_mut() {
                UnifiedOrKeeps::Test(s) => Pin::new(s).poll_next(cx),
                UnifiedOrKeeps::Keeps(s) => Pin::new(s).poll_next(cx),
            }
        }
    }
}
