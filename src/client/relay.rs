//! The hand-off of socket wake-ups between a leading caller and the core
//! task (why callers read at all is in `driver.rs`).
//!
//! The sockets only ever hold one waker, the [`Relay`]'s, which wakes the
//! leader if there is one and the core task otherwise; so whoever reads
//! next, no wake-up is lost. A leader that finishes or gives up without
//! acting on a wake-up passes it to the core task. Each caller's answer
//! lands in its [`Slot`], put there by whoever read it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

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

/// Where a caller's answer lands, put there by whoever read it.
pub(super) struct Slot<T>(Mutex<SlotState<T>>);

struct SlotState<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The caller is gone: nobody will take a value.
    gone: bool,
}

impl<T> Slot<T> {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Slot(Mutex::new(SlotState {
            value: None,
            waker: None,
            gone: false,
        })))
    }

    /// Hand the caller its value; false (and the value dropped) when the
    /// caller is gone.
    pub(super) fn fill(&self, value: T) -> bool {
        let mut state = lock(&self.0);
        if state.gone {
            return false;
        }
        state.value = Some(value);
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// The value if it is there; otherwise wake `cx` when it comes.
    pub(super) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = lock(&self.0);
        if let Some(v) = state.value.take() {
            return Poll::Ready(v);
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The caller will take nothing more.
    pub(super) fn leave(&self) {
        let mut state = lock(&self.0);
        state.gone = true;
        state.value = None;
        state.waker = None;
    }

    pub(super) fn is_gone(&self) -> bool {
        lock(&self.0).gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count::default());
        (c.clone(), Waker::from(c))
    }

    fn woken(c: &Count) -> usize {
        c.0.load(Ordering::SeqCst)
    }

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

    #[test]
    fn slots_hold_a_value_until_taken_and_refuse_after_the_caller_left() {
        let slot = Slot::new();
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(slot.poll_take(&mut cx).is_pending());
        assert!(slot.fill(7));
        assert_eq!(woken(&count), 1);
        assert_eq!(slot.poll_take(&mut cx), Poll::Ready(7));
        assert!(slot.poll_take(&mut cx).is_pending());
        assert!(!slot.is_gone());
        slot.leave();
        assert!(slot.is_gone());
        assert!(!slot.fill(8));
        assert!(slot.poll_take(&mut cx).is_pending());
        assert_eq!(woken(&count), 1, "nothing was filled");
    }
}
