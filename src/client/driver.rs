//! Who reads a client's sockets, and when.
//!
//! A call costs least when nobody has to be woken to deliver its reply. So
//! on a `current_thread` runtime a caller waiting for its first event reads
//! the sockets itself while no other caller does: it *leads*, routing every
//! event it reads to its owner's slot and taking its own reply directly
//! ([`FirstEvent`]; the hand-off of the read is in [`super::relay`]). Waking
//! a separate reader task instead cost about 5% of a sequential call on
//! loopback. Everything else is read by the core task ([`Shared::run`]):
//! stream items, heartbeats, connection changes, and replies while no
//! caller leads. The core task also keeps time — heartbeats, and every
//! call's deadline in one heap with one timer (a timer per call cost about
//! 4% of pipelined throughput) — and, every [`WATCHDOG`] while calls wait,
//! reads on behalf of a leader that is no longer being polled (a caller
//! inside a `select!` whose other branch won, say), so such a caller delays
//! the others by at most that much.
//!
//! On a multi-thread runtime callers never lead: the core task reading in
//! parallel with the callers is faster there (a caller reading for everyone
//! serialised the two, costing a third of the 64 KiB throughput).

use super::core::{Answer, Core, Started, Terms};
use super::relay::{self, Relay, Slot};
use crate::error::Error;
use crate::protocol::MessageId;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// The client's state, shared by its callers and its core task.
pub(super) struct Shared {
    core: Mutex<Core>,
    /// A call has a deadline earlier than the core's timer.
    rearm: tokio::sync::Notify,
    /// Who reads the sockets (see [`super::relay`]).
    relay: Arc<Relay>,
    /// The relay as a waker: the only one the sockets are polled with.
    socket_waker: Waker,
    /// Waiting callers read the sockets (on a `current_thread` runtime).
    /// On a multi-thread runtime only the core task reads, in parallel with
    /// the callers: a caller reading for everyone serialised the two, which
    /// cost a third of the 64 KiB throughput there.
    callers_read: bool,
}

/// Most events read in one go before letting other tasks run.
const BATCH: usize = 256;

/// How long a reply may wait for a leading caller that is not polled
/// before the core task reads it (see [`Shared::run`]).
const WATCHDOG: Duration = Duration::from_millis(50);

impl Shared {
    pub(super) fn new(core: Core) -> Self {
        let relay = Arc::new(Relay::default());
        Shared {
            core: Mutex::new(core),
            rearm: tokio::sync::Notify::new(),
            socket_waker: Waker::from(relay.clone()),
            relay,
            callers_read: tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::CurrentThread,
        }
    }

    /// Nothing holding the lock waits or can panic, so a poisoned lock
    /// (impossible in practice) is used as it is.
    pub(super) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a call and send it (or queue it until a server is up).
    pub(super) fn start(
        &self,
        id: MessageId,
        frame: bytes::Bytes,
        method: &str,
        terms: Terms,
        reply: Arc<Slot<Answer>>,
        now: Instant,
    ) -> Result<Started, Error> {
        let (wake, started) = self.lock().start(id, frame, method, terms, reply, now)?;
        if wake {
            self.rearm.notify_one();
        }
        Ok(started)
    }

    /// The caller gave up on call `id`: forget it, and tell its server.
    pub(super) fn abandon(&self, id: MessageId) {
        self.lock().abandon(id);
    }

    /// Read what the sockets have (up to [`BATCH`] events) and route it.
    /// Returns the answer of call `mine` if it was among them.
    fn pump(&self, mine: Option<MessageId>) -> Option<Answer> {
        self.pump_locked(&mut self.lock(), mine)
    }

    fn pump_locked(&self, core: &mut Core, mine: Option<MessageId>) -> Option<Answer> {
        let mut cx = Context::from_waker(&self.socket_waker);
        let mut answer = None;
        let mut more = true;
        for _ in 0..BATCH {
            let Some(inbound) = core.inbound.as_mut() else {
                return answer;
            };
            match inbound.poll_recv(&mut cx) {
                Poll::Ready(Some(ev)) => {
                    if let Some(a) = core.on_link_event(ev, mine) {
                        answer = Some(a);
                    }
                }
                Poll::Ready(None) => {
                    // Every link is gone: the core task stops.
                    core.inbound = None;
                    self.relay.wake_core();
                    return answer;
                }
                Poll::Pending => {
                    more = false;
                    break;
                }
            }
        }
        if std::mem::take(&mut core.rearm) {
            // A retry waits for a backoff earlier than the timer.
            self.rearm.notify_one();
        }
        if more {
            // More may be waiting: whoever reads is woken to go on.
            self.socket_waker.wake_by_ref();
        }
        answer
    }

