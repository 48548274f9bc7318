//! One-way events between zrpc peers: work sharing, holding events until a
//! puller connects, fanout, and receivers that survive bad events.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;
use zerorpc::oneway::{Publisher, Puller, Pusher, Subscriber};
use zerorpc::{Error, Service, ServiceError};

type Seen = Arc<Mutex<Vec<(usize, i64)>>>;

/// A receiver service that records `record(i)` as `(tag, i)`.
fn sink(tag: usize, seen: Seen) -> Service {
    Service::new("sink")
        .method("record", move |(i,): (i64,)| {
            seen.lock().unwrap().push((tag, i));
            async { Ok::<_, ServiceError>(()) }
        })
        .method("fail", |(): ()| async {
            Err::<(), _>(ServiceError::new("ValueError", "always fails"))
        })
        .method("panics", |(): ()| async {
            if true {
                panic!("handler bug");
            }
            Ok::<(), ServiceError>(())
        })
}

async fn wait_for(seen: &Seen, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} events arrived",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Anything more would be a duplicate.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pullers_share_the_work_each_event_once() {
    let seen: Seen = Default::default();
    let mut pullers = Vec::new();
    for tag in 0..3 {
        let p = Puller::builder(sink(tag, seen.clone()))
            .bind("tcp://127.0.0.1:0")
            .start()
            .await
            .unwrap();
        pullers.push(p);
    }
    let mut b = Pusher::builder();
    for p in &pullers {
        b = b.connect(p.endpoints()[0].clone());
    }
    let pusher = b.start().await.unwrap();
    assert!(pusher.wait_for_puller(Duration::from_secs(5)).await);
    // Let every connection come up so all three get a share.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = 3000;
    for i in 0..n {
        pusher.push("record", (i,)).unwrap();
    }
    pusher.close(Duration::from_secs(5)).await.unwrap();
    wait_for(&seen, n as usize).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), n as usize, "duplicates");
    let mut ids: Vec<i64> = seen.iter().map(|&(_, i)| i).collect();
    ids.sort();
    assert_eq!(ids, (0..n).collect::<Vec<_>>());
    for tag in 0..3 {
        let share = seen.iter().filter(|&&(t, _)| t == tag).count();
        assert!(share > 0, "puller {tag} got nothing");
    }
}

#[tokio::test]
async fn pusher_holds_events_until_a_puller_connects() {
    let port = common::free_port();
    let ep = format!("tcp://127.0.0.1:{port}");
    let pusher = Pusher::connect(&ep).await.unwrap();
    for i in 0..100 {
        pusher.push("record", (i,)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen: Seen = Default::default();
    let puller = Puller::builder(sink(0, seen.clone()))
        .bind(&ep)
        .start()
        .await
        .unwrap();
    pusher.close(Duration::from_secs(5)).await.unwrap();
    wait_for(&seen, 100).await;
    assert_eq!(seen.lock().unwrap().len(), 100);
    puller.close(Duration::from_secs(1)).await.ok();
}

#[tokio::test]
async fn closing_a_pusher_with_nobody_listening_reports_the_loss() {
    let ep = format!("tcp://127.0.0.1:{}", common::free_port());
    let pusher = Pusher::connect(&ep).await.unwrap();
    pusher.push("record", (1,)).unwrap();
    pusher.push("record", (2,)).unwrap();
    let e = pusher.close(Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(e, Error::Unfinished { count: 2, .. }), "{e:?}");
    assert!(e.to_string().contains("2 events not delivered"), "{e}");
}

#[tokio::test]
async fn a_puller_survives_failing_unknown_and_malformed_events() {
    let seen: Seen = Default::default();
    let puller = Puller::builder(sink(0, seen.clone()))
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let pusher = Pusher::connect(&puller.endpoints()[0]).await.unwrap();
    pusher.push("fail", ()).unwrap();
    pusher.push("panics", ()).unwrap();
    pusher.push("nosuch", (1, 2)).unwrap();
    pusher.push("record", ("not an int",)).unwrap();
    pusher.push("record", (7,)).unwrap();
    pusher.close(Duration::from_secs(5)).await.unwrap();
    wait_for(&seen, 1).await;
    assert_eq!(*seen.lock().unwrap(), vec![(0, 7)]);
    puller.close(Duration::from_secs(1)).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_event() {
    let publisher = Publisher::bind("tcp://127.0.0.1:0").await.unwrap();
    let ep = publisher.endpoints()[0].clone();
    let seen: Seen = Default::default();
    let mut subs = Vec::new();
    for tag in 0..2 {
        subs.push(
            Subscriber::builder(sink(tag, seen.clone()))
                .connect(&ep)
                .start()
                .await
                .unwrap(),
        );
    }
    // Slow joiners: publish a marker until both subscribers have one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        publisher.publish("record", (-1,)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let s = seen.lock().unwrap();
        if (0..2).all(|t| s.contains(&(t, -1))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscribers never joined"
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    seen.lock().unwrap().clear();
    let n = 500;
    for i in 0..n {
        publisher.publish("record", (i,)).unwrap();
    }
    wait_for(&seen, 2 * n as usize).await;
    let seen = seen.lock().unwrap().clone();
    for tag in 0..2 {
        let got: Vec<i64> = seen
            .iter()
            .filter(|&&(t, i)| t == tag && i >= 0)
            .map(|&(_, i)| i)
            .collect();
        assert_eq!(got, (0..n).collect::<Vec<_>>(), "subscriber {tag}");
    }
    publisher.close(Duration::from_secs(1)).await.ok();
    for s in subs {
        s.close(Duration::from_secs(1)).await.ok();
    }
}

/// Publish one event and close at once (what `zrpc --pub` does): the event
/// still reaches the subscriber. zeromq's PUB used to discard it about one
/// time in seven, when the socket closed before its fanout task ran; twelve
/// publishers at once make a regression show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_close_delivers() {
    let seen: Seen = Default::default();
    let runs = (0..12).map(|tag| {
        let seen = seen.clone();
        async move {
            let receiver = Subscriber::builder(sink(tag, seen))
                .bind("tcp://127.0.0.1:0")
                .start()
                .await
                .unwrap();
            let publisher = Publisher::builder()
                .connect(receiver.endpoints()[0].clone())
                .start()
                .await
                .unwrap();
            assert!(publisher.wait_for_subscriber(Duration::from_secs(5)).await);
            // Let the subscription reach the publisher, then publish and close.
            tokio::time::sleep(Duration::from_millis(300)).await;
            publisher.publish("record", (tag,)).unwrap();
            publisher.close(Duration::from_secs(1)).await.ok();
            receiver
        }
    });
    let receivers = futures::future::join_all(runs).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while seen.lock().unwrap().len() < 12 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = seen.lock().unwrap().len();
    assert_eq!(got, 12, "{} of 12 published events arrived", got);
    for r in receivers {
        r.close(Duration::from_secs(1)).await.ok();
    }
}
