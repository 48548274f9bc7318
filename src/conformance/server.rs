//! Probing any zerorpc server (`zrpc --conformance ADDR [STREAM_METHOD
//! ARGS...]`). A bare DEALER sends crafted events (ids of each msgpack type,
//! v1 requests, stray events, a long call, a stream under measured credit)
//! and checks each reply byte by byte against PROTOCOL.md.

use super::report::Report;
use super::wire::{event, Id, Seen};
use crate::Value;
use bytes::Bytes;
use std::time::Duration;
use tokio::time::Instant;
use zerorpc_zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// What to probe, and how.
#[derive(Clone, Debug)]
pub struct ServerProbe {
    /// The server's endpoint.
    pub endpoint: String,
    /// The heartbeat period the server uses (zerorpc's 5 s by default).
    pub period: Duration,
    /// A method taking seconds that sleeps that long, for the long call's
    /// heartbeat checks (`sleep` by default).
    pub sleep_method: String,
    /// A streaming method and its arguments, if the server has one (its
    /// credit checks are not run without).
    pub stream: Option<(String, Vec<Value>)>,
    /// A method that takes a stream of items and no parameters (zrpc's
    /// extension, PROTOCOL.md §9.1; `sum` by default): its `ext.*` checks
    /// are not run against a server without the extension.
    pub items_method: String,
}

impl ServerProbe {
    /// Probe the server at `endpoint` with the defaults.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ServerProbe {
            endpoint: endpoint.into(),
            period: crate::server::DEFAULT_HEARTBEAT,
            sleep_method: "sleep".into(),
            stream: None,
            items_method: "sum".into(),
        }
    }
}

/// How long a reply may take before a check says it never came.
const REPLY_WAIT: Duration = Duration::from_secs(3);

/// A bare DEALER connection, the events that arrived for other channels
/// than the one being waited for, and the open channels it heartbeats (as
/// any client must: zerorpc-node drops a channel whose peer sends no
/// `_zpc_hb` for two periods).
struct Conn {
    sock: DealerSocket,
    stash: Vec<Seen>,
    period: Duration,
    open: Vec<(Value, Instant)>,
}

impl Conn {
    async fn connect(endpoint: &str, period: Duration) -> Result<Conn, String> {
        let mut sock = DealerSocket::new();
        tokio::time::timeout(Duration::from_secs(5), sock.connect(endpoint))
            .await
            .map_err(|_| format!("cannot connect to {endpoint} within 5 s"))?
            .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
        Ok(Conn {
            sock,
            stash: Vec::new(),
            period,
            open: Vec::new(),
        })
    }

    /// Beat on every open channel whose beat is due.
    async fn tick(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        for (id, next) in self.open.iter_mut().filter(|(_, next)| *next <= now) {
            due.push(id.clone());
            *next = now + self.period;
        }
        for id in due {
            let hb = event(
                &Id::fresh(),
                Some(3),
                Some(&id),
                crate::protocol::HEARTBEAT,
                Value::Array(vec![Value::from(0)]),
            );
            let _ = self.send(hb).await;
        }
    }

    /// Stop beating on channel `id`.
    fn close(&mut self, id: &Id) {
        let id = id.value();
        self.open.retain(|(open, _)| *open != id);
    }

    async fn send(&mut self, payload: Vec<u8>) -> Result<(), String> {
        let msg = ZmqMessage::try_from(vec![Bytes::new(), Bytes::from(payload)])
            .map_err(|e| e.to_string())?;
        self.sock.send(msg).await.map_err(|e| e.to_string())
    }

    /// Send a request (v3 unless `v` says otherwise) on a new channel `id`.
    async fn request(
        &mut self,
        id: &Id,
        v: Option<i64>,
        name: &str,
        args: Value,
    ) -> Result<(), String> {
        self.open.push((id.value(), Instant::now() + self.period));
        self.send(event(id, v, None, name, args)).await
    }

