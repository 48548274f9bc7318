//! Who reads a client's sockets, and when; and the table of calls they
//! feed, under one lock.
//!
//! A call costs least when nobody has to be woken to deliver its reply. So
//! on a `current_thread` runtime a caller waiting for its first event reads
//! the sockets itself while no other caller does: it *leads*, routing every
//! event it reads to its owner's slot and taking its own reply directly
//! (`call.rs`, `Pending`). Waking a separate reader task instead cost about
//! 5% of a sequential call on loopback. Everything else is read by the
//! core task ([`Reader::run`]): stream items, heartbeats, connection
//! changes, and replies while no caller leads. The core task also keeps
//! time — heartbeats, and every call's deadline in one queue with one
//! timer (a timer per call cost about 4% of pipelined throughput) — and,
//! every [`WATCHDOG`] while calls wait, reads on behalf of a leader that is
//! no longer being polled (a caller inside a `select!` whose other branch
//! won, say), so such a caller delays the others by at most that much.
//!
//! On a multi-thread runtime callers never lead: the core task reading in
//! parallel with the callers is faster there (a caller reading for everyone
//! serialised the two, costing a third of the 64 KiB throughput).
//!
//! The sockets only ever hold one waker, the [`Relay`]'s, which wakes the
//! leader if there is one and the core task otherwise; so whoever reads
//! next, no wake-up is lost. A leader that finishes or gives up without
//! acting on a wake-up passes it to the core task.

use super::calls::{Route, Table};
use super::reply::{Answered, Slot};
use super::retry::Retry;
use crate::error::Error;
use crate::protocol::MessageId;
use crate::telemetry::CallCounters;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// The client's call table and who reads its sockets: shared by its
/// callers and its core task.
pub(super) struct Reader {
    table: Mutex<Table>,
    /// A call has a deadline earlier than the core's timer.
    rearm: tokio::sync::Notify,
    /// Who reads the sockets (see the module docs).
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
/// before the core task reads it (see [`Reader::run`]).
const WATCHDOG: Duration = Duration::from_millis(50);

impl Reader {
    pub(super) fn new(table: Table) -> Self {
        let relay = Arc::new(Relay::default());
        Reader {
            table: Mutex::new(table),
            rearm: tokio::sync::Notify::new(),
            socket_waker: Waker::from(relay.clone()),
            relay,
            callers_read: tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::CurrentThread,
        }
    }

    /// Nothing holding the lock waits or can panic, so a poisoned lock
    /// (impossible in practice) is used as it is.
    pub(super) fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a call and send it (or queue it until a server is up).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        &self,
        id: MessageId,
        frame: bytes::Bytes,
        method: &str,
        timeout: Option<Duration>,
        retry: Option<Retry>,
        reply: Arc<Slot<Answered>>,
        route: Route,
        now: Instant,
        upload: Option<Arc<super::upload::Upload>>,
    ) -> Result<CallCounters, Error> {
        let (wake, counters) = self
            .lock()
            .start(id, frame, method, timeout, retry, reply, route, now, upload)?;
        if wake {
            self.rearm.notify_one();
        }
        Ok(counters)
    }

    /// Stop taking calls, let those in flight finish for up to `grace`,
    /// fail the rest with `Error::Closed`, and close the sockets. How many
    /// calls failed; `None` when it was closed already.
    pub(super) async fn close(&self, grace: Duration) -> Option<usize> {
        if !self.lock().close() {
            return None;
        }
        // Poll the call table: closing is rare, and this keeps the hot path
        // free of an "idle" notification.
        let deadline = Instant::now() + grace;
        while self.lock().in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (failed, links, inbound) = self.lock().fail_all();
        for link in links {
            link.close(Duration::from_millis(200)).await;
        }
        // Dropping the sockets' receive halves closes them.
        drop(inbound);
        Some(failed)
    }

    /// The caller gave up on call `id`: forget it, and tell its server.
    pub(super) fn abandon(&self, id: MessageId) {
        self.lock().abandon(id);
    }

    /// Become (or stay) the caller that reads the sockets; false when
    /// another caller does, or callers do not read (a multi-thread
    /// runtime).
    pub(super) fn lead(&self, token: u64, waker: &Waker) -> bool {
        self.callers_read && self.relay.lead(token, waker)
    }

    /// Stop leading (see [`Relay::resign`]).
    pub(super) fn resign(&self, token: u64) {
        self.relay.resign(token);
    }

