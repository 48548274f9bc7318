//! CurveZMQ between zrpc peers: calls, streams and one-way events
//! encrypted; the allow-list; wrong keys and mechanism mismatches refused.
//! (tests/command/curve_interop.rs checks the same against libzmq through pyzmq.)

use futures::StreamExt;
use std::time::Duration;
use zerorpc::oneway::{Publisher, Puller, Pusher, Subscriber};
use zerorpc::security::{Curve, CurveKeyPair};
use zerorpc::{Client, Context, Error, Server, Service, ServiceError, Value};

fn service() -> Service {
    Service::new("sec")
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, ServiceError>(a + b)
        })
        .method("who", |(): ()| async {
            let key = Context::current().and_then(|c| c.client_key());
            Ok::<_, ServiceError>(key.map(|k| Value::Binary(k.to_vec())).unwrap_or(Value::Nil))
        })
        .stream("count", |(n,): (u64,)| {
            futures::stream::iter(0..n).map(Ok::<_, ServiceError>)
        })
}

async fn curve_server(curve: Curve) -> (Server, String) {
    let server = Server::builder(service())
        .bind("tcp://127.0.0.1:0")
        .curve(curve)
        .start()
        .await
        .unwrap();
    let ep = server.endpoints()[0].clone();
    (server, ep)
}