    /// The core task: reads the sockets while no caller does, and keeps
    /// time, until the links are closed (or the last handle is dropped,
    /// which aborts it).
    pub(super) async fn run(self: Arc<Self>) {
        // Without heartbeats the tick only forgets abandoned calls.
        let period = self.lock().heartbeat.unwrap_or(Duration::from_secs(2));
        let mut tick = tokio::time::interval(period / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Unarmed, the timer waits "forever" (a year).
        let never = || Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let timer = tokio::time::sleep_until(never());
        let rearm = self.rearm.notified();
        // While calls wait, the core task also reads every WATCHDOG: a
        // caller that leads but is no longer polled delays others no longer.
        // (Once idle it stops; the next call restarts it, so a busy client
        // pays one extra wake-up per WATCHDOG at most.)
        let watchdog = tokio::time::sleep(WATCHDOG);
        let mut watching = false;
        tokio::pin!(timer, rearm, watchdog);
        std::future::poll_fn(|cx| {
            self.relay.set_core(cx.waker());
            // Notifications first (each poll re-registers): a call started
            // after this is either seen below or wakes the task again.
            let mut rearmed = false;
            while rearm.as_mut().poll(cx).is_ready() {
                rearm.set(self.rearm.notified());
                rearmed = true;
            }
            if watching && watchdog.as_mut().poll(cx).is_ready() {
                watching = false;
            }
            let (start_watching, armed) = {
                let mut core = self.lock();
                self.pump_locked(&mut core, None);
                if core.inbound.is_none() {
                    return Poll::Ready(());
                }
                // (Only callers that lead need watching.)
                if !watching && self.callers_read {
                    core.unwatched = core.calls.is_empty();
                }
                (
                    !watching && self.callers_read && !core.unwatched,
                    core.armed,
                )
            };
            if start_watching {
                watching = true;
                watchdog.as_mut().reset(Instant::now() + WATCHDOG);
                let _ = watchdog.as_mut().poll(cx);
            }
            if rearmed {
                timer.as_mut().reset(armed.unwrap_or_else(never));
            }
            while tick.poll_tick(cx).is_ready() {
                let mut core = self.lock();
                core.on_tick(period);
                if std::mem::take(&mut core.rearm) {
                    timer.as_mut().reset(core.armed.unwrap_or_else(never));
                }
            }
            while timer.as_mut().poll(cx).is_ready() {
                let next = self.lock().expire(Instant::now());
                timer.as_mut().reset(next.unwrap_or_else(never));
            }
            Poll::Pending
        })
        .await
    }
}

/// A caller waiting for the first event of its call; it reads the sockets
/// itself while no other caller does (see the module docs).
pub(super) struct FirstEvent<'a> {
    shared: &'a Shared,
    id: MessageId,
    slot: Arc<Slot<Answer>>,
    token: u64,
    /// It has led (it may still be the leader).
    led: bool,
    /// It has its answer (the call is no longer waiting for it).
    done: bool,
}

impl<'a> FirstEvent<'a> {
    pub(super) fn new(shared: &'a Shared, id: MessageId, slot: Arc<Slot<Answer>>) -> Self {
        FirstEvent {
            shared,
            id,
            slot,
            token: relay::token(),
            led: false,
            done: false,
        }
    }

    fn finish(&mut self, answer: Answer) -> Poll<Answer> {
        self.done = true;
        if self.led {
            self.shared.relay.resign(self.token);
        }
        Poll::Ready(answer)
    }
}

impl std::future::Future for FirstEvent<'_> {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = self.get_mut();
        if let Poll::Ready(answer) = this.slot.poll_take(cx) {
            return this.finish(answer);
        }
        if this.shared.callers_read && this.shared.relay.lead(this.token, cx.waker()) {
            this.led = true;
            if let Some(answer) = this.shared.pump(Some(this.id)) {
                return this.finish(answer);
            }
        }
        Poll::Pending
    }
}

impl Drop for FirstEvent<'_> {
    fn drop(&mut self) {
        if !self.done {
            if self.led {
                self.shared.relay.resign(self.token);
            }
            self.slot.leave();
            // Dropped before its answer: the caller gave up. The server is
            // told at once, so it stops working for nobody.
            self.shared.abandon(self.id);
        }
    }
}