    /// The next event on channel `id` (by the id's content: a server that
    /// re-types the id is still heard, and the check on ids says so).
    async fn on(&mut self, id: &Id, within: Duration) -> Option<Seen> {
        if let Some(at) = self.stash.iter().position(|s| about(s, id)) {
            return Some(self.stash.remove(at));
        }
        let deadline = Instant::now() + within;
        loop {
            self.tick().await;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let slice = left.min(Duration::from_millis(50));
            let msg = match tokio::time::timeout(slice, self.sock.recv()).await {
                Ok(Ok(msg)) => msg,
                Ok(Err(_)) => return None,
                Err(_) => continue,
            };
            let Ok(seen) = Seen::decode(msg.into_vec()) else {
                continue;
            };
            if about(&seen, id) {
                return Some(seen);
            }
            self.stash.push(seen);
        }
    }

    /// A call: its first reply event, skipping heartbeats.
    async fn call(&mut self, id: &Id, v: Option<i64>, name: &str, args: Value) -> Option<Seen> {
        self.request(id, v, name, args).await.ok()?;
        let deadline = Instant::now() + REPLY_WAIT;
        let reply = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(seen) = self.on(id, left).await else {
                break None;
            };
            if seen.name != crate::protocol::HEARTBEAT {
                break Some(seen);
            }
        };
        self.close(id);
        reply
    }
}

/// Whether `seen` belongs to channel `id`, comparing id contents.
fn about(seen: &Seen, id: &Id) -> bool {
    let Some(rt) = seen.get("response_to") else {
        return false;
    };
    match (rt, id) {
        (Value::Binary(b), Id::Bin(x)) => b == x,
        (Value::Binary(b), Id::Str(x)) => b == x.as_bytes(),
        (Value::String(s), Id::Bin(x)) => s.as_bytes() == x.as_slice(),
        (Value::String(s), Id::Str(x)) => s.as_bytes() == x.as_bytes(),
        (Value::Integer(i), Id::Int(x)) => i.as_i64() == Some(*x),
        _ => false,
    }
}

fn show(seen: &Seen) -> String {
    format!("{} {}", seen.name, seen.args)
}

/// Run every check against the server of `plan`.
pub async fn probe_server(plan: &ServerProbe) -> Report {
    let mut r = Report::default();
    let mut conn = match Conn::connect(&plan.endpoint, plan.period).await {
        Ok(c) => c,
        Err(e) => {
            r.fail("connect", e);
            return r;
        }
    };
    if !basics(&mut conn, &mut r).await {
        return r;
    }
    ids(&mut conn, &mut r).await;
    introspection(&mut conn, &mut r).await;
    errors(&mut conn, &mut r).await;
    v1(&mut conn, &mut r).await;
    heartbeats(&mut conn, plan, &mut r).await;
    match &plan.stream {
        Some((method, args)) => stream(&mut conn, method, args, &mut r).await,
        None => {
            for name in [
                "stream.one_event_before_credit",
                "stream.follows_credit",
                "stream.done",
            ] {
                r.skip(
                    name,
                    "no stream method given (zrpc --conformance ADDR METHOD ARGS...)",
                );
            }
        }
    }
    stream_call(&mut conn, &plan.items_method, &mut r).await;
    r
}

/// `_zerorpc_ping` with a bin id: framing, header, the OK shape. False when
/// nothing answered (the rest would say nothing more).
async fn basics(conn: &mut Conn, r: &mut Report) -> bool {
    let id = Id::fresh();
    let Some(reply) = conn
        .call(&id, Some(3), "_zerorpc_ping", Value::Array(vec![]))
        .await
    else {
        r.fail(
            "framing.reply_delimited",
            format!("no reply to _zerorpc_ping within {REPLY_WAIT:?}"),
        );
        return false;
    };
    r.check(
        "framing.reply_delimited",
        reply.frames.len() == 2 && reply.frames[0].is_empty(),
        || {
            format!(
                "frames {:?}",
                reply.frames.iter().map(|f| f.len()).collect::<Vec<_>>()
            )
        },
    );
    r.check(
        "reply.header_v3",
        reply.get("v") == Some(&Value::from(3)),
        || format!("v = {:?}", reply.get("v")),
    );
    r.check(
        "reply.fresh_message_id",
        reply
            .message_id_raw
            .as_ref()
            .is_some_and(|m| *m != id.raw()),
        || format!("message_id {:?}", reply.get("message_id")),
    );
    r.check(
        "ids.bin_echoed",
        reply.response_to_raw == Some(id.raw()),
        || format!("response_to {:?} for a bin id", reply.get("response_to")),
    );
    r.check(
        "reply.ok_shape",
        reply.name == "OK" && reply.items().is_some_and(|a| a.len() == 1),
        || show(&reply),
    );
    let pong = reply
        .items()
        .and_then(|a| a.first())
        .and_then(Value::as_array);
    r.check(
        "introspection.ping",
        pong.is_some_and(|p| p.len() == 2 && p[0].as_str() == Some("pong") && p[1].is_str()),
        || show(&reply),
    );
    true
}

