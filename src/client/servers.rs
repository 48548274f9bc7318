//! The client's servers, their health and load, and the rule that picks
//! where the next call goes. A server is a connected link (one socket per
//! endpoint the client connects to), or one peer of a bound link (a worker
//! that connected to the client: the bound socket is a ROUTER, so each
//! worker is addressed by its identity and every event of a call reaches
//! the worker that runs it).
//!
//! A call goes to the healthy server with the fewest calls in flight from
//! this client, ties taken in turn, with one correction for speed: each
//! server's answer time is compared with the fastest server's, and a server
//! 2^k times slower (k ≥ 2) counts each call in flight (plus the one to
//! send) 2^(k-1) times. The answer time is a moving average of answers (an
//! outlier moves it by at most half), forgotten after a tick in which the
//! server had no call (so it is tried again), and never less than how long
//! a busy server has gone without answering (so a server whose calls hang,
//! a partitioned host, looks slower by the moment instead of drawing more).
//! Servers within four times of each other's speed share calls evenly,
//! sequential callers included; one eight times slower than the rest gets
//! a call only when they each have three more in flight than it does.
//! Healthy means connected, not suspected (a server that let a call's
//! heartbeats lapse is skipped until it speaks again: each tick sends it a
//! `_zerorpc_ping`), not retiring (a discovered address that disappeared
//! from its name: it finishes its calls and is then closed) and not
//! draining (it said it is stopping: its calls finish, new ones go
//! elsewhere).

use crate::logging::hex;
use crate::protocol::framing;
use crate::transport::{Link, LinkId};
use bytes::Bytes;
use std::collections::HashMap;
use tokio::time::Instant;
use zerorpc_zeromq::ZmqMessage;

/// Index of a server within its client (never reused).
pub(super) type ServerId = usize;

/// One server as this client sees it.
pub(super) struct Server {
    /// The socket it is reached through.
    link: LinkId,
    /// Its identity, when it is a peer of a bound link.
    peer: Option<Bytes>,
    /// Its endpoint (for a worker: the bound endpoint and its identity).
    pub(super) endpoint: String,
    /// Connected right now.
    pub(super) up: bool,
    /// A call's heartbeats lapsed: no new calls until it answers again.
    pub(super) suspect: bool,
    /// Gone from its name's addresses: no new calls; closed when idle.
    pub(super) retiring: bool,
    /// Calls in flight on it (see [`Server::add_call`]).
    load: usize,
    /// While it has calls in flight: since when it has not answered one.
    waiting_since: Option<Instant>,
    /// When it last sent anything (its last sign of life).
    pub(super) last_heard: Option<Instant>,
    /// A `_zerorpc_ping` went to it then (its calls were overdue), and it
    /// has sent nothing since.
    pub(super) probed: Option<Instant>,
    /// It said it is stopping (`_zpc_drain`): no new calls; its calls in
    /// flight finish, and those it never read are sent elsewhere.
    pub(super) draining: bool,
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
    /// Why its last connect attempt failed, until it connects.
    pub(super) refused: Option<String>,
    /// Its name, once asked (`_zrpc_server_name`), for calls sent to a
    /// server by name. Asked again after each new connection.
    pub(super) name: Option<Named>,
}

/// What a server answered when asked its name.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Named {
    /// A zrpc server, and its name.
    Server(String),
    /// A zrpc broker, and the names of its workers (PROTOCOL.md §12.2): a
    /// call to one of them goes through it, naming it in the header.
    Broker(Vec<String>),
    /// Not zrpc: no name.
    None,
}

impl Named {
    pub(super) fn from_answer(v: rmpv::Value) -> Named {
        match v {
            rmpv::Value::String(s) => s.into_str().map_or(Named::None, Named::Server),
            rmpv::Value::Array(names) => Named::Broker(
                names
                    .into_iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => Named::None,
        }
    }
}

impl Server {
    fn new(link: LinkId, peer: Option<Bytes>, endpoint: String, origin: Option<usize>) -> Self {
        Server {
            link,
            peer,
            endpoint,
            up: false,
            suspect: false,
            retiring: false,
            load: 0,
            waiting_since: None,
            last_heard: None,
            probed: None,
            draining: false,
            answered: 0,
            rtt_ns: 0.0,
            sampled: false,
            retyped: false,
            origin,
            refused: None,
            name: None,
        }
    }

