//! The client facing a hostile server: a hand-driven ROUTER that answers
//! zrpc's requests with what a broken or malicious server might send, while
//! the client (the library, or the `zrpc` command) must stay bounded, fail
//! fast and say why.

use crate::common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use std::process::Command;
use std::time::{Duration, Instant};
use zerorpc::protocol::{self, Event};
use zerorpc::{Client, Error, Value};
use zerorpc_zeromq::{RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// A bound ROUTER standing in for a server.
struct FakeServer {
    router: RouterSocket,
    ep: String,
}

/// A request as the fake server saw it: the route and the request's id.
struct Request {
    peer: Bytes,
    id: Vec<u8>,
    name: String,
}

impl FakeServer {
    async fn bind() -> FakeServer {
        let mut router = RouterSocket::new();
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
        FakeServer { router, ep }
    }

    /// The next event (within 10 s).
    async fn next(&mut self) -> Request {
        let frames = tokio::time::timeout(Duration::from_secs(10), self.router.recv())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .into_vec();
        let ev = Event::decode(&frames[2]).unwrap();
        let id = ev.response_to.or(ev.message_id).unwrap().to_vec();
        Request {
            peer: frames[0].clone(),
            id,
            name: ev.name.unwrap().to_string(),
        }
    }

    async fn send(&mut self, to: &Bytes, payload: Vec<u8>) {
        let msg =
            ZmqMessage::try_from(vec![to.clone(), Bytes::new(), Bytes::from(payload)]).unwrap();
        self.router.send(msg).await.unwrap();
    }
}

/// `[item]`-less STREAM event: a STREAM's args are the item itself.
fn stream_item(id: &[u8], item: &[u8]) -> Vec<u8> {
    protocol::encode_reply(id, protocol::STREAM, item)
}

/// A msgpack bin of `n` bytes.
fn bin(n: usize) -> Vec<u8> {
    let mut out = vec![0xc6];
    out.extend_from_slice(&(n as u32).to_be_bytes());
    out.resize(5 + n, 0xab);
    out
}

fn more_credit(args: &[u8]) -> u64 {
    match rmpv::decode::read_value(&mut &args[..]).unwrap() {
        Value::Array(a) => a[0].as_u64().unwrap(),
        v => panic!("credit {v}"),
    }
}

/// A server that follows the credit with 4 MiB items was let send 100 of
/// them (400 MB held by a client that does not read); the window is now
/// sized in bytes too: about 16 MiB of such items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_large_items_is_windowed_in_bytes() {
    let mut server = FakeServer::bind().await;
    let client = Client::connect(&server.ep).await.unwrap();
    let reading = tokio::spawn(async move {
        let mut items = client.stream::<_, Value>("count", ()).await.unwrap();
        // Read two items (the second read grants credit), then stop
        // reading (but keep the stream).
        for _ in 0..2 {
            let item = items.next().await.unwrap().unwrap();
            assert!(matches!(item, Value::Binary(b) if b.len() == 4 << 20));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(items);
    });
    let req = server.next().await;
    let item = bin(4 << 20);
    server.send(&req.peer, stream_item(&req.id, &item)).await;
    // Send exactly as much as the client grants, for 2 s.
    let mut granted = 0;
    let mut sent = 1;
    let until = Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(msg)) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        server.router.recv(),
    )
    .await
    {
        let frames = msg.into_vec();
        let ev = Event::decode(&frames[2]).unwrap();
        if ev.name == Ok(protocol::MORE) {
            let n = more_credit(&ev.args);
            granted += n;
            for _ in 0..n {
                server.send(&req.peer, stream_item(&req.id, &item)).await;
                sent += 1;
            }
        }
    }
    println!(
        "WINDOW: 4 MiB items: the client granted {granted} more after the first ({} MiB let in)",
        sent * 4
    );
    assert!(granted >= 1, "the stream never got more credit");
    assert!(sent * 4 <= 24, "{sent} items of 4 MiB let in");
    reading.await.unwrap();
}

/// A server that earns a large window with tiny items and then sends huge
/// ones on it is cut off once 64 MiB wait unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_switches_to_huge_items_is_cut_off() {
    let mut server = FakeServer::bind().await;
    let client = Client::connect(&server.ep).await.unwrap();
    let req_task = tokio::spawn(async move {
        let mut items = client.stream::<_, Value>("count", ()).await.unwrap();
        assert!(items.next().await.unwrap().is_ok());
        // Credit is granted when the next read starts; then read nothing
        // for a while.
        let next = tokio::time::timeout(Duration::from_millis(50), items.next()).await;
        let mut got = usize::from(matches!(next, Ok(Some(Ok(_)))));
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Now read what was let in: items, then the error.
        while let Some(item) = items.next().await {
            match item {
                Ok(_) => got += 1,
                Err(e) => return (got, Some(e)),
            }
        }
        (got, None)
    });
    let req = server.next().await;
    server.send(&req.peer, stream_item(&req.id, &[0x01])).await;
    let more = server.next().await;
    assert_eq!(more.name, protocol::MORE);
    let huge = bin(4 << 20);
    for _ in 0..60 {
        server.send(&req.peer, stream_item(&req.id, &huge)).await;
    }
    let (got, err) = req_task.await.unwrap();
    println!("SWITCH: the reader got {got} items of 4 MiB, then {err:?}");
    let err = err.expect("the stream was cut off");
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("ahead of their reader"), "{err}");
    assert!(got <= 18, "{got} items let in");
}

