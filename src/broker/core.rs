//! The broker's task: the one owner of its sockets and of every call in
//! flight. It reads each event's header only, and forwards the event as it
//! came: a request to the least-loaded live worker (or into the queue),
//! every later event of the call between that worker and its client. It
//! heartbeats queued calls, watches workers' liveness, and drains on stop.

use super::{BrokerLoad, WorkerInfo};
use crate::error::ServiceError;
use crate::logging::{hex, RateLimit};
use crate::protocol::{self, framing, msgpack, Event};
use crate::server::reply::encode_error;
use crate::shutdown::Stop;
use crate::transport::{Inbound, Link, LinkEvent, LinkId};
use bytes::Bytes;
use rmpv::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// What a [`super::Broker`] handle asks of its task.
pub(super) enum Ctl {
    Stop(Stop),
    Workers(oneshot::Sender<Vec<WorkerInfo>>),
    Load(oneshot::Sender<BrokerLoad>),
}

/// Most events taken from one side per wake-up before the other side (and
/// other tasks) get a turn.
const BATCH: usize = 256;

/// `["pong", "zrpc-broker"]`, a ping's answer, as `OK` args.
const PONG: &[u8] = &[
    0x91, 0x92, 0xa4, b'p', b'o', b'n', b'g', 0xab, b'z', b'r', b'p', b'c', b'-', b'b', b'r', b'o',
    b'k', b'e', b'r',
];

/// A peer on one side: its link and routing identity.
type Peer = (LinkId, Bytes);

/// A call's id as its events carry it (raw msgpack), compared by content:
/// a str and a bin with the same bytes are the same id, as a server sees
/// them.
#[derive(Clone, Debug)]
struct CallId(Bytes);

impl CallId {
    fn held(&self) -> (bool, &[u8]) {
        msgpack::id_content(&self.0)
    }
}

impl PartialEq for CallId {
    fn eq(&self, other: &Self) -> bool {
        self.held() == other.held()
    }
}

impl Eq for CallId {}

impl std::hash::Hash for CallId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.held().hash(state);
    }
}

/// A call the broker routes (waiting for a worker, or in flight).
struct Call {
    client: Peer,
    /// The frames before the delimiter of the client's request: every
    /// event back goes on them.
    route: Vec<Bytes>,
    /// The request, until the worker has answered or granted credit: a
    /// worker that hands it back unrun (`ServerStopping`) gives it to
    /// another.
    request: Option<Bytes>,
    /// A v1 caller: errors the broker sends go in its shape.
    legacy: bool,
    /// When its caller stops waiting.
    deadline: Option<Instant>,
    /// When it arrived.
    since: Instant,
}

/// A call waiting for a worker.
struct Waiting {
    id: CallId,
    call: Call,
    /// When it was last heartbeated.
    beat: Instant,
}

struct Worker {
    endpoint: String,
    calls: usize,
    /// Calls given since it connected.
    given: u64,
    /// It said it is stopping.
    draining: bool,
    /// Silent for two periods: no new calls until heard.
    silent: bool,
    heard: Instant,
    /// The broker's own `_zerorpc_ping` to an idle worker, and when.
    ping: Option<(CallId, Instant)>,
    /// Its name (`_zrpc_server_name`, asked when it connects; `None` until
    /// it answers, or for a worker that is not zrpc).
    name: Option<String>,
    /// The broker's question of its name, until answered.
    naming: Option<CallId>,
    gauge: metrics::Gauge,
}

impl Worker {
    fn live(&self) -> bool {
        !self.draining && !self.silent
    }
}

pub(super) struct Core {
    front: Vec<Link>,
    back: Vec<Link>,
    workers: HashMap<Peer, Worker>,
    /// Calls in flight, by the worker running them and their id.
    calls: HashMap<(Peer, CallId), Call>,
    /// The worker of each call in flight, by its client and id.
    by_client: HashMap<(Peer, CallId), Peer>,
    queue: VecDeque<Waiting>,
    queue_limit: usize,
    max_wait: Duration,
    heartbeat: Option<Duration>,
    /// Turns among equally loaded workers.
    turn: usize,
    /// Clients connected now (told `_zpc_drain` on stop).
    clients: HashSet<Peer>,
    stopping: bool,
    warned: RateLimit,
}