    /// Takes new calls: connected, not suspected, not retiring (a
    /// draining one only when no other will do).
    pub(super) fn usable(&self) -> bool {
        self.up && !self.suspect && !self.retiring
    }

    fn healthy(&self) -> bool {
        self.usable() && !self.draining
    }

    /// Calls in flight on it.
    pub(super) fn load(&self) -> usize {
        self.load
    }

    /// A call went to it at `now`.
    pub(super) fn add_call(&mut self, now: Instant) {
        if self.load == 0 {
            self.waiting_since = Some(now);
        }
        self.load += 1;
    }

    /// A call left it (answered, failed or moved).
    pub(super) fn remove_call(&mut self) {
        self.load = self.load.saturating_sub(1);
        if self.load == 0 {
            self.waiting_since = None;
        }
    }

    /// A call it ran was answered after `rtt`, at `now`.
    pub(super) fn timed(&mut self, rtt: std::time::Duration, now: Instant) {
        let sample = rtt.as_nanos() as f64;
        self.rtt_ns = if self.rtt_ns == 0.0 {
            sample
        } else {
            // Smooth, and bound what one outlier (a scheduling hiccup) can
            // do: at most +45% per answer.
            let sample = sample.min(self.rtt_ns * 4.0);
            self.rtt_ns + (sample - self.rtt_ns) * 0.15
        };
        self.sampled = true;
        if self.load > 0 {
            self.waiting_since = Some(now);
        }
    }

    /// Has it had calls in flight for `longer` without a sign of life?
    pub(super) fn overdue(&self, now: Instant, longer: std::time::Duration) -> bool {
        let Some(busy) = self.waiting_since else {
            return false;
        };
        let since = self.last_heard.map_or(busy, |h| h.max(busy));
        now.saturating_duration_since(since) > longer
    }

    /// Its answer time as judged at `now`: the average, or how long it has
    /// been busy without answering, whichever is longer (0: not known).
    fn answer_time(&self, now: Instant) -> f64 {
        let waiting = self
            .waiting_since
            .map_or(0.0, |t| now.saturating_duration_since(t).as_nanos() as f64);
        self.rtt_ns.max(waiting)
    }

    /// What one more call costs here (lower is better): the calls in
    /// flight plus this one, doubled for each doubling of the answer time
    /// over the fastest server's (`fastest`) beyond the first two (a server
    /// not timed yet counts as fast).
    fn cost(&self, fastest: f64, now: Instant) -> u64 {
        let time = self.answer_time(now);
        let slower = if time > 0.0 && fastest.is_finite() && fastest > 0.0 {
            ((time / fastest).log2() - 1.0).clamp(0.0, 20.0) as u32
        } else {
            0
        };
        (self.load as u64 + 1) << slower
    }
}

/// Every link and server of a client (a removed one leaves a hole: ids are
/// never reused, so a late event of a removed one finds nothing).
#[derive(Default)]
pub(super) struct Servers {
    slots: Vec<Option<Server>>,
    links: Vec<Option<Link>>,
    /// The server of each connected link.
    by_link: Vec<Option<ServerId>>,
    /// The servers that are peers of bound links.
    by_peer: HashMap<(LinkId, Bytes), ServerId>,
    /// Where the next tie-break starts.
    next: usize,
}

impl Servers {
    pub(super) fn get(&self, id: ServerId) -> Option<&Server> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, id: ServerId) -> Option<&mut Server> {
        self.slots.get_mut(id).and_then(Option::as_mut)
    }

    pub(super) fn endpoint(&self, id: ServerId) -> String {
        self.get(id)
            .map_or_else(String::new, |s| s.endpoint.clone())
    }

    /// The id the next link gets.
    pub(super) fn next_link(&self) -> LinkId {
        self.links.len()
    }

