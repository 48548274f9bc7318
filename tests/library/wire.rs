//! What zrpc puts on the wire, read as raw ZeroMQ frames by a bare socket
//! standing in for the peer (real peers tolerate things a third
//! implementation may not: these tests do not).

use bytes::Bytes;
use std::time::Duration;
use zerorpc::protocol::{self, Event, MessageId};
use zerorpc::Client;
use zerorpc_zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

/// A bare ROUTER on a free loopback port, and its endpoint.
async fn raw_router() -> (zerorpc_zeromq::RouterSocket, String) {
    let mut router = zerorpc_zeromq::RouterSocket::new();
    let ep = router
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind a raw ROUTER")
        .to_string();
    (router, ep)
}

/// Receive one message, within a bound.
/// The next event from the client, `_zerorpc_ping`s answered (as every
/// zerorpc server does: a client pings a server whose calls are overdue)
/// and left out.
async fn recv(router: &mut zerorpc_zeromq::RouterSocket) -> Vec<Bytes> {
    loop {
        let frames = tokio::time::timeout(Duration::from_secs(5), router.recv())
            .await
            .expect("the client sent nothing within 5 s")
            .expect("receive")
            .into_vec();
        if !answer_ping(router, &frames).await {
            return frames;
        }
    }
}

/// If `frames` are a `_zerorpc_ping`, answer `["pong", "raw"]` (true).
async fn answer_ping(router: &mut zerorpc_zeromq::RouterSocket, frames: &[Bytes]) -> bool {
    let Some(ev) = frames.last().and_then(|p| Event::decode(p).ok()) else {
        return false;
    };
    if ev.name != Ok("_zerorpc_ping") || ev.response_to.is_some() {
        return false;
    }
    let pong = protocol::encode_reply(
        ev.message_id.unwrap(),
        protocol::OK,
        &[
            0x91, 0x92, 0xa4, b'p', b'o', b'n', b'g', 0xa3, b'r', b'a', b'w',
        ],
    );
    let reply = send_frames(vec![frames[0].clone(), Bytes::new(), pong.into()]);
    router.send(reply).await.unwrap();
    true
}

fn send_frames(frames: Vec<Bytes>) -> ZmqMessage {
    ZmqMessage::try_from(frames).expect("frames")
}

/// `[identity, "", payload]`, and the decoded event's name.
fn delimited(frames: &[Bytes]) -> String {
    assert_eq!(
        frames.len(),
        3,
        "not [identity, empty, payload]: {frames:?}"
    );
    assert!(frames[1].is_empty(), "no empty delimiter: {frames:?}");
    let ev = Event::decode(&frames[2]).expect("a zerorpc event");
    ev.name.expect("a str name").to_string()
}

#[tokio::test]
async fn every_event_the_client_sends_carries_the_empty_delimiter() {
    let (mut router, ep) = raw_router().await;
    let client = Client::builder()
        .connect(&ep)
        .heartbeat(Some(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        use futures::StreamExt;
        let stream = client.stream::<_, u64>("count", (3,)).await?;
        let items: Vec<Result<u64, zerorpc::Error>> = stream.collect().await;
        items.into_iter().collect::<Result<Vec<u64>, _>>()
    });

    // The request.
    let request = recv(&mut router).await;
    assert_eq!(delimited(&request), "count");
    let frame = request[2].clone();
    let id = Event::decode(&frame).unwrap().message_id.unwrap().to_vec();
    let identity = request[0].clone();
    let reply = |name: &str, args: &[u8]| {
        send_frames(vec![
            identity.clone(),
            Bytes::new(),
            protocol::encode_reply(&id, name, args).into(),
        ])
    };
    // The first item: the reader then grants credit, and keeps beating.
    router.send(reply(protocol::STREAM, &[0x00])).await.unwrap();
    let (mut more, mut heartbeat) = (false, false);
    while !(more && heartbeat) {
        match delimited(&recv(&mut router).await).as_str() {
            protocol::MORE => more = true,
            protocol::HEARTBEAT => heartbeat = true,
            other => panic!("unexpected {other}"),
        }
    }
    router.send(reply(protocol::STREAM, &[0x01])).await.unwrap();
    router.send(reply(protocol::STREAM, &[0x02])).await.unwrap();
    router
        .send(reply(protocol::STREAM_DONE, &[0xc0]))
        .await
        .unwrap();
    let items = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream ended")
        .unwrap()
        .unwrap();
    assert_eq!(items, [0, 1, 2]);
}

