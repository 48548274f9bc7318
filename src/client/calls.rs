//! The client's call table ([`Table`]): every call in flight (a [`Call`]),
//! its deadline, its heartbeat state and who waits for its events; where
//! each new call goes, and what each event read from a server means for
//! its call. It does no I/O of its own beyond handing messages to links;
//! `reader.rs` decides who feeds it what the sockets received.

use super::deadlines::Deadlines;
use super::reply::{parse_err, stream_queue, Answered, Name, Reply, Slot, StreamTx};
use super::retry::Retry;
use super::servers::{ServerId, Servers};
use super::upload::{Upload, UploadHandle, TAKEN_WITHIN};
use crate::error::Error;
use crate::logging::RateLimit;
use crate::names::ShortName;
use crate::protocol::heartbeat::Beat;
use crate::protocol::{self, framing, msgpack, Event, MessageId};
use crate::telemetry::{CallCounters, ClientMetrics};
use crate::transport::{Inbound, Link, LinkEvent, LinkId, Opener};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The most bytes of a stream's items that may wait unread for its reader
/// (one item is always taken, whatever its size). The reader's credit
/// keeps a server that follows it well under this; a server that sends
/// small items and then huge ones on the credit they earned is cut off.
const STREAM_MAX_AHEAD: usize = 64 << 20;
use zerorpc_zeromq::ZmqMessage;

/// One call in flight, as the table knows it.
pub(super) struct Call {
    /// The request, until a link takes it.
    frame: Option<Bytes>,
    /// The request, kept until the call ends: a stopping server hands back
    /// what it never ran, to be sent elsewhere.
    request: Bytes,
    /// Until the first event: when the call times out, and its timeout.
    deadline: Option<(Instant, Duration)>,
    /// The server it was sent to.
    server: Option<ServerId>,
    beat: Beat,
    method: ShortName,
    waiter: Waiter,
    /// Data events the server may still send (one for the first reply).
    credit: usize,
    /// The call may be sent again if its server is lost before answering
    /// (boxed: most calls have none, and every call is moved in and out
    /// of the table).
    retry: Option<Box<Retrying>>,
    /// When its request left (timed only with several servers).
    sent: Option<Instant>,
    /// Where it may go.
    route: Route,
    /// A stream call's items on their way (PROTOCOL.md §9.1): the
    /// server's grants go there.
    upload: Option<UploadHandle>,
}

/// Where a call may go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Route {
    /// To the best server.
    Any,
    /// Not to the server it was lost on or handed back by, while another
    /// one is healthy.
    Avoid(ServerId),
    /// To this server, or nowhere (a call to a server by name).
    Only(ServerId),
}

impl Route {
    /// After a call was lost on `s`: a call to one server stays on it.
    fn after_losing(self, s: ServerId) -> Route {
        match self {
            Route::Only(_) => self,
            _ => Route::Avoid(s),
        }
    }
}

/// What is left of a retryable call's policy.
struct Retrying {
    policy: Retry,
    /// Attempts made so far (the first send included).
    attempts: u32,
}

/// Who receives a call's events.
pub(super) enum Waiter {
    /// The caller, waiting for the first event.
    First(Arc<Slot<Answered>>),
    /// A [`ReplyStream`], for the events after the first.
    Stream(StreamTx),
}

impl Waiter {
    pub(super) fn fail(self, e: Error) {
        match self {
            Waiter::First(slot) => {
                slot.fill(Err(e));
            }
            Waiter::Stream(s) => {
                let _ = s.tx.send(Err(e));
            }
        }
    }

    /// The caller gave up (timed out, or dropped the future or stream).
    fn abandoned(&self) -> bool {
        match self {
            Waiter::First(slot) => slot.is_gone(),
            Waiter::Stream(s) => s.tx.is_closed(),
        }
    }
}

/// The call table and the client's links.
pub(super) struct Table {
    /// The sockets' receive side (`None` once closed).
    pub(super) inbound: Option<Inbound>,
    pub(super) servers: Servers,
    /// Opens the links of discovered addresses (`None` in tests of the
    /// table alone).
    opener: Option<Opener>,
    warned: RateLimit,
    /// Calls waiting for a connected link, oldest first.
    pending: VecDeque<MessageId>,
    pub(super) calls: HashMap<MessageId, Call, BuildHasherDefault<IdHash>>,
    pub(super) heartbeat: Option<Duration>,
    passive: bool,
    /// [`super::Client::close`] was called: no new calls.
    pub(super) closed: bool,
    /// When calls time out (see `deadlines.rs`).
    deadlines: Deadlines,
    /// When the core task's timer fires (`None`: it is not set).
    pub(super) armed: Option<Instant>,
    metrics: ClientMetrics,
    /// Retried calls waiting for their backoff, earliest first.
    retries: BinaryHeap<Reverse<(Instant, MessageId)>>,
    /// The timer must be reset earlier than it was armed (a retry was
    /// scheduled while the sockets were read).
    pub(super) rearm: bool,
    /// The core task's watchdog is off (no call was waiting): the next call
    /// wakes the core task to start it. (Never set on a multi-thread
    /// runtime, where callers do not lead and nothing needs watching.)
    pub(super) unwatched: bool,
}

