//! Streams and one-way events against the real zerorpc-python 0.6.3, in
//! both directions. Requires the Python peer (scripts/test.sh installs it).

use crate::common;

use common::*;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zerorpc::oneway::{Publisher, Puller, Pusher, Subscriber};
use zerorpc::{Client, Error, Service, ServiceError};

// ---- streams ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_reads_zrpc_streams() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    let ep2 = ep.clone();
    tokio::task::spawn_blocking(move || python_client(&ep2, "streams"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zrpc_client_reads_python_streams() {
    let (_py, ep) = python_server(5.0);
    let client = Client::connect(&ep).await.unwrap();
    let items: Vec<u64> = client
        .stream::<_, u64>("count", (10_000,))
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(items, (0..10_000).collect::<Vec<_>>());
    let none: Vec<_> = client
        .stream::<_, u64>("count", (0,))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(none.is_empty());

    let got: Vec<Result<u64, Error>> = client
        .stream("failing_stream", (3,))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        got[..3]
            .iter()
            .map(|r| *r.as_ref().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let e = got[3].as_ref().unwrap_err().remote().expect("remote error");
    assert_eq!(
        (e.name.as_str(), e.message.as_str()),
        ("ValueError", "failed after 3")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_zrpc_reader_bounds_a_python_producer() {
    let (_py, ep) = python_server(5.0);
    let client = Client::connect(&ep).await.unwrap();
    let mut items = client.stream::<_, u64>("forever", ()).await.unwrap();
    let mut read = 0u64;
    for _ in 0..3 {
        for _ in 0..120 {
            assert_eq!(items.next().await.unwrap().unwrap(), read);
            read += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let produced: u64 = client.call("produced_count", ()).await.unwrap();
        // Python advances its generator once before waiting for credit.
        assert!(
            produced <= read + 102,
            "python produced {produced} items for a reader that took {read}"
        );
    }
}

// ---- push / pull ----

/// A service that records `record(i)` / `news(i)` calls and `warmup()`.
fn recorder(seen: Arc<Mutex<Vec<i64>>>, warm: Arc<Mutex<bool>>) -> Service {
    let (a, b) = (seen.clone(), seen);
    Service::new("sink")
        .method("record", move |(i,): (i64,)| {
            a.lock().unwrap().push(i);
            async { Ok::<_, ServiceError>(()) }
        })
        .method("news", move |(i,): (i64,)| {
            b.lock().unwrap().push(i);
            async { Ok::<_, ServiceError>(()) }
        })
        .method("warmup", move |(): ()| {
            *warm.lock().unwrap() = true;
            async { Ok::<_, ServiceError>(()) }
        })
}

/// Wait until `n` events arrived, then a little more for duplicates, and
/// check each of 0..n came exactly once.
async fn expect_each_once(seen: &Mutex<Vec<i64>>, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} events arrived",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut counts = BTreeMap::new();
    for &i in seen.lock().unwrap().iter() {
        *counts.entry(i).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), n, "missing or stray events");
    assert!(counts
        .iter()
        .all(|(&i, &c)| c == 1 && (0..n as i64).contains(&i)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_pusher_to_zrpc_puller() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let puller = Puller::builder(recorder(seen.clone(), Default::default()))
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let ep = puller.endpoints()[0].clone();
    let n = 2000;
    let mut py = tokio::task::spawn_blocking(move || python_oneway("push", &ep, n, &[]))
        .await
        .unwrap();
    expect_each_once(&seen, n).await;
    tokio::task::spawn_blocking(move || py.expect("PASS", Duration::from_secs(20)))
        .await
        .unwrap();
    puller.close(Duration::from_secs(1)).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zrpc_pusher_to_python_puller() {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let n = 2000;
    let ep2 = ep.clone();
    let mut py = tokio::task::spawn_blocking(move || python_oneway("pull", &ep2, n, &[]))
        .await
        .unwrap();
    let pusher = Pusher::connect(&ep).await.unwrap();
    for i in 0..n {
        pusher.push("record", (i,)).unwrap();
    }
    pusher.close(Duration::from_secs(10)).await.unwrap();
    tokio::task::spawn_blocking(move || py.expect("PASS", Duration::from_secs(30)))
        .await
        .unwrap();
}

// ---- publish / subscribe ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_publisher_to_zrpc_subscriber() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let warm = Arc::new(Mutex::new(false));
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let flag = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let flag_path = flag.to_path_buf();
    std::fs::remove_file(&flag_path).unwrap();
    let n = 1000;
    let (ep2, fp) = (ep.clone(), flag_path.to_string_lossy().to_string());
    let mut py =
        tokio::task::spawn_blocking(move || python_oneway("publish", &ep2, n, &[fp.as_str()]))
            .await
            .unwrap();
    let sub = Subscriber::builder(recorder(seen.clone(), warm.clone()))
        .connect(&ep)
        .start()
        .await
        .unwrap();
    // Publish/subscribe loses what is sent before the subscription lands:
    // wait until a warmup event got through, then tell the publisher.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !*warm.lock().unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no warmup event arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::write(&flag_path, b"go").unwrap();
    expect_each_once(&seen, n).await;
    tokio::task::spawn_blocking(move || py.expect("PASS", Duration::from_secs(20)))
        .await
        .unwrap();
    sub.close(Duration::from_secs(1)).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zrpc_publisher_to_python_subscriber() {
    let publisher = Publisher::bind("tcp://127.0.0.1:0").await.unwrap();
    let ep = publisher.endpoints()[0].clone();
    let n = 1000;
    let mut py = tokio::task::spawn_blocking(move || python_oneway("subscribe", &ep, n, &[]))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !py.saw("WARM") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "python never saw a warmup"
        );
        publisher.publish("warmup", ()).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..n {
        publisher.publish("news", (i,)).unwrap();
    }
    tokio::task::spawn_blocking(move || py.expect("PASS", Duration::from_secs(30)))
        .await
        .unwrap();
    publisher.close(Duration::from_secs(1)).await.ok();
}
