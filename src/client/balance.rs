//! The client's servers: one link per server endpoint, its health and its
//! load, and the rule that picks where the next call goes.
//!
//! A call goes to the healthy server with the fewest calls in flight from
//! this client, ties taken in turn, with one correction for speed: each
//! server's recent answer time (a moving average, halved every tick while
//! the server gets no calls, so a slow spell is not held against it for
//! ever) is compared with the fastest server's, and a server 2^k times
//! slower counts each call in flight (plus the one to send) 2^k times. So
//! servers of about the same speed share calls evenly, sequential callers
//! included, while one four times slower than the rest gets a call only
//! when they each have three more in flight than it does. Healthy means
//! connected, not suspected
//! (a server that let a call's heartbeats lapse is skipped until it speaks
//! again: each tick sends it a `_zerorpc_ping`) and not retiring (a
//! discovered address that disappeared from its name: it finishes its
//! calls and is then closed).

use crate::transport::{Link, LinkId};

/// One server as this client sees it.
pub(super) struct Server {
    pub(super) link: Link,
    /// Connected right now.
    pub(super) up: bool,
    /// A call's heartbeats lapsed: no new calls until it answers again.
    pub(super) suspect: bool,
    /// Gone from its name's addresses: no new calls; closed when idle.
    pub(super) retiring: bool,
    /// Calls in flight on it.
    pub(super) load: usize,
    /// Calls it answered (first events received).
    pub(super) answered: u64,
    /// Recent answer time, in nanoseconds (see the module docs).
    rtt_ns: f64,
    /// An answer was timed since the last tick.
    sampled: bool,
    /// Warned that it re-types message ids.
    pub(super) retyped: bool,
    /// The discovered name it is an address of (`None`: given as is).
    pub(super) origin: Option<usize>,
}

impl Server {
    pub(super) fn new(link: Link, origin: Option<usize>) -> Self {
        Server {
            link,
            up: false,
            suspect: false,
            retiring: false,
            load: 0,
            answered: 0,
            rtt_ns: 0.0,
            sampled: false,
            retyped: false,
            origin,
        }
    }

    fn healthy(&self) -> bool {
        self.up && !self.suspect && !self.retiring
    }

    /// A call it ran was answered after `rtt`.
    pub(super) fn timed(&mut self, rtt: std::time::Duration) {
        let sample = rtt.as_nanos() as f64;
        self.rtt_ns = if self.rtt_ns == 0.0 {
            sample
        } else {
            // Smooth: one late answer (a scheduling hiccup) moves it little.
            self.rtt_ns + (sample - self.rtt_ns) * 0.15
        };
        self.sampled = true;
    }

    /// What one more call costs here (lower is better): the calls in
    /// flight plus this one, doubled for each doubling of the answer time
    /// over the fastest server's (`fastest`; a server not timed yet counts
    /// as fast).
    fn cost(&self, fastest: f64) -> u64 {
        let slower = if self.rtt_ns > 0.0 && fastest.is_finite() {
            (self.rtt_ns / fastest).log2().clamp(0.0, 20.0) as u32
        } else {
            0
        };
        (self.load as u64 + 1) << slower
    }
}

/// Every server of a client, by link id (a removed server leaves a hole:
/// ids are never reused, so a late event of a removed link finds nothing).
#[derive(Default)]
pub(super) struct Servers {
    pub(super) slots: Vec<Option<Server>>,
    /// Where the next tie-break starts.
    next: usize,
}

impl Servers {
    pub(super) fn get(&self, l: LinkId) -> Option<&Server> {
        self.slots.get(l).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, l: LinkId) -> Option<&mut Server> {
        self.slots.get_mut(l).and_then(Option::as_mut)
    }

    pub(super) fn link(&self, l: LinkId) -> Option<&Link> {
        self.get(l).map(|s| &s.link)
    }

    pub(super) fn endpoint(&self, l: LinkId) -> String {
        self.get(l)
            .map_or_else(String::new, |s| s.link.endpoint.clone())
    }

    pub(super) fn push(&mut self, server: Server) -> LinkId {
        self.slots.push(Some(server));
        self.slots.len() - 1
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (LinkId, &Server)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(l, s)| s.as_ref().map(|s| (l, s)))
    }

    /// The healthy server with the fewest calls in flight, other than
    /// `avoid` when another healthy one exists (a retried call does not go
    /// back where it just failed).
    pub(super) fn pick(&mut self, avoid: Option<LinkId>) -> Option<LinkId> {
        let n = self.slots.len();
        let fastest = self
            .slots
            .iter()
            .flatten()
            .filter(|s| s.healthy() && s.rtt_ns > 0.0)
            .map(|s| s.rtt_ns)
            .fold(f64::INFINITY, f64::min);
        let mut best: Option<(bool, u64, LinkId)> = None;
        for i in 0..n {
            let l = (self.next + i) % n;
            let Some(s) = &self.slots[l] else { continue };
            if !s.healthy() {
                continue;
            }
            // Lower is better: (is the avoided one, cost).
            let key = (avoid == Some(l), s.cost(fastest));
            if best.is_none_or(|(a, cost, _)| key < (a, cost)) {
                best = Some((key.0, key.1, l));
            }
        }
        let (_, _, l) = best?;
        self.next = l + 1;
        Some(l)
    }

    /// Do answer times matter (more than one server)?
    pub(super) fn timing(&self) -> bool {
        self.slots.len() > 1
    }

    /// Once a tick: a server that got no call since the last one looks
    /// twice as fast as it did, so a slow spell is not held against it
    /// for ever.
    pub(super) fn decay(&mut self) {
        for s in self.slots.iter_mut().flatten() {
            if !std::mem::take(&mut s.sampled) {
                s.rtt_ns /= 2.0;
            }
        }
    }

    /// Take every link out (closing the client).
    pub(super) fn take_links(&mut self) -> Vec<Link> {
        std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .map(|s| s.link)
            .collect()
    }
}

impl Servers {
    /// What [`super::Client::servers`] reports.
    pub(super) fn info(&self) -> Vec<super::ServerInfo> {
        self.iter()
            .map(|(_, s)| super::ServerInfo {
                endpoint: s.link.endpoint.clone(),
                connected: s.up,
                skipped: s.suspect || s.retiring,
                in_flight: s.load,
                answered: s.answered,
            })
            .collect()
    }
}
