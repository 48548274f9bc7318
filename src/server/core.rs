//! The server's core task: the one owner of every open channel. It reads
//! the links, dispatches each message (to a channel, or as a new request),
//! forwards what handler tasks produce, beats, and drains on stop.

use super::channel::{
    more_credit, Chan, ChanKey, Chans, Input, Out, Run, INPUT_MAX_AHEAD, MAX_CREDIT,
};
use super::deadlines::Deadlines;
use super::dispatch::Dispatch;
use super::pool::{Admission, Pool};
use super::reply::{encode_error, encode_ok};
use super::request::{self, deferred, poll_once, request_span, Polled, DECODE_ON_CORE_MAX};
use crate::context::Lent;
use crate::error::{clip, ServiceError, QUOTE_LIMIT};
use crate::logging::{hex, RateLimit};
use crate::protocol::heartbeat::Beat;
use crate::protocol::{self, framing, msgpack, DecodeError, Event};
use crate::service::{Args, Incoming};
use crate::shutdown::Stop;
use crate::telemetry::{Lost, Outcome, Rejected, ServerMetrics};
use crate::transport::{Inbound, Link, LinkEvent, LinkId};
use bytes::Bytes;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use zerorpc_zeromq::ZmqMessage;

/// Most events the core handles in one wake-up before letting other tasks
/// run (it then wakes itself to carry on).
const BATCH: usize = 256;

/// Events handler tasks may have waiting for the core. A producer (a
/// stream) that outruns the core waits here instead of queueing without
/// bound.
const OUT_QUEUE: usize = 1024;

/// How long a stopping server with nothing left to run waits for another
/// request before it closes: requests its clients sent before they heard
/// it was stopping are still on their way.
const QUIET: Duration = Duration::from_millis(200);

/// A [`super::Server::close`] in progress: the server still answers what
/// it reads (a client that does not know `_zpc_drain` loses nothing), and
/// closes once it has nothing to run and has read nothing for [`QUIET`].
struct Draining {
    /// When the requests still running are cancelled.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Reset by every request read.
    quiet: Pin<Box<tokio::time::Sleep>>,
    /// Told how many requests were cancelled once the server has stopped.
    stop: Stop,
}

pub(super) struct Core {
    pub(super) dispatch: Dispatch,
    pub(super) links: Vec<Link>,
    pub(super) chans: Chans,
    pub(super) heartbeat: Option<Duration>,
    pub(super) pool: Option<Pool>,
    /// Where handler tasks send what they produce.
    pub(super) out_tx: mpsc::Sender<Out>,
    out_rx: mpsc::Receiver<Out>,
    /// Where handlers reading their caller's items ask for more of them
    /// (a grant per half window read: few, and never dropped).
    grants_tx: mpsc::UnboundedSender<(ChanKey, usize)>,
    grants_rx: mpsc::UnboundedReceiver<(ChanKey, usize)>,
    pub(super) warned: RateLimit,
    /// ServerBusy refusals (logged at most once a second).
    pub(super) busy: RateLimit,
    pub(super) metrics: ServerMetrics,
    /// When requests' callers stop waiting.
    pub(super) deadlines: Deadlines,
    /// The clock, read once per wake-up: when the requests read in it
    /// arrived (deadlines and durations count from it).
    pub(super) now: Instant,
    /// The server is a CURVE server: requests carry their client's key.
    pub(super) curve_server: bool,
    /// The most memory decoding one request's arguments may take.
    pub(super) max_decoded: usize,
    /// Clients connected to bound links (told `_zpc_drain` on stop).
    peers: std::collections::HashSet<(LinkId, Bytes)>,
    /// A request was read since the drain's quiet timer was last reset.
    pub(super) requests_read: bool,
}

