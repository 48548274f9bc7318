//! Hostile and unusual peers at the transport level: frame headers that
//! claim huge lengths, messages over the size limit, and libzmq peers that
//! send ZMTP heartbeats (PING).

use crate::common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use zerorpc::{Client, Error, Server};

/// A ZMTP 3.0 NULL greeting plus a READY command for a DEALER.
fn zmtp_hello() -> Vec<u8> {
    let mut g = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0];
    g.extend_from_slice(b"NULL");
    g.resize(64, 0);
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&6u32.to_be_bytes());
    body.extend_from_slice(b"DEALER");
    g.extend_from_slice(&[0x04, body.len() as u8]);
    g.extend_from_slice(&body);
    g
}

/// Connect over raw TCP, handshake, send `tail`; true if the server then
/// closed the connection (within a few seconds).
fn send_raw(port: u16, tail: &[u8]) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&zmtp_hello()).unwrap();
    let _ = s.write_all(tail);
    // Read the server's greeting and READY, then expect end of stream.
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => total += n,
            Err(_) => return false,
        }
        assert!(total < 1 << 20, "unexpected data from the server");
    }
}

fn long_frame_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x02];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_frame_headers_do_not_stop_zrpc_server_calc() {
    let port = free_port();
    let ep = format!("tcp://127.0.0.1:{port}");
    let mut srv = spawn_until(
        Command::new(env!("CARGO_BIN_EXE_zrpc")).args(["--server", "--bind", &ep, "calc"]),
        "serving",
        true,
    );
    let closed = tokio::task::spawn_blocking(move || {
        [
            // 1 TiB: upstream zeromq 0.7 aborted the process allocating it.
            send_raw(port, &long_frame_header(1 << 40)),
            // Over the 100 MiB default limit.
            send_raw(port, &long_frame_header(200 << 20)),
            // u64::MAX.
            send_raw(port, &long_frame_header(u64::MAX)),
        ]
    })
    .await
    .unwrap();
    assert_eq!(closed, [true; 3], "the server should drop each such peer");
    // A claim under the limit whose bytes never come only holds a connection.
    let mut pending = TcpStream::connect(("127.0.0.1", port)).unwrap();
    pending.write_all(&zmtp_hello()).unwrap();
    pending.write_all(&long_frame_header(90 << 20)).unwrap();
    pending.write_all(&[0u8; 1000]).unwrap();

    assert!(srv.0.try_wait().unwrap().is_none(), "the server died");
    let client = Client::connect(&ep).await.unwrap();
    let sum: i64 = client.call("add", (2, 3)).await.unwrap();
    assert_eq!(sum, 5);
    drop(pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_request_drops_only_its_sender() {
    captured_logs();
    let server = Server::builder(test_service())
        .bind("tcp://127.0.0.1:0")
        .max_message_size(64 * 1024)
        .start()
        .await
        .unwrap();
    let ep = server.endpoints()[0].clone();
    let greedy = Client::connect(&ep).await.unwrap();
    let polite = Client::connect(&ep).await.unwrap();
    let big = "x".repeat(100 * 1024);
    let e = greedy
        .call::<_, String>("hello", (big,))
        .await
        .expect_err("an oversize request cannot succeed");
    assert!(matches!(e, Error::LostRemote { .. }), "{e:?}");
    // The server names the peer it dropped, and why. The client can see the
    // connection close before the server's core reads the error, so wait.
    wait_logged(
        |l| {
            l.contains("dropped a peer that sent bad data")
                && l.contains("peer=")
                && l.contains("maximum message size")
        },
        "no warning naming the oversize peer",
    )
    .await;
    let ok: String = polite
        .call("hello", ("y".repeat(60 * 1024),))
        .await
        .unwrap();
    assert_eq!(ok.len(), 60 * 1024 + 8);
    // The offender reconnects and small calls work again.
    let sum: i64 = greedy.call("add", (1, 2)).await.unwrap();
    assert_eq!(sum, 3);
    server.close(Duration::from_secs(1)).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_heartbeat_pings_are_answered() {
    let (server, ep) = start_server(None).await;
    // PING every 50 ms with a 200 ms timeout, during a 1.5 s call: without a
    // PONG, libzmq drops the connection and the reply is lost.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script("py_libzmq_ping.py"))
            .args([ep.as_str(), "1.5", "200"])
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASS") && stdout.contains("slept 1.5"),
        "{out:?}"
    );
    server.close(Duration::from_secs(1)).await.ok();
}

/// Everything logged in this test binary, for tests that check a fault is
/// reported (once).
fn captured_logs() -> &'static std::sync::Mutex<Vec<u8>> {
    use std::sync::{Mutex, OnceLock};
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        struct W(&'static Mutex<Vec<u8>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter("zerorpc=info")
            .with_ansi(false)
            .with_writer(move || W(logs))
            .try_init();
        logs
    })
}

