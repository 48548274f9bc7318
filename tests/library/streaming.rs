//! Streamed replies between zrpc peers: order, errors, flow control (a slow
//! reader bounds the producer), cancellation and heartbeats.

use crate::common;

use common::start_server;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use zerorpc::{CallOptions, Client, Error, Response, Server, Service, ServiceError, Value};

#[tokio::test]
async fn ten_thousand_items_in_order() {
    let (server, ep) = start_server(None).await;
    let client = Client::connect(&ep).await.unwrap();
    let items: Vec<u64> = client
        .stream::<_, u64>("count", (10_000,))
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(items, (0..10_000).collect::<Vec<_>>());
    // An empty stream is a stream with no items, not an error.
    let empty: Vec<_> = client
        .stream::<_, u64>("count", (0,))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(empty.is_empty());
    server.close(Duration::from_secs(1)).await.ok();
}

#[tokio::test]
async fn error_part_way_comes_after_the_items() {
    let (server, ep) = start_server(None).await;
    let client = Client::connect(&ep).await.unwrap();
    let got: Vec<Result<u64, Error>> = client
        .stream("count_then_fail", (3,))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(got.len(), 4, "{got:?}");
    for (i, item) in got[..3].iter().enumerate() {
        assert_eq!(*item.as_ref().unwrap(), i as u64);
    }
    let err = got[3].as_ref().unwrap_err().remote().expect("remote error");
    assert_eq!(
        (err.name.as_str(), err.message.as_str()),
        ("ValueError", "failed after 3")
    );
    server.close(Duration::from_secs(1)).await.ok();
}

#[tokio::test]
async fn streams_and_values_are_told_apart() {
    let (server, ep) = start_server(None).await;
    let client = Client::connect(&ep).await.unwrap();
    // A plain method read as a stream yields its one value.
    let one: Vec<i64> = client
        .stream::<_, i64>("add", (2, 3))
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(one, vec![5]);
    // A stream read with call() is a clear error, not a hang.
    let e = client.call::<_, u64>("count", (3,)).await.unwrap_err();
    assert!(e.to_string().contains("Client::stream"), "{e}");
    // The dynamic API says which it got.
    match client
        .request_dynamic("count", vec![Value::from(2)], CallOptions::default())
        .await
        .unwrap()
    {
        Response::Stream(s) => {
            let items: Vec<Value> = s.map(|r| r.unwrap()).collect().await;
            assert_eq!(items, vec![Value::from(0), Value::from(1)]);
        }
        Response::Value(v) => panic!("expected a stream, got {v}"),
    }
    match client
        .request_dynamic("add", vec![1.into(), 2.into()], CallOptions::default())
        .await
        .unwrap()
    {
        Response::Value(v) => assert_eq!(v, Value::from(3)),
        Response::Stream(_) => panic!("expected a value"),
    }
    // Errors before the first item are returned by stream() itself.
    let e = client
        .stream::<_, u64>("count", ("x",))
        .await
        .err()
        .unwrap();
    assert_eq!(e.remote().unwrap().name, "TypeError");
    server.close(Duration::from_secs(1)).await.ok();
}

/// An endless stream that counts what it produced and notices being dropped.
fn endless(produced: Arc<AtomicU64>, dropped: Arc<AtomicBool>) -> Service {
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    Service::new("endless").stream("forever", move |(): ()| {
        let produced = produced.clone();
        let guard = Guard(dropped.clone());
        futures::stream::iter(0u64..).map(move |i| {
            let _keep = &guard;
            produced.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ServiceError>(i)
        })
    })
}

#[tokio::test]
async fn a_slow_reader_bounds_what_the_server_produces() {
    let produced = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let server = Server::builder(endless(produced.clone(), dropped.clone()))
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let client = Client::connect(&server.endpoints()[0]).await.unwrap();
    let mut items = client.stream::<_, u64>("forever", ()).await.unwrap();
    let mut read = 0u64;
    for round in 0..5 {
        for _ in 0..60 {
            assert_eq!(items.next().await.unwrap().unwrap(), read);
            read += 1;
        }
        // The reader pauses; the producer must stop within its credit.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let p = produced.load(Ordering::SeqCst);
        assert!(
            p <= read + 101,
            "round {round}: produced {p} items for a reader that took {read}"
        );
    }
    drop(items);
    server.close(Duration::ZERO).await.ok();
}

#[tokio::test]
async fn dropping_the_stream_stops_the_producer() {
    let produced = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let hb = Duration::from_millis(100);
    let server = Server::builder(endless(produced.clone(), dropped.clone()))
        .bind("tcp://127.0.0.1:0")
        .heartbeat(Some(hb))
        .start()
        .await
        .unwrap();
    let client = Client::builder()
        .connect(&server.endpoints()[0])
        .heartbeat(Some(hb))
        .start()
        .await
        .unwrap();
    let mut items = client.stream::<_, u64>("forever", ()).await.unwrap();
    for i in 0..5 {
        assert_eq!(items.next().await.unwrap().unwrap(), i);
    }
    drop(items);
    let deadline = tokio::time::Instant::now() + 10 * hb;
    while !dropped.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server kept the stream after the reader dropped it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The client is still usable.
    let mut again = client.stream::<_, u64>("forever", ()).await.unwrap();
    assert_eq!(again.next().await.unwrap().unwrap(), 0);
    drop(again);
    server.close(Duration::ZERO).await.ok();
}

#[tokio::test]
async fn slow_streams_outlive_the_call_timeout_thanks_to_heartbeats() {
    let hb = Duration::from_millis(60);
    let service = Service::new("slow").stream("ticks", |(n,): (u64,)| {
        futures::stream::iter(0..n).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(120)).await;
            Ok::<_, ServiceError>(i)
        })
    });
    let server = Server::builder(service)
        .bind("tcp://127.0.0.1:0")
        .heartbeat(Some(hb))
        .start()
        .await
        .unwrap();
    // The timeout covers the first item only; the whole stream takes longer.
    let client = Client::builder()
        .connect(&server.endpoints()[0])
        .heartbeat(Some(hb))
        .timeout(Some(Duration::from_millis(400)))
        .start()
        .await
        .unwrap();
    let items: Vec<u64> = client
        .stream::<_, u64>("ticks", (8,))
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(items, (0..8).collect::<Vec<_>>());
    server.close(Duration::ZERO).await.ok();
}

#[tokio::test]
async fn many_streams_at_once_on_one_client() {
    let (server, ep) = start_server(None).await;
    let client = Client::connect(&ep).await.unwrap();
    let jobs = (0..20u64).map(|k| {
        let client = client.clone();
        async move {
            let n = 300 + k;
            let items: Vec<u64> = client
                .stream::<_, u64>("count", (n,))
                .await
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
                .await;
            assert_eq!(items, (0..n).collect::<Vec<_>>());
        }
    });
    futures::future::join_all(jobs).await;
    server.close(Duration::from_secs(1)).await.ok();
}