/// A peer that answers a bin `message_id` with a str `response_to` holding
/// the same bytes (an independent Go implementation does) is still
/// answered: ids are matched by their bytes, whatever the msgpack type.
#[tokio::test]
async fn a_reply_whose_id_comes_back_as_a_str_is_matched() {
    let (mut router, ep) = raw_router().await;
    let client = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_secs(3)))
        .start()
        .await
        .unwrap();
    let call = tokio::spawn(async move { client.call::<_, i64>("add", (2, 3)).await });
    let request = recv(&mut router).await;
    assert_eq!(delimited(&request), "add");
    let raw_id = Event::decode(&request[2])
        .unwrap()
        .message_id
        .unwrap()
        .to_vec();
    let (id, exact) = MessageId::from_raw(&raw_id).expect("one of zrpc's ids");
    assert!(exact, "zrpc sends its ids as bin 8");
    // The same 32 bytes as a str 8.
    let mut as_str = vec![0xd9, 32];
    as_str.extend_from_slice(id.as_bytes());
    let ok = protocol::encode_reply(&as_str, protocol::OK, &[0x91, 0x05]);
    router
        .send(send_frames(vec![
            request[0].clone(),
            Bytes::new(),
            ok.into(),
        ]))
        .await
        .unwrap();
    let sum = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the reply was dropped")
        .unwrap()
        .unwrap();
    assert_eq!(sum, 5);
}

/// A client (heartbeats off) reading stream `count()` from a bare ROUTER:
/// the router, the reader's task (all items, errors included), and a way
/// to send the router's events on the call.
struct RawStream {
    router: zerorpc_zeromq::RouterSocket,
    reader: tokio::task::JoinHandle<Result<Vec<Result<u64, zerorpc::Error>>, zerorpc::Error>>,
    identity: Bytes,
    id: Vec<u8>,
}

impl RawStream {
    async fn start() -> RawStream {
        use futures::StreamExt;
        let (mut router, ep) = raw_router().await;
        let client = Client::builder()
            .connect(&ep)
            .heartbeat(None)
            .start()
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let s = client.stream::<_, u64>("count", ()).await?;
            Ok(s.collect::<Vec<_>>().await)
        });
        let request = recv(&mut router).await;
        let id = Event::decode(&request[2])
            .unwrap()
            .message_id
            .unwrap()
            .to_vec();
        RawStream {
            router,
            reader,
            identity: request[0].clone(),
            id,
        }
    }

    /// Send `name args` on the call.
    async fn send(&mut self, name: &str, args: &[u8]) {
        let frames = vec![
            self.identity.clone(),
            Bytes::new(),
            protocol::encode_reply(&self.id, name, args).into(),
        ];
        self.router.send(send_frames(frames)).await.unwrap();
    }

    /// Every item the reader got, once its stream ended.
    async fn items(self) -> Vec<Result<u64, zerorpc::Error>> {
        tokio::time::timeout(Duration::from_secs(5), self.reader)
            .await
            .expect("the reader ended")
            .unwrap()
            .unwrap()
    }
}

/// The reader's credit pattern, byte for byte what zerorpc-python sends:
/// nothing before the first item, then `_zpc_more [100]`, then `[51]` once
/// 51 more were read.
#[tokio::test]
async fn the_reader_grants_like_zerorpc_python() {
    let mut raw = RawStream::start().await;
    let grant = |frames: &[Bytes]| -> u64 {
        let ev = Event::decode(&frames[2]).unwrap();
        assert_eq!(ev.name, Ok(protocol::MORE));
        rmpv::decode::read_value(&mut &ev.args[..]).unwrap()[0]
            .as_u64()
            .unwrap()
    };
    raw.send(protocol::STREAM, &[0x00]).await;
    assert_eq!(grant(&recv(&mut raw.router).await), 100);
    for i in 1..=51u8 {
        raw.send(protocol::STREAM, &[i]).await;
    }
    assert_eq!(grant(&recv(&mut raw.router).await), 51);
}