async fn client(ep: &str, curve: Option<Curve>) -> Client {
    let mut b = Client::builder()
        .connect(ep)
        .timeout(Some(Duration::from_millis(1500)));
    if let Some(c) = curve {
        b = b.curve(c);
    }
    b.start().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_streams_over_curve_and_the_client_key_reaches_handlers() {
    let (server_keys, client_keys) = (CurveKeyPair::generate(), CurveKeyPair::generate());
    let (_server, ep) =
        curve_server(Curve::server(server_keys.clone()).allow(client_keys.public())).await;
    let c = client(
        &ep,
        Some(Curve::client(client_keys.clone(), server_keys.public())),
    )
    .await;
    assert_eq!(c.call::<_, i64>("add", (2, 3)).await.unwrap(), 5);
    let who: Value = c.call("who", ()).await.unwrap();
    assert_eq!(who, Value::Binary(client_keys.public().to_vec()));
    // Many messages (nonces keep growing), large and multi-frame ones.
    let items: Vec<u64> = c
        .stream::<_, u64>("count", (500,))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, (0..500).collect::<Vec<_>>());
    let big = "x".repeat(1 << 20);
    let echoed: String = c.call("_zerorpc_name", ()).await.unwrap();
    assert_eq!(echoed, "sec");
    let e = c
        .call::<_, i64>("add", (big.as_str(), 1))
        .await
        .unwrap_err();
    assert_eq!(e.remote().unwrap().name, "TypeError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_keys_and_mechanisms_get_no_connection() {
    let (server_keys, allowed, other) = (
        CurveKeyPair::generate(),
        CurveKeyPair::generate(),
        CurveKeyPair::generate(),
    );
    let (_server, ep) =
        curve_server(Curve::server(server_keys.clone()).allow(allowed.public())).await;
    // A key not on the list, the wrong server key, no CURVE at all.
    for (what, curve) in [
        (
            "a client key not allowed",
            Some(Curve::client(other.clone(), server_keys.public())),
        ),
        (
            "the wrong server key",
            Some(Curve::client(allowed.clone(), other.public())),
        ),
        ("NULL against CURVE", None),
    ] {
        let c = client(&ep, curve).await;
        let e = c.call::<_, i64>("add", (1, 1)).await.unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{what}: {e:?}");
        // The error says why the call never left (it was a bare timeout,
        // the reason only in an earlier log line).
        let shown = e.to_string();
        assert!(shown.contains("never sent"), "{what}: {shown}");
        assert!(shown.contains(&ep), "{what}: {shown}");
        if what == "the wrong server key" {
            assert!(shown.contains("CURVE"), "{what}: {shown}");
        }
    }
    // The allowed client still gets in.
    let c = client(&ep, Some(Curve::client(allowed, server_keys.public()))).await;
    assert_eq!(c.call::<_, i64>("add", (1, 1)).await.unwrap(), 2);
    // A CURVE client against a NULL server is refused too.
    let plain = Server::builder(service())
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let c = client(
        &plain.endpoints()[0],
        Some(Curve::client(
            CurveKeyPair::generate(),
            server_keys.public(),
        )),
    )
    .await;
    assert!(c.call::<_, i64>("add", (1, 1)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lets_in_nobody_does_not_start() {
    let e = Server::builder(service())
        .bind("tcp://127.0.0.1:0")
        .curve(Curve::server(CurveKeyPair::generate()))
        .start()
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&e, Error::Config(m) if m.contains("lets in no client")),
        "{e:?}"
    );
    // Any client, or a decision of the application's.
    let keys = CurveKeyPair::generate();
    let banned = CurveKeyPair::generate();
    let banned_pub = banned.public();
    let (_s, ep) =
        curve_server(Curve::server(keys.clone()).authorize(move |k| *k != banned_pub)).await;
    let ok = client(
        &ep,
        Some(Curve::client(CurveKeyPair::generate(), keys.public())),
    )
    .await;
    assert_eq!(ok.call::<_, i64>("add", (1, 2)).await.unwrap(), 3);
    let no = client(&ep, Some(Curve::client(banned, keys.public()))).await;
    assert!(no.call::<_, i64>("add", (1, 2)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_events_over_curve() {
    use std::sync::{Arc, Mutex};
    let (recv_keys, send_keys) = (CurveKeyPair::generate(), CurveKeyPair::generate());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = || {
        let s = seen.clone();
        Service::new("sink").method("record", move |(i,): (u64,)| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(i);
                Ok::<_, ServiceError>(())
            }
        })
    };
    // A bound puller is the CURVE server; the pusher connects as a client.
    let puller = Puller::builder(sink())
        .bind("tcp://127.0.0.1:0")
        .curve(Curve::server(recv_keys.clone()).allow(send_keys.public()))
        .start()
        .await
        .unwrap();
    let pusher = Pusher::builder()
        .connect(puller.endpoints()[0].clone())
        .curve(Curve::client(send_keys.clone(), recv_keys.public()))
        .start()
        .await
        .unwrap();
    for i in 0..10 {
        pusher.push("record", (i,)).unwrap();
    }
    pusher.close(Duration::from_secs(5)).await.unwrap();
    // A bound publisher is the CURVE server; the subscriber connects.
    let publisher = Publisher::builder()
        .bind("tcp://127.0.0.1:0")
        .curve(Curve::server(recv_keys.clone()).allow(send_keys.public()))
        .start()
        .await
        .unwrap();
    let _sub = Subscriber::builder(sink())
        .connect(publisher.endpoints()[0].clone())
        .curve(Curve::client(send_keys, recv_keys.public()))
        .start()
        .await
        .unwrap();
    assert!(publisher.wait_for_subscriber(Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(100)).await; // the subscription travels
    for i in 100..110 {
        publisher.publish("record", (i,)).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = seen.lock().unwrap().len();
        if got == 20 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got} of 20 events");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, (0..10).chain(100..110).collect::<Vec<u64>>());
}

/// Garbage after a CURVE greeting, on raw TCP connections: each is closed,
/// and the server goes on serving a real client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_handshakes_leave_the_server_serving() {
    use std::io::{Read, Write};
    let (server_keys, client_keys) = (CurveKeyPair::generate(), CurveKeyPair::generate());
    let (_server, ep) =
        curve_server(Curve::server(server_keys.clone()).allow(client_keys.public())).await;
    let addr = ep.trim_start_matches("tcp://").to_string();
    let closed = tokio::task::spawn_blocking(move || {
        let mut greeting = [0u8; 64];
        greeting[0] = 0xff;
        greeting[9] = 0x7f;
        greeting[10] = 3;
        greeting[12..17].copy_from_slice(b"CURVE");
        let junk: [&[u8]; 4] = [
            b"\x04\x06\x05HELLO",                    // a short HELLO
            b"\x04\x0a\x08INITIATEx",                // INITIATE before HELLO
            b"\x06\x00\x00\x00\x00\x7f\xff\xff\xff", // a 2 GiB command
            b"\x00\x05hello",                        // a data frame
        ];
        let mut closed = 0;
        for bytes in junk {
            let mut conn = std::net::TcpStream::connect(&addr).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            conn.write_all(&greeting).unwrap();
            conn.write_all(bytes).unwrap();
            // The server's greeting comes back, then the connection closes.
            let mut buf = Vec::new();
            if conn.read_to_end(&mut buf).is_ok() {
                closed += 1;
            }
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(closed, 4, "every bad connection was closed");
    let c = client(&ep, Some(Curve::client(client_keys, server_keys.public()))).await;
    assert_eq!(c.call::<_, i64>("add", (1, 2)).await.unwrap(), 3);
}