    /// Add a link: a connected one is a server (returned); a bound one
    /// gets a server per peer as they connect ([`Servers::peer_up`]).
    pub(super) fn add_link(&mut self, link: Link, origin: Option<usize>) -> Option<ServerId> {
        let l = self.links.len();
        let server = link.connected.then(|| {
            let s = Server::new(l, None, link.endpoint.clone(), origin);
            self.slots.push(Some(s));
            self.slots.len() - 1
        });
        self.by_link.push(server);
        self.links.push(Some(link));
        server
    }

    /// The server of connected link `l`.
    pub(super) fn of_link(&self, l: LinkId) -> Option<ServerId> {
        self.by_link.get(l).copied().flatten()
    }

    /// The server a message received on link `l` comes from.
    pub(super) fn of_message(&self, l: LinkId, msg: &ZmqMessage) -> Option<ServerId> {
        match self.of_link(l) {
            Some(id) => Some(id),
            None => self.by_peer.get(&(l, msg.get(0)?.clone())).copied(),
        }
    }

    /// A worker connected to bound link `l`.
    pub(super) fn peer_up(&mut self, l: LinkId, peer: Bytes) -> Option<ServerId> {
        let link = self.links.get(l)?.as_ref()?;
        if link.connected {
            return None;
        }
        let endpoint = format!("{}#{}", link.endpoint, hex(&peer));
        let mut s = Server::new(l, Some(peer.clone()), endpoint, None);
        s.up = true;
        self.slots.push(Some(s));
        let id = self.slots.len() - 1;
        self.by_peer.insert((l, peer), id);
        Some(id)
    }

    /// A worker of bound link `l` went: its server, now removed.
    pub(super) fn peer_gone(&mut self, l: LinkId, peer: Bytes) -> Option<ServerId> {
        let id = self.by_peer.remove(&(l, peer))?;
        if let Some(s) = self.get_mut(id) {
            s.up = false;
        }
        Some(id)
    }

    /// Send `payload` to server `id`.
    pub(super) fn send(&self, id: ServerId, payload: Bytes) {
        let Some(s) = self.get(id) else { return };
        let Some(link) = self.links.get(s.link).and_then(Option::as_ref) else {
            return;
        };
        let route = s.peer.as_slice();
        link.send(framing::message(route, payload));
    }

    /// Drop server `id`'s connection and connect afresh (it is a connected
    /// link's; a worker of a bound link cannot be reached anew).
    pub(super) fn reconnect(&self, id: ServerId) {
        let Some(s) = self.get(id).filter(|s| s.peer.is_none()) else {
            return;
        };
        if let Some(link) = self.links.get(s.link).and_then(Option::as_ref) {
            link.reconnect();
        }
    }