impl Table {
    pub(super) fn new(
        inbound: Inbound,
        links: Vec<Link>,
        opener: Option<Opener>,
        heartbeat: Option<Duration>,
        passive: bool,
    ) -> Self {
        let mut servers = Servers::default();
        for link in links {
            servers.add_link(link, None);
        }
        Table {
            inbound: Some(inbound),
            servers,
            opener,
            warned: RateLimit::default(),
            pending: VecDeque::new(),
            calls: HashMap::default(),
            heartbeat,
            passive,
            closed: false,
            deadlines: Deadlines::default(),
            armed: None,
            metrics: ClientMetrics::default(),
            retries: BinaryHeap::new(),
            rearm: false,
            unwatched: false,
        }
    }

    /// Register a call and send it (or queue it until a server is up).
    /// True when the core task's timer must be set earlier; and the call's
    /// metric handles.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        &mut self,
        id: MessageId,
        frame: Bytes,
        method: &str,
        timeout: Option<Duration>,
        retry: Option<Retry>,
        reply: Arc<Slot<Answered>>,
        route: Route,
        now: Instant,
        upload: Option<Arc<Upload>>,
    ) -> Result<(bool, CallCounters), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        let started = self.metrics.started(method);
        let mut deadline = timeout.map(|t| (now + t, t));
        // A stream call is first timed by when its server must take it.
        let upload = upload.map(|upload| {
            let within = self.heartbeat.map_or(TAKEN_WITHIN, |p| p * 2);
            let by = (now + within, within);
            let untaken = deadline;
            if deadline.is_none_or(|(at, _)| by.0 < at) {
                deadline = Some(by);
            }
            UploadHandle {
                upload,
                untaken: Some(untaken),
            }
        });
        // (A stream call's items are not kept: it is never sent twice.)
        let retry = retry
            .filter(|r| r.attempts > 1 && upload.is_none())
            .map(|policy| {
                Box::new(Retrying {
                    policy,
                    attempts: 0,
                })
            });
        let call = Call {
            request: frame.clone(),
            frame: Some(frame),
            deadline,
            server: None,
            beat: Beat::new(now, !self.passive),
            method: ShortName::new(method),
            waiter: Waiter::First(reply),
            credit: 1,
            retry,
            sent: None,
            route,
            upload,
        };
        self.calls.insert(id, call);
        self.pending.push_back(id);
        self.flush_pending(now);
        let wake = std::mem::take(&mut self.unwatched);
        let Some((at, _)) = deadline else {
            return Ok((wake, started));
        };
        // Finished calls leave their entries behind.
        let calls = &self.calls;
        self.deadlines.sweep(calls.len(), |id| {
            calls.get(id).is_some_and(|c| c.deadline.is_some())
        });
        self.deadlines.push(at, id);
        let earlier = self.armed.is_none_or(|armed| at < armed);
        if earlier {
            self.armed = Some(at);
        }
        Ok((earlier || wake, started))
    }

    /// The caller gave up on call `id` (dropped its future or stream):
    /// forget it, and if its request went out, send `_zpc_cancel` so a zrpc
    /// server stops the handler at once (other servers ignore the event;
    /// PROTOCOL.md §7).
    pub(super) fn abandon(&mut self, id: MessageId) {
        if let Some(call) = self.forget(id) {
            self.cancel(id, &call);
        }
    }

    /// Remove call `id` from the table (and from its server's load).
    fn forget(&mut self, id: MessageId) -> Option<Call> {
        let call = self.calls.remove(&id)?;
        if let Some(s) = call.server {
            self.unload(s);
        }
        Some(call)
    }

    /// A call left server `s`; a retiring server closes once idle.
    fn unload(&mut self, s: ServerId) {
        let Some(server) = self.servers.get_mut(s) else {
            return;
        };
        server.remove_call();
        if server.retiring && server.load() == 0 {
            self.remove_server(s);
        }
    }

    fn cancel(&self, id: MessageId, call: &Call) {
        let Some(s) = call.server else {
            return;
        };
        let cancel = protocol::encode_reply(&id.to_raw(), protocol::CANCEL, &[0x90]);
        self.servers.send(s, cancel.into());
    }

    /// Fail the calls whose deadline passed; returns when to look next.
    pub(super) fn expire(&mut self, now: Instant) -> Option<Instant> {
        self.due_retries(now);
        let next = self.expire_deadlines(now);
        let retry = self.retries.peek().map(|Reverse((at, _))| *at);
        self.armed = match (next, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.armed
    }

    /// Retried calls whose backoff is over go back in the queue.
    fn due_retries(&mut self, now: Instant) {
        let mut any = false;
        while let Some(Reverse((at, id))) = self.retries.peek().copied() {
            if at > now {
                break;
            }
            self.retries.pop();
            if self.calls.contains_key(&id) {
                self.pending.push_front(id);
                any = true;
            }
        }
        if any {
            self.flush_pending(now);
        }
    }

    fn expire_deadlines(&mut self, now: Instant) -> Option<Instant> {
        while let Some((at, id)) = self.deadlines.first() {
            if at > now {
                return Some(at);
            }
            self.deadlines.pop();
            let due = self
                .calls
                .get(&id)
                .and_then(|c| c.deadline)
                .is_some_and(|(at, _)| at <= now);
            if !due {
                continue;
            }
            if let Some(call) = self.forget(id) {
                // (A zrpc server stops at the deadline by itself; others
                // may still be working.)
                self.cancel(id, &call);
                if let Some(e) = untaken(&call, now) {
                    call.waiter.fail(e);
                    continue;
                }
                let after = call.deadline.map_or(Duration::ZERO, |(_, t)| t);
                // Never sent: say what kept it from going out.
                let unsent = match call.server {
                    Some(_) => None,
                    None => Some(self.why_unsent()),
                };
                call.waiter.fail(Error::Timeout {
                    method: call.method.into(),
                    after,
                    unsent,
                });
            }
        }
        None
    }

    /// Why a call could not be sent: each server's last refusal, or that
    /// none was reachable.
    fn why_unsent(&self) -> String {
        let refused: Vec<&str> = self
            .servers
            .iter()
            .filter_map(|(_, s)| s.refused.as_deref())
            .collect();
        match refused.as_slice() {
            [] => "no server was connected".to_string(),
            reasons => format!("no server was connected ({})", reasons.join("; ")),
        }
    }

    /// Handle a link's event; returns the answer of call `mine` if this
    /// was it.
    pub(super) fn on_link_event(
        &mut self,
        ev: LinkEvent,
        mine: Option<MessageId>,
    ) -> Option<Answered> {
        if self.closed {
            return None;
        }
        match ev {
            LinkEvent::Up(l) => {
                let s = self.servers.of_link(l)?;
                self.server_up(s);
            }
            LinkEvent::PeerUp(l, peer) => {
                let s = self.servers.peer_up(l, peer)?;
                tracing::debug!(endpoint = %self.servers.endpoint(s), "a worker connected");
                self.server_up(s);
            }
            LinkEvent::Down(l) => {
                let s = self.servers.of_link(l)?;
                self.server_down(s);
            }
            LinkEvent::Refused(l, why) => {
                let s = self.servers.of_link(l)?;
                self.servers.get_mut(s)?.refused = Some(why);
            }
            LinkEvent::PeerGone(l, peer) => {
                let s = self.servers.peer_gone(l, peer)?;
                self.server_down(s);
                self.remove_server(s);
            }
            LinkEvent::Message(l, msg) => return self.on_message(l, msg, mine),
        }
        None
    }

    fn server_up(&mut self, s: ServerId) {
        if let Some(server) = self.servers.get_mut(s) {
            server.up = true;
            server.suspect = false;
            server.refused = None;
            // Perhaps another server at the same address: ask again.
            server.name = None;
            // A new connection: a restarted server, no longer stopping.
            server.draining = false;
        }
        self.flush_pending(Instant::now());
    }

    /// Server `s`'s connection closed: its calls are lost, unless it said
    /// it was stopping: it answered everything it read, so a call still
    /// unanswered was never read and goes to another server (if there is
    /// one).
    fn server_down(&mut self, s: ServerId) {
        let Some(server) = self.servers.get_mut(s) else {
            return;
        };
        server.up = false;
        let draining = server.draining;
        let reason = format!("connection to {} closed", server.endpoint);
        let draining = draining && self.servers.another_healthy(s);
        let now = Instant::now();
        for id in self.calls_on(s) {
            if !(draining && self.requeue(id, now)) {
                self.lost(id, &reason, now);
            }
        }
    }

    /// The calls in flight on server `s`.
    fn calls_on(&self, s: ServerId) -> Vec<MessageId> {
        self.calls
            .iter()
            .filter(|(_, c)| c.server == Some(s))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Call `id` was not run by its server (a stopping server handed it
    /// back, or closed without reading it): send it to another one, with
    /// its deadline unchanged. False (nothing done) for a call that had
    /// part of its answer (a stream): it ran; and for a call to one server
    /// by name: there is no other.
    fn requeue(&mut self, id: MessageId, now: Instant) -> bool {
        let server = {
            let Some(call) = self.calls.get_mut(&id) else {
                return false;
            };
            if !matches!(call.waiter, Waiter::First(_))
                || matches!(call.route, Route::Only(_))
                || call.upload.as_ref().is_some_and(|u| u.upload.sent_any())
            {
                return false;
            }
            call.frame = Some(call.request.clone());
            call.beat = Beat::new(now, !self.passive);
            call.server.take()
        };
        if let Some(s) = server {
            self.unload(s);
            if let Some(call) = self.calls.get_mut(&id) {
                call.route = call.route.after_losing(s);
            }
        }
        tracing::debug!("call not run by a stopping server; sending it elsewhere");
        self.pending.push_front(id);
        self.flush_pending(now);
        true
    }

    /// Server `s` said it is stopping: no new calls go to it.
    fn drain(&mut self, s: ServerId) {
        if let Some(server) = self.servers.get_mut(s) {
            if !std::mem::replace(&mut server.draining, true) {
                tracing::info!(endpoint = %server.endpoint, "server is stopping; new calls go to the others");
            }
        }
    }

    fn on_message(
        &mut self,
        link: LinkId,
        msg: ZmqMessage,
        mine: Option<MessageId>,
    ) -> Option<Answered> {
        let from = self.servers.of_message(link, &msg)?;
        let server = self.servers.get_mut(from)?;
        server.last_heard = Some(Instant::now());
        server.probed = None;
        if server.suspect {
            server.suspect = false;
            tracing::info!(endpoint = %server.endpoint, "server answers again; sending it calls");
            self.flush_pending(Instant::now());
        }
        let payload = framing::payload(&msg)?;
        let ev = match Event::decode(payload) {
            Ok(ev) => ev,
            Err(e) => {
                let ep = self.servers.endpoint(from);
                self.warned.warn(
                    || tracing::warn!(endpoint = %ep, error = %e, "dropped an undecodable reply"),
                );
                // Its call, if it can be told, fails now rather than at its
                // timeout.
                let id = protocol::reply_to(payload).and_then(MessageId::from_raw);
                if let Some((id, _)) = id {
                    if self.calls.get(&id).is_some_and(|c| c.server == Some(from)) {
                        if let Some(call) = self.forget(id) {
                            call.waiter.fail(Error::Protocol(format!(
                                "the server's reply to {} is malformed: {e}",
                                call.method
                            )));
                        }
                    }
                }
                return None;
            }
        };
        let Some((id, exact)) = ev.response_to.and_then(MessageId::from_raw) else {
            if ev.response_to.is_none() && ev.name == Ok(protocol::DRAIN) {
                self.drain(from);
            } else {
                tracing::debug!(name = ?ev.name, "unable to route event (no known response_to)");
            }
            return None;
        };
        let server = self.servers.get_mut(from)?;
        if !exact && !std::mem::replace(&mut server.retyped, true) {
            // A Go peer, say: it turns every bin into a str.
            tracing::warn!(
                endpoint = %server.endpoint,
                "the server echoes message ids with another msgpack type than sent (str for bin); matching them by their bytes"
            );
        }
        let name = ev.name.ok()?;
        if matches!(
            name,
            protocol::OK | protocol::ERR | protocol::STREAM | protocol::STREAM_DONE
        ) {
            return self.on_data(from, id, protocol::owned_name(name), ev.args, mine);
        }
        let heartbeat = name == protocol::HEARTBEAT;
        // Any other event on an open call is ignored without closing it
        // (PROTOCOL.md §6): a newer peer's extension, say.
        if !heartbeat && name != protocol::MORE {
            tracing::debug!(%name, "ignored an event of unknown name on a call");
        }
        if let Some(call) = self.calls.get_mut(&id).filter(|c| c.server == Some(from)) {
            taken(id, call, &mut self.deadlines);
        }
        match self.calls.get_mut(&id) {
            Some(call) if call.server != Some(from) => left(name),
            Some(call) if heartbeat => call.beat.heard_heartbeat(Instant::now()),
            Some(call) => {
                call.beat.heard(Instant::now());
                // The server has room for more of the call's items.
                if let (Some(up), protocol::MORE) = (&call.upload, name) {
                    match msgpack::first_item(&ev.args).and_then(|n| msgpack::read_int(&n)) {
                        Some(n) if n > 0 => {
                            up.upload.grant(usize::try_from(n).unwrap_or(usize::MAX))
                        }
                        _ => tracing::debug!("ignored _zpc_more without a positive count"),
                    }
                }
            }
            None => tracing::debug!(%name, "unable to route event (call finished)"),
        }
        None
    }

    /// A reply event: hand it to the caller or to its stream; the answer of
    /// call `mine` is returned instead. (A call that ends here needs no
    /// clock read or second lookup: most calls.)
    fn on_data(
        &mut self,
        from: ServerId,
        id: MessageId,
        name: Name,
        args: Bytes,
        mine: Option<MessageId>,
    ) -> Option<Answered> {
        let Some(call) = self.calls.get_mut(&id) else {
            tracing::debug!(%name, "unable to route event (call finished)");
            return None;
        };
        if call.server != Some(from) {
            left(&name);
            return None;
        }
        // A stopping server hands back a request it did not run: it goes
        // to another server (PROTOCOL.md §7).
        if name == protocol::ERR
            && matches!(call.waiter, Waiter::First(_))
            && !matches!(call.route, Route::Only(_))
            && !call.upload.as_ref().is_some_and(|u| u.upload.sent_any())
            && self.servers.another_healthy(from)
            && parse_err(&args).name == protocol::SERVER_STOPPING
        {
            self.requeue(id, Instant::now());
            return None;
        }
        let streaming = name == protocol::STREAM;
        // Only STREAM items can pile up unread: a final event (OK, ERR,
        // STREAM_DONE) sent without credit is taken, as zerorpc-python and
        // zerorpc-node do; a server that streams past its credit is cut off
        // (zerorpc-python kills such a channel too, at 100 unread).
        if call.credit == 0 && streaming {
            tracing::warn!(method = %call.method, "server sent more than the credit it was granted; stream closed");
            if let Some(call) = self.forget(id) {
                let e = Error::Protocol(format!(
                    "the server of {} ignored flow control",
                    call.method
                ));
                call.waiter.fail(e);
            }
            return None;
        }
        call.credit = call.credit.saturating_sub(1);
        call.deadline = None;
        if let Some(up) = call.upload.as_mut() {
            up.untaken = None;
        }
        if matches!(call.waiter, Waiter::First(_)) {
            // Answered: never retried from here on.
            call.retry = None;
            if let Some(s) = call.server.and_then(|s| self.servers.get_mut(s)) {
                s.answered += 1;
                if let Some(sent) = call.sent {
                    let now = Instant::now();
                    s.timed(now.saturating_duration_since(sent), now);
                }
            }
        }
        if streaming {
            call.beat.heard(Instant::now());
        }
        match &call.waiter {
            Waiter::Stream(s) => {
                if streaming {
                    let ahead = s.ahead.load(Ordering::Acquire);
                    if ahead > 0 && ahead.saturating_add(args.len()) > STREAM_MAX_AHEAD {
                        tracing::warn!(method = %call.method, "server sent more than {} MiB of items ahead of their reader; stream closed", STREAM_MAX_AHEAD >> 20);
                        if let Some(call) = self.forget(id) {
                            call.waiter.fail(Error::Protocol(format!(
                                "the server of {} sent more than {} MiB of items ahead of their reader",
                                call.method,
                                STREAM_MAX_AHEAD >> 20
                            )));
                        }
                        return None;
                    }
                    s.ahead.fetch_add(args.len(), Ordering::AcqRel);
                }
                let _ = s.tx.send(Ok((name, args)));
                if !streaming {
                    self.forget(id);
                }
            }
            Waiter::First(_) if streaming => {
                let (tx, rx) = stream_queue();
                if let Waiter::First(slot) = std::mem::replace(&mut call.waiter, Waiter::Stream(tx))
                {
                    let first = Reply {
                        name,
                        args,
                        rest: Some(rx),
                    };
                    if mine == Some(id) {
                        return Some(Ok(first));
                    }
                    if !slot.fill(Ok(first)) {
                        self.forget(id);
                    }
                }
            }
            Waiter::First(_) => {
                if let Some(Call {
                    waiter: Waiter::First(slot),
                    ..
                }) = self.forget(id)
                {
                    let first = Reply {
                        name,
                        args,
                        rest: None,
                    };
                    if mine == Some(id) {
                        return Some(Ok(first));
                    }
                    slot.fill(Ok(first));
                }
            }
        }
        None
    }

    /// Send `event` on call `id` (to its server); false when the call has
    /// ended or has no server.
    pub(super) fn send_on(&mut self, id: MessageId, event: Bytes) -> bool {
        let Some(s) = self.calls.get(&id).and_then(|c| c.server) else {
            return false;
        };
        self.servers.send(s, event);
        true
    }

    /// Fail call `id` with `e` (the server was told already).
    pub(super) fn fail(&mut self, id: MessageId, e: Error) {
        if let Some(call) = self.forget(id) {
            call.waiter.fail(e);
        }
    }

    /// The reader of stream `id` has room for `n` more events.
    pub(super) fn grant(&mut self, id: MessageId, n: usize) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(server) = call.server else { return };
        call.credit += n;
        let mut args = Vec::with_capacity(10);
        args.push(0x91);
        let _ = rmp::encode::write_uint(&mut args, n as u64);
        let more = protocol::encode_reply(&id.to_raw(), protocol::MORE, &args);
        self.servers.send(server, more.into());
    }

    pub(super) fn on_tick(&mut self, period: Duration) {
        let now = Instant::now();
        let mut lost = Vec::new();
        let mut abandoned = Vec::new();
        for (id, call) in self.calls.iter_mut() {
            if call.waiter.abandoned() {
                abandoned.push(*id);
                continue;
            }
            let Some(server) = call.server else { continue };
            if self.heartbeat.is_none() {
                continue;
            }
            if call.beat.lost(now, period) {
                lost.push(*id);
            } else if call.beat.due(now, period) {
                let hb = protocol::encode_reply(
                    &id.to_raw(),
                    protocol::HEARTBEAT,
                    protocol::HEARTBEAT_ARGS,
                );
                self.servers.send(server, hb.into());
            }
        }
        for id in abandoned {
            self.abandon(id);
        }
        self.pending.retain(|id| self.calls.contains_key(id));
        for s in self.silent_servers(period, now) {
            // Its calls go with it, not one by one.
            lost.retain(|id| self.calls.get(id).is_some_and(|c| c.server != Some(s)));
            self.server_silent(s, period, now);
        }
        let reason = format!(
            "no heartbeat for more than {}",
            crate::error::fmt_secs(2 * period)
        );
        for id in lost {
            // Its server is suspect until it speaks again.
            let server = self.calls.get(&id).and_then(|c| c.server);
            if let Some(s) = server.and_then(|s| self.servers.get_mut(s)) {
                if !std::mem::replace(&mut s.suspect, true) {
                    tracing::warn!(endpoint = %s.endpoint, "server stopped answering heartbeats; no new calls go to it until it answers");
                }
            }
            self.lost(id, &reason, now);
        }
        self.probe_suspects();
        self.servers.decay();
    }

    /// Probe servers whose calls are overdue, and return those that did
    /// not answer their probe. A server with calls in flight that has sent
    /// nothing for a quarter period gets a `_zerorpc_ping`, which every
    /// zerorpc server answers at once, however busy; one that then sends
    /// nothing until the tick a period later is silent. With a tick every
    /// half period, a host cut off is found 1.25 to 1.75 periods after its
    /// last sign of life, not at the heartbeat rule's 3 periods after its
    /// newest call.
    fn silent_servers(&mut self, period: Duration, now: Instant) -> Vec<ServerId> {
        let mut silent = Vec::new();
        let mut probe = Vec::new();
        for (id, s) in self.servers.iter() {
            if !s.up {
                continue;
            }
            match s.probed {
                // (Ticks come every half period, a little early or late.)
                Some(at) if now + period / 4 >= at + period => silent.push(id),
                Some(_) => {}
                None if s.overdue(now, period / 4) => probe.push(id),
                None => {}
            }
        }
        for id in probe {
            self.ping(id);
            if let Some(s) = self.servers.get_mut(id) {
                s.probed = Some(now);
            }
        }
        silent
    }

    /// A `_zerorpc_ping` to server `id` (its answer, like anything it
    /// sends, is a sign of life).
    fn ping(&self, id: ServerId) {
        let (_, ping) =
            protocol::encode_request_extra(protocol::PING, None, 1, |out| out.push(0x90));
        self.servers.send(id, ping.into());
    }

    /// Server `s` went silent (a host partitioned, a process frozen): its
    /// calls are lost (or retried), no new calls go to it, and its
    /// connection is dropped and made anew, so that it is used again as
    /// soon as it can be reached (a stalled TCP connection recovers only
    /// when the kernel retransmits).
    fn server_silent(&mut self, s: ServerId, period: Duration, now: Instant) {
        let Some(server) = self.servers.get_mut(s) else {
            return;
        };
        server.suspect = true;
        server.probed = None;
        let silent = server.last_heard.map_or_else(String::new, |h| {
            format!(", nothing heard for {}", crate::error::fmt_secs(now - h))
        });
        let reason = format!(
            "{} did not answer a ping within {}{silent}",
            server.endpoint,
            crate::error::fmt_secs(period)
        );
        tracing::warn!("{reason}: its calls are lost; reconnecting");
        for id in self.calls_on(s) {
            self.lost(id, &reason, now);
        }
        self.servers.reconnect(s);
    }

    /// A `_zerorpc_ping` to each suspect server: any answer clears it.
    fn probe_suspects(&self) {
        for (id, _) in self.servers.iter().filter(|(_, s)| s.suspect && s.up) {
            self.ping(id);
        }
    }

    /// Call `id`'s server is lost (its connection closed or its heartbeats
    /// lapsed): send it elsewhere if it may be retried, else fail it with
    /// `LostRemote`.
    fn lost(&mut self, id: MessageId, reason: &str, now: Instant) {
        let retry_at = {
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            match &mut call.retry {
                Some(r) if r.attempts < r.policy.attempts => {
                    let at = now + r.policy.backoff_after(r.attempts);
                    call.frame = Some(call.request.clone());
                    Some(at)
                }
                _ => None,
            }
        };
        let Some(at) = retry_at else {
            if let Some(call) = self.forget(id) {
                call.waiter.fail(Error::LostRemote {
                    method: call.method.into(),
                    reason: reason.to_string(),
                });
            }
            return;
        };
        // Off its server (which it will avoid next time), back in line
        // once its backoff is over.
        let server = self.calls.get_mut(&id).and_then(|c| c.server.take());
        if let Some(s) = server {
            self.unload(s);
            if let Some(call) = self.calls.get_mut(&id) {
                call.beat = Beat::new(now, !self.passive);
                call.route = call.route.after_losing(s);
            }
        }
        tracing::debug!(reason, "call lost; retrying it on another server");
        self.retries.push(Reverse((at, id)));
        if self.armed.is_none_or(|armed| at < armed) {
            self.armed = Some(at);
            self.rearm = true;
        }
    }

    /// Hand waiting requests to the least-loaded healthy servers.
    fn flush_pending(&mut self, now: Instant) {
        while let Some(id) = self.pending.front().copied() {
            let Some(call) = self.calls.get(&id) else {
                self.pending.pop_front();
                continue;
            };
            let server = match call.route {
                Route::Only(s) => match self.servers.get(s).is_some_and(|s| s.usable()) {
                    true => s,
                    // Named, and gone since: nowhere else to go.
                    false => {
                        self.pending.pop_front();
                        if let Some(call) = self.forget(id) {
                            call.waiter.fail(Error::LostRemote {
                                method: call.method.into(),
                                reason: format!(
                                    "the server it was sent to ({}) is not connected",
                                    self.servers.endpoint(s)
                                ),
                            });
                        }
                        continue;
                    }
                },
                Route::Avoid(s) => match self.servers.pick(Some(s)) {
                    Some(server) => server,
                    None => return,
                },
                Route::Any => match self.servers.pick(None) {
                    Some(server) => server,
                    None => return,
                },
            };
            self.pending.pop_front();
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let Some(frame) = call.frame.take() else {
                continue;
            };
            call.server = Some(server);
            if let Some(r) = &mut call.retry {
                r.attempts += 1;
            }
            // The heartbeat clock starts when the request leaves.
            call.beat = Beat::new(now, !self.passive);
            if self.servers.timing() {
                call.sent = Some(now);
            }
            if let Some(s) = self.servers.get_mut(server) {
                s.add_call(now);
            }
            self.servers.send(server, frame);
        }
    }

    /// The addresses discovered name number `origin` stands for now:
    /// connect the new ones, retire those that went (they finish their
    /// calls, then close).
    pub(super) fn set_addresses(&mut self, origin: usize, endpoints: &[String]) {
        if self.closed {
            return;
        }
        let mine: Vec<(ServerId, String, bool)> = self
            .servers
            .iter()
            .filter(|(_, s)| s.origin == Some(origin))
            .map(|(id, s)| (id, s.endpoint.clone(), s.retiring))
            .collect();
        for (l, ep, retiring) in &mine {
            let wanted = endpoints.contains(ep);
            if wanted != *retiring {
                continue;
            }
            let Some(s) = self.servers.get_mut(*l) else {
                continue;
            };
            s.retiring = !wanted;
            if wanted {
                tracing::info!(endpoint = %ep, "server is back in its name's addresses");
            } else {
                tracing::info!(endpoint = %ep, "server left its name's addresses; closing it once its calls end");
                if s.load() == 0 {
                    self.remove_server(*l);
                }
            }
        }
        for ep in endpoints {
            if mine.iter().any(|(_, e, _)| e == ep) {
                continue;
            }
            let Some(opener) = &self.opener else { return };
            match opener.connect(self.servers.next_link(), ep) {
                Ok(link) => {
                    tracing::info!(endpoint = %ep, "discovered a server");
                    self.servers.add_link(link, Some(origin));
                }
                Err(e) => {
                    self.warned
                        .warn(|| tracing::warn!(endpoint = %ep, error = %e, "cannot use a discovered address"));
                }
            }
        }
    }

    /// Forget server `s` for good (it has no call in flight), closing its
    /// link if it had its own.
    fn remove_server(&mut self, s: ServerId) {
        tracing::debug!(endpoint = %self.servers.endpoint(s), "server removed");
        if let Some(l) = self.servers.remove(s) {
            if let Some(inbound) = self.inbound.as_mut() {
                inbound.forget(l);
            }
        }
    }

    /// Take no new calls; false if it was closed already.
    pub(super) fn close(&mut self) -> bool {
        !std::mem::replace(&mut self.closed, true)
    }

    /// [`Table::close`] was called.
    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Calls in flight.
    pub(super) fn in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Fail every call left with `Error::Closed`, and hand over the
    /// sockets to close: how many calls failed, the links, the receive
    /// side.
    pub(super) fn fail_all(&mut self) -> (usize, Vec<Link>, Option<Inbound>) {
        let failed = self.calls.len();
        self.fail_where(|_| true, |_| Error::Closed);
        (failed, self.servers.take_links(), self.inbound.take())
    }

    /// Fail every call matching `pred` with the error `err(method)`.
    pub(super) fn fail_where(
        &mut self,
        pred: impl Fn(&Call) -> bool,
        err: impl Fn(String) -> Error,
    ) {
        let ids: Vec<MessageId> = self
            .calls
            .iter()
            .filter(|(_, c)| pred(c))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(call) = self.forget(id) {
                call.waiter.fail(err(call.method.into()));
            }
        }
        self.pending.retain(|id| self.calls.contains_key(id));
    }
}

