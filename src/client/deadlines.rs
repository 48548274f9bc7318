//! When each call times out, earliest first.
//!
//! A client's calls nearly always share one timeout, so their deadlines
//! arrive in order: those go to the back of a queue (no sifting, and the
//! oldest, usually answered, leave from the front). A deadline earlier
//! than the queue's last (a call with a shorter timeout of its own) goes to
//! a heap beside it. Entries of calls that ended stay until they are
//! reached or swept; the owner says which calls still wait.

use crate::protocol::MessageId;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use tokio::time::Instant;

#[derive(Default)]
pub(super) struct Deadlines {
    in_order: VecDeque<(Instant, MessageId)>,
    out_of_order: BinaryHeap<Reverse<(Instant, MessageId)>>,
}

impl Deadlines {
    pub(super) fn push(&mut self, at: Instant, id: MessageId) {
        if self.in_order.back().is_none_or(|&(last, _)| last <= at) {
            self.in_order.push_back((at, id));
        } else {
            self.out_of_order.push(Reverse((at, id)));
        }
    }

    /// The earliest deadline.
    pub(super) fn first(&self) -> Option<(Instant, MessageId)> {
        let a = self.in_order.front().copied();
        let b = self.out_of_order.peek().map(|Reverse(e)| *e);
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Remove the earliest deadline.
    pub(super) fn pop(&mut self) -> Option<(Instant, MessageId)> {
        let first = self.first()?;
        match self.in_order.front() {
            Some(&front) if front == first => self.in_order.pop_front(),
            _ => self.out_of_order.pop().map(|Reverse(e)| e),
        }
    }

    /// Entries, stale ones included.
    pub(super) fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }

    /// Drop the entries of calls that no longer wait: those at the front of
    /// the queue at once (cheap, and most are), all of them when stale ones
    /// outnumber `waiting` (amortised O(1) per call).
    pub(super) fn sweep(&mut self, waiting: usize, still_waits: impl Fn(&MessageId) -> bool) {
        while self
            .in_order
            .front()
            .is_some_and(|(_, id)| !still_waits(id))
        {
            self.in_order.pop_front();
        }
        if self.len() >= 2 * waiting + 64 {
            self.in_order.retain(|(_, id)| still_waits(id));
            self.out_of_order.retain(|Reverse((_, id))| still_waits(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_first_in_any_order_and_sweeps_what_ended() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let ids: Vec<MessageId> = (0..6).map(|_| MessageId::new()).collect();
        let mut d = Deadlines::default();
        // In order, then a shorter timeout, then in order again.
        for (i, ms) in [(0, 100), (1, 200), (2, 50), (3, 300), (4, 20), (5, 300)] {
            d.push(at(ms), ids[i]);
        }
        assert_eq!(d.in_order.len(), 4);
        let order: Vec<u64> = std::iter::from_fn(|| d.pop())
            .map(|(t, _)| (t - t0).as_millis() as u64)
            .collect();
        assert_eq!(order, [20, 50, 100, 200, 300, 300]);

        // Calls 0..3 ended: the front goes at once; all go when stale
        // entries outnumber the waiting calls.
        for (i, ms) in [(0, 10), (1, 20), (2, 30), (3, 40)] {
            d.push(at(ms), ids[i]);
        }
        let ended = [ids[0], ids[1]];
        d.sweep(2, |id| !ended.contains(id));
        assert_eq!(d.first().map(|(_, id)| id), Some(ids[2]));
        assert_eq!(d.len(), 2);
    }
}