impl Core {
    pub(super) fn new(
        front: Vec<Link>,
        back: Vec<Link>,
        heartbeat: Option<Duration>,
        queue_limit: usize,
        max_wait: Duration,
    ) -> Self {
        Core {
            front,
            back,
            workers: HashMap::new(),
            calls: HashMap::new(),
            by_client: HashMap::new(),
            queue: VecDeque::new(),
            queue_limit,
            max_wait,
            heartbeat,
            turn: 0,
            clients: HashSet::new(),
            stopping: false,
            warned: RateLimit::default(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut front_in: Inbound,
        mut back_in: Inbound,
        mut ctl: mpsc::UnboundedReceiver<Ctl>,
    ) {
        let period = self.heartbeat.unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval(period / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop: Option<(Stop, Pin<Box<tokio::time::Sleep>>)> = None;
        let (mut front_open, mut back_open) = (true, true);
        // One hand-written poll, as the server's core: every source polled
        // once per wake-up, each ready one drained up to a batch.
        std::future::poll_fn(|cx| {
            while let Poll::Ready(Some(c)) = ctl.poll_recv(cx) {
                match c {
                    Ctl::Stop(s) => {
                        if stop.is_none() {
                            self.start_stopping();
                            let at = Box::pin(tokio::time::sleep(s.grace));
                            stop = Some((s, at));
                        }
                    }
                    Ctl::Workers(tx) => {
                        let _ = tx.send(self.worker_infos());
                    }
                    Ctl::Load(tx) => {
                        let _ = tx.send(self.load());
                    }
                }
            }
            for (inbound, open, front) in [
                (&mut front_in, &mut front_open, true),
                (&mut back_in, &mut back_open, false),
            ] {
                let mut budget = BATCH;
                while *open {
                    match inbound.poll_recv(cx) {
                        Poll::Ready(Some(ev)) if front => self.on_front(ev),
                        Poll::Ready(Some(ev)) => self.on_back(ev),
                        Poll::Ready(None) => *open = false,
                        Poll::Pending => break,
                    }
                    budget -= 1;
                    if budget == 0 {
                        cx.waker().wake_by_ref();
                        break;
                    }
                }
            }
            if !(front_open && back_open) {
                return Poll::Ready(());
            }
            if self.heartbeat.is_some() {
                while tick.poll_tick(cx).is_ready() {
                    self.on_tick(period);
                }
            }
            let Some((_, at)) = stop.as_mut() else {
                return Poll::Pending;
            };
            if at.as_mut().poll(cx).is_ready() || self.calls.is_empty() {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
        let unfinished = self.calls.len();
        self.fail_all(
            "ServerStopped",
            "the broker stopped before this call finished",
        );
        for link in self.front.drain(..).chain(self.back.drain(..)) {
            link.close(Duration::from_millis(500)).await;
        }
        if let Some((s, _)) = stop {
            s.finish(unfinished);
        }
    }

    // ---- clients --------------------------------------------------------

    fn on_front(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Message(l, msg) => self.on_request_side(l, msg),
            LinkEvent::PeerUp(l, identity) => {
                if self.stopping {
                    self.tell_drain(&(l, identity.clone()));
                }
                self.clients.insert((l, identity));
            }
            LinkEvent::PeerGone(l, identity) => self.client_gone((l, identity)),
            _ => {}
        }
    }

    /// An event from a client: a new call, or an event of one in flight.
    fn on_request_side(&mut self, l: LinkId, msg: zerorpc_zeromq::ZmqMessage) {
        let frames = msg.into_vecdeque();
        let (identity, payload) = match (frames.front(), frames.back()) {
            (Some(i), Some(p)) if frames.len() >= 2 => (i.clone(), p.clone()),
            _ => return,
        };
        let client = (l, identity);
        let ev = match Event::decode_with(&payload, 0) {
            Ok((ev, _)) => ev,
            Err(e) => {
                self.warned.warn(|| tracing::warn!(peer = %hex(&client.1), error = %e, "broker: dropped an undecodable message from a client"));
                if let Some((id, v)) = protocol::request_id(&payload) {
                    let err = ServiceError::new("ProtocolError", format!("malformed request: {e}"));
                    let reply = encode_error(&id, v.unwrap_or(1) < 2, &err);
                    self.to_client(client.0, &framing::route(&frames), reply);
                }
                return;
            }
        };
        let now = Instant::now();
        if let Some(rt) = ev.response_to {
            let id = CallId(payload.slice_ref(rt));
            let key = (client, id);
            match self.by_client.get(&key).cloned() {
                Some(worker) => {
                    self.to_worker(&worker, payload.clone());
                    if ev.name == Ok(protocol::CANCEL) {
                        self.end(&worker, &key.1);
                    }
                }
                // (A queued call's heartbeats have nowhere to go yet.)
                None if ev.name == Ok(protocol::CANCEL) => {
                    self.queue
                        .retain(|w| !(w.call.client == key.0 && w.id == key.1));
                }
                None => {}
            }
            return;
        }
        let Some(mid) = ev.message_id else {
            self.warned.warn(|| tracing::warn!(peer = %hex(&client.1), "broker: dropped a request without message_id"));
            return;
        };
        let id = CallId(payload.slice_ref(mid));
        let legacy = ev.version.unwrap_or(1) < 2;
        let route = framing::route(&frames);
        // A liveness probe is about the peer the client talks to: the
        // broker answers it at once, workers or not (a zrpc client probes a
        // server whose calls are slow to answer).
        if ev.name == Ok(protocol::PING) {
            let pong = protocol::encode_reply(&id.0, protocol::OK, PONG);
            return self.to_client(client.0, &route, pong);
        }
        // Asked its name, a broker answers the names of its workers (an
        // array, where a server answers a str): a zrpc client then sends a
        // call to one of them through it, naming it in the header.
        if ev.name == Ok(crate::service::SERVER_NAME) {
            let names = Value::Array(self.worker_names().into_iter().map(Value::from).collect());
            let mut args = vec![0x91];
            msgpack::write_value(&mut args, &names);
            let answer = protocol::encode_reply(&id.0, protocol::OK, &args);
            return self.to_client(client.0, &route, answer);
        }
        let to = msgpack::map_str(ev.header, protocol::SERVER_KEY)
            .map(|n| String::from_utf8_lossy(n).into_owned());
        if self.stopping {
            let e = ServiceError::new(
                protocol::SERVER_STOPPING,
                "the broker is stopping; this call did not run",
            );
            return self.to_client(client.0, &route, encode_error(&id.0, legacy, &e));
        }
        let deadline = match ev.timeout_ms {
            // Nobody waits for its answer.
            Some(0) => return,
            Some(ms) => now.checked_add(Duration::from_millis(ms)),
            None => None,
        };
        let call = Call {
            client,
            route,
            request: Some(payload.clone()),
            legacy,
            deadline,
            since: now,
        };
        match to {
            None => self.dispatch(id, call),
            Some(name) => self.dispatch_to(&name, id, call),
        }
    }

    /// A call for the worker called `name`: to it, or refused at once
    /// (a call by name is not queued: the name is a promise about now).
    fn dispatch_to(&mut self, name: &str, id: CallId, call: Call) {
        let worker = self
            .workers
            .iter()
            .find(|(_, w)| w.live() && w.name.as_deref() == Some(name))
            .map(|(p, _)| p.clone());
        match worker {
            Some(w) => self.assign(w, id, call),
            None => {
                let message = format!(
                    "no worker named {name:?} behind this broker (workers: {})",
                    self.worker_names().join(", ")
                );
                self.fail(&id, &call, "UnknownServer", &message);
            }
        }
    }

    /// The names of the live workers that have one, sorted.
    fn worker_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .workers
            .values()
            .filter(|w| w.live())
            .filter_map(|w| w.name.clone())
            .collect();
        names.sort();
        names
    }

    /// A client disconnected: its calls are cancelled on their workers.
    fn client_gone(&mut self, client: Peer) {
        self.clients.remove(&client);
        let mine: Vec<(CallId, Peer)> = self
            .by_client
            .iter()
            .filter(|((c, _), _)| *c == client)
            .map(|((_, id), w)| (id.clone(), w.clone()))
            .collect();
        for (id, worker) in mine {
            let cancel = protocol::encode_reply(&id.0, protocol::CANCEL, &[0x90]);
            self.to_worker(&worker, cancel.into());
            self.end(&worker, &id);
        }
        self.queue.retain(|w| w.call.client != client);
        self.gauges();
    }

    fn to_client(&self, link: LinkId, route: &[Bytes], payload: impl Into<Bytes>) {
        if let Some(l) = self.front.get(link) {
            l.send(framing::message(route, payload.into()));
        }
    }

    fn tell_drain(&self, client: &Peer) {
        let (_, drain) = protocol::encode_request(protocol::DRAIN, &[0x90]);
        self.to_client(client.0, std::slice::from_ref(&client.1), drain);
    }

    // ---- calls ----------------------------------------------------------

    /// Give a new call to a worker, or queue it.
    fn dispatch(&mut self, id: CallId, call: Call) {
        if let Some(worker) = self.pick() {
            return self.assign(worker, id, call);
        }
        if self.queue.len() >= self.queue_limit {
            self.warned
                .warn(|| tracing::warn!("broker: queue full: a call was refused with ServerBusy"));
            let e = ServiceError::new(
                "ServerBusy",
                "too many calls waiting for a worker; try again later",
            );
            return self.to_client(
                call.client.0,
                &call.route,
                encode_error(&id.0, call.legacy, &e),
            );
        }
        self.queue.push_back(Waiting {
            id,
            call,
            beat: Instant::now(),
        });
        self.gauges();
    }

    /// The live worker with the fewest calls (taking turns among equals).
    fn pick(&mut self) -> Option<Peer> {
        let least = self
            .workers
            .values()
            .filter(|w| w.live())
            .map(|w| w.calls)
            .min()?;
        let equal = self
            .workers
            .iter()
            .filter(|(_, w)| w.live() && w.calls == least);
        let n = equal.clone().count();
        self.turn = self.turn.wrapping_add(1);
        equal.map(|(p, _)| p.clone()).nth(self.turn % n.max(1))
    }

    fn assign(&mut self, worker: Peer, id: CallId, call: Call) {
        let client_key = (call.client.clone(), id.clone());
        let key = (worker.clone(), id);
        if self.by_client.contains_key(&client_key) || self.calls.contains_key(&key) {
            self.warned.warn(|| tracing::warn!(peer = %hex(&call.client.1), "broker: a request reused the message_id of a call in flight"));
            let e = ServiceError::new(
                "ProtocolError",
                "this message_id is already a call in flight",
            );
            return self.to_client(
                call.client.0,
                &call.route,
                encode_error(&key.1 .0, call.legacy, &e),
            );
        }
        let Some(request) = call.request.clone() else {
            return;
        };
        self.by_client.insert(client_key, worker.clone());
        self.calls.insert(key, call);
        if let Some(w) = self.workers.get_mut(&worker) {
            w.calls += 1;
            w.given += 1;
            w.gauge.set(w.calls as f64);
        }
        self.to_worker(&worker, request);
        self.gauges();
    }

    /// Call `id` on `worker` ended (answered, cancelled, failed).
    fn end(&mut self, worker: &Peer, id: &CallId) -> Option<Call> {
        let call = self.calls.remove(&(worker.clone(), id.clone()))?;
        self.by_client.remove(&(call.client.clone(), id.clone()));
        if let Some(w) = self.workers.get_mut(worker) {
            w.calls = w.calls.saturating_sub(1);
            w.gauge.set(w.calls as f64);
        }
        self.gauges();
        Some(call)
    }

    /// Answer call `id` with an error the broker raises.
    fn fail(&self, id: &CallId, call: &Call, name: &str, message: &str) {
        let e = ServiceError::new(name, message);
        self.to_client(
            call.client.0,
            &call.route,
            encode_error(&id.0, call.legacy, &e),
        );
    }

    /// Fail every call in flight and queued (the broker is stopping).
    fn fail_all(&mut self, name: &str, message: &str) {
        for ((_, id), call) in std::mem::take(&mut self.calls) {
            self.fail(&id, &call, name, message);
        }
        self.by_client.clear();
        for w in std::mem::take(&mut self.queue) {
            self.fail(
                &w.id,
                &w.call,
                protocol::SERVER_STOPPING,
                "the broker stopped before this call ran",
            );
        }
    }

    /// Queued calls go to workers while there is a live one.
    fn flush_queue(&mut self) {
        while !self.queue.is_empty() {
            let Some(worker) = self.pick() else { break };
            let Some(w) = self.queue.pop_front() else {
                break;
            };
            self.assign(worker, w.id, w.call);
        }
        self.gauges();
    }

    // ---- workers --------------------------------------------------------

    fn on_back(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Message(l, msg) => self.on_answer_side(l, msg),
            LinkEvent::PeerUp(l, identity) => {
                let endpoint = match self.back.get(l) {
                    Some(link) => format!("{}#{}", link.endpoint, hex(&identity)),
                    None => hex(&identity),
                };
                tracing::info!(worker = %endpoint, "broker: a worker connected");
                let gauge =
                    metrics::gauge!("zrpc_broker_worker_calls", "worker" => endpoint.clone());
                self.workers.insert(
                    (l, identity.clone()),
                    Worker {
                        endpoint,
                        calls: 0,
                        given: 0,
                        draining: false,
                        silent: false,
                        heard: Instant::now(),
                        ping: None,
                        name: None,
                        naming: None,
                        gauge,
                    },
                );
                self.ask_name(&(l, identity));
                self.flush_queue();
            }
            LinkEvent::PeerGone(l, identity) => {
                self.worker_gone(&(l, identity), "its connection closed");
            }
            _ => {}
        }
    }

    /// An event from a worker: the answer (or any other event) of a call in
    /// flight, or its saying it is stopping.
    fn on_answer_side(&mut self, l: LinkId, msg: zerorpc_zeromq::ZmqMessage) {
        let frames = msg.into_vecdeque();
        let (identity, payload) = match (frames.front(), frames.back()) {
            (Some(i), Some(p)) if frames.len() >= 2 => (i.clone(), p.clone()),
            _ => return,
        };
        let worker = (l, identity);
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        w.heard = Instant::now();
        let woke = std::mem::replace(&mut w.silent, false);
        if woke {
            tracing::info!(worker = %w.endpoint, "broker: a silent worker answers again");
        }
        let ev = match Event::decode_with(&payload, 0) {
            Ok((ev, _)) => ev,
            Err(e) => {
                self.warned.warn(|| tracing::warn!(peer = %hex(&worker.1), error = %e, "broker: dropped an undecodable message from a worker"));
                return;
            }
        };
        let Some(rt) = ev.response_to else {
            if ev.name == Ok(protocol::DRAIN) {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.draining = true;
                    tracing::info!(worker = %w.endpoint, "broker: a worker is stopping; no new calls go to it");
                }
            }
            if woke {
                self.flush_queue();
            }
            return;
        };
        let id = CallId(payload.slice_ref(rt));
        if let Some(w) = self.workers.get_mut(&worker) {
            if w.ping.as_ref().is_some_and(|(p, _)| *p == id) {
                w.ping = None;
                if woke {
                    self.flush_queue();
                }
                return;
            }
            if w.naming.as_ref() == Some(&id) {
                if ev.name == Ok(protocol::HEARTBEAT) {
                    return;
                }
                w.naming = None;
                w.name = (ev.name == Ok(protocol::OK))
                    .then(|| msgpack::first_item(&ev.args))
                    .flatten()
                    .and_then(|v| crate::protocol::budget::read_value(&v, 4096).ok())
                    .and_then(|v| v.as_str().map(str::to_string));
                if let Some(name) = &w.name {
                    tracing::debug!(worker = %w.endpoint, %name, "broker: a worker said its name");
                }
                return;
            }
        }
        let name = ev.name.unwrap_or("");
        let key = (worker.clone(), id.clone());
        let Some(call) = self.calls.get_mut(&key) else {
            tracing::debug!(%name, "broker: unable to route event (call finished)");
            return;
        };
        // A stopping worker hands back a request it never ran: another
        // worker takes it.
        let handed_back = name == protocol::ERR
            && call.request.is_some()
            && crate::error::parse_err(&ev.args).name == protocol::SERVER_STOPPING;
        if handed_back {
            if let Some(call) = self.end(&worker, &id) {
                tracing::debug!("broker: a call handed back unrun goes to another worker");
                self.dispatch(id, call);
            }
            return;
        }
        match name {
            protocol::OK | protocol::ERR | protocol::STREAM_DONE => {
                let (link, route) = (call.client.0, std::mem::take(&mut call.route));
                self.to_client(link, &route, payload);
                self.end(&worker, &id);
            }
            _ => {
                // Answered, or credit granted for its items: it ran.
                if name != protocol::HEARTBEAT {
                    call.request = None;
                }
                // (The front links, not `self`: the call is borrowed.)
                if let Some(l) = self.front.get(call.client.0) {
                    l.send(framing::message(&call.route, payload));
                }
            }
        }
        if woke {
            self.flush_queue();
        }
    }

    /// Ask a worker its name (a call to it by name comes with it).
    fn ask_name(&mut self, worker: &Peer) {
        let (id, ask) = protocol::encode_request(crate::service::SERVER_NAME, &[0x90]);
        let id = CallId(Bytes::copy_from_slice(&id.to_raw()));
        if let Some(w) = self.workers.get_mut(worker) {
            w.naming = Some(id);
        }
        self.to_worker(worker, ask.into());
    }

    fn to_worker(&self, worker: &Peer, payload: Bytes) {
        if let Some(l) = self.back.get(worker.0) {
            l.send(framing::message(std::slice::from_ref(&worker.1), payload));
        }
    }

    /// A worker is gone (`why`): its calls fail at once with `LostRemote`,
    /// as a direct call to it would.
    fn worker_gone(&mut self, worker: &Peer, why: &str) {
        let Some(w) = self.workers.remove(worker) else {
            return;
        };
        w.gauge.set(0.0);
        let n = self.fail_calls_of(worker, why);
        tracing::info!(worker = %w.endpoint, failed = n, "broker: a worker left; its calls failed with LostRemote");
    }

    /// Fail the calls running on `worker` with `LostRemote`; how many.
    fn fail_calls_of(&mut self, worker: &Peer, why: &str) -> usize {
        let ids: Vec<CallId> = self
            .calls
            .keys()
            .filter(|(w, _)| w == worker)
            .map(|(_, id)| id.clone())
            .collect();
        for id in &ids {
            if let Some(call) = self.end(worker, id) {
                let message = format!("the worker running this call was lost: {why}");
                self.fail(id, &call, "LostRemote", &message);
            }
        }
        ids.len()
    }

    // ---- time -----------------------------------------------------------

    fn on_tick(&mut self, period: Duration) {
        let now = Instant::now();
        // Queued calls: heartbeated, so their callers keep waiting; failed
        // past their wait.
        let mut i = 0;
        while i < self.queue.len() {
            let w = &mut self.queue[i];
            if w.call.deadline.is_some_and(|at| at <= now) {
                // (Its caller has stopped waiting: nobody reads an answer.)
                self.queue.remove(i);
                continue;
            }
            if w.call.deadline.is_none() && now.duration_since(w.call.since) >= self.max_wait {
                if let Some(w) = self.queue.remove(i) {
                    let message = format!(
                        "no worker took this call within {}",
                        crate::error::fmt_secs(self.max_wait)
                    );
                    self.fail(&w.id, &w.call, "ServerBusy", &message);
                }
                continue;
            }
            if now.duration_since(w.beat) >= period {
                w.beat = now;
                let hb =
                    protocol::encode_reply(&w.id.0, protocol::HEARTBEAT, protocol::HEARTBEAT_ARGS);
                let (link, route) = (w.call.client.0, w.call.route.clone());
                self.to_client(link, &route, hb);
            }
            i += 1;
        }
        // Workers: a busy one heartbeats its calls; an idle one is pinged.
        let mut lost = Vec::new();
        for (peer, w) in self.workers.iter_mut() {
            let quiet = now.duration_since(w.heard);
            if w.calls > 0 {
                if quiet > period * 2 && !w.silent {
                    w.silent = true;
                    lost.push((peer.clone(), quiet));
                }
                continue;
            }
            match &w.ping {
                Some((_, at)) if now.duration_since(*at) > period * 2 => {
                    if !w.silent {
                        tracing::warn!(worker = %w.endpoint, "broker: a worker does not answer pings; no new calls go to it");
                    }
                    w.silent = true;
                    w.ping = None;
                }
                Some(_) => {}
                None if quiet >= period => {
                    let (id, ping) = protocol::encode_request(protocol::PING, &[0x90]);
                    let id = CallId(Bytes::copy_from_slice(&id.to_raw()));
                    w.ping = Some((id, now));
                    if let Some(l) = self.back.get(peer.0) {
                        l.send(framing::message(std::slice::from_ref(&peer.1), ping.into()));
                    }
                }
                None => {}
            }
        }
        for (peer, quiet) in lost {
            let why = format!("no heartbeat for {}", crate::error::fmt_secs(quiet));
            let n = self.fail_calls_of(&peer, &why);
            tracing::warn!(worker = %self.workers.get(&peer).map_or_else(String::new, |w| w.endpoint.clone()), failed = n, "broker: a worker went silent; its calls failed with LostRemote");
        }
    }

    // ---- stopping and reporting ------------------------------------------

    fn start_stopping(&mut self) {
        self.stopping = true;
        tracing::info!(
            in_flight = self.calls.len(),
            "broker stopping: calls in flight may finish, new ones are handed back"
        );
        for client in self.clients.clone() {
            self.tell_drain(&client);
        }
        for w in std::mem::take(&mut self.queue) {
            self.fail(
                &w.id,
                &w.call,
                protocol::SERVER_STOPPING,
                "the broker is stopping; this call did not run",
            );
        }
    }

    fn worker_infos(&self) -> Vec<WorkerInfo> {
        let mut v: Vec<WorkerInfo> = self
            .workers
            .values()
            .map(|w| WorkerInfo {
                endpoint: w.endpoint.clone(),
                in_flight: w.calls,
                calls: w.given,
                draining: w.draining,
                silent: w.silent,
            })
            .collect();
        v.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        v
    }

    fn load(&self) -> BrokerLoad {
        let clients: HashSet<&Peer> = self
            .calls
            .values()
            .map(|c| &c.client)
            .chain(self.queue.iter().map(|w| &w.call.client))
            .collect();
        BrokerLoad {
            in_flight: self.calls.len(),
            queued: self.queue.len(),
            clients: clients.len(),
            workers: self.workers.len(),
        }
    }

    fn gauges(&self) {
        metrics::gauge!("zrpc_broker_workers").set(self.workers.len() as f64);
        metrics::gauge!("zrpc_broker_calls_in_flight").set(self.calls.len() as f64);
        metrics::gauge!("zrpc_broker_calls_queued").set(self.queue.len() as f64);
    }
}
