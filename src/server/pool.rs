//! The request pool (`pool_size`): how many requests run at once, and who
//! goes next when they are all taken.
//!
//! Without care, one client can take every slot and fill the waiting line
//! (100 000 `sleep(60)` calls), and nobody else is answered for a minute.
//! So:
//! - one client runs at most `per_client` requests at once (default: all
//!   slots but one, so there is always room for someone else);
//! - waiting requests are started round-robin between clients, not in
//!   arrival order;
//! - the waiting line is bounded (requests and argument bytes); a client
//!   that already has its fair share of it (the bound divided by the
//!   clients waiting) is answered `ERR ServerBusy` instead of queued, while
//!   a client with less than its share is still queued.
//!
//! The pool only counts; the server core owns the requests (a waiting one
//! keeps its handler future in its channel until the pool starts it).

use super::channel::ChanKey;
use crate::transport::LinkId;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// Default waiting requests, all clients together.
pub const DEFAULT_POOL_QUEUE: usize = 1024;
/// Default argument bytes of waiting requests, all clients together.
pub const DEFAULT_POOL_QUEUE_BYTES: usize = 64 << 20;

/// A client: the link and routing identity it came through.
type Client = (LinkId, Bytes);

/// What to do with a new request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Start it now.
    Run,
    /// It waits for a slot.
    Wait,
    /// The waiting line is full and this client has its share of it.
    Busy,
}

#[derive(Default)]
struct Load {
    running: usize,
    /// Waiting requests, oldest first, with their argument bytes.
    waiting: VecDeque<(ChanKey, usize)>,
    waiting_bytes: usize,
}

pub(super) struct Pool {
    size: usize,
    per_client: usize,
    queue: usize,
    queue_bytes: usize,
    running: usize,
    waiting: usize,
    waiting_bytes: usize,
    clients: HashMap<Client, Load>,
    /// Clients with waiting requests, in the order they get the next slot.
    turn: VecDeque<Client>,
}

impl Pool {
    pub(super) fn new(size: usize, per_client: Option<usize>, queue: usize, bytes: usize) -> Self {
        let size = size.max(1);
        Pool {
            size,
            per_client: per_client.unwrap_or(size - 1).clamp(1, size),
            queue: queue.max(1),
            queue_bytes: bytes.max(1),
            running: 0,
            waiting: 0,
            waiting_bytes: 0,
            clients: HashMap::new(),
            turn: VecDeque::new(),
        }
    }

    /// A new request `key` with `bytes` of arguments.
    pub(super) fn admit(&mut self, key: &ChanKey, bytes: usize) -> Admission {
        let client = (key.link, key.identity.clone());
        let load = self.clients.entry(client.clone()).or_default();
        if self.running < self.size && load.running < self.per_client && load.waiting.is_empty() {
            load.running += 1;
            self.running += 1;
            return Admission::Run;
        }
        let queued = !load.waiting.is_empty();
        let waiting_clients = self.turn.len() + usize::from(!queued);
        let full = self.waiting >= self.queue || self.waiting_bytes + bytes > self.queue_bytes;
        let has_share = load.waiting.len() >= (self.queue / waiting_clients).max(1)
            || load.waiting_bytes + bytes > (self.queue_bytes / waiting_clients).max(1);
        if full && has_share {
            self.forget_if_idle(&client);
            return Admission::Busy;
        }
        let load = self.clients.entry(client.clone()).or_default();
        load.waiting.push_back((key.clone(), bytes));
        load.waiting_bytes += bytes;
        self.waiting += 1;
        self.waiting_bytes += bytes;
        if !queued {
            self.turn.push_back(client);
        }
        Admission::Wait
    }

    /// A waiting request that may start now, if any (counted as running).
    pub(super) fn next(&mut self) -> Option<ChanKey> {
        for _ in 0..self.turn.len() {
            if self.running >= self.size {
                return None;
            }
            let client = self.turn.pop_front()?;
            let Some(load) = self.clients.get_mut(&client) else {
                continue;
            };
            if load.running >= self.per_client {
                self.turn.push_back(client);
                continue;
            }
            let Some((key, bytes)) = load.waiting.pop_front() else {
                continue;
            };
            load.waiting_bytes -= bytes;
            load.running += 1;
            self.waiting -= 1;
            self.waiting_bytes -= bytes;
            self.running += 1;
            if !load.waiting.is_empty() {
                self.turn.push_back(client);
            }
            return Some(key);
        }
        None
    }

