//! When requests' callers stop waiting: every request's deadline, earliest
//! first, behind one timer.

use super::channel::ChanKey;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// A deadline's place: its instant, and a number telling apart equal ones.
pub(super) type Slot = (Instant, u64);

/// The deadlines of the requests that have one; an entry leaves when its
/// request ends.
pub(super) struct Deadlines {
    by_time: BTreeMap<Slot, ChanKey>,
    next: u64,
    /// Fires at the earliest deadline.
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            by_time: BTreeMap::new(),
            next: 0,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timer_at: None,
        }
    }
}

impl Deadlines {
    /// Note request `key`'s deadline; its slot, to remove it by.
    pub(super) fn add(&mut self, at: Instant, key: ChanKey) -> Slot {
        self.next += 1;
        let slot = (at, self.next);
        self.by_time.insert(slot, key);
        slot
    }

    pub(super) fn remove(&mut self, slot: &Slot) {
        self.by_time.remove(slot);
    }

    /// The next request whose deadline has passed (removed), or `Pending`
    /// with the timer set for the earliest one.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<ChanKey> {
        loop {
            let Some((&slot, _)) = self.by_time.first_key_value() else {
                self.timer_at = None;
                return Poll::Pending;
            };
            if self.timer_at != Some(slot.0) {
                self.timer.as_mut().reset(slot.0);
                self.timer_at = Some(slot.0);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.timer_at = None;
            if let Some(key) = self.by_time.remove(&slot) {
                return Poll::Ready(key);
            }
        }
    }
}