impl Core {
    pub(super) fn new(
        dispatch: Dispatch,
        links: Vec<Link>,
        heartbeat: Option<Duration>,
        pool: Option<Pool>,
    ) -> Self {
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let (grants_tx, grants_rx) = mpsc::unbounded_channel();
        let metrics = ServerMetrics::new(dispatch.service().method_names());
        Core {
            dispatch,
            links,
            chans: Chans::default(),
            heartbeat,
            pool,
            out_tx,
            out_rx,
            grants_tx,
            grants_rx,
            warned: RateLimit::default(),
            busy: RateLimit::default(),
            metrics,
            deadlines: Deadlines::default(),
            now: Instant::now(),
            curve_server: false,
            max_decoded: crate::protocol::budget::DEFAULT_MAX_DECODED_SIZE,
            peers: Default::default(),
            requests_read: false,
        }
    }

    pub(super) async fn run(
        mut self,
        mut inbound: Inbound,
        mut ctl: mpsc::UnboundedReceiver<Stop>,
    ) {
        let period = self.heartbeat.unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval(period / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut draining: Option<Draining> = None;
        let mut inbound_open = true;
        // One hand-written poll instead of `select!`: every source is polled
        // once per wake-up, in a fixed order, with the task's own waker (a
        // select loop polls each twice and re-registers wakers in between).
        std::future::poll_fn(|cx| {
            self.now = Instant::now();
            // Replies of handlers that ran in their own task.
            for _ in 0..BATCH {
                match self.out_rx.poll_recv(cx) {
                    Poll::Ready(Some(out)) => self.on_out(out),
                    _ => break,
                }
            }
            for _ in 0..BATCH {
                match self.grants_rx.poll_recv(cx) {
                    Poll::Ready(Some((key, n))) => self.on_grant(&key, n),
                    _ => break,
                }
            }
            let mut budget = BATCH;
            while inbound_open {
                match inbound.poll_recv(cx) {
                    Poll::Ready(Some(ev)) => self.on_link_event(ev, draining.is_some()),
                    Poll::Ready(None) => inbound_open = false,
                    Poll::Pending => break,
                }
                budget -= 1;
                if budget == 0 {
                    // Let other tasks run; carry on right after them.
                    cx.waker().wake_by_ref();
                    break;
                }
            }
            // (Only while requests run: nothing to beat otherwise.)
            if self.heartbeat.is_some() && !self.chans.is_empty() {
                while tick.poll_tick(cx).is_ready() {
                    self.on_tick(period);
                }
            }
            self.poll_deadlines(cx);
            if draining.is_none() {
                if let Poll::Ready(Some(stop)) = ctl.poll_recv(cx) {
                    tracing::info!(
                        in_flight = self.chans.len(),
                        "stopping: answering what arrives, new calls asked to go elsewhere"
                    );
                    self.announce_drain();
                    draining = Some(Draining {
                        deadline: Box::pin(tokio::time::sleep(stop.grace)),
                        quiet: Box::pin(tokio::time::sleep(QUIET)),
                        stop,
                    });
                }
            }
            let Some(d) = draining.as_mut() else {
                return Poll::Pending;
            };
            if std::mem::take(&mut self.requests_read) {
                d.quiet.as_mut().reset(self.now + QUIET);
            }
            if d.deadline.as_mut().poll(cx).is_ready() {
                if !self.chans.is_empty() {
                    tracing::warn!(
                        cancelled = self.chans.len(),
                        "stop deadline reached: cancelling requests"
                    );
                }
                return Poll::Ready(());
            }
            if self.chans.is_empty() && d.quiet.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
        let cancelled = self.chans.len();
        self.answer_unfinished();
        self.end_where(|_| true, None);
        // Let each link flush what is queued (final replies) before closing.
        for link in std::mem::take(&mut self.links) {
            link.close(Duration::from_millis(500)).await;
        }
        if let Some(d) = draining {
            d.stop.finish(cancelled);
        }
    }

    fn on_link_event(&mut self, ev: LinkEvent, draining: bool) {
        match ev {
            LinkEvent::Message(link, msg) => self.on_message(link, msg),
            LinkEvent::PeerUp(link, identity) => {
                if draining {
                    self.tell_drain(link, &identity);
                }
                self.peers.insert((link, identity));
            }
            LinkEvent::PeerGone(link, identity) => {
                self.peers.remove(&(link, identity.clone()));
                let n = self.end_where(
                    |k| k.link == link && k.identity == identity,
                    Some(Lost::Disconnect),
                );
                if n > 0 {
                    tracing::info!(peer = %hex(&identity), cancelled = n, "client disconnected; its requests were cancelled");
                }
            }
            // A connected link lost its one peer (the bound client): its
            // requests are orphaned. (A bound link is `Down` whenever it has
            // no peer for a moment; each peer's own `PeerGone` covers that,
            // and must: that `Down` can arrive after a new peer's request.)
            LinkEvent::Down(link) if self.links.get(link).is_some_and(|l| l.connected) => {
                self.end_where(|k| k.link == link, Some(Lost::Disconnect));
            }
            LinkEvent::Up(_) | LinkEvent::Down(_) | LinkEvent::Refused(..) => {}
        }
    }

    /// Tell every client this server knows of that it is stopping
    /// (`_zpc_drain`, PROTOCOL.md §7): the connected ones, and those with a
    /// call open on a link this server connected.
    fn announce_drain(&mut self) {
        let mut told = std::collections::HashSet::new();
        let open = self.chans.keys_where(|_| true);
        let known = self.peers.iter().cloned();
        for (link, identity) in known.chain(open.into_iter().map(|k| (k.link, k.identity))) {
            if told.insert((link, identity.clone())) {
                self.tell_drain(link, &identity);
            }
        }
    }

    fn tell_drain(&self, link: LinkId, identity: &Bytes) {
        let (_, drain) = protocol::encode_request(protocol::DRAIN, &[0x90]);
        if let Some(l) = self.links.get(link) {
            l.send(framing::message(
                std::slice::from_ref(identity),
                drain.into(),
            ));
        }
    }

    /// The stop deadline came with requests unfinished: each caller is
    /// told, so that none is left to guess. A request still waiting for a
    /// pool slot never ran: `ServerStopping`, which a zrpc client sends to
    /// another server. One that was running is cut short: `ServerStopped`.
    fn answer_unfinished(&mut self) {
        for key in self.chans.keys_where(|_| true) {
            let Some(chan) = self.chans.get_mut(&key) else {
                continue;
            };
            let e = match chan.run {
                Run::Waiting(..) => {
                    self.metrics.rejected(Rejected::Stopping);
                    ServiceError::new(
                        protocol::SERVER_STOPPING,
                        "the server stopped before running this request",
                    )
                }
                _ => ServiceError::new(
                    "ServerStopped",
                    "the server stopped before this request finished",
                ),
            };
            let err = super::reply::encode_error(&key.id, chan.legacy, &e);
            if let Some(l) = self.links.get(key.link) {
                l.send(framing::message(&chan.route, err));
            }
        }
    }

    /// A message from a client: an event on an open channel (it has a
    /// `response_to`), or a new request.
    fn on_message(&mut self, link: LinkId, msg: ZmqMessage) {
        let frames = msg.into_vecdeque();
        let (identity, payload) = match (frames.front(), frames.back()) {
            (Some(i), Some(p)) if frames.len() >= 2 => (i.clone(), p.clone()),
            _ => return,
        };
        // (A large request's arguments are walked by its own task.)
        match Event::decode_with(&payload, DECODE_ON_CORE_MAX).map(|(ev, _)| ev) {
            Ok(ev) => match ev.response_to {
                Some(rt) => {
                    let key = ChanKey {
                        link,
                        identity,
                        id: payload.slice_ref(rt),
                    };
                    self.on_channel_event(&key, &ev);
                }
                None => self.on_request(link, identity, frames, &payload, ev),
            },
            Err(e) => {
                self.warned.warn(|| tracing::warn!(peer = %hex(&identity), error = %e, "rejected an undecodable message"));
                self.on_undecodable(link, identity, frames, &payload, e);
            }
        }
    }

    /// Forward what a request task produced, if its channel is still open.
    fn on_out(&mut self, out: Out) {
        let Some(link) = self.links.get(out.key.link) else {
            return;
        };
        if let Some(outcome) = out.last {
            if let Some(chan) = self.end(&out.key, outcome) {
                if let Some(link) = self.links.get(out.key.link) {
                    link.send(framing::message(&chan.route, out.payload));
                }
            }
            return;
        }
        let Some(chan) = self.chans.get_mut(&out.key) else {
            return;
        };
        // A stream's first item: its caller has its answer, so the deadline
        // no longer applies (heartbeats bound the rest, as for the caller).
        if let Some(at) = chan.deadline.take() {
            self.deadlines.remove(&at);
        }
        link.send(framing::message(&chan.route, out.payload));
    }

    /// Answer a request with one event, reusing its frames (see
    /// [`framing::reuse`]).
    pub(super) fn reply(&self, link: LinkId, frames: VecDeque<Bytes>, payload: Bytes) {
        if let (Some(l), Some(msg)) = (self.links.get(link), framing::reuse(frames, payload)) {
            l.send(msg);
        }
    }

    fn on_tick(&mut self, period: Duration) {
        let now = Instant::now();
        let mut lost = Vec::new();
        for (key, chan) in self.chans.iter_mut() {
            if chan.beat.lost(now, period) {
                lost.push(key.clone());
            } else if chan.beat.due(now, period) {
                let hb =
                    protocol::encode_reply(&key.id, protocol::HEARTBEAT, protocol::HEARTBEAT_ARGS);
                if let Some(l) = self.links.get(key.link) {
                    l.send(framing::message(&chan.route, hb.into()));
                }
            }
        }
        self.metrics.lost(Lost::Heartbeat, lost.len());
        for key in lost {
            if let Some(chan) = self.end(&key, Outcome::Cancelled) {
                chan.run.abort();
                tracing::info!(peer = %hex(&key.identity), "lost remote after {}s without heartbeat: request cancelled", 2.0 * period.as_secs_f64());
            }
        }
    }

    /// Close channel `key` (its request finished, or is being cancelled:
    /// the caller aborts it), count how it ended, and give its pool slot to
    /// the next in line.
    pub(super) fn end(&mut self, key: &ChanKey, outcome: Outcome) -> Option<Chan> {
        let chan = self.chans.remove(key)?;
        let elapsed = chan.started.elapsed();
        chan.metrics.ended(outcome, elapsed);
        self.metrics.in_flight.decrement(1.0);
        chan.span.record("outcome", outcome.as_str());
        chan.span.record("duration_ms", elapsed.as_secs_f64() * 1e3);
        if let Some(at) = chan.deadline {
            self.deadlines.remove(&at);
        }
        if let Some(pool) = self.pool.as_mut().filter(|_| chan.pooled) {
            pool.finished(key, chan.run.is_running());
            self.schedule();
        }
        Some(chan)
    }

    /// Cancel the requests whose channel key matches (their client went
    /// away, when `lost` says why); how many.
    fn end_where(&mut self, pred: impl Fn(&ChanKey) -> bool, lost: Option<Lost>) -> usize {
        let keys = self.chans.keys_where(pred);
        if let Some(why) = lost {
            self.metrics.lost(why, keys.len());
        }
        for key in &keys {
            if let Some(chan) = self.end(key, Outcome::Cancelled) {
                chan.run.abort();
            }
        }
        keys.len()
    }

    /// Cancel the requests whose caller stopped waiting (no reply: it
    /// would arrive late), and set the timer for the next deadline.
    fn poll_deadlines(&mut self, cx: &mut std::task::Context<'_>) {
        while let Poll::Ready(key) = self.deadlines.poll_expired(cx) {
            if let Some(chan) = self.end(&key, Outcome::DeadlineExceeded) {
                chan.run.abort();
                tracing::debug!(peer = %hex(&key.identity), "deadline passed: request cancelled");
            }
        }
    }

    /// Start the waiting requests that pool slots are free for.
    pub(super) fn schedule(&mut self) {
        while let Some(key) = self.pool.as_mut().and_then(Pool::next) {
            let Some(chan) = self.chans.get_mut(&key) else {
                continue;
            };
            if let Run::Waiting(call, ctx) = std::mem::replace(&mut chan.run, Run::Starting) {
                let task = request::spawn(
                    call,
                    self.out_tx.clone(),
                    chan.credit.clone(),
                    key.clone(),
                    chan.legacy,
                    self.links[key.link].room(),
                    ctx,
                    chan.span.clone(),
                );
                chan.run = Run::Running(task);
            }
        }
    }

    // ---- requests ----

    /// A request (an event with no `response_to`): rejected with an `ERR`
    /// when it cannot run, answered inline when its handler finishes at
    /// once, and otherwise given a channel and a task.
    pub(super) fn on_request(
        &mut self,
        link: LinkId,
        identity: Bytes,
        frames: VecDeque<Bytes>,
        payload: &Bytes,
        ev: Event<'_>,
    ) {
        let Some(id) = ev.message_id.map(|id| payload.slice_ref(id)) else {
            self.warned.warn(
                || tracing::warn!(peer = %hex(&identity), "dropped a request without message_id"),
            );
            self.metrics.rejected(Rejected::Malformed);
            return;
        };
        let key = ChanKey { link, identity, id };
        if self.chans.contains(&key) {
            self.warned.warn(|| tracing::warn!(peer = %hex(&key.identity), "dropped a request reusing the message_id of a running one"));
            self.metrics.rejected(Rejected::Duplicate);
            return;
        }
        let legacy = ev.version.unwrap_or(1) < 2;
        let name = match ev.name {
            Ok(name) => name,
            Err(why) => {
                self.metrics.rejected(Rejected::Malformed);
                return self.reject(&key, frames, legacy, ServiceError::new("NameError", why));
            }
        };
        // A call whose caller streams items names its method in its
        // arguments (PROTOCOL.md §9.1).
        let streamed = name == protocol::STREAM_CALL;
        let (name, raw_args) = match streamed {
            false => (name, ev.args),
            true => match msgpack::split_name(&ev.args) {
                Some((method, rest)) => match std::str::from_utf8(method) {
                    Ok(method) => (method, Bytes::from(rest)),
                    Err(_) => return self.bad_stream_call(&key, frames, legacy),
                },
                None => return self.bad_stream_call(&key, frames, legacy),
            },
        };
        let service = self.dispatch.service();
        if streamed != service.takes_items(name) {
            let method = clip(name, QUOTE_LIMIT);
            let e = match streamed {
                true if !service.answers(name) => ServiceError::new("NameError", method),
                true => ServiceError::type_error(format!(
                    "{method}() does not take a stream of items"
                )),
                false => ServiceError::type_error(format!(
                    "{method}() takes a stream of items: call it as a client stream (zrpc's extension, {})",
                    protocol::STREAM_CALL
                )),
            };
            self.metrics.rejected(Rejected::Malformed);
            return self.reject(&key, frames, legacy, e);
        }
        if let Some(wanted) = ev.api_version {
            if let Some(e) = self.dispatch.service().refuse_version(name, wanted) {
                self.metrics.rejected(Rejected::Version);
                return self.reject(&key, frames, legacy, e);
            }
        }
        // (A stopping server still answers what it reads: see core.rs.)
        self.requests_read = true;
        // When it arrived (this wake-up of the core: one clock reading for
        // the whole batch).
        let now = self.now;
        // The caller's deadline: past it, nobody reads a reply.
        let deadline = match ev.timeout_ms {
            Some(0) => {
                self.metrics.rejected(Rejected::Expired);
                return tracing::debug!(peer = %hex(&key.identity), method = %name, "dropped a request whose deadline had passed");
            }
            Some(ms) => now.checked_add(Duration::from_millis(ms)),
            None => None,
        };
        let bytes = raw_args.len();
        let mut args = match Args::try_from_raw(raw_args) {
            Ok(args) => args.with_max_decoded(self.max_decoded),
            Err(raw) => return self.not_an_array(&key, frames, legacy, name, &raw),
        };
        let input = match streamed {
            true => {
                let (incoming, input) = self.incoming(&key);
                args = args.with_incoming(incoming);
                Some(input)
            }
            false => None,
        };
        let client_key = match self.curve_server {
            true => self.links[key.link].peer_key(&key.identity),
            false => None,
        };
        let lent = Lent {
            payload,
            method: name,
            id: &key.id,
            header: ev.header,
            peer: &key.identity,
            deadline,
            client_key,
        };
        let span = request_span(&lent);
        // Most handlers finish without waiting: poll once here (a panic
        // caught) and reply at once, saving a task and two hops through
        // this core. A handler that is not ready moves to its own task,
        // which polls it again (with a real waker) before anything else.
        // Under a pool limit every request waits for its slot in a task.
        // Introspection (the liveness probe among it) is answered at once,
        // outside any pool: a client pings a server whose calls are
        // overdue, and a busy server must still answer.
        let pool = self
            .pool
            .as_mut()
            .filter(|_| !crate::service::INTROSPECTION.contains(&name));
        let pooled = pool.is_some();
        let (call, ctx, admitted) = match pool {
            None if bytes >= DECODE_ON_CORE_MAX => (
                deferred(&self.dispatch, name, args),
                lent.to_context(),
                Admission::Run,
            ),
            None => match poll_once(&self.dispatch, name, args, &lent, &span) {
                Polled::Running(call) => (call, lent.to_context(), Admission::Run),
                Polled::Done(result) => {
                    let outcome = if result.is_ok() {
                        Outcome::Ok
                    } else {
                        Outcome::Error
                    };
                    // (The one clock reading of an inline request, it began
                    // when this wake-up of the core did; and none when
                    // nobody records it.)
                    let timed = self.metrics.enabled || !span.is_disabled();
                    let elapsed = if timed { now.elapsed() } else { Duration::ZERO };
                    if self.metrics.enabled {
                        self.metrics.method(name).ended(outcome, elapsed);
                    }
                    if !span.is_disabled() {
                        span.record("outcome", outcome.as_str());
                        span.record("duration_ms", elapsed.as_secs_f64() * 1e3);
                    }
                    let reply = match result {
                        Ok(v) => encode_ok(&key.id, v),
                        Err(e) => {
                            tracing::debug!(parent: &span, error = %e, "request failed");
                            encode_error(&key.id, legacy, &e)
                        }
                    };
                    return self.reply(key.link, frames, reply);
                }
            },
            Some(pool) => match pool.admit(&key, bytes) {
                Admission::Busy => {
                    self.busy.warn(|| tracing::warn!(peer = %hex(&key.identity), "pool queue full: refused a request with ServerBusy"));
                    self.metrics.rejected(Rejected::Busy);
                    let e = ServiceError::new(
                        "ServerBusy",
                        "too many requests waiting; try again later",
                    );
                    return self.reject(&key, frames, legacy, e);
                }
                admitted => {
                    let call = match bytes >= DECODE_ON_CORE_MAX {
                        true => deferred(&self.dispatch, name, args),
                        false => lent.scope(|| self.dispatch.call(name, args)),
                    };
                    (call, lent.to_context(), admitted)
                }
            },
        };
        let credit = Arc::new(Semaphore::new(1));
        let run = match admitted {
            Admission::Wait => Run::Waiting(call, ctx),
            _ => Run::Running(request::spawn(
                call,
                self.out_tx.clone(),
                credit.clone(),
                key.clone(),
                legacy,
                self.links[key.link].room(),
                ctx,
                span.clone(),
            )),
        };
        let deadline = deadline.map(|at| self.deadlines.add(at, key.clone()));
        let chan = Chan {
            started: now,
            metrics: self.metrics.method(name).clone(),
            span,
            deadline,
            route: framing::route(&frames),
            run,
            // v1 callers are heartbeated and judged lost like v3 ones: a
            // passive channel was never judged lost, so abandoned v1 calls
            // ran forever.
            beat: Beat::new(now, true),
            credit,
            legacy,
            pooled,
            input,
        };
        self.metrics.in_flight.increment(1.0);
        if streamed {
            // Taken: a heartbeat says so at once, running or waiting for a
            // pool slot (a zerorpc-node server ignores the request, and
            // its caller learns that from this event's absence).
            let hb = protocol::encode_reply(&key.id, protocol::HEARTBEAT, protocol::HEARTBEAT_ARGS);
            self.links[key.link].send(framing::message(&chan.route, hb.into()));
        }
        self.chans.insert(key, chan);
    }

    /// A message that is not a well-formed event: answered with a
    /// `ProtocolError` when its request id can be read, so the caller learns
    /// what was wrong instead of waiting for a timeout.
    pub(super) fn on_undecodable(
        &mut self,
        link: LinkId,
        identity: Bytes,
        frames: VecDeque<Bytes>,
        payload: &Bytes,
        e: DecodeError,
    ) {
        if let Some((id, version)) = protocol::request_id(payload) {
            let key = ChanKey { link, identity, id };
            if !self.chans.contains(&key) {
                self.metrics.rejected(Rejected::Malformed);
                let err = ServiceError::new("ProtocolError", format!("malformed request: {e}"));
                self.reject(&key, frames, version.unwrap_or(1) < 2, err);
            }
        }
    }

    /// Answer a request whose arguments are not an array with Python's
    /// `TypeError`.
    fn not_an_array(
        &mut self,
        key: &ChanKey,
        frames: VecDeque<Bytes>,
        legacy: bool,
        name: &str,
        raw: &[u8],
    ) {
        self.metrics
            .method(name)
            .ended(Outcome::Error, Duration::ZERO);
        let got = msgpack::type_name(raw);
        let name = clip(name, QUOTE_LIMIT);
        let e = ServiceError::type_error(format!(
            "{name}() arguments must be a msgpack array, got {got}"
        ));
        self.reject(key, frames, legacy, e);
    }

    /// A stream call whose arguments do not start with a method name.
    fn bad_stream_call(&mut self, key: &ChanKey, frames: VecDeque<Bytes>, legacy: bool) {
        self.metrics.rejected(Rejected::Malformed);
        let e = ServiceError::type_error(format!(
            "{}() takes the method's name, then its arguments",
            protocol::STREAM_CALL
        ));
        self.reject(key, frames, legacy, e);
    }

    /// The queue a stream call's items go through to its handler, both
    /// ends: the handler's (with its way to grant credit), and the core's.
    fn incoming(&self, key: &ChanKey) -> (Incoming, Input) {
        let (tx, rx) = mpsc::unbounded_channel();
        let ahead = Arc::new(AtomicUsize::new(0));
        let grants = self.grants_tx.clone();
        let key = key.clone();
        let incoming = Incoming {
            rx,
            grant: Box::new(move |n| {
                let _ = grants.send((key.clone(), n));
            }),
            ahead: ahead.clone(),
            max_decoded: self.max_decoded,
        };
        let input = Input {
            tx: Some(tx),
            credit: 0,
            ahead,
        };
        (incoming, input)
    }

    /// Answer a request (its `frames`) with an error.
    fn reject(&mut self, key: &ChanKey, frames: VecDeque<Bytes>, legacy: bool, e: ServiceError) {
        tracing::debug!(peer = %hex(&key.identity), error = %e, "request rejected");
        self.reply(key.link, frames, encode_error(&key.id, legacy, &e));
    }

    // ---- events on open channels ----

    /// An event on an open channel: credit, a heartbeat, or any other sign
    /// of life. Events for channels that are closed are dropped.
    pub(super) fn on_channel_event(&mut self, key: &ChanKey, ev: &Event<'_>) {
        let Some(chan) = self.chans.get_mut(key) else {
            tracing::debug!(name = ?ev.name, "unable to route event (channel closed)");
            return;
        };
        let now = Instant::now();
        match ev.name {
            Ok(protocol::HEARTBEAT) => chan.beat.heard_heartbeat(now),
            Ok(protocol::CANCEL) => {
                // The caller abandoned the call: stop it, send nothing.
                if let Some(chan) = self.end(key, Outcome::Cancelled) {
                    chan.run.abort();
                    tracing::debug!(peer = %hex(&key.identity), "request cancelled by its caller");
                }
            }
            Ok(protocol::MORE) => {
                chan.beat.heard(now);
                match more_credit(&ev.args) {
                    Some(n) => {
                        let room = MAX_CREDIT.saturating_sub(chan.credit.available_permits());
                        chan.credit.add_permits(n.min(room));
                    }
                    None => self.warned.warn(|| tracing::warn!(peer = %hex(&key.identity), args = msgpack::type_name(&ev.args), "ignored _zpc_more without a positive count")),
                }
            }
            Ok(protocol::STREAM | protocol::STREAM_DONE | protocol::ERR)
                if chan.input.is_some() =>
            {
                chan.beat.heard(now);
                self.on_item(key, ev);
            }
            _ => chan.beat.heard(now),
        }
    }

    // ---- a caller's stream of items (PROTOCOL.md §9.1) ----

    /// An event of the caller's stream: an item for the handler (within
    /// the credit it granted), its end, or its failure (which cancels the
    /// request: the handler never mistakes a cut-off stream for a whole
    /// one).
    fn on_item(&mut self, key: &ChanKey, ev: &Event<'_>) {
        let Some(input) = self.chans.get_mut(key).and_then(|c| c.input.as_mut()) else {
            return;
        };
        let failure = match ev.name {
            Ok(protocol::STREAM) => {
                let Some(tx) = input.tx.as_ref() else {
                    return self.fail_input(key, "sent an item after the end of its stream");
                };
                if input.credit == 0 {
                    return self.fail_input(key, "sent more items than the credit it was granted");
                }
                let ahead = input.ahead.load(Ordering::Acquire);
                if ahead > 0 && ahead.saturating_add(ev.args.len()) > INPUT_MAX_AHEAD {
                    let why = format!(
                        "sent more than {} MiB of items ahead of their reader",
                        INPUT_MAX_AHEAD >> 20
                    );
                    return self.fail_input(key, &why);
                }
                input.credit -= 1;
                input.ahead.fetch_add(ev.args.len(), Ordering::AcqRel);
                // (A handler that stopped reading just drops them.)
                let _ = tx.send(ev.args.clone());
                return;
            }
            Ok(protocol::STREAM_DONE) => {
                input.tx = None;
                return;
            }
            _ => crate::error::parse_err(&ev.args),
        };
        if let Some(chan) = self.end(key, Outcome::Cancelled) {
            chan.run.abort();
            tracing::debug!(peer = %hex(&key.identity), error = %failure, "the caller failed its stream: request cancelled");
        }
    }

    /// The caller broke the stream's rules: its request is cancelled and it
    /// is told why.
    fn fail_input(&mut self, key: &ChanKey, why: &str) {
        self.warned.warn(
            || tracing::warn!(peer = %hex(&key.identity), "a caller {why}: request cancelled"),
        );
        if let Some(chan) = self.end(key, Outcome::Error) {
            chan.run.abort();
            let e = ServiceError::new("ProtocolError", format!("the caller {why}"));
            let err = encode_error(&key.id, chan.legacy, &e);
            if let Some(l) = self.links.get(key.link) {
                l.send(framing::message(&chan.route, err));
            }
        }
    }

    /// A handler read its caller's items: grant the caller `n` more.
    fn on_grant(&mut self, key: &ChanKey, n: usize) {
        let Some(chan) = self.chans.get_mut(key) else {
            return;
        };
        let Some(input) = chan.input.as_mut().filter(|i| i.tx.is_some()) else {
            return;
        };
        input.credit += n;
        let mut args = Vec::with_capacity(10);
        args.push(0x91);
        msgpack::write_uint(&mut args, n as u64);
        let more = protocol::encode_reply(&key.id, protocol::MORE, &args);
        if let Some(l) = self.links.get(key.link) {
            l.send(framing::message(&chan.route, more.into()));
        }
    }
}