    /// Request `key` ended (answered, cancelled or its client gone), after
    /// running or while still waiting.
    pub(super) fn finished(&mut self, key: &ChanKey, was_running: bool) {
        let client = (key.link, key.identity.clone());
        let Some(load) = self.clients.get_mut(&client) else {
            return;
        };
        if was_running {
            load.running = load.running.saturating_sub(1);
            self.running = self.running.saturating_sub(1);
        } else if let Some(at) = load.waiting.iter().position(|(k, _)| k == key) {
            if let Some((_, bytes)) = load.waiting.remove(at) {
                load.waiting_bytes -= bytes;
                self.waiting -= 1;
                self.waiting_bytes -= bytes;
            }
            if load.waiting.is_empty() {
                self.turn.retain(|c| c != &client);
            }
        }
        self.forget_if_idle(&client);
    }

    fn forget_if_idle(&mut self, client: &Client) {
        if self
            .clients
            .get(client)
            .is_some_and(|l| l.running == 0 && l.waiting.is_empty())
        {
            self.clients.remove(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client: &'static str, id: u32) -> ChanKey {
        ChanKey {
            link: 0,
            identity: Bytes::from_static(client.as_bytes()),
            id: Bytes::from(id.to_be_bytes().to_vec()),
        }
    }

    #[test]
    fn one_client_leaves_a_slot_for_others_and_the_line_is_bounded() {
        let mut pool = Pool::new(4, None, 10, 1 << 20);
        // The attacker gets 3 of 4 slots, then waits.
        for i in 0..3 {
            assert_eq!(pool.admit(&key("a", i), 10), Admission::Run);
        }
        assert_eq!(pool.admit(&key("a", 3), 10), Admission::Wait);
        // Someone else still runs at once.
        assert_eq!(pool.admit(&key("b", 0), 10), Admission::Run);
        // The line fills with the attacker's requests, then refuses them...
        for i in 4..13 {
            assert_eq!(pool.admit(&key("a", i), 10), Admission::Wait, "{i}");
        }
        assert_eq!(pool.admit(&key("a", 13), 10), Admission::Busy);
        // ...but still queues a client that has less than its share.
        assert_eq!(pool.admit(&key("c", 0), 10), Admission::Wait);
        // b's freed slot: the attacker is at its per-client cap, so c gets it.
        pool.finished(&key("b", 0), true);
        assert_eq!(pool.next(), Some(key("c", 0)));
        assert_eq!(pool.next(), None, "every slot is taken");
    }

    #[test]
    fn freed_slots_go_round_robin_between_clients() {
        let mut pool = Pool::new(2, Some(2), 10, 1 << 20);
        for i in 0..2 {
            assert_eq!(pool.admit(&key("a", i), 1), Admission::Run);
        }
        for i in 2..6 {
            assert_eq!(pool.admit(&key("a", i), 1), Admission::Wait);
        }
        assert_eq!(pool.admit(&key("b", 0), 1), Admission::Wait);
        assert_eq!(pool.admit(&key("b", 1), 1), Admission::Wait);
        // a queued first, so a goes first; then b, though a has more waiting.
        pool.finished(&key("a", 0), true);
        assert_eq!(pool.next(), Some(key("a", 2)));
        pool.finished(&key("a", 1), true);
        assert_eq!(pool.next(), Some(key("b", 0)));
        pool.finished(&key("a", 2), true);
        assert_eq!(pool.next(), Some(key("a", 3)));
        pool.finished(&key("b", 0), true);
        assert_eq!(pool.next(), Some(key("b", 1)));
    }

    #[test]
    fn a_cancelled_waiting_request_leaves_the_line() {
        let mut pool = Pool::new(1, None, 10, 1 << 20);
        assert_eq!(pool.admit(&key("a", 0), 5), Admission::Run);
        assert_eq!(pool.admit(&key("a", 1), 5), Admission::Wait);
        pool.finished(&key("a", 1), false);
        pool.finished(&key("a", 0), true);
        assert_eq!(pool.next(), None);
        assert!(pool.clients.is_empty() && pool.turn.is_empty());
        assert_eq!((pool.waiting, pool.waiting_bytes, pool.running), (0, 0, 0));
    }

    #[test]
    fn argument_bytes_bound_the_line_too() {
        let mut pool = Pool::new(1, None, 100, 1000);
        assert_eq!(pool.admit(&key("a", 0), 10), Admission::Run);
        assert_eq!(pool.admit(&key("a", 1), 900), Admission::Wait);
        assert_eq!(pool.admit(&key("a", 2), 200), Admission::Busy);
        assert_eq!(pool.admit(&key("b", 0), 50), Admission::Wait);
    }
}