/// Wait up to 5 s for a captured log line matching `pred`; fail with `why`
/// and the log so far.
async fn wait_logged(pred: impl Fn(&str) -> bool, why: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).to_string();
        if logs.lines().any(&pred) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{why} in:\n{logs}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn logged(what: &str) -> usize {
    let logs = captured_logs().lock().unwrap();
    String::from_utf8_lossy(&logs).matches(what).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_stall_the_others() {
    use zerorpc_zeromq::{DealerSocket, Socket, SocketSend, ZmqMessage};
    captured_logs();
    let service = zerorpc::Service::new("greedy")
        .method("blob", |(n,): (usize,)| async move {
            Ok::<_, zerorpc::ServiceError>("x".repeat(n))
        })
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, zerorpc::ServiceError>(a + b)
        });
    let server = Server::builder(service)
        .bind("tcp://127.0.0.1:0")
        .send_queue(100)
        .start()
        .await
        .unwrap();
    let ep = server.endpoints()[0].clone();

    // A raw DEALER asks for 1500 replies of 64 KiB (about 100 MB: far more
    // than the kernel's socket buffers and the 100-reply queue) and never
    // reads one.
    let mut greedy = DealerSocket::new();
    greedy.connect(&ep).await.unwrap();
    for i in 0..1500u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let ev = rmpv::Value::Array(vec![
            rmpv::Value::Map(vec![
                ("message_id".into(), rmpv::Value::Binary(id.to_vec())),
                ("v".into(), 3.into()),
            ]),
            "blob".into(),
            rmpv::Value::Array(vec![65536.into()]),
        ]);
        let mut payload = Vec::new();
        rmpv::encode::write_value(&mut payload, &ev).unwrap();
        greedy.send(ZmqMessage::from(payload)).await.unwrap();
    }

    // Everyone else is still answered promptly, throughout.
    let polite = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_secs(3)))
        .start()
        .await
        .unwrap();
    for i in 0..50i64 {
        let sum: i64 = polite
            .call("add", (i, 1))
            .await
            .expect("polite client answered");
        assert_eq!(sum, i + 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The offender is named once, not once per dropped reply.
    assert_eq!(logged("peer is not reading"), 1, "expected one warning");
    drop(greedy);
    wait_logged(
        |l| l.contains("peer that was not reading disconnected"),
        "no warning when the offender left",
    )
    .await;
    server.close(Duration::from_secs(1)).await.ok();
}

/// A libzmq PUB or SUB pinging every 50 ms (200 ms timeout) stays connected
/// to a zrpc Subscriber or Publisher through 1.5 s of silence, then events
/// still flow. Without a PONG, libzmq drops the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_heartbeat_pings_are_answered_by_pub_and_sub() {
    use zerorpc::{Publisher, Subscriber};
    let py = |role: &str, ep: &str| {
        Lines::spawn(
            Command::new(python())
                .arg(script("py_libzmq_pubsub_ping.py"))
                .args([role, ep, "1.5"]),
        )
    };

    // libzmq SUB ← zrpc Publisher.
    let publisher = Publisher::builder()
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let mut sub = py("sub", &publisher.endpoints()[0].clone());
    sub.expect("ALIVE", Duration::from_secs(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !sub.saw("PASS hello") {
        assert!(
            std::time::Instant::now() < deadline,
            "the libzmq SUB got no event"
        );
        publisher.publish("hello", ()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publisher.close(Duration::from_secs(1)).await.ok();

    // libzmq PUB → zrpc Subscriber.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let service = zerorpc::Service::new("s").method("ping", move |(): ()| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(());
            Ok::<_, zerorpc::ServiceError>(())
        }
    });
    let receiver = Subscriber::builder(service)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let mut publ = py("pub", &receiver.endpoints()[0].clone());
    publ.expect("ALIVE", Duration::from_secs(10));
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the zrpc subscriber got no event from the libzmq PUB")
        .unwrap();
    receiver.close(Duration::from_secs(1)).await.ok();
}

/// `kill -9` of the server mid-call: the pending call fails with
/// `LostRemote` within 3 heartbeats, and once a server is back on the
/// endpoint the same client's calls succeed within about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_calls_fast_and_a_restarted_one_is_found() {
    let port = free_port();
    let ep = format!("tcp://127.0.0.1:{port}");
    let start = || {
        spawn_until(
            Command::new(env!("CARGO_BIN_EXE_zrpc")).args([
                "--server",
                "--heartbeat",
                "0.5",
                "--bind",
                &ep,
                "time",
            ]),
            "serving",
            true,
        )
    };
    let server = start();
    let client = Client::builder()
        .connect(&ep)
        .heartbeat(Some(Duration::from_millis(500)))
        .timeout(Some(Duration::from_secs(30)))
        .start()
        .await
        .unwrap();
    let c = client.clone();
    let call = tokio::spawn(async move { c.call::<_, ()>("sleep", (10.0,)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal(9);
    let killed = std::time::Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the pending call must fail, not hang")
        .unwrap()
        .expect_err("the server was killed");
    let lost = killed.elapsed();
    assert!(matches!(e, Error::LostRemote { .. }), "{e:?}");
    assert!(
        lost <= Duration::from_millis(1500),
        "LostRemote after {lost:?}"
    );
    drop(server);

    // Down for a while (the client backs off), then back on the same port.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _server = start();
    let back = std::time::Instant::now();
    client
        .call::<_, ()>("sleep", (0.0,))
        .await
        .expect("a call after the restart succeeds");
    let took = back.elapsed();
    assert!(
        took <= Duration::from_millis(1500),
        "found the restarted server after {took:?}"
    );
    println!("kill -9: LostRemote after {lost:?}; restarted server answered after {took:?}");
}

/// The acceptance run: every kind of malformed event, from one raw
/// DEALER, at `zrpc --server calc` (with `--exec slow=sleep`); it keeps
/// running and answers `add(2, 3)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_leave_zrpc_server_calc_answering() {
    use zerorpc_zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut srv = spawn_until(
        Command::new(env!("CARGO_BIN_EXE_zrpc")).args([
            "--server",
            "--bind",
            &ep,
            "--exec",
            "slow=sleep",
            // One at a time: a duplicate that ran would be refused ServerBusy.
            "--exec-max",
            "1",
            "calc",
        ]),
        "serving",
        true,
    );
    // A v3 header with message id `id` (bin), then `rest` (name and args).
    let event = |id: &[u8], rest: &[u8]| {
        let mut p = vec![0x93, 0x82, 0xaa];
        p.extend_from_slice(b"message_id");
        p.extend_from_slice(&[0xc4, id.len() as u8]);
        p.extend_from_slice(id);
        p.extend_from_slice(&[0xa1, b'v', 0x03]);
        p.extend_from_slice(rest);
        p
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut hostile: Vec<Vec<u8>> = vec![
        vec![],
        b"\xc1\xc1\xc1".to_vec(),     // never-used msgpack byte
        vec![0x92, 0x80, 0xa1, b'x'], // a 2-array
        vec![0x93, 0x93, 0x01, 0x02, 0x03, 0xa3, b'a', b'd', b'd', 0x90], // header as an array
        vec![
            0x93, 0x81, 0xc4, 0x01, b'v', 0x03, 0xa3, b'a', b'd', b'd', 0x90,
        ], // bin header key
        vec![0x93, 0x81, 0x01, 0x02, 0xa3, b'a', b'd', b'd', 0x90], // int header key
        vec![
            0x93, 0x81, 0xaa, b'm', b'e', b's', b's', b'a', b'g', b'e', b'_', b'i', b'd', 0x80,
            0xa3, b'a', b'd', b'd', 0x90,
        ], // map id
        vec![
            0x93, 0x81, 0xaa, b'm', b'e', b's', b's', b'a', b'g', b'e', b'_', b'i', b'd', 0x05,
            0xa3, b'a', b'd', b'd', 0x92, 1, 2,
        ], // int id
        event(b"a", &[0xa3, b'a', 0xff, b'd', 0x92, 1, 2]), // invalid UTF-8 name
        event(
            b"b",
            &[0xa3, b'a', b'd', b'd', 0xdd, 0xff, 0xff, 0xff, 0xff],
        ), // 4 G items
        event(
            b"c",
            &[0xa3, b'a', b'd', b'd', 0xdb, 0xff, 0xff, 0xff, 0xff],
        ), // 4 G string
        event(b"d", &[0xa3, b'a', b'd', b'd', 0x92, 1]), // truncated
        event(
            b"e",
            &[0xa7, b'_', b'z', b'p', b'c', b'_', b'h', b'b', 0xa1, b'x'],
        ), // junk heartbeat
        {
            let mut p = event(b"f", &[0xa3, b'a', b'd', b'd']);
            p.extend(std::iter::repeat_n(0x91, 1_000_000)); // a million levels deep
            p
        },
    ];
    // `_zpc_more` with junk for a channel that does not exist.
    let mut more = vec![0x93, 0x82, 0xaa];
    more.extend_from_slice(b"message_id\xc4\x01g\xabresponse_to\xc4\x03zzz");
    more.extend_from_slice(b"\xa9_zpc_more\x91\xa1x");
    hostile.push(more);
    // The same id twice while the first is running, and random bytes.
    hostile.push(event(b"h", b"\xa4slow\x91\x01"));
    hostile.push(event(b"h", b"\xa4slow\x91\x01"));
    for n in [1, 7, 64, 1000, 100_000] {
        hostile.push(random(n));
    }
    let mut raw = DealerSocket::new();
    raw.connect(&ep).await.unwrap();
    for p in hostile {
        let mut m = ZmqMessage::from(bytes::Bytes::new());
        m.push_back(p.into());
        raw.send(m).await.unwrap();
    }
    // `slow(1)` (sleep 1) under id "h" is answered once; its duplicate, sent while
    // it ran, is dropped (a second answer would arrive within a second).
    // The name of an event answering id "h", heartbeats aside.
    let answer_to_h = |m: &ZmqMessage| -> Option<String> {
        let payload = m.get(m.len() - 1).unwrap();
        let ev = rmpv::decode::read_value(&mut &payload[..]).unwrap();
        let ev = ev.as_array().unwrap();
        let to_h = ev[0]
            .as_map()
            .unwrap()
            .iter()
            .any(|(k, v)| k.as_str() == Some("response_to") && v.as_slice() == Some(&b"h"[..]));
        let name = ev[1].as_str().unwrap().to_string();
        (to_h && name != "_zpc_hb").then_some(name)
    };
    let mut next_answer = async |limit: Duration| {
        tokio::time::timeout(limit, async {
            loop {
                if let Some(name) = answer_to_h(&raw.recv().await.unwrap()) {
                    return name;
                }
            }
        })
        .await
    };
    let first = next_answer(Duration::from_secs(5)).await;
    assert_eq!(first.as_deref(), Ok("OK"), "slow(1) under id h is answered");
    let second = next_answer(Duration::from_millis(1500)).await;
    assert!(
        second.is_err(),
        "the duplicate request was answered too: {second:?}"
    );
    assert!(srv.0.try_wait().unwrap().is_none(), "the server died");
    let client = Client::connect(&ep).await.unwrap();
    let sum: i64 = client.call("add", (2, 3)).await.unwrap();
    assert_eq!(sum, 5);
}