/// Ids of each msgpack type come back as they went, byte for byte.
async fn ids(conn: &mut Conn, r: &mut Report) {
    let cases: [(&'static str, Id); 2] = [
        (
            "ids.str_echoed",
            Id::Str(format!("{:x}-conformance-{:08}", std::process::id(), 7)),
        ),
        ("ids.int_echoed", Id::Int(1_234_567)),
    ];
    for (name, id) in cases {
        match conn
            .call(&id, Some(3), "_zerorpc_ping", Value::Array(vec![]))
            .await
        {
            Some(reply) => r.check(name, reply.response_to_raw == Some(id.raw()), || {
                format!(
                    "sent {:?}, got response_to {:?}",
                    id.value(),
                    reply.get("response_to")
                )
            }),
            None => r.fail(name, format!("no reply within {REPLY_WAIT:?}")),
        }
    }
}

/// The six reserved methods.
async fn introspection(conn: &mut Conn, r: &mut Report) {
    let first = |reply: &Seen| reply.items().and_then(|a| a.first()).cloned();
    let ok = |reply: &Option<Seen>| reply.as_ref().filter(|s| s.name == "OK").and_then(first);
    let reply = conn
        .call(
            &Id::fresh(),
            Some(3),
            "_zerorpc_inspect",
            Value::Array(vec![]),
        )
        .await;
    let inspect = ok(&reply);
    let methods = inspect
        .as_ref()
        .and_then(|v| map_get(v, "methods"))
        .and_then(Value::as_map);
    r.check(
        "introspection.inspect",
        methods.is_some() && inspect.as_ref().and_then(|v| map_get(v, "name")).is_some(),
        || reply.as_ref().map_or("no reply".into(), show),
    );
    let any_method = methods
        .and_then(|m| m.first())
        .and_then(|(k, _)| k.as_str())
        .unwrap_or("_zerorpc_ping")
        .to_string();
    // (check, method, arguments, the shape its result must have)
    type Shape = fn(&Value) -> bool;
    let checks: [(&'static str, &str, Vec<Value>, Shape); 4] = [
        ("introspection.list", "_zerorpc_list", vec![], |v| {
            v.as_array().is_some_and(|a| a.iter().all(Value::is_str))
        }),
        ("introspection.name", "_zerorpc_name", vec![], Value::is_str),
        (
            "introspection.help",
            "_zerorpc_help",
            vec![Value::from(any_method.as_str())],
            |v| v.is_str() || v.is_nil(),
        ),
        (
            "introspection.args",
            "_zerorpc_args",
            vec![Value::from(any_method.as_str())],
            |v| v.as_array().is_some_and(|a| a.len() == 4),
        ),
    ];
    for (name, method, args, shape) in checks {
        let reply = conn
            .call(&Id::fresh(), Some(3), method, Value::Array(args))
            .await;
        match ok(&reply) {
            Some(v) => r.check(name, shape(&v), || format!("{method} returned {v}")),
            None => r.fail(
                name,
                reply.as_ref().map_or(format!("no reply to {method}"), show),
            ),
        }
    }
}

fn map_get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Unknown methods, arguments that are not an array, stray events.
async fn errors(conn: &mut Conn, r: &mut Report) {
    let reply = conn
        .call(
            &Id::fresh(),
            Some(3),
            "zrpc_conformance_no_such_method",
            Value::Array(vec![]),
        )
        .await;
    match &reply {
        Some(err) => {
            r.check("errors.unknown_method_answered", err.name == "ERR", || {
                show(err)
            });
            r.check(
                "errors.err_shape",
                err.name == "ERR"
                    && err
                        .items()
                        .is_some_and(|a| a.len() == 3 && a.iter().all(Value::is_str)),
                || show(err),
            );
        }
        None => {
            r.fail(
                "errors.unknown_method_answered",
                format!("no reply within {REPLY_WAIT:?}"),
            );
            r.skip("errors.err_shape", "no ERR was received to look at");
        }
    }
    let reply = conn
        .call(&Id::fresh(), Some(3), "_zerorpc_ping", Value::from(5))
        .await;
    r.check(
        "errors.non_array_args_answered",
        reply.as_ref().is_some_and(|s| s.name == "ERR"),
        || {
            reply
                .as_ref()
                .map_or(format!("no reply within {REPLY_WAIT:?}"), show)
        },
    );
    // Events for a channel that does not exist, and an unknown event name:
    // ignored, and the server still answers.
    let nowhere = Id::fresh().value();
    for name in ["_zpc_hb", "_zpc_more", "zrpc_conformance_unknown_event"] {
        let _ = conn
            .send(event(
                &Id::fresh(),
                Some(3),
                Some(&nowhere),
                name,
                Value::Array(vec![Value::from(1)]),
            ))
            .await;
    }
    let reply = conn
        .call(&Id::fresh(), Some(3), "_zerorpc_ping", Value::Array(vec![]))
        .await;
    r.check(
        "events.stray_events_ignored",
        reply.as_ref().is_some_and(|s| s.name == "OK"),
        || {
            reply
                .as_ref()
                .map_or("no reply after stray events".into(), show)
        },
    );
}

/// Requests with no `v`.
async fn v1(conn: &mut Conn, r: &mut Report) {
    let reply = conn
        .call(&Id::fresh(), None, "_zerorpc_ping", Value::Array(vec![]))
        .await;
    r.check(
        "v1.answered",
        reply.as_ref().is_some_and(|s| s.name == "OK"),
        || {
            reply
                .as_ref()
                .map_or(format!("no reply within {REPLY_WAIT:?}"), show)
        },
    );
    let reply = conn
        .call(
            &Id::fresh(),
            None,
            "zrpc_conformance_no_such_method",
            Value::Array(vec![]),
        )
        .await;
    r.check(
        "v1.err_one_element",
        reply.as_ref().is_some_and(|s| {
            s.name == "ERR" && s.items().is_some_and(|a| a.len() == 1 && a[0].is_str())
        }),
        || {
            reply
                .as_ref()
                .map_or(format!("no reply within {REPLY_WAIT:?}"), show)
        },
    );
}

/// A call lasting 2.5 heartbeat periods, heartbeating actively: the server
/// must beat (not before one period), and the call must end well.
async fn heartbeats(conn: &mut Conn, plan: &ServerProbe, r: &mut Report) {
    let names = [
        "heartbeat.server_beats",
        "heartbeat.first_not_before_period",
        "heartbeat.every_period",
        "heartbeat.call_outlives_two_periods",
    ];
    let f = plan.period;
    let id = Id::fresh();
    let opened = Instant::now();
    let secs = 2.5 * f.as_secs_f64();
    if conn
        .request(
            &id,
            Some(3),
            &plan.sleep_method,
            Value::Array(vec![Value::F64(secs)]),
        )
        .await
        .is_err()
    {
        return names.iter().for_each(|n| r.skip(n, "cannot send"));
    }
    // (The connection beats on the call every period meanwhile.)
    let mut beats = Vec::new();
    let deadline = opened + f.mul_f64(2.5) + Duration::from_secs(5);
    let reply = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.on(&id, left).await {
            Some(seen) if seen.name == crate::protocol::HEARTBEAT => beats.push(opened.elapsed()),
            other => break other,
        }
    };
    conn.close(&id);
    if let Some(err) = reply.as_ref().filter(|s| s.name == "ERR") {
        let missing = err
            .items()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .is_some_and(|n| n.contains("NameError"));
        if missing {
            let why = format!("the server has no {}(seconds) method", plan.sleep_method);
            return names.iter().for_each(|n| r.skip(n, why.clone()));
        }
    }
    r.check("heartbeat.server_beats", !beats.is_empty(), || {
        format!("no _zpc_hb during a {secs} s call")
    });
    // (5% for timers.)
    r.check(
        "heartbeat.first_not_before_period",
        beats.first().is_none_or(|t| *t >= f.mul_f64(0.95)),
        || format!("first _zpc_hb after {:?}, period {f:?}", beats[0]),
    );
    let gaps: Vec<Duration> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    r.check(
        "heartbeat.every_period",
        !beats.is_empty() && gaps.iter().all(|g| *g <= f.mul_f64(1.6)),
        || format!("beats at {beats:?}"),
    );
    r.check(
        "heartbeat.call_outlives_two_periods",
        reply.as_ref().is_some_and(|s| s.name == "OK"),
        || reply.as_ref().map_or("no reply".into(), show),
    );
}

/// A stream under measured credit: one event before any `_zpc_more`, then
/// exactly as many as granted, then to the end.
async fn stream(conn: &mut Conn, method: &str, args: &[Value], r: &mut Report) {
    let id = Id::fresh();
    if conn
        .request(&id, Some(3), method, Value::Array(args.to_vec()))
        .await
        .is_err()
    {
        return;
    }
    let data = |s: &Seen| s.name != crate::protocol::HEARTBEAT;
    // Everything that arrives within `within`.
    async fn gather(conn: &mut Conn, id: &Id, within: Duration) -> Vec<Seen> {
        let end = Instant::now() + within;
        let mut got = Vec::new();
        while let Some(seen) = conn
            .on(id, end.saturating_duration_since(Instant::now()))
            .await
        {
            got.push(seen);
        }
        got
    }
    let first: Vec<Seen> = gather(conn, &id, REPLY_WAIT.min(Duration::from_secs(1)))
        .await
        .into_iter()
        .filter(data)
        .collect();
    let missing = first.first().is_some_and(|s| {
        s.name == "ERR"
            && s.items()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .is_some_and(|n| n.contains("NameError"))
    });
    if missing {
        conn.close(&id);
        let why = format!("the server has no {method} method");
        for name in [
            "stream.one_event_before_credit",
            "stream.follows_credit",
            "stream.done",
        ] {
            r.skip(name, why.clone());
        }
        return;
    }
    r.check(
        "stream.one_event_before_credit",
        first.len() == 1 && first[0].name == "STREAM",
        || {
            format!(
                "{} data events before any credit: {:?}",
                first.len(),
                first.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
            )
        },
    );
    let end_of = |got: &[Seen]| {
        got.iter()
            .find(|s| s.name != "STREAM")
            .map(|s| s.name.clone())
    };
    let mut last = end_of(&first);
    let mut ended = last.is_some();
    let grant = |n: i64| {
        event(
            &Id::fresh(),
            Some(3),
            Some(&id.value()),
            crate::protocol::MORE,
            Value::Array(vec![Value::from(n)]),
        )
    };
    if !ended {
        let _ = conn.send(grant(10)).await;
        let next: Vec<Seen> = gather(conn, &id, Duration::from_secs(1))
            .await
            .into_iter()
            .filter(data)
            .collect();
        last = end_of(&next);
        ended = last.is_some();
        r.check(
            "stream.follows_credit",
            next.len() == 10 || (next.len() < 10 && ended),
            || format!("{} data events after a grant of 10", next.len()),
        );
    } else {
        r.skip(
            "stream.follows_credit",
            "the stream ended at its first event",
        );
    }
    // The rest, granting as a zerorpc reader does.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ended && Instant::now() < deadline {
        let _ = conn.send(grant(100)).await;
        let got: Vec<Seen> = gather(conn, &id, Duration::from_millis(300))
            .await
            .into_iter()
            .filter(data)
            .collect();
        last = end_of(&got);
        ended = last.is_some();
    }
    conn.close(&id);
    r.check(
        "stream.done",
        last.as_deref() == Some("STREAM_DONE"),
        || match &last {
            Some(other) => format!("the stream ended with {other}"),
            None => "no STREAM_DONE within 20 s".into(),
        },
    );
}

