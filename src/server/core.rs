//! The server's core task: the one owner of every open channel. It reads
//! the links, dispatches each message (to a channel, or as a new request),
//! forwards what handler tasks produce, beats, and drains on stop.

use super::channel::{Chan, ChanKey, Chans, Out, Run};
use super::dispatch::Dispatch;
use super::pool::Pool;
use super::request;
use crate::error::ServiceError;
use crate::logging::{hex, RateLimit};
use crate::protocol::{self, framing, Event};
use crate::shutdown::Stop;
use crate::telemetry::{Lost, Outcome, Rejected, ServerMetrics};
use crate::transport::{Inbound, Link, LinkEvent, LinkId};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc;
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
    pub(super) warned: RateLimit,
    /// ServerBusy refusals (logged at most once a second).
    pub(super) busy: RateLimit,
    pub(super) metrics: ServerMetrics,
    /// Requests' deadlines, earliest first (the number tells apart equal
    /// instants); an entry leaves when its request ends.
    pub(super) deadlines: BTreeMap<(Instant, u64), ChanKey>,
    pub(super) next_deadline: u64,
    /// Fires at the earliest deadline.
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
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
        let metrics = ServerMetrics::new(dispatch.service().method_names());
        Core {
            dispatch,
            links,
            chans: Chans::default(),
            heartbeat,
            pool,
            out_tx,
            out_rx,
            warned: RateLimit::default(),
            busy: RateLimit::default(),
            metrics,
            deadlines: BTreeMap::new(),
            next_deadline: 0,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timer_at: None,
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
        match Event::decode_with(&payload, request::DECODE_ON_CORE_MAX).map(|(ev, _)| ev) {
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

    /// Note a request's deadline; returns its key in `deadlines`.
    pub(super) fn add_deadline(&mut self, at: Instant, key: ChanKey) -> (Instant, u64) {
        self.next_deadline += 1;
        let slot = (at, self.next_deadline);
        self.deadlines.insert(slot, key);
        slot
    }

    /// Cancel the requests whose caller stopped waiting (no reply: it
    /// would arrive late), and set the timer for the next deadline.
    fn poll_deadlines(&mut self, cx: &mut std::task::Context<'_>) {
        loop {
            let Some((&(at, n), _)) = self.deadlines.first_key_value() else {
                self.timer_at = None;
                return;
            };
            if self.timer_at != Some(at) {
                self.timer.as_mut().reset(at);
                self.timer_at = Some(at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return;
            }
            self.timer_at = None;
            if let Some(key) = self.deadlines.remove(&(at, n)) {
                if let Some(chan) = self.end(&key, Outcome::DeadlineExceeded) {
                    chan.run.abort();
                    tracing::debug!(peer = %hex(&key.identity), "deadline passed: request cancelled");
                }
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
}