/// PROTOCOL.md §6: an event of unknown name on an open call is ignored;
/// the call then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_events_are_ignored() {
    let mut server = FakeServer::bind().await;
    let client = Client::connect(&server.ep).await.unwrap();
    let call = tokio::spawn(async move { client.call::<_, i64>("add", (2, 3)).await });
    let req = server.next().await;
    let ext = protocol::encode_reply(&req.id, "_zpc_from_the_future", &[0x90]);
    server.send(&req.peer, ext).await;
    let ok = protocol::encode_reply(&req.id, protocol::OK, &[0x91, 0x05]);
    server.send(&req.peer, ok).await;
    assert_eq!(call.await.unwrap().unwrap(), 5);
}

/// A reply whose header names its call but whose body is broken fails that
/// call at once (it waited out its whole timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_reply_fails_its_call_at_once() {
    let mut server = FakeServer::bind().await;
    let client = Client::builder()
        .connect(&server.ep)
        .timeout(Some(Duration::from_secs(20)))
        .start()
        .await
        .unwrap();
    let call = tokio::spawn(async move {
        let t0 = Instant::now();
        (client.call::<_, i64>("add", (2, 3)).await, t0.elapsed())
    });
    let req = server.next().await;
    // `OK` with args claiming 3 elements and holding one.
    let bad = protocol::encode_reply(&req.id, protocol::OK, &[0x93, 0x05]);
    server.send(&req.peer, bad).await;
    let (result, took) = call.await.unwrap();
    let e = result.unwrap_err();
    println!("MALFORMED: failed after {took:?}: {e}");
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    assert!(e.to_string().contains("malformed"), "{e}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// A server that answers with 32 MiB of nils: the client's decoding stops
/// at its budget instead of taking a gigabyte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cannot_decode_into_a_hundred_times_its_size() {
    let mut server = FakeServer::bind().await;
    let client = Client::builder()
        .connect(&server.ep)
        .max_decoded_size(8 << 20)
        .start()
        .await
        .unwrap();
    let call = tokio::spawn(async move { client.call_dynamic("nils", vec![]).await });
    let req = server.next().await;
    let n = 4 << 20;
    let mut args = vec![0x91, 0xdd];
    args.extend_from_slice(&(n as u32).to_be_bytes());
    args.resize(args.len() + n, 0xc0);
    server
        .send(
            &req.peer,
            protocol::encode_reply(&req.id, protocol::OK, &args),
        )
        .await;
    let e = call.await.unwrap().unwrap_err();
    assert!(matches!(e, Error::Decode { .. }), "{e:?}");
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(chain.contains("max_decoded_size"), "{chain}");
}

/// A passive client (the command line's default) judges a server that
/// never beats lost after three periods, as an active one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_client_loses_a_silent_server() {
    let mut server = FakeServer::bind().await;
    let client = Client::builder()
        .connect(&server.ep)
        .heartbeat(Some(Duration::from_millis(200)))
        .passive_heartbeat(true)
        .timeout(Some(Duration::from_secs(20)))
        .start()
        .await
        .unwrap();
    let call = tokio::spawn(async move {
        let t0 = Instant::now();
        (client.call::<_, i64>("sleep", ()).await, t0.elapsed())
    });
    let _req = server.next().await;
    let (result, took) = call.await.unwrap();
    println!("PASSIVE: lost after {took:?}");
    assert!(
        matches!(result, Err(Error::LostRemote { .. })),
        "{result:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Server text reaches a terminal escaped: no ESC, BEL or CR, no forged
/// second line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_escapes_what_a_server_says() {
    let mut server = FakeServer::bind().await;
    let ep = server.ep.clone();
    let cli = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_zrpc"))
            .args(["--timeout", "10", &ep, "hello"])
            .output()
            .unwrap()
    });
    let req = server.next().await;
    let err = protocol::encode_err(
        &req.id,
        "Evil\x1b[2J",
        "bell\x07\rzrpc: all is well\nzrpc: forged",
        "",
    );
    server.send(&req.peer, err).await;
    let out = cli.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains(['\x1b', '\x07', '\r']),
        "raw control characters: {stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("\\x1b[2J"), "{stderr:?}");
    // A result string too.
    let ep = server.ep.clone();
    let cli = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_zrpc"))
            .args(["--timeout", "10", &ep, "hello"])
            .output()
            .unwrap()
    });
    let req = server.next().await;
    let mut args = vec![0x91];
    rmpv::encode::write_value(&mut args, &Value::from("hi\x1b]0;owned\x07")).unwrap();
    server
        .send(
            &req.peer,
            protocol::encode_reply(&req.id, protocol::OK, &args),
        )
        .await;
    let out = cli.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi\\x1b]0;owned\\x07\n",
        "{out:?}"
    );
}

/// `zrpc --pull` whose stdout nobody reads still stops on SIGTERM (its
/// printing blocked the runtime).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_puller_with_a_blocked_stdout_stops_on_sigterm() {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zrpc"));
    cmd.args(["--pull", "--bind", &ep])
        .stdin(std::process::Stdio::null())
        // A pipe never read: it fills at 64 KiB.
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let _stdout = child.stdout.take();
    let mut puller = Proc(child);
    let pusher = zerorpc::Pusher::connect(&ep).await.unwrap();
    let line = "x".repeat(1000);
    for _ in 0..200 {
        pusher.push("news", (line.as_str(),)).unwrap();
    }
    pusher.close(Duration::from_secs(5)).await.unwrap();
    // Its printing is stuck on the full pipe by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    puller.signal(15);
    let status = tokio::task::spawn_blocking(move || puller.wait_for(Duration::from_secs(5)))
        .await
        .unwrap();
    println!("PULL: stopped {:?} after SIGTERM", t0.elapsed());
    assert!(
        status.is_some(),
        "zrpc --pull ignored SIGTERM with its stdout full"
    );
}
