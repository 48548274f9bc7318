//! Notifications (oslo.messaging's Notifier and listeners): priorities,
//! filters by event type and publisher, filtering at the publisher (bytes
//! on the wire counted), and what a plain zerorpc-python subscriber sees.

use crate::common;

use common::{free_port, python_oneway};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zerorpc::oneway::{NotificationListener, Notifier, Priority};
use zerorpc::{Service, ServiceError, Value};

type Seen = Arc<Mutex<Vec<(String, Value, String, String, Value, Value)>>>;

/// An endpoint with `info` and `error` methods recording what they get.
fn endpoint(seen: Seen) -> Service {
    let mut service = Service::new("endpoint");
    for priority in ["info", "error"] {
        let seen = seen.clone();
        service = service.method(
            priority,
            move |(ctxt, publisher_id, event_type, payload, metadata): (
                Value,
                String,
                String,
                Value,
                Value,
            )| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push((
                        priority.to_string(),
                        ctxt,
                        publisher_id,
                        event_type,
                        payload,
                        metadata,
                    ));
                    Ok::<_, ServiceError>(())
                }
            },
        );
    }
    service
}

/// Send notifications until the listener has seen `n` (the first ones may
/// be lost before its subscription reaches the publisher: pub/sub's slow
/// joiner), each a `warmup` then the real ones.
async fn until_subscribed(notifier: &Notifier, seen: &Seen) {
    assert!(notifier.wait_for_listener(Duration::from_secs(10)).await);
    for _ in 0..500 {
        notifier
            .info(Value::Nil, "compute.warmup", Value::Nil)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        if !seen.lock().unwrap().is_empty() {
            seen.lock().unwrap().clear();
            return;
        }
    }
    panic!("the listener never subscribed");
}

#[tokio::test]
async fn listeners_get_the_priorities_event_types_and_publishers_they_ask_for() {
    let notifier = Notifier::builder("compute.host1")
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let ep = notifier.endpoints()[0].clone();
    let seen: Seen = Default::default();
    let _listener = NotificationListener::builder(endpoint(seen.clone()))
        .event_type("compute.*")
        .publisher_id("compute.*")
        .connect(&ep)
        .start()
        .await
        .unwrap();
    until_subscribed(&notifier, &seen).await;
    let ctxt = Value::Map(vec![("user".into(), "ada".into())]);
    notifier
        .info(&ctxt, "compute.instance.create.end", ("i-1", 2))
        .unwrap();
    notifier.info(&ctxt, "network.port.create", 1).unwrap(); // other event type
    notifier.warn(&ctxt, "compute.instance.slow", 1).unwrap(); // no warn method
    notifier.debug(&ctxt, "compute.instance.debug", 1).unwrap(); // no debug method
    notifier
        .error(&ctxt, "compute.instance.create.error", "disk full")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().unwrap().clone();
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|(p, _, _, e, _, _)| (p.as_str(), e.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("info", "compute.instance.create.end"),
            ("error", "compute.instance.create.error")
        ]
    );
    let (_, got_ctxt, publisher_id, _, payload, metadata) = &seen[0];
    assert_eq!(got_ctxt, &ctxt);
    assert_eq!(publisher_id, "compute.host1");
    assert_eq!(payload, &Value::Array(vec!["i-1".into(), 2.into()]));
    let meta = metadata.as_map().expect("metadata is a map");
    let key = |k: &str| {
        meta.iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        key("message_id").and_then(|v| v.as_str().map(str::len)),
        Some(32)
    );
    let timestamp = key("timestamp")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap();
    assert!(
        timestamp.starts_with("20") && timestamp.len() == 26,
        "{timestamp}"
    );

    // A listener for another publisher gets nothing of this one's.
    let others: Seen = Default::default();
    let _other = NotificationListener::builder(endpoint(others.clone()))
        .publisher_id("network.*")
        .priority(Priority::Info)
        .connect(&ep)
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    notifier
        .info(&ctxt, "compute.instance.create.end", 1)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(others.lock().unwrap().is_empty());
}

/// Forwards one TCP connection to `to`, counting the bytes that come back
/// (publisher to subscriber).
async fn counting_relay(to: String) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = format!("tcp://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = TcpStream::connect(to.trim_start_matches("tcp://"))
            .await
            .unwrap();
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let up = tokio::io::copy(&mut cr, &mut sw);
        let down = async {
            let mut buf = vec![0; 64 * 1024];
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                counted.fetch_add(n as u64, Ordering::Relaxed);
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::join!(up, down);
    });
    (at, count)
}

/// Bytes a listener receives while 200 notifications go out, one of which
/// it wants.
async fn bytes_received(filtered: bool) -> u64 {
    let notifier = Notifier::builder("compute.host1")
        .bind(format!("tcp://127.0.0.1:{}", free_port()))
        .start()
        .await
        .unwrap();
    let (relay, count) = counting_relay(notifier.endpoints()[0].clone()).await;
    let seen: Seen = Default::default();
    let mut listener = NotificationListener::builder(endpoint(seen.clone()));
    if filtered {
        listener = listener.event_type("compute.warmup").event_type("rare.*");
    }
    let _listener = listener.connect(&relay).start().await.unwrap();
    until_subscribed(&notifier, &seen).await;
    let before = count.load(Ordering::Relaxed);
    let payload = "x".repeat(1000);
    for i in 0..200 {
        let event_type = if i == 100 {
            "rare.event"
        } else {
            "common.event"
        };
        notifier.info(Value::Nil, event_type, &payload).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().any(|s| s.3 == "rare.event"),
        "the wanted one arrived"
    );
    count.load(Ordering::Relaxed) - before
}

#[tokio::test]
async fn a_listener_that_wants_one_in_two_hundred_receives_only_that_one() {
    let all = bytes_received(false).await;
    let one = bytes_received(true).await;
    eprintln!("NOTIFICATIONS: 200 sent, 1 wanted: {all} bytes received unfiltered, {one} filtered");
    assert!(all > 200 * 1000, "{all}");
    assert!(
        one < 3 * 1100,
        "{one}: the publisher sent what nobody asked for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_zerorpc_python_subscriber_reads_notifications() {
    let notifier = Notifier::builder("compute.host1")
        .bind(format!("tcp://127.0.0.1:{}", free_port()))
        .start()
        .await
        .unwrap();
    let ep = notifier.endpoints()[0].clone();
    let mut py = tokio::task::spawn_blocking(move || python_oneway("notified", &ep, 3, &[]))
        .await
        .unwrap();
    // Warm up until its subscription is in.
    let mut warm = false;
    for _ in 0..500 {
        notifier.info(Value::Nil, "warmup", Value::Nil).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if py.saw("WARM") {
            warm = true;
            break;
        }
    }
    assert!(warm, "the Python subscriber never saw a notification");
    let ctxt = Value::Map(vec![("user".into(), "ada".into())]);
    for i in 0..3 {
        notifier
            .info(&ctxt, "compute.instance.create.end", i)
            .unwrap();
    }
    let lines = tokio::task::spawn_blocking(move || {
        py.expect("PASS", Duration::from_secs(20));
        py.seen().to_vec()
    })
    .await
    .unwrap();
    let note = lines
        .iter()
        .find_map(|l| l.strip_prefix("NOTE "))
        .expect("a NOTE line");
    let five: serde_json::Value = serde_json::from_str(note).unwrap();
    assert_eq!(five[0]["user"], "ada");
    assert_eq!(five[1], "compute.host1");
    assert_eq!(five[2], "compute.instance.create.end");
    assert_eq!(five[3], 0);
    assert!(five[4]["message_id"].is_string(), "{five}");
}