    /// Read what the sockets have (up to [`BATCH`] events) and route it.
    /// Returns the answer of call `mine` if it was among them.
    pub(super) fn pump(&self, mine: Option<MessageId>) -> Option<Answered> {
        self.pump_locked(&mut self.lock(), mine)
    }

    fn pump_locked(&self, core: &mut Table, mine: Option<MessageId>) -> Option<Answered> {
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

/// Routes socket wake-ups to whoever reads the sockets now.
#[derive(Default)]
pub(super) struct Relay(Mutex<Readers>);

#[derive(Default)]
struct Readers {
    leader: Option<Leader>,
    /// The core task, which reads when no caller leads.
    core: Option<Waker>,
}

struct Leader {
    token: u64,
    waker: Waker,
    /// Woken since it last read: it owes the sockets a read.
    woken: bool,
}

/// Tells waiting callers apart (a caller's token is unique for the
/// process's life).
pub(super) fn token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Nothing holding these locks waits or can panic, so a poisoned lock
/// (impossible in practice) is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Relay {
    /// Become (or stay) the leader. False when another caller leads.
    pub(super) fn lead(&self, token: u64, waker: &Waker) -> bool {
        let mut readers = lock(&self.0);
        match &mut readers.leader {
            Some(l) if l.token == token => {
                l.woken = false;
                if !l.waker.will_wake(waker) {
                    l.waker = waker.clone();
                }
                true
            }
            Some(_) => false,
            None => {
                readers.leader = Some(Leader {
                    token,
                    waker: waker.clone(),
                    woken: false,
                });
                true
            }
        }
    }

    /// Stop leading (the caller got its reply, or gave up). A wake-up it has
    /// not acted on goes to the core task. Does nothing for a non-leader.
    pub(super) fn resign(&self, token: u64) {
        let mut readers = lock(&self.0);
        if readers.leader.as_ref().is_some_and(|l| l.token == token) {
            let owed = readers.leader.take().is_some_and(|l| l.woken);
            if owed {
                if let Some(core) = &readers.core {
                    core.wake_by_ref();
                }
            }
        }
    }

    /// Wake the core task whoever leads (the sockets are gone, say).
    pub(super) fn wake_core(&self) {
        if let Some(core) = &lock(&self.0).core {
            core.wake_by_ref();
        }
    }

    /// The core task's waker (it reads when no caller leads).
    pub(super) fn set_core(&self, waker: &Waker) {
        let mut readers = lock(&self.0);
        if !readers.core.as_ref().is_some_and(|w| w.will_wake(waker)) {
            readers.core = Some(waker.clone());
        }
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut readers = lock(&self.0);
        match &mut readers.leader {
            // Already woken: it has yet to read, and will.
            Some(l) if l.woken => {}
            Some(l) => {
                l.woken = true;
                l.waker.wake_by_ref();
            }
            None => {
                if let Some(core) = &readers.core {
                    core.wake_by_ref();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_waker::{counter, woken};

    #[test]
    fn wakes_go_to_the_leader_else_to_the_core() {
        let relay = Arc::new(Relay::default());
        let socket = Waker::from(relay.clone());
        let (core, core_waker) = counter();
        let (a, a_waker) = counter();
        let (b, b_waker) = counter();
        relay.set_core(&core_waker);

        socket.wake_by_ref();
        assert_eq!(
            (woken(&core), woken(&a)),
            (1, 0),
            "no leader: the core reads"
        );

        assert!(relay.lead(1, &a_waker));
        assert!(!relay.lead(2, &b_waker), "one leader at a time");
        socket.wake_by_ref();
        socket.wake_by_ref();
        assert_eq!(
            (woken(&core), woken(&a), woken(&b)),
            (1, 1, 0),
            "the leader, once"
        );

        // A leader that reads again is woken again.
        assert!(relay.lead(1, &a_waker));
        socket.wake_by_ref();
        assert_eq!(woken(&a), 2);

        // It resigns without reading: the core task takes the wake-up over.
        relay.resign(1);
        assert_eq!(woken(&core), 2);
        // A non-leader resigning changes nothing.
        relay.resign(2);
        assert_eq!(woken(&core), 2);

        assert!(relay.lead(2, &b_waker), "the next caller may lead");
        relay.resign(2);
        assert_eq!(
            woken(&core),
            2,
            "a leader that owes nothing hands nothing over"
        );
    }
}