/// A server that sends more than its credit (two events before any
/// `_zpc_more`) gets its stream failed with a protocol error, as a
/// zerorpc-python reader kills such a channel.
#[tokio::test]
async fn a_stream_that_overruns_its_credit_fails() {
    let mut raw = RawStream::start().await;
    raw.send(protocol::STREAM, &[0x00]).await;
    raw.send(protocol::STREAM, &[0x00]).await;
    let items = raw.items().await;
    assert!(
        matches!(items.last(), Some(Err(zerorpc::Error::Protocol(_)))),
        "an overrun must fail the stream: {items:?}"
    );
}

/// A final event needs no credit: `STREAM_DONE` right behind the first
/// item (before any `_zpc_more`) ends the stream cleanly, as zerorpc-python
/// and zerorpc-node readers take it.
#[tokio::test]
async fn a_final_event_without_credit_ends_the_stream() {
    let mut raw = RawStream::start().await;
    raw.send(protocol::STREAM, &[0x07]).await;
    raw.send(protocol::STREAM_DONE, &[0x90]).await;
    let items = raw.items().await;
    assert_eq!(
        items.into_iter().collect::<Result<Vec<_>, _>>().unwrap(),
        vec![7]
    );
}

/// A server never holds more than 1 000 events of credit for a call,
/// whatever a client grants: a reader that grants a million and reads
/// nothing gets about a thousand events, not a million.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_caps_the_credit_a_client_grants() {
    use zerorpc_zeromq::DealerSocket;
    let server =
        zerorpc::Server::builder(zerorpc::Service::new("s").stream("count", |(n,): (u64,)| {
            futures::stream::iter(0..n).map(Ok::<_, zerorpc::ServiceError>)
        }))
        .bind("tcp://127.0.0.1:0")
        .heartbeat(None)
        .start()
        .await
        .unwrap();
    use futures::StreamExt;
    let mut dealer = DealerSocket::new();
    dealer.connect(&server.endpoints()[0]).await.unwrap();
    let (id, request) = protocol::encode_request("count", &[0x91, 0xce, 0, 0x0f, 0x42, 0x40]);
    dealer
        .send(send_frames(vec![Bytes::new(), request.into()]))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), dealer.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Event::decode(first.get(1).unwrap()).unwrap().name,
        Ok(protocol::STREAM)
    );
    // A million more, at once.
    let more = protocol::encode_reply(
        &id.to_raw(),
        protocol::MORE,
        &[0x91, 0xce, 0, 0x0f, 0x42, 0x40],
    );
    dealer
        .send(send_frames(vec![Bytes::new(), more.into()]))
        .await
        .unwrap();
    let mut events = 0;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), dealer.recv()).await {
        events += 1;
    }
    assert!(
        (900..=1000).contains(&events),
        "{events} events after a grant of a million (the cap is 1000)"
    );
    server.close(Duration::ZERO).await.ok();
}