/// The checks of zrpc's client-stream extension (PROTOCOL.md §9.1), all
/// named `ext.*`: not run against a server without it.
const EXT_CREDIT: &str = "ext.stream_call.credit_granted";
const EXT_ANSWERED: &str = "ext.stream_call.answered_after_done";
const EXT_PLAIN: &str = "ext.stream_call.plain_call_refused";
const EXT_CHECKS: [&str; 3] = [EXT_CREDIT, EXT_ANSWERED, EXT_PLAIN];

/// A stream call of `method` (items 1, 2, 3 … under the server's credit):
/// it is taken with a grant and answered once the items end; a plain call
/// of the method is refused rather than run without its items. (Whether a
/// server refuses items beyond its credit depends on how fast its handler
/// reads: zrpc's own tests check that with a handler that does not.)
async fn stream_call(conn: &mut Conn, method: &str, r: &mut Report) {
    use crate::protocol::{MORE, STREAM, STREAM_CALL, STREAM_DONE};
    let not_run = |r: &mut Report, why: String| {
        for name in EXT_CHECKS {
            r.skip(name, why.clone());
        }
    };
    let item = |id: &Id, name: &str, args: Value| {
        event(&Id::fresh(), Some(3), Some(&id.value()), name, args)
    };
    // Open a stream call; the first grant, or why there is none.
    async fn open(conn: &mut Conn, method: &str) -> (Id, Result<i64, Option<Seen>>) {
        let id = Id::fresh();
        let args = Value::Array(vec![Value::from(method)]);
        if conn.request(&id, Some(3), STREAM_CALL, args).await.is_err() {
            return (id, Err(None));
        }
        let end = Instant::now() + REPLY_WAIT;
        while let Some(seen) = conn
            .on(&id, end.saturating_duration_since(Instant::now()))
            .await
        {
            match seen.name.as_str() {
                crate::protocol::HEARTBEAT => continue,
                MORE => {
                    let n = seen.items().and_then(|a| a.first()).and_then(Value::as_i64);
                    return (id, n.filter(|n| *n > 0).ok_or(Some(seen)));
                }
                _ => return (id, Err(Some(seen))),
            }
        }
        (id, Err(None))
    }

    let (id, first) = open(conn, method).await;
    let granted = match first {
        Ok(n) => n,
        Err(seen) => {
            conn.close(&id);
            let why = match &seen {
                Some(s) if s.name == "ERR" => format!(
                    "the server does not take a stream of items for {method} (zrpc's extension; it answered {})",
                    show(s)
                ),
                Some(s) => {
                    // Taken, but no grant came first.
                    r.fail(EXT_CREDIT, format!("{} instead of _zpc_more [n > 0]", show(s)));
                    for name in [EXT_ANSWERED, EXT_PLAIN] {
                        r.skip(name, "the stream call was not taken");
                    }
                    return;
                }
                None => format!("no answer to {STREAM_CALL} within {REPLY_WAIT:?} (a server without the extension that ignores unknown names, as zerorpc-node does)"),
            };
            return not_run(r, why);
        }
    };
    r.pass(EXT_CREDIT);
    // Items within the credit, then the end: an answer follows.
    let n = granted.min(5);
    for i in 1..=n {
        let _ = conn.send(item(&id, STREAM, Value::from(i))).await;
    }
    let _ = conn.send(item(&id, STREAM_DONE, Value::Nil)).await;
    let end = Instant::now() + REPLY_WAIT;
    let mut answer = None;
    while let Some(seen) = conn
        .on(&id, end.saturating_duration_since(Instant::now()))
        .await
    {
        match seen.name.as_str() {
            "OK" | "ERR" | "STREAM_DONE" => {
                answer = Some(seen.name);
                break;
            }
            // A bidirectional method's items: keep granting.
            "STREAM" => {
                let _ = conn
                    .send(item(&id, MORE, Value::Array(vec![Value::from(100)])))
                    .await;
            }
            _ => {}
        }
    }
    conn.close(&id);
    r.check(EXT_ANSWERED, answer.is_some(), || {
        format!("no OK, ERR or STREAM_DONE within {REPLY_WAIT:?} of the end of {n} items")
    });
    // The method called the plain way.
    let id = Id::fresh();
    let reply = conn.call(&id, Some(3), method, Value::Array(vec![])).await;
    r.check(
        EXT_PLAIN,
        reply.as_ref().is_some_and(|s| s.name == "ERR"),
        || match &reply {
            Some(s) => format!("a plain call of {method} answered {}", show(s)),
            None => format!("a plain call of {method} got no answer within {REPLY_WAIT:?}"),
        },
    );
}