    /// Forget server `id`; returns its link if that closed with it (to be
    /// forgotten by the inbound side too).
    pub(super) fn remove(&mut self, id: ServerId) -> Option<LinkId> {
        let s = self.slots.get_mut(id)?.take()?;
        if let Some(peer) = s.peer {
            self.by_peer.remove(&(s.link, peer));
            return None;
        }
        if let Some(entry) = self.by_link.get_mut(s.link) {
            *entry = None;
        }
        self.links.get_mut(s.link)?.take();
        Some(s.link)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (ServerId, &Server)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(l, s)| s.as_ref().map(|s| (l, s)))
    }

    /// The healthy server with the fewest calls in flight, other than
    /// `avoid` when another healthy one exists (a retried call does not go
    /// back where it just failed). A draining server only when no other
    /// is healthy: it still answers what it reads.
    pub(super) fn pick(&mut self, avoid: Option<ServerId>) -> Option<ServerId> {
        let n = self.slots.len();
        // One server (the common case): nothing to weigh.
        if n == 1 {
            return self.slots[0].as_ref().filter(|s| s.usable()).map(|_| 0);
        }
        let now = Instant::now();
        let fastest = self
            .slots
            .iter()
            .flatten()
            .filter(|s| s.healthy())
            .map(|s| s.answer_time(now))
            .filter(|&t| t > 0.0)
            .fold(f64::INFINITY, f64::min);
        let mut best: Option<(bool, u64, ServerId)> = None;
        for i in 0..n {
            let l = (self.next + i) % n;
            let Some(s) = &self.slots[l] else { continue };
            if !s.usable() {
                continue;
            }
            // Lower is better: (is the avoided one or a draining one, cost).
            let key = (avoid == Some(l) || s.draining, s.cost(fastest, now));
            if best.is_none_or(|(a, cost, _)| key < (a, cost)) {
                best = Some((key.0, key.1, l));
            }
        }
        let (_, _, l) = best?;
        self.next = l + 1;
        Some(l)
    }

    /// The usable server called `name`, or a usable broker with a worker
    /// called so (then true: the call names it in its header).
    pub(super) fn named(&self, name: &str) -> Option<(ServerId, bool)> {
        let server = self
            .iter()
            .find(|(_, s)| s.usable() && matches!(&s.name, Some(Named::Server(n)) if n == name));
        if let Some((id, _)) = server {
            return Some((id, false));
        }
        self.iter()
            .find(|(_, s)| {
                s.usable()
                    && matches!(&s.name, Some(Named::Broker(ws)) if ws.iter().any(|w| w == name))
            })
            .map(|(id, _)| (id, true))
    }

    /// Forget what the brokers said their workers are called (to ask
    /// again); which brokers.
    pub(super) fn forget_brokers_names(&mut self) -> Vec<ServerId> {
        let mut brokers = Vec::new();
        for (id, s) in self.slots.iter_mut().enumerate() {
            if let Some(s) = s
                .as_mut()
                .filter(|s| matches!(s.name, Some(Named::Broker(_))))
            {
                s.name = None;
                brokers.push(id);
            }
        }
        brokers
    }

    /// Usable servers whose name has not been asked yet.
    pub(super) fn unnamed(&self) -> Vec<ServerId> {
        self.iter()
            .filter(|(_, s)| s.usable() && s.name.is_none())
            .map(|(id, _)| id)
            .collect()
    }

    /// What each server is called, for an error naming them.
    pub(super) fn names(&self) -> Vec<String> {
        self.iter()
            .map(|(_, s)| match (s.usable(), s.name.as_ref()) {
                (false, _) => format!("{} (not connected)", s.endpoint),
                (true, Some(Named::Server(name))) => format!("{name} ({})", s.endpoint),
                (true, Some(Named::Broker(workers))) => {
                    format!(
                        "a broker at {} (workers: {})",
                        s.endpoint,
                        workers.join(", ")
                    )
                }
                (true, Some(Named::None)) => format!("{} (not zrpc: no name)", s.endpoint),
                (true, None) => format!("{} (did not say its name)", s.endpoint),
            })
            .collect()
    }

    /// Is a healthy server other than `s` there?
    pub(super) fn another_healthy(&self, s: ServerId) -> bool {
        self.iter().any(|(id, server)| id != s && server.healthy())
    }

    /// Do answer times matter (more than one server)?
    pub(super) fn timing(&self) -> bool {
        self.slots.len() > 1
    }

    /// Once a tick: a server that had no call since the last one has its
    /// answer time forgotten (it is tried again), so a slow spell is not
    /// held against it for ever. A busy server's is kept: one whose calls
    /// hang must not look faster for it.
    pub(super) fn decay(&mut self) {
        for s in self.slots.iter_mut().flatten() {
            if !std::mem::take(&mut s.sampled) && s.load == 0 {
                s.rtt_ns = 0.0;
            }
        }
    }

    /// Take every link out (closing the client).
    pub(super) fn take_links(&mut self) -> Vec<Link> {
        self.slots.clear();
        self.by_link.clear();
        self.by_peer.clear();
        std::mem::take(&mut self.links)
            .into_iter()
            .flatten()
            .collect()
    }
}

impl Servers {
    /// What [`super::Client::servers`] reports.
    pub(super) fn info(&self) -> Vec<super::ServerInfo> {
        self.iter()
            .map(|(_, s)| super::ServerInfo {
                endpoint: s.endpoint.clone(),
                connected: s.up,
                skipped: s.suspect || s.retiring || s.draining,
                in_flight: s.load,
                answered: s.answered,
                name: match &s.name {
                    Some(Named::Server(n)) => Some(n.clone()),
                    _ => None,
                },
            })
            .collect()
    }
}