/// With several servers, every event of a call (its heartbeats included)
/// goes to the server that got its request.
#[tokio::test]
async fn each_call_stays_on_the_connection_that_carried_it() {
    use futures::StreamExt;
    let (mut a, ep_a) = raw_router().await;
    let (mut b, ep_b) = raw_router().await;
    let (mut seen_a, mut seen_b) = (a.monitor(), b.monitor());
    let client = Client::builder()
        .connect(&ep_a)
        .connect(&ep_b)
        // Lost after 3 silent periods (the routers never beat back): 0.9 s.
        .heartbeat(Some(Duration::from_millis(300)))
        .start()
        .await
        .unwrap();
    // Both connections up before calling (else the first one up takes all).
    for monitor in [&mut seen_a, &mut seen_b] {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !matches!(
                monitor.next().await,
                Some(zerorpc_zeromq::SocketEvent::Accepted(..))
            ) {}
        })
        .await
        .expect("the client connected to both");
    }
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.call::<_, i64>("add", (i, 0)).await })
        })
        .collect();
    // Read both routers for a while: where each request went, and where
    // each heartbeat went.
    let mut requests = std::collections::HashMap::new(); // id -> (router, identity)
    let mut beats = Vec::new(); // (router, id)
    let end = std::time::Instant::now() + Duration::from_millis(700);
    while std::time::Instant::now() < end {
        for (r, router) in [&mut a, &mut b].into_iter().enumerate() {
            let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_millis(10), router.recv()).await
            else {
                continue;
            };
            let frames = msg.into_vec();
            if answer_ping(router, &frames).await {
                continue;
            }
            let ev = Event::decode(&frames[2]).unwrap();
            match (ev.response_to, ev.name) {
                (None, Ok("add")) => {
                    requests.insert(ev.message_id.unwrap().to_vec(), (r, frames[0].clone()));
                }
                (Some(rt), Ok(protocol::HEARTBEAT)) => beats.push((r, rt.to_vec())),
                _ => {}
            }
        }
    }
    assert_eq!(requests.len(), 8);
    let on = |r: usize| requests.values().filter(|(at, _)| *at == r).count();
    assert!(
        on(0) > 0 && on(1) > 0,
        "calls not spread: {} and {}",
        on(0),
        on(1)
    );
    assert!(beats.len() >= 8, "only {} heartbeats", beats.len());
    for (r, id) in &beats {
        assert_eq!(
            requests.get(id).map(|(at, _)| at),
            Some(r),
            "a heartbeat went to another server than its call"
        );
    }
    for (id, (r, identity)) in &requests {
        let ok = protocol::encode_reply(id, protocol::OK, &[0x91, 0x00]);
        let router = if *r == 0 { &mut a } else { &mut b };
        router
            .send(send_frames(vec![identity.clone(), Bytes::new(), ok.into()]))
            .await
            .unwrap();
    }
    for call in calls {
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A client that echoes its request's bin id as a str in its heartbeats is
/// still heard: a server matches ids by what they hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_hears_heartbeats_whose_id_was_retyped() {
    use zerorpc_zeromq::DealerSocket;
    let server = zerorpc::Server::builder(zerorpc::Service::new("s").method(
        "sleep",
        |(s,): (f64,)| async move {
            tokio::time::sleep(Duration::from_secs_f64(s)).await;
            Ok::<_, zerorpc::ServiceError>("slept")
        },
    ))
    .bind("tcp://127.0.0.1:0")
    .heartbeat(Some(Duration::from_millis(200)))
    .start()
    .await
    .unwrap();
    let mut dealer = DealerSocket::new();
    dealer.connect(&server.endpoints()[0]).await.unwrap();
    // sleep(1.5): far longer than the 0.6 s a silent client lasts.
    let (id, request) =
        protocol::encode_request("sleep", &[0x91, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
    dealer
        .send(send_frames(vec![Bytes::new(), request.into()]))
        .await
        .unwrap();
    let mut as_str = vec![0xd9, 32];
    as_str.extend_from_slice(id.as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let reply = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no reply: the call was cancelled"
        );
        let hb = protocol::encode_reply(&as_str, protocol::HEARTBEAT, &[0x91, 0x00]);
        dealer
            .send(send_frames(vec![Bytes::new(), hb.into()]))
            .await
            .unwrap();
        if let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_millis(150), dealer.recv()).await {
            let frames = msg.into_vec();
            let ev = Event::decode(&frames[1]).unwrap();
            if ev.name != Ok(protocol::HEARTBEAT) {
                // Replies carry the id as it was sent: bin.
                assert_eq!(ev.response_to, Some(&id.to_raw()[..]));
                break ev.name.unwrap().to_string();
            }
        }
    };
    assert_eq!(reply, "OK");
    server.close(Duration::ZERO).await.ok();
}