/// Only the server that runs a call speaks for it: an event from another
/// (a retried call's first server, answering late) is dropped.
/// Stream call `call` heard from its server: it was taken, and is timed
/// by its own deadline from now on.
fn taken(id: MessageId, call: &mut Call, deadlines: &mut Deadlines) {
    let Some(up) = call.upload.as_mut() else {
        return;
    };
    if let Some(own) = up.untaken.take() {
        call.deadline = own;
        if let Some((at, _)) = own {
            deadlines.push(at, id);
        }
    }
}

/// Why stream call `call`, sent and now past its deadline, failed: its
/// server never took it (a server without the extension that ignores
/// unknown names, as zerorpc-node does), unless its own deadline passed
/// first (a plain timeout: `None`).
fn untaken(call: &Call, now: Instant) -> Option<Error> {
    let own = call.upload.as_ref()?.untaken?;
    if call.server.is_none() || own.is_some_and(|(at, _)| at <= now) {
        return None;
    }
    let (_, waited) = call.deadline?;
    Some(Error::NoStreams {
        method: call.method.to_string(),
        answer: crate::error::RemoteError {
            name: "NoAnswer".into(),
            message: format!(
                "nothing within {}; zerorpc-node ignores calls it does not know",
                crate::error::fmt_secs(waited)
            ),
            traceback: String::new(),
        },
    })
}

fn left(name: &str) {
    tracing::debug!(%name, "event from a server the call left; dropped");
}

/// A cheap hash for call ids. The ids are ours (a random per-process base
/// and a counter), so SipHash's resistance to chosen keys buys nothing and
/// costs a few percent of a call.
#[derive(Default)]
pub(super) struct IdHash(u64);

impl std::hash::Hasher for IdHash {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
