//! Checking any zerorpc client (`zrpc --conformance --bind ADDR`). A bare
//! ROUTER answers whatever the client calls and looks at every message it
//! sends: the empty delimiter, the ids, `v`, its heartbeats while it waits,
//! its credit while it reads a stream. Three calls exercise everything:
//! - any method (`add(1, 2)`, say): answered at once, `OK [args]`;
//! - `slow()`: answered after 2.5 heartbeat periods, the checker beating
//!   meanwhile (so a passive client starts too);
//! - `count(n)`: a stream of `0..n` (250 when no `n`), sent only as the
//!   client grants credit.
//!
//! The report is printed once all three were seen, or at the deadline.

use super::report::Report;
use super::wire::{event, Id, Seen};
use crate::protocol::{HEARTBEAT, MORE};
use crate::Value;
use bytes::Bytes;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;
use zerorpc_zeromq::{RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// A call in progress on the checker.
struct Call {
    identity: Bytes,
    /// The request's id, as sent (echoed in every event).
    id: Value,
    opened: Instant,
    kind: Kind,
    /// When the checker beats next on it.
    next_beat: Instant,
    /// The client's heartbeats on it.
    beats: usize,
}

enum Kind {
    Slow,
    Stream {
        next: u64,
        n: u64,
        credit: i64,
        /// Credit the client granted, in all.
        granted: i64,
    },
}

/// Bind a checker on `endpoint` and check the clients that call it until
/// each scenario was seen or `deadline` passed. `period` is the heartbeat
/// period the clients use.
pub async fn check_clients(
    endpoint: &str,
    period: Duration,
    deadline: Duration,
) -> Result<Report, crate::Error> {
    let mut sock = RouterSocket::new();
    let bound = sock
        .bind(endpoint)
        .await
        .map_err(|e| crate::Error::transport(format!("cannot bind {endpoint}"), e))?;
    eprintln!("checking clients on {bound}: call any method, slow() and count(n)");
    let mut r = Report::default();
    let mut seen_ids = HashSet::new();
    let mut calls: Vec<Call> = Vec::new();
    let (mut plain, mut slow, mut stream) = (false, false, false);
    let end = Instant::now() + deadline;
    while !(plain && slow && stream) && Instant::now() < end {
        // Time first: beats, and the slow call's answer.
        let now = Instant::now();
        for call in calls.iter_mut().filter(|c| c.next_beat <= now) {
            let hb = event(
                &Id::fresh(),
                Some(3),
                Some(&call.id),
                HEARTBEAT,
                Value::Array(vec![Value::from(0)]),
            );
            let _ = send(&mut sock, &call.identity, hb).await;
            call.next_beat += period;
        }
        let mut done = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            if matches!(call.kind, Kind::Slow) && now >= call.opened + period.mul_f64(2.5) {
                r.check(
                    "heartbeat.client_beats_while_waiting",
                    call.beats > 0,
                    || format!("no _zpc_hb in {:?} of waiting", now - call.opened),
                );
                let ok = event(
                    &Id::fresh(),
                    Some(3),
                    Some(&call.id),
                    "OK",
                    Value::Array(vec![Value::from("slow done")]),
                );
                let _ = send(&mut sock, &call.identity, ok).await;
                slow = true;
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            calls.remove(i);
        }
        let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_millis(20), sock.recv()).await else {
            continue;
        };
        let frames = msg.into_vec();
        r.check(
            "framing.delimited",
            frames.len() == 3 && frames[1].is_empty(),
            || {
                format!(
                    "frames {:?}",
                    frames.iter().map(|f| f.len()).collect::<Vec<_>>()
                )
            },
        );
        let identity = frames[0].clone();
        let seen = match Seen::decode(frames) {
            Ok(s) => s,
            Err(e) => {
                r.fail("events.decodable", e);
                continue;
            }
        };
        r.pass("events.decodable");
        match seen.response_to_raw.clone() {
            None => {
                let start = request(&mut r, &mut seen_ids, &seen);
                let id = seen.get("message_id").cloned().unwrap_or(Value::Nil);
                {
                    match start {
                        Start::Plain => {
                            let ok = event(
                                &Id::fresh(),
                                Some(3),
                                Some(&id),
                                "OK",
                                Value::Array(vec![seen.args.clone()]),
                            );
                            let _ = send(&mut sock, &identity, ok).await;
                            plain = true;
                        }
                        Start::Slow => calls.push(Call {
                            identity,
                            id,
                            opened: Instant::now(),
                            kind: Kind::Slow,
                            next_beat: Instant::now() + period,
                            beats: 0,
                        }),
                        Start::Stream(n) => {
                            let mut call = Call {
                                identity,
                                id,
                                opened: Instant::now(),
                                kind: Kind::Stream {
                                    next: 0,
                                    n,
                                    credit: 1,
                                    granted: 0,
                                },
                                next_beat: Instant::now() + period,
                                beats: 0,
                            };
                            stream = feed(&mut sock, &mut call, &mut r).await;
                            if !stream {
                                calls.push(call);
                            }
                        }
                    }
                }
            }
            Some(_) => {
                let rt = seen.get("response_to").cloned().unwrap_or(Value::Nil);
                let Some(at) = calls.iter().position(|c| c.id == rt) else {
                    continue;
                };
                let call = &mut calls[at];
                match seen.name.as_str() {
                    HEARTBEAT => call.beats += 1,
                    MORE => {
                        let n = seen.items().and_then(|a| a.first()).and_then(Value::as_i64);
                        if let Kind::Stream {
                            credit,
                            granted,
                            next,
                            ..
                        } = &mut call.kind
                        {
                            r.check("stream.no_credit_before_first_item", *next > 0, || {
                                "_zpc_more before the first STREAM arrived".into()
                            });
                            r.check(
                                "stream.grants_are_positive_counts",
                                n.is_some_and(|n| n > 0),
                                || format!("_zpc_more {}", seen.args),
                            );
                            *credit += n.unwrap_or(0).max(0);
                            *granted += n.unwrap_or(0).max(0);
                        }
                        if feed(&mut sock, call, &mut r).await {
                            stream = true;
                            calls.remove(at);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    for (seen_it, names, what) in [
        (
            plain,
            &["request.v3", "request.id_unique", "request.args_array"][..],
            "no call",
        ),
        (
            slow,
            &["heartbeat.client_beats_while_waiting"][..],
            "no slow() call",
        ),
        (stream, &["stream.credit_granted"][..], "no count(n) call"),
    ] {
        for name in names {
            if !seen_it && !r.has(name) {
                r.skip(name, format!("{what} within {deadline:?}"));
            }
        }
    }
    // The last replies may still wait in the socket's queues: give them
    // time to be written before the socket closes (zeromq has no linger).
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(stuck) = calls.iter().find(|c| matches!(c.kind, Kind::Stream { .. })) {
        if let Kind::Stream { next, granted, .. } = stuck.kind {
            r.fail(
                "stream.credit_granted",
                format!("stalled after {next} items: {granted} credit granted"),
            );
        }
    }
    Ok(r)
}

/// What a request starts.
enum Start {
    Plain,
    Slow,
    Stream(u64),
}

/// Check a request's header and args; what it starts.
fn request(r: &mut Report, seen_ids: &mut HashSet<Vec<u8>>, seen: &Seen) -> Start {
    r.check("request.v3", seen.get("v") == Some(&Value::from(3)), || {
        format!("v = {:?}", seen.get("v"))
    });
    let id = seen.message_id_raw.clone().unwrap_or_default();
    r.check(
        "request.id_unique",
        !id.is_empty() && seen_ids.insert(id.clone()),
        || format!("message_id {} repeated or missing", Seen::type_of(&id)),
    );
    r.check("request.args_array", seen.items().is_some(), || {
        format!("args {}", seen.args)
    });
    match seen.name.as_str() {
        "slow" => Start::Slow,
        "count" => Start::Stream(
            seen.items()
                .and_then(|a| a.first())
                .and_then(Value::as_u64)
                .unwrap_or(250),
        ),
        _ => Start::Plain,
    }
}

/// Send what the stream's credit allows; true once it is done.
async fn feed(sock: &mut RouterSocket, call: &mut Call, r: &mut Report) -> bool {
    let Kind::Stream {
        next,
        n,
        credit,
        granted,
    } = &mut call.kind
    else {
        return false;
    };
    while *credit > 0 {
        *credit -= 1;
        if *next < *n {
            let ev = event(
                &Id::fresh(),
                Some(3),
                Some(&call.id),
                "STREAM",
                Value::from(*next),
            );
            let _ = send(sock, &call.identity, ev).await;
            *next += 1;
        } else {
            let ev = event(
                &Id::fresh(),
                Some(3),
                Some(&call.id),
                "STREAM_DONE",
                Value::Nil,
            );
            let _ = send(sock, &call.identity, ev).await;
            r.check("stream.credit_granted", *granted > 0 || *n == 0, || {
                "the stream ended without any credit granted".into()
            });
            return true;
        }
    }
    false
}

async fn send(sock: &mut RouterSocket, identity: &Bytes, payload: Vec<u8>) -> Result<(), String> {
    let msg = ZmqMessage::try_from(vec![identity.clone(), Bytes::new(), Bytes::from(payload)])
        .map_err(|e| e.to_string())?;
    sock.send(msg).await.map_err(|e| e.to_string())
}
