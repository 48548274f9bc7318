//! What zrpc puts on the wire, read as raw ZeroMQ frames by a bare socket
//! standing in for the peer (real peers tolerate things a third
//! implementation may not: these tests do not).

use bytes::Bytes;
use std::time::Duration;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};
use zerorpc::protocol::{self, Event, MessageId};
use zerorpc::Client;

/// A bare ROUTER on a free loopback port, and its endpoint.
async fn raw_router() -> (zeromq::RouterSocket, String) {
    let mut router = zeromq::RouterSocket::new();
    let ep = router
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind a raw ROUTER")
        .to_string();
    (router, ep)
}

/// Receive one message, within a bound.
async fn recv(router: &mut zeromq::RouterSocket) -> Vec<Bytes> {
    tokio::time::timeout(Duration::from_secs(5), router.recv())
        .await
        .expect("the client sent nothing within 5 s")
        .expect("receive")
        .into_vec()
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
